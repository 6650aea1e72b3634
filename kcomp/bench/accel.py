"""The accel suite: simulated cycles on the accelerator, best mapping vs naive mapping vs the ideal bound.

    kcomp bench accel [--quick | --cases gemm_512x512x512,conv2d] [--json]

Each row maps one kernel twice on the default configuration, checks both against the numpy
reference, and simulates them: the *best* mapping (DESIGN.md's precedence: the example's
`schedule ... for accel` block, else the rule-based default mapping) and the *naive* one (dim-sized
tiles, one buffer each, as `--schedule none`).  Cycles are deterministic, so one run is the figure.
`times_s` holds the simulated time at the nominal 1 GHz clock (`kcomp`, `naive`); `extra` has
`cycles`, `naive_cycles`, `ideal_cycles` (the larger of MACs / dim² and the compulsory DRAM bytes /
bandwidth), `utilization` (useful MACs per cycle over dim², 0..1) and the simulator's speed in
simulated instructions per second.  On the default configuration each case also runs on its
output-stationary twin (`accel:os`, the second dataflow): `os_cycles`, `os_utilization`.  A kernel that cannot be mapped is a row whose `extra` says why.

Cases: `gemm_MxNxK` (examples/matmul.kc at those shapes), `gemm_bias_relu` (the example at its own
shapes), `conv2d`: examples/conv2d.kc's 3x3 convolution in NHWC without padding, an implicit GEMM
whose (r, s) offsets are K-slices; `conv2d_example`: examples/conv2d.kc itself (NCHW, padding 1: the
halo zero-filled by dma.load.pad); `softmax`, `layernorm`: the examples at their shapes on the vector
unit, whose ideal is the larger of the DMA bound and `vector_ideal_cycles` (the least vector work:
compiler/vector_codegen.py's `vector_work`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kcomp.api import compile
from kcomp.bench import machine as host_machine
from kcomp.bench.report import failures
from kcomp.errors import KcompError, UsageError
from kcomp.targets import SIMULATED, Target, get_target
from kcomp.targets.accel.compiler.backend import vector_bound
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.result import CLOCK_HZ

Progress = Callable[[str], None]
VECTOR_EXAMPLES = ("softmax", "layernorm")  # examples/*.kc at their shapes, on the vector unit
CASES = (
    "gemm_256x256x256",
    "gemm_512x512x512",
    "gemm_1024x1024x1024",
    "conv2d",
    "conv2d_example",
    "gemm_bias_relu",
    *VECTOR_EXAMPLES,
)
QUICK_CASES = (
    "gemm_128x128x128",
    "gemm_256x256x256",
    "conv2d_small",
    "conv2d_example_small",
    "softmax_small",
)
SMALL_VECTOR = {"softmax_small": ("softmax", {"N": 256, "D": 256})}
EXAMPLE_CONV = {"conv2d_example": {}, "conv2d_example_small": {"N": 1, "C": 16, "K": 32, "H": 14, "W": 14}}
OS_CONFIG = "os"  # the packaged default machine with an output-stationary matrix unit
_GEMM = re.compile(r"(?:gemm_)?(\d+)x(\d+)x(\d+)$")

MATMUL = """
dim M = 1024, N = 1024, K = 1024
kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""
CONV_NHWC = """
# examples/conv2d.kc's 3x3 convolution in NHWC without padding: an implicit GEMM on the accelerator.
dim N = {n}, H = {h}, W = {w}, C = {c}, K = {k}
kernel conv2d_nhwc(X: f32[N, H, W, C], F: f32[3, 3, C, K]) -> (Y: f32[N, H - 2, W - 2, K]) {{
    Y[n, h, w, k] += X[n, h + r, w + s, c] * F[r, s, c, k]
}}
"""
CONV_SHAPES = {
    "conv2d": {"n": 1, "h": 34, "w": 34, "c": 64, "k": 64},
    "conv2d_small": {"n": 1, "h": 10, "w": 18, "c": 32, "k": 32},
}


