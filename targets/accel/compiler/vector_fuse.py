"""Consecutive vector statements over the same rows as one section, tile of rows by tile of rows, with
what they pass each other kept in accumulator rows (softmax's max, exponentials, sum and quotient in
one pass over its rows; layernorm's mean, centred values, variance and output).

A `RowGroup` holds statements that each run over the same outer axes, rows and lanes (extents equal,
lanes whole rows of dim, no serial axes).  A statement may read what an earlier one of the group
wrote only where it was written (the same outer, row and lane positions): a map's result is held
chunk by chunk (one slot of R rows per lane chunk), a lane reduction's as one slot of R rows whose
every lane holds the row's value (vredsum / vredmax broadcast it).  A result is stored only when
the kernel returns it or a later section reads it; temporaries the group alone reads never reach
DRAM.

Per tile the statements run in order, each chunk a *step* whose DRAM reads are loaded into one of
a number of step sets in turn (enough that the loads in flight cover the DMA latency when a step
lasts one vector op over the tile's rows, at most 16).  Tokens are vector_codegen's: DATA per step with loads, A_FREE from step n to step
n+sets when that one loads,
ACC_READY from the op that finishes a stored slot to its store, ACC_FREE from a tile's last store
to the next tile's first op (the held slots are single-buffered), SECTION across sections.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Load, Select, Unary, loads
from kcomp.targets.accel.compiler.codegen import A_FREE, ACC_FREE, ACC_READY, DATA, SECTION
from kcomp.targets.accel.compiler.match import Contraction
from kcomp.targets.accel.compiler.nest import Access, Axis
from kcomp.targets.accel.compiler.stream import Item, Stream, signal, wait
from kcomp.targets.accel.compiler.vector_codegen import (
    Step,
    Val,
    combine,
    expr,
    finish,
    fit,
    load_leaves,
    store,
)
from kcomp.targets.accel.compiler.vector_match import ARG, VectorStmt, operands
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Instr, f32_bits

MAX_GROUP_TILE_ROWS = 64
MAX_STEP_SETS = 16


@dataclass(eq=False)
class RowGroup:
    """Vector statements fused over tiles of rows (module docstring); `stored`: the tensors they
    write that reach DRAM."""

    stmts: list[VectorStmt]
    stored: set[Buffer] = field(default_factory=set)


def _shape(v: VectorStmt) -> tuple:
    assert v.rows is not None
    return (tuple(a.extent for a in v.outer), v.rows.extent, v.lane.extent)


def _positions(v: VectorStmt) -> list[Axis | None]:
    """The axes of v's tile positions, in the group's common order: outer..., rows, lane."""
    return [*v.outer, v.rows, v.lane]


def _fusable(v: VectorStmt, cfg: AccelConfig) -> bool:
    return (
        v.rows is not None
        and v.lane.loops != ()  # NOTE: not the one-column layout
        and not v.serial
        and not v.onto_own
        and v.scan is None
        and v.reduce not in ARG
        and v.lane.extent % cfg.dim == 0
        and fit(v, cfg) is v
    )


def _same_place(reader: VectorStmt, acc: Access, writer: VectorStmt) -> bool:
    """Whether `reader` reads `acc` exactly where `writer` wrote it (tile position by position)."""
    if acc.padded or not acc.regular or acc.const != writer.out.const:
        return False
    want = {}
    for mine, theirs in zip(_positions(reader), _positions(writer), strict=True):
        if theirs is not None and writer.out.stride(theirs):
            want[mine] = writer.out.stride(theirs)
    return {a: c for a, c in acc.coef.items() if c} == want


def _joins(group: list[VectorStmt], v: VectorStmt) -> bool:
    if _shape(v) != _shape(group[0]):
        return False
    written = {w.out.buffer: w for w in group}
    read_before = {leaf.access.buffer for w in group for leaf in w.leaves.values() if leaf.access is not None}
    if v.out.buffer in written or v.out.buffer in read_before:
        return False
    return all(
        _same_place(v, leaf.access, written[leaf.access.buffer])
        for leaf in v.leaves.values()
        if leaf.access is not None and leaf.access.buffer in written
    )


def fuse(sections: list, outputs: set[Buffer], cfg: AccelConfig) -> list:
    """`sections` with runs of fusable vector statements as RowGroups (a run of one stays as it is)."""
    out: list = []
    run: list[VectorStmt] = []

    def close() -> None:
        if len(run) > 1:
            out.append(RowGroup(list(run)))
        else:
            out.extend(run)
        run.clear()

    for s in sections:
        if isinstance(s, VectorStmt) and _fusable(s, cfg) and (not run or _joins(run, s)):
            run.append(s)
            continue
        close()
        if isinstance(s, VectorStmt) and _fusable(s, cfg):
            run.append(s)
        else:
            out.append(s)
    close()
    final: list = []
    for n, s in enumerate(out):
        if isinstance(s, RowGroup):
            later = _reads(out[n + 1 :])
            s.stored = {v.out.buffer for v in s.stmts if v.out.buffer in outputs or v.out.buffer in later}
            if not s.stored:  # NOTE: nothing leaves the group: keep its statements as they were
                final.extend(s.stmts)
                continue
        final.append(s)
    return final


def _reads(sections: list) -> set[Buffer]:
    found: set[Buffer] = set()
    for s in sections:
        stmts = s.stmts if isinstance(s, RowGroup) else [s]
        for v in stmts:
            if isinstance(v, Contraction):
                found |= {a.buffer for a in (v.A, v.B, v.init) if a is not None}
                found |= {op.vector.buffer for op in v.epilogue if op.vector is not None}
            else:
                found |= {ld.buffer for ld in loads(v.value) if isinstance(ld, Load)}
    return found


def emit_group(
    group: RowGroup, cfg: AccelConfig, buf: dict[str, int], *, after_section: bool, before_section: bool
) -> list[Instr]:
    """The instructions of a fused group (module docstring)."""
    dim, out = cfg.dim, Stream()
    first = group.stmts[0]
    assert first.rows is not None
    chunks = first.lane.extent // dim
    maps = [v for v in group.stmts if not v.lane_reduced]
    needs = [_slots(v, group) for v in group.stmts]
    nodes = max(max(step for step, _ in needs), 1)
    hoist_nodes = max(hoisted for _, hoisted in needs)
    held_rows = len(maps) * chunks + (len(group.stmts) - len(maps)) + hoist_nodes
    step_sets, r_max = 2, 1
    for _ in range(3):  # NOTE: as many steps in flight as cover the DMA latency with R-cycle steps
        per_row = held_rows + step_sets * nodes
        r_max = max(1, min(first.rows.extent, MAX_GROUP_TILE_ROWS, (cfg.acc_rows - 8) // per_row))
        step_sets = min(MAX_STEP_SETS, 2 + -(-cfg.dma_latency // (r_max * cfg.vector_row_cycles)))
    per_row = held_rows + step_sets * nodes
    r_max = max(1, min(first.rows.extent, MAX_GROUP_TILE_ROWS, (cfg.acc_rows - 8) // per_row))
    held: dict[tuple[Buffer, int], int] = {}  # (tensor, chunk) -> first accumulator row of its slot
    at_row = 0
    for v in group.stmts:
        for c in range(1 if v.lane_reduced else chunks):
            held[(v.out.buffer, c)] = at_row
            at_row += r_max
    params = sorted({leaf.param for v in group.stmts for leaf in v.leaves.values() if leaf.param is not None})
    param_rows = {name: at_row + n for n, name in enumerate(params)}  # NOTE: loaded once, by the first step
    prelude = at_row + len(params)
    sets = [prelude + hoist_nodes * r_max + n * nodes * r_max for n in range(step_sets)]
    steps: list[Step] = []
    if params:  # NOTE: a step of its own, first: every later step may read them
        loads_ = [out.add("dma.load.acc", param_rows[name], buf[name], 0, 1, dim, 0) for name in params]
        steps.append(Step([out.add("vadds", param_rows[params[0]], param_rows[params[0]], 1, 0)], loads_))
    elif not any(leaf.access is not None for leaf in first.leaves.values()):
        # NOTE: the first statement loads nothing (a fill): the load queue still takes the section's turn
        entry = out.add("dma.fill", f32_bits(0.0))
        steps.append(Step([out.add("viota", sets[0], 1, 0, f32_bits(0.0))], [entry]))
    tile_bounds: list[tuple[int, int, list[Item]]] = []  # (first step, end step, stores) per tile
    for outer in itertools.product(*(range(a.extent) for a in first.outer)):
        for r0 in range(0, first.rows.extent, r_max):
            rows = min(r_max, first.rows.extent - r0)
            begin, stores = len(steps), []
            for v in group.stmts:
                base = dict(zip(v.outer, outer, strict=True)) | {v.rows: r0}
                res = held[(v.out.buffer, 0)]
                fixed = {node: Val(param_rows[leaf.param], shared=True)
                         for node, leaf in v.leaves.items() if leaf.param is not None}  # fmt: skip
                hoist = Step()  # what no chunk changes, computed once per tile (softmax's 1 / sum)
                per_row = _held_leaves(v, group, held, 0, per_row_only=True)
                fixed |= _hoisted(v, per_row | fixed, rows, r_max, prelude, hoist_nodes, out, hoist)
                if hoist.ops:
                    steps.append(hoist)
                for c in range(chunks):
                    step = Step()
                    base_row = sets[len(steps) % step_sets]
                    slots = iter(range(base_row, base_row + nodes * r_max, r_max))
                    at = base | {v.lane: c * dim}
                    on_chip = _held_leaves(v, group, held, c) | fixed
                    loaded = load_leaves(v, at, rows, dim, dim, buf, slots, out, step, on_chip)
                    target = res if v.lane_reduced else held[(v.out.buffer, c)]
                    val = expr(
                        v.value,
                        v,
                        loaded,
                        rows,
                        slots,
                        out,
                        step,
                        target if c == 0 or not v.lane_reduced else None,
                    )
                    combine(v, val, target, rows, c == 0 or not v.lane_reduced, out, step)
                    last_chunk = c == chunks - 1
                    if v.lane_reduced and last_chunk:
                        finish(v, target, rows, out, step, buf, base, dim)
                    steps.append(step)
                    if v.out.buffer in group.stored and (last_chunk or not v.lane_reduced):
                        signal(step.ops[-1], ACC_READY)
                        item = store(v, target, rows, base | {v.lane: c * dim}, dim, buf, out)
                        wait(item, ACC_READY)
                        stores.append(item)
            tile_bounds.append((begin, len(steps), stores))
    _tokens(steps, tile_bounds, step_sets)
    loads_all = [item for step in steps for item in step.loads]
    stores_all = [item for _, _, stores in tile_bounds for item in stores]
    assert loads_all and stores_all  # NOTE: fusable statements read tensors; a group stores its outputs
    if after_section:
        wait(loads_all[0], SECTION)
    if before_section:
        signal(stores_all[-1], SECTION)
    return out.instrs()


def _slots(v: VectorStmt, group: RowGroup) -> tuple[int, int]:
    """(slots a chunk's step takes, slots the tile's hoisted values take) for `v` in `group`: one per
    read not held on chip and per operation (two for a division or subtraction, which may rewrite)."""
    writers = {w.out.buffer: w for w in group.stmts[: group.stmts.index(v)]}

    def held(e) -> bool:  # type: ignore[no-untyped-def]
        leaf = v.leaves.get(e)
        return leaf is not None and leaf.access is not None and leaf.access.buffer in writers

    def invariant(e) -> bool:  # type: ignore[no-untyped-def]
        leaf = v.leaves.get(e)
        if isinstance(e, Const) or (leaf is not None and leaf.param is not None):
            return True
        if leaf is not None:
            return held(e) and writers[leaf.access.buffer].lane_reduced
        kids = [e.x] if isinstance(e, Unary) else [e.lhs, e.rhs] if isinstance(e, Binary) else []
        return bool(kids) and all(invariant(k) for k in kids)

    def count(e, hoisting: bool) -> int:  # type: ignore[no-untyped-def]
        if e in v.leaves:
            leaf = v.leaves[e]
            return 0 if held(e) or leaf.param is not None else 3 if leaf.masked else 1
        if isinstance(e, Const) or (not hoisting and invariant(e)):
            return 0
        if isinstance(e, Unary):
            return 1 + count(e.x, hoisting)
        if isinstance(e, Binary):
            extra = 2 if e.op in (BinaryOp.DIV, BinaryOp.SUB) else 1
            return extra + count(e.lhs, hoisting) + count(e.rhs, hoisting)
        if isinstance(e, Select):  # NOTE: a constant branch takes a row of its own
            return 1 + sum(1 if isinstance(k, Const) else count(k, hoisting) for k in operands(e))
        return 1

    return count(v.value, False), count(v.value, True) + 2


def _hoisted(v, on_chip: dict, rows: int, r_max: int, area: int, nodes: int, out: Stream, step: Step) -> dict:  # type: ignore[no-untyped-def]
    """The largest subexpressions of `v` built from values on chip alone (held per-row values,
    parameters, constants), computed into rows area.. once for the tile; their values."""
    found: dict = {}
    slots = iter(range(area, area + nodes * r_max, r_max))

    def visit(e) -> bool:  # type: ignore[no-untyped-def]
        if e in on_chip:
            return True
        if isinstance(e, Const):
            return True
        kids = [e.x] if isinstance(e, Unary) else [e.lhs, e.rhs] if isinstance(e, Binary) else None
        if kids is None:
            return False
        flags = [visit(k) for k in kids]
        if all(flags):
            return True
        for k, flag in zip(kids, flags, strict=True):
            if flag and isinstance(k, (Unary, Binary)):
                found[k] = expr(k, v, on_chip, rows, slots, out, step)
        if isinstance(e, Binary) and e.op is BinaryOp.DIV and flags[1] and not isinstance(e.rhs, Const):
            divisor = (
                found.get(e.rhs) or on_chip.get(e.rhs) or expr(e.rhs, v, on_chip, rows, slots, out, step)
            )
            found[("reciprocal", e.rhs)] = expr(Binary(BinaryOp.DIV, Const(1.0, DType.F32), e.rhs), v,
                                                on_chip | {e.rhs: divisor}, rows, slots, out, step)  # fmt: skip
        return False

    if visit(v.value) and isinstance(v.value, (Unary, Binary)):
        found[v.value] = expr(v.value, v, on_chip, rows, slots, out, step)
    return found


def _held_leaves(v: VectorStmt, group: RowGroup, held: dict, c: int, per_row_only: bool = False) -> dict:
    """The leaves of `v` an earlier statement of the group holds on chip, as values at chunk c
    (`per_row_only`: only the lane reductions' values, the same in every chunk)."""
    writers = {w.out.buffer: w for w in group.stmts[: group.stmts.index(v)]}
    out = {}
    for node, leaf in v.leaves.items():
        if leaf.access is not None and leaf.access.buffer in writers:
            w = writers[leaf.access.buffer]
            if per_row_only and not w.lane_reduced:
                continue
            out[node] = Val(held[(w.out.buffer, 0 if w.lane_reduced else c)])
    return out


def _tokens(steps: list[Step], tiles: list[tuple[int, int, list[Item]]], step_sets: int) -> None:
    for n, step in enumerate(steps):
        if step.loads:
            signal(step.loads[-1], DATA)
            wait(step.ops[0], DATA)
            if n >= step_sets:
                wait(step.loads[0], A_FREE)
        if n + step_sets < len(steps) and steps[n + step_sets].loads:
            signal(step.ops[-1], A_FREE)
    for t, (begin, _, stores) in enumerate(tiles):
        if t + 1 < len(tiles):
            signal(stores[-1], ACC_FREE)
        if t > 0:
            wait(steps[begin].ops[0], ACC_FREE)
