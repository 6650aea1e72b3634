"""Where a simulation's cycles went, as pictures: a Chrome/Perfetto trace and a timeline PNG.

`write_trace(result, "t.json")` writes Chrome trace events (open in ui.perfetto.dev or chrome://tracing;
one trace microsecond is one cycle).  Tracks: the DRAM channel, the matrix unit (preloads nested in
their mma) and the vector unit, one slice per instruction while it occupies the unit; per queue, the
cycles its head waited (tokens, a busy unit, a fence); and each DMA from issue to retirement as an
async slice (they overlap: the channel pipelines them behind the latency).

`plot(result, "t.png")` draws the same unit tracks with matplotlib, merging slices closer than a pixel
so a million-instruction run still draws in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kcomp.targets.accel.machine.asm import format_instr
from kcomp.targets.accel.machine.isa import OPS, Queue, Unit
from kcomp.targets.accel.machine.result import SimResult

TRACKS = ("DRAM channel", "matrix unit", "vector unit", "load queue", "compute queue", "store queue")
_UNIT_TRACK = {Unit.DMA: 0, Unit.MATRIX: 1, Unit.VECTOR: 2}


def _slices(result: SimResult) -> Iterator[tuple[int, int, int, int]]:
    """(pc, track, start, end) of every instruction that occupied a unit."""
    tl = result.timeline
    for pc, ins in enumerate(result.program.instrs):
        track = _UNIT_TRACK.get(OPS[ins.op].unit)
        if track is not None and tl.done[pc] >= 0 and tl.end[pc] > tl.start[pc]:
            yield pc, track, tl.start[pc], tl.end[pc]


def write_trace(result: SimResult, path: str | Path) -> None:
    """Write `result`'s timeline as a Chrome trace JSON file."""
    program, tl = result.program, result.timeline
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": f"kcomp accel ({result.config.name})"}}
    ]
    for tid, name in enumerate(TRACKS):
        events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
        events.append(
            {"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}}
        )

    def text(pc: int) -> str:
        return format_instr(program.instrs[pc], program.buffers)

    for pc, track, start, end in _slices(result):
        ins = program.instrs[pc]
        events.append(
            {"ph": "X", "pid": 1, "tid": track, "name": ins.op, "ts": start, "dur": end - start,
             "args": {"pc": pc, "asm": text(pc)}}
        )  # fmt: skip
        if tl.preload[pc]:
            events.append(
                {"ph": "X", "pid": 1, "tid": track, "name": "preload", "ts": start, "dur": tl.preload[pc]}
            )
    for pc, ins in enumerate(program.instrs):
        queue = ins.queue()
        if queue is None or tl.done[pc] < 0:
            continue
        tid = 3 + int(queue)
        if tl.issue[pc] > tl.ready[pc]:
            waits = ",".join(f"t{t}" for t in ins.wait) or "unit"
            events.append(
                {"ph": "X", "pid": 1, "tid": tid, "name": f"wait {waits}", "ts": tl.ready[pc],
                 "dur": tl.issue[pc] - tl.ready[pc], "args": {"pc": pc, "asm": text(pc)}}
            )  # fmt: skip
        if OPS[ins.op].unit is Unit.DMA:
            common = {"pid": 1, "tid": tid, "cat": Queue(queue).name.lower(), "id": pc, "name": ins.op}
            events.append({**common, "ph": "b", "ts": tl.issue[pc], "args": {"pc": pc, "asm": text(pc)}})
            events.append({**common, "ph": "e", "ts": tl.done[pc]})
    doc = {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"summary": result.to_dict()}}
    Path(path).write_text(json.dumps(doc, separators=(",", ":")))


def plot(result: SimResult, path: str | Path, *, width_px: int = 1600) -> None:
    """Draw the unit tracks (and the queues' waits) over time into a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tl = result.timeline
    span = max(result.cycles, 1)
    merge = span / width_px  # slices closer than a pixel draw as one
    rows: list[list[tuple[int, int]]] = [[] for _ in TRACKS]
    preloads: list[tuple[int, int]] = []
    for pc, track, start, end in _slices(result):
        rows[track].append((start, end))
        if tl.preload[pc]:
            preloads.append((start, start + tl.preload[pc]))
    for pc, ins in enumerate(result.program.instrs):
        queue = ins.queue()
        if queue is not None and tl.done[pc] >= 0 and tl.issue[pc] > tl.ready[pc]:
            rows[3 + int(queue)].append((tl.ready[pc], tl.issue[pc]))
    rows = [_merge(spans, merge) for spans in rows]
    preloads = _merge(preloads, merge)
    fig = Figure(figsize=(width_px / 100, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = ("tab:blue", "tab:green", "tab:purple", "tab:gray", "tab:gray", "tab:gray")
    labels = [*TRACKS[:3], *(f"{name} waits" for name in TRACKS[3:])]
    for i, spans in enumerate(rows):
        y = len(TRACKS) - 1 - i
        ax.broken_barh([(s, e - s) for s, e in spans], (y - 0.4, 0.8), color=colors[i], linewidth=0)
    ax.broken_barh(
        [(s, e - s) for s, e in preloads], (len(TRACKS) - 2 - 0.4, 0.8), color="tab:orange", linewidth=0
    )
    ax.set_yticks(range(len(TRACKS)), labels[::-1])
    ax.set_xlim(0, span)
    ax.set_xlabel("cycle")
    util = result.utilization
    ax.set_title(
        f"{result.config.name}: {result.cycles} cycles (ideal {result.ideal_cycles}), matrix unit "
        f"{util['matrix']:.0%} useful, DRAM channel {util['dma']:.0%} busy; orange: weight preloads"
    )
    fig.tight_layout()
    fig.savefig(path)


def _merge(spans: list[tuple[int, int]], gap: float) -> list[tuple[int, int]]:
    """Sorted spans, those less than `gap` apart joined into one."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out