def parse_case(text: str) -> str:
    name = text.strip()
    if name in (
        *CONV_SHAPES,
        *EXAMPLE_CONV,
        *VECTOR_EXAMPLES,
        *SMALL_VECTOR,
        "gemm_bias_relu",
    ) or _GEMM.match(name):
        return name if not _GEMM.match(name) or name.startswith("gemm_") else f"gemm_{name}"
    raise UsageError(
        f"--cases {text}: expected gemm_MxNxK, conv2d, conv2d_small, conv2d_example, conv2d_example_small,"
        " gemm_bias_relu, softmax, layernorm or softmax_small"
    )


def _examples() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "examples" / "matmul.kc").is_file():
            return base / "examples"
    return None


def _kernel(case: str, target: Target) -> tuple[str, dict[str, int], str]:
    """Source (a path or text), shape overrides, and a note for the row."""
    examples = _examples()
    if m := _GEMM.match(case):
        shapes = dict(zip("MNK", map(int, m.groups()), strict=True))
        return (str(examples / "matmul.kc") if examples else MATMUL), shapes, ""
    if case in ("gemm_bias_relu", *EXAMPLE_CONV, *VECTOR_EXAMPLES, *SMALL_VECTOR):
        default = ("conv2d" if case in EXAMPLE_CONV else case, EXAMPLE_CONV.get(case, {}))
        name, shapes = SMALL_VECTOR.get(case, default)
        if examples is None:
            raise UsageError(f"the {case} case needs the examples/ folder of a kcomp checkout")
        return str(examples / f"{name}.kc"), shapes, ""
    return CONV_NHWC.format(**CONV_SHAPES[case]), {}, CONV_NOTE


CONV_NOTE = (
    "examples/conv2d.kc's 3x3 convolution in NHWC without padding (an implicit GEMM over channels); the"
    " example itself, NCHW with padding 1, is the conv2d_example row"
)


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    budget_s: float = 0.25,
    progress: Progress | None = None,
    target: str = SIMULATED,
) -> dict[str, Any]:
    """Map, check and simulate each case on `target` (default: the accelerator's packaged default
    configuration).  `budget_s` is unused: simulated cycles are deterministic, one run each."""
    say = progress or (lambda _msg: None)
    machine = get_target(target)
    if not machine.capabilities.simulated:
        raise UsageError(f"kcomp bench accel simulates; {machine.name} is not a simulated target")
    info = {**host_machine.describe_host(), "accelerator": machine.cfg.to_dict(), "clock_hz": CLOCK_HZ}
    rows = []
    for case in cases if cases is not None else CASES:
        say(f"accel {case}")
        rows.append(_row(case, machine))
    return {"suite": "accel", "machine": info, "rows": rows}


def _row(case: str, target: Target) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case, "params": {}, "flops": None, "times_s": {}, "extra": {}}
    extra = row["extra"]
    try:
        source, shapes, note = _kernel(case, target)
    except KcompError as e:
        extra["kcomp_error"] = str(e)
        return row
    if note:
        extra["note"] = note
    systems = [("kcomp", None, target.name), ("naive", "none", target.name)]
    if target.cfg.dataflow == "ws":  # the same machine, output-stationary (docs/accel-isa.md, "Dataflows")
        systems.append(("os", None, f"accel:{OS_CONFIG}" if target.cfg == AccelConfig() else ""))
    for system, schedule, name in systems:
        if not name:
            continue  # NOTE: a custom config has no output-stationary twin to compare with
        try:
            start = time.perf_counter()
            k = compile(source, target=name, shapes=shapes, schedule=schedule)
            built = k.built
            compile_s = time.perf_counter() - start
            check = k.check(seed=0)
        except KcompError as e:  # a failed system is a recorded result, never a crashed suite
            extra[f"{system}_error"] = str(e)
            continue
        r = check.report
        if system == "kcomp":
            row["params"] = dict(built.program.dims)
            row["flops"] = 2 * r.macs
            vector = vector_bound(built.naive, target.cfg)
            extra.update(
                ideal_cycles=max(r.ideal_cycles, vector),
                vector_ideal_cycles=vector,
                utilization=r.utilization["matrix"],
                schedule_source=built.schedule_source,
                schedule=str(built.schedule),
                mapping=list(built.notes),
            )
        prefix = "" if system == "kcomp" else f"{system}_"
        if system == "os":
            extra["os_utilization"] = r.utilization["matrix"]
        extra.update(
            {
                f"{prefix}cycles": r.cycles,
                f"{prefix}ok": check.ok,
                f"{prefix}instructions": r.instructions,
                f"{prefix}compile_s": round(compile_s, 3),
                f"{prefix}sim_s": round(r.wall_s, 3),
            }
        )
        if not check.ok:
            extra[f"{system}_error"] = f"wrong result (max rel err {check.max_rel_err:.3g}): not reported"
            continue
        row["times_s"][system] = r.cycles / CLOCK_HZ
    runs = [p for p in ("", "naive_", "os_") if f"{p}sim_s" in extra]
    seconds = sum(extra[f"{p}sim_s"] for p in runs)
    if seconds > 0:  # the simulator's speed over both runs: simulated instructions per wall second
        extra["sim_instr_per_s"] = round(sum(extra[f"{p}instructions"] for p in runs) / seconds)
    if "cycles" in extra and "naive_cycles" in extra:
        extra["naive_utilization"] = extra["utilization"] * extra["cycles"] / extra["naive_cycles"]
        extra["speedup_vs_naive"] = extra["naive_cycles"] / extra["cycles"]
        extra["cycles_vs_ideal"] = extra["cycles"] / extra["ideal_cycles"]
    return row


def print_report(result: dict[str, Any]) -> None:

    con = Console()
    if not con.is_terminal:
        con.width = max(con.width, 160)
    acc = result["machine"]["accelerator"]
    t = Table(
        title="kcomp bench accel: simulated cycles, best mapping vs naive vs ideal",
        caption=f"accelerator {acc['name']}: {acc['dim']}x{acc['dim']} {acc['dtype']}, scratchpad"
        f" {acc['scratchpad_kib']} KiB, accumulator {acc['accumulator_kib']} KiB, DMA"
        f" {acc['dma_bytes_per_cycle']} B/cycle; simulator on {result['machine'].get('cpu', '?')}",
        caption_justify="left",
    )
    columns = (
        "case",
        "cycles",
        "naive",
        "ideal",
        "util",
        "x ideal",
        "vs naive",
        "OS cycles",
        "OS util",
        "sim instr/s",
    )
    for col in (*columns, "schedule"):
        t.add_column(col, justify="left" if col in ("case", "schedule") else "right")
    for row in result["rows"]:
        e = row["extra"]

        def num(key: str, fmt: str = "{:,}") -> str:
            return fmt.format(e[key]) if key in e else "-"  # noqa: B023

        t.add_row(
            row["case"],
            num("cycles"),
            num("naive_cycles"),
            num("ideal_cycles"),
            num("utilization", "{:.1%}"),
            num("cycles_vs_ideal", "{:.2f}x"),
            num("speedup_vs_naive", "{:.1f}x"),
            num("os_cycles"),
            num("os_utilization", "{:.1%}"),
            num("sim_instr_per_s", "{:,.0f}"),
            escape(" ; ".join(e.get("schedule", "-").splitlines())),
        )
    con.print(t)
    for row in result["rows"]:
        if "note" in row["extra"]:
            con.print(f"note {row['case']}: {escape(row['extra']['note'])}", highlight=False)
    for line in failures(result):
        con.print(f"[red]failed[/] {escape(line)}", highlight=False)
