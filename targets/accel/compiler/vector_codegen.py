"""A `VectorStmt` -> accelerator instructions (a program section on the DMA and the vector unit).

The tile loops run here, in Python: outer axes, then tiles of R rows of the `rows` axis, then (for a
map or a serial reduction) dim-wide chunks of the lane axis.  A tile's *steps* are its lane chunks
(a lane reduction) times the values of its serial axes; each step loads its operands into
accumulator rows, evaluates the expression there, and writes or combines the result into the tile's
result rows; the tile's last step finishes a lane reduction (vredsum / vredmax, which also broadcast
the row's value) and the store writes the rows back (one column of each row for a lane reduction).

Accumulator layout: two result slots (tiles alternate) and two step sets of one R-row slot per
expression node (steps alternate), so a step's loads overlap the previous step's vector work and a
tile's store the next tile's.  A value that is one row shared by every row (a bias b[d], a
parameter) sits in its slot's first row and is read with bstep 0; a per-row value (mx[n]) is loaded
as one column and broadcast across the lanes by vredsum (its other columns are zero-filled).

Tokens, as in codegen.py (every signal has exactly one consumer):
    t0 DATA       load -> compute   a step's loads landed
    t1 A_FREE     compute -> load   step n's vector work is done: step n+2 may load into its set
    t2 ACC_READY  compute -> store  a tile's result rows are final
    t3 ACC_FREE   store -> compute  a tile's rows are stored: tile t+2 may write its result slot
    t6 SECTION    store -> load     the previous section's results are in DRAM
"""

from __future__ import annotations

import itertools
import math

from kcomp.dtypes import DType
from kcomp.errors import Unsupported
from kcomp.expr import COMPARISONS, Binary, BinaryOp, Cast, Const, Expr, Select, Unary, UnaryOp
from kcomp.targets.accel.compiler.codegen import A_FREE, ACC_FREE, ACC_READY, DATA, SECTION
from kcomp.targets.accel.compiler.nest import Access, Axis
from kcomp.targets.accel.compiler.stream import (
    Item,
    Step,
    Stream,
    Val,
    gather_rows,
    load_region,
    row_stride,
    signal,
    wait,
)
from kcomp.targets.accel.compiler.vector_arg import arg_combine
from kcomp.targets.accel.compiler.vector_int import int_expr, on_words
from kcomp.targets.accel.compiler.vector_match import (
    ARG,
    UNARY,
    VectorStmt,
    evaluate,
    operands,
    vanishes,
)
from kcomp.targets.accel.compiler.vector_ops import (
    BINARY,
    CMP_INDEX,
    COMBINE,
    COMMUTES,
    IDENTITY,
    INT_BINARY,
    INT_FINISH,
    INT_IDENTITY,
    MIRROR,
    SCALAR,
)
from kcomp.targets.accel.compiler.vector_scan import emit_scan, tiles_in_order
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import AXIS, FLOAT_ONLY, Instr, f32_bits
from kcomp.targets.accel.machine.semantics import FILLS, REG

MAX_TILE_ROWS = 256


def vector_work(v: VectorStmt, cfg: AccelConfig) -> int:
    """The cycles the vector unit needs for `v` at the least: every arithmetic node of its expression
    once per element (transcendentals at vector_slow_op_cycles; a division is a multiply by a
    reciprocal), a node built from per-row values alone once per row, plus a reduction's combine,
    over vector_lanes elements a cycle: a part of the ideal bound `kcomp bench accel` reports."""
    points = math.prod(a.extent for a in (*v.outer, v.rows, v.lane, *v.serial) if a is not None)
    per_element, per_row = _ops(v.value, v, cfg)
    combines = v.reduce is not None or v.scan is not None
    work = points * (per_element + combines) + points // max(1, v.lane.extent) * per_row
    return math.ceil(work / cfg.vector_lanes)


def _ops(e: Expr, v: VectorStmt, cfg: AccelConfig) -> tuple[int, int]:
    """(cycles per element, cycles per row) of `e`'s nodes; the second for nodes no lane changes."""
    kids = operands(e) if e not in v.leaves else ()
    if kids:
        parts = [_ops(k, v, cfg) for k in kids]
        slow = isinstance(e, Unary) and e.op in UNARY and UNARY[e.op] in FLOAT_ONLY
        cost = cfg.vector_slow_op_cycles if slow else 0 if isinstance(e, Cast) else 1
        inner = (sum(p[0] for p in parts), sum(p[1] for p in parts))
        if _invariant(e, v):
            return 0, inner[1] + cost
        return inner[0] + cost, inner[1]
    return 0, 0


def _invariant(e: Expr, v: VectorStmt) -> bool:
    """Whether no lane changes `e`: built from constants and per-row, scalar and parameter reads."""
    if isinstance(e, Const) or (e in v.leaves and v.leaves[e].kind == "fixed"):
        return True
    if operands(e):
        return all(_invariant(k, v) for k in operands(e))
    leaf = v.leaves.get(e)
    if leaf is not None and leaf.kind == "index":
        return leaf.axis is not v.lane
    return leaf is not None and leaf.kind in ("row", "scalar", "param")


def tile_rows(v: VectorStmt, cfg: AccelConfig) -> int:
    """R: the rows of one tile, as many as two result slots (four for an arg-reduction: its best values
    too) and two step sets of one slot per node fit."""
    slots = (4 if v.reduce in ARG else 2) + 2 * v.nodes()
    r = min(v.extent(v.rows), MAX_TILE_ROWS, cfg.acc_rows // slots)
    if r < 1:
        raise Unsupported(f"the accelerator backend cannot map {v.text}: its expression needs {slots} accumulator"
                          f" slots and the accumulator has {cfg.acc_rows} rows")  # fmt: skip
    return r


def fit(v: VectorStmt, cfg: AccelConfig) -> VectorStmt:
    """`v` as this machine runs it: its layout, or one column per row when its lane reduction does not
    cover whole rows of dim and nothing fills the tail harmlessly; Unsupported when neither runs."""
    tensors = [leaf.access.buffer for leaf in v.leaves.values() if leaf.access is not None]
    if v.reduce not in ARG:  # NOTE: a position is stored rounded into i32 (dma.store converts)
        tensors.append(v.out.buffer)
    for t in tensors:
        if t.dtype not in (DType.F32, DType.I32):
            raise Unsupported(f"the accelerator backend cannot map {v.text}: {t.name} is {t.dtype.value}; the"
                              " vector unit computes in f32 and i32")  # fmt: skip
    if cfg.acc_dtype != "f32":
        raise Unsupported(f"the accelerator backend cannot map {v.text}: the vector unit computes in f32, and"
                          f" the {cfg.name} accelerator accumulates in {cfg.acc_dtype}")  # fmt: skip
    if (
        not v.lane_reduced
        or v.lane.extent % cfg.dim == 0
        or tail_fill(v) is not None
        or _overlaps(v, cfg.dim)
    ):
        return v
    if v.reduce == "add" and vanishes(v.value, v.leaves):  # zero-filled columns add nothing
        return v
    if v.one_lane is not None:
        return v.one_lane
    raise Unsupported(
        f"the accelerator backend cannot map {v.text}: a reduction over {v.lane.extent} elements is not"
        f" whole rows of {cfg.dim} (the tail's filled columns would take part)"
    )


def _overlaps(v: VectorStmt, dim: int) -> bool:
    """Whether a lane reduction's last chunk may overlap the one before (max and min allow it)."""
    return v.reduce in ("max", "min", *ARG) and v.lane.extent > dim and tail_fill(v) is None


def tail_fill(v: VectorStmt) -> float | None:
    """What the columns past a lane reduction's last chunk may hold: its identity when the terms are
    bare reads whose halo holds it too (or has none); None when no fill leaves the result alone."""
    leaf = v.leaves.get(v.value)
    if v.reduce is None or v.reduce == "add" or leaf is None or leaf.kind != "lanes":
        return None
    if v.value.dtype is not DType.F32:  # NOTE: i32 words have no -inf / inf fill: chunks overlap instead
        return None
    identity = IDENTITY[v.reduce]
    acc = leaf.access
    return (
        identity if acc is not None and not acc.gathers and (not acc.padded or leaf.pad == identity) else None
    )


def emit_vector_section(
    v: VectorStmt, cfg: AccelConfig, buf: dict[str, int], *, after_section: bool, before_section: bool
) -> list[Instr]:
    """The instructions of `v` (module docstring); `after_section` / `before_section` as for a
    contraction's section."""
    v = fit(v, cfg)
    dim, out = cfg.dim, Stream()
    r_max = tile_rows(v, cfg)
    nodes = v.nodes()
    result, best = [0, r_max], [2 * r_max, 3 * r_max]
    first_set = (4 if v.reduce in ARG else 2) * r_max
    sets = [first_set + n * nodes * r_max for n in range(2)]
    tiles = list(_tiles(v, r_max, dim))
    made: list[Step] = []
    step_no = 0
    last_store: Item | None = None
    first_load: Item | None = None
    for t, (base, rows, steps) in enumerate(tiles):
        res = result[t % 2]
        for s, vals in enumerate(steps):
            at = vals | base
            cols = min(dim, v.lane.extent - at[v.lane])
            step = Step()
            slots = iter(range(sets[step_no % 2], sets[step_no % 2] + nodes * r_max, r_max))
            loaded = load_leaves(v, at, rows, cols, dim, buf, slots, out, step)
            in_place = res if (s == 0 or v.reduce is None) and v.reduce not in ARG else None
            val = value(v, loaded, rows, slots, out, step, in_place)
            if v.reduce in ARG:
                arg_combine(
                    v, val, (res, best[t % 2]), rows, s == 0, s == len(steps) - 1, at, slots, out, step
                )
            elif v.scan is not None and v.scan.axis is v.lane and not val.shared:  # NOTE: vscan reads it
                emit_scan(
                    v, at, res, val.row, result[(t - 1) % 2], rows, r_max, cols, dim, slots, out, step.ops
                )
            else:
                combine(v, val, res, rows, s == 0, out, step)
                if v.scan is not None:
                    emit_scan(
                        v, at, res, res, result[(t - 1) % 2], rows, r_max, cols, dim, slots, out, step.ops
                    )
            if s == len(steps) - 1 and v.reduce not in ARG:
                finish(v, res, rows, out, step, buf, base, dim, slots)
                if v.onto_own:
                    _onto_own(v, res, rows, at, cols, buf, slots, out, step)
            if not made and not step.loads:  # NOTE: the load queue takes the section's turn (SECTION)
                step.loads.append(out.add("dma.fill", f32_bits(0.0)))
            if step.loads:
                first_load = first_load or step.loads[0]
                signal(step.loads[-1], DATA)
                wait(step.ops[0], DATA)
                if step_no >= 2:  # NOTE: step n - 2 (same set) signals it
                    wait(step.loads[0], A_FREE)
                    signal(made[step_no - 2].ops[-1], A_FREE)
            if s == 0 and t >= 2:
                wait(step.ops[0], ACC_FREE)
            made.append(step)
            step_no += 1
        signal(step.ops[-1], ACC_READY)
        item = store(v, res, rows, base, dim, buf, out)
        wait(item, ACC_READY)
        if t + 2 < len(tiles):
            signal(item, ACC_FREE)
        last_store = item
    assert first_load is not None and last_store is not None
    if after_section:
        wait(first_load, SECTION)
    if before_section:
        signal(last_store, SECTION)
    return out.instrs()


def _tiles(v: VectorStmt, r_max: int, dim: int):  # type: ignore[no-untyped-def]
    """(values of the tile's axes, rows, the steps' values) per tile, in execution order."""
    lane = v.lane
    chunks = list(range(0, lane.extent, dim))
    if v.lane_reduced and lane.extent % dim and _overlaps(v, dim):
        chunks[-1] = lane.extent - dim
    for outer in itertools.product(*(range(a.extent) for a in v.outer)):
        base = dict(zip(v.outer, outer, strict=True))
        if v.scan is not None:  # NOTE: the tiles of one line in the scan's order, one after another
            chunks, starts = tiles_in_order(v.scan, chunks, list(range(0, v.extent(v.rows), r_max)))
            pairs = [(c, r0) for r0 in starts for c in chunks] if v.scan.axis is lane else [
                (c, r0) for c in chunks for r0 in starts]  # fmt: skip
            for c, r0 in pairs:
                at = base | {lane: c} | ({v.rows: r0} if v.rows is not None else {})
                yield at, min(r_max, v.extent(v.rows) - r0), [{}]
            continue
        for r0 in range(0, v.extent(v.rows), r_max):
            rows = min(r_max, v.extent(v.rows) - r0)
            at = base | ({v.rows: r0} if v.rows is not None else {})
            serial = [
                dict(zip(v.serial, vals, strict=True))
                for vals in itertools.product(*(range(a.extent) for a in v.serial))
            ]
            if v.lane_reduced:
                yield at, rows, [s | {lane: c} for c in chunks for s in serial]
            else:
                for c in chunks:
                    yield at | {lane: c}, rows, serial


def load_leaves(v, at, rows, cols, dim, buf, slots, out, step, loaded=None) -> dict:  # type: ignore[no-untyped-def]
    """Each leaf of `v` not already in `loaded` (values a fused section holds on chip) loaded into
    the next slot; their values."""
    loaded = dict(loaded or {})
    for node, leaf in v.leaves.items():
        if node in loaded:
            continue
        row = next(slots)
        if leaf.kind == "param":
            step.loads.append(out.add("dma.load.acc", row, buf[leaf.param], 0, 1, dim, 0))
            loaded[node] = Val(row, shared=True)
            continue
        if leaf.kind == "fixed":  # NOTE: the same in every element of the step
            step.ops.append(
                out.add("viota", row, 1, AXIS.choices.index("none"), f32_bits(evaluate(leaf, at)))
            )
            loaded[node] = Val(row, shared=True)
            continue
        if leaf.kind == "index":  # the loop's values: along the lanes, down the rows, or one value
            axis = leaf.axis
            along = "col" if axis is v.lane else "row" if axis is v.rows else "none"
            n = rows if along == "row" else 1
            step.ops.append(
                out.add("viota", row, n, AXIS.choices.index(along), f32_bits(float(at.get(axis, 0))))
            )
            loaded[node] = Val(row, shared=along != "row")
            continue
        acc = leaf.access
        name = buf[acc.buffer.name]
        fill = _fill(leaf.pad, out, step, acc.buffer.dtype) if acc.padded else 0
        if leaf.kind in ("lanes", "vector"):
            n = rows if leaf.kind == "lanes" else 1
            if v.lane_reduced and cols < dim and node == v.value and tail_fill(v) is not None:
                fill = FILLS.index(tail_fill(v))  # NOTE: the columns past the row take no part
            if acc.gathers:
                step.loads += gather_rows(out, row, buf, acc, at, v.rows, n, cols, fill)
            elif leaf.transposed:  # the columns are `stride` apart in DRAM, the rows contiguous
                step.loads.append(
                    out.add("dma.load.acc.t", row, name, acc.at(at), n, cols, acc.stride(v.lane))
                )
            elif v.rows in acc.irregular and leaf.kind == "lanes":  # NOTE: `X[c // 2, p]` along rows c
                if fill:
                    raise Unsupported(f"the accelerator backend cannot map {v.text}: a filled tail on rows"
                                      " read through a dividing index")  # fmt: skip
                step.loads += _runs(out, row, name, acc, at, v.rows, n, cols)
            else:
                region = (v.rows, n), (v.lane, cols)
                step.loads += load_region(out, "dma.load.acc", row, name, acc, at, *region, fill)
            loaded[node] = Val(row, shared=leaf.kind == "vector")
        else:  # row or scalar: one column, broadcast across the lanes by a sum of it and zeros
            n = rows if leaf.kind == "row" else 1
            if acc.gathers:
                step.loads += gather_rows(out, row, buf, acc, at, v.rows, n, 1, fill)
            elif v.rows in acc.irregular or (acc.padded and acc.divided):  # NOTE: `g[c // 8]`: runs of rows
                step.loads += _runs(out, row, name, acc, at, v.rows, n, fill=fill if acc.padded else None)
            else:
                step.loads += load_region(
                    out, "dma.load.acc", row, name, acc, at, (v.rows, n), (None, 1), fill
                )
            if leaf.masked:  # NOTE: rows outside hold the pad in every column: column 0 alone is summed
                mask, zero = next(slots), next(slots)
                step.ops.append(out.add("viota", mask, 1, AXIS.choices.index("col"), f32_bits(0.0)))
                step.ops.append(out.add("vcmps", mask, mask, 1, f32_bits(0.0), CMP_INDEX[BinaryOp.EQ]))
                step.ops.append(out.add("viota", zero, 1, AXIS.choices.index("none"), f32_bits(0.0)))
                step.ops.append(out.add("vsel", row, mask, n, row, zero, 0, 1, 0))
            step.ops.append(out.add("viredsum" if acc.buffer.dtype is DType.I32 else "vredsum", row, row, n))
            loaded[node] = Val(row, shared=leaf.kind == "scalar")
    return loaded


def _fill(pad: float, out: Stream, step: Step, dtype: DType = DType.F32) -> int:
    """The `fill` operand that writes `pad` (one of the fixed ones, or the fill register, set here;
    an i32 pad as its bits)."""
    if pad == 0 or (pad in FILLS and dtype is DType.F32):
        return FILLS.index(pad)
    if dtype is DType.I32:
        step.loads.append(out.add("dma.fill.i", int(pad) & 0xFFFFFFFF))
    else:
        step.loads.append(out.add("dma.fill", f32_bits(pad)))
    return REG


def _runs(
    out: Stream,
    row: int,
    buf: int,
    acc: Access,
    at: dict,
    axis: Axis | None,
    n: int,
    cols: int = 1,
    fill: int | None = None,
) -> list[Item]:
    """`n` rows of `cols` elements whose offsets are not a stride apart (a dividing index along the
    rows): a stride-0 DMA per run of rows that read the same elements; with `fill` (a padded read),
    rows whose index leaves the tensor get the pad instead (`dma.load.acc.pad` with no columns)."""
    offs: list[int | None] = []
    for r in range(n):
        values = at | {axis: at.get(axis, 0) + r}
        inside = fill is None or all(0 <= d.value(values) < d.size for d in acc.dims)
        offs.append(acc.at(values) if inside else None)
    items, start = [], 0
    for r in range(1, n + 1):
        if r == n or offs[r] != offs[start]:
            if offs[start] is None:
                items.append(out.add("dma.load.acc.pad", row + start, buf, 0, r - start, 0, 0, 0, fill))
            else:
                items.append(out.add("dma.load.acc", row + start, buf, offs[start], r - start, cols, 0))
            start = r
    return items


def expr(
    e: Expr, v: VectorStmt, loaded: dict, rows: int, slots, out: Stream, step: Step, target: int | None = None
) -> Val:  # type: ignore[no-untyped-def]
    """Emit `e`'s vector ops; its value's rows (`target`'s when given and the value has a row per
    row: the last op writes there, saving a copy)."""
    if e in loaded:
        return loaded[e]
    if isinstance(e, Cast) or (e.dtype is DType.I32 and on_words(e)):
        return _converted(e, v, loaded, rows, slots, out, step, target)
    if isinstance(e, Const):  # NOTE: a select's constant branch
        dst = next(slots)
        step.ops.append(out.add("viota", dst, 1, AXIS.choices.index("none"), f32_bits(float(e.value))))
        return Val(dst, shared=True)
    if isinstance(e, Select):
        m, a, b = (expr(k, v, loaded, rows, slots, out, step) for k in (e.cond, e.then, e.other))
        shared = m.shared and a.shared and b.shared
        dst = _dst(target, shared, slots)
        steps = (int(not m.shared), int(not a.shared), int(not b.shared))
        step.ops.append(out.add("vsel", dst, m.row, 1 if shared else rows, a.row, b.row, *steps))
        return Val(dst, shared)
    if isinstance(e, Binary) and e.op in COMPARISONS:
        return _compare(e, v, loaded, rows, slots, out, step, target)
    if isinstance(e, Unary):
        x = expr(e.x, v, loaded, rows, slots, out, step)
        n, dst = 1 if x.shared else rows, _dst(target, x.shared, slots)
        if e.op is UnaryOp.NOT:
            step.ops.append(out.add("vcmps", dst, x.row, n, f32_bits(0.0), CMP_INDEX[BinaryOp.EQ]))
        elif e.op is UnaryOp.NEG:
            step.ops.append(out.add("vmuls", dst, x.row, n, f32_bits(-1.0)))
        elif e.op is UnaryOp.RELU:
            step.ops.append(out.add("vmaxs", dst, x.row, n, f32_bits(0.0)))
        else:
            step.ops.append(out.add(UNARY[e.op], dst, x.row, n))
        return Val(dst, x.shared)
    assert isinstance(e, Binary)
    if isinstance(e.rhs, Const) or isinstance(e.lhs, Const):
        return _with_constant(e, v, loaded, rows, slots, out, step, target)
    a = expr(e.lhs, v, loaded, rows, slots, out, step)
    op = e.op
    if op is BinaryOp.DIV and ("reciprocal", e.rhs) in loaded:  # NOTE: hoisted by a fused section
        b, op = loaded[("reciprocal", e.rhs)], BinaryOp.MUL
    else:
        b = expr(e.rhs, v, loaded, rows, slots, out, step)
    if op is BinaryOp.DIV:
        inv = next(slots)
        step.ops.append(out.add("vrecip", inv, b.row, 1 if b.shared else rows))
        b, op = Val(inv, b.shared), BinaryOp.MUL
    if a.shared and not b.shared:
        if op in COMMUTES:
            a, b = b, a
        else:  # a - b = -b + a
            neg = next(slots)
            step.ops.append(out.add("vmuls", neg, b.row, rows, f32_bits(-1.0)))
            a, b, op = Val(neg), a, BinaryOp.ADD
    dst = _dst(target, a.shared and b.shared, slots)
    n = 1 if a.shared and b.shared else rows
    step.ops.append(out.add(BINARY[op], dst, a.row, n, b.row, 1, 0 if b.shared else 1))
    return Val(dst, a.shared and b.shared)


def _converted(e: Expr, v, loaded, rows, slots, out, step, target=None) -> Val:  # type: ignore[no-untyped-def]
    """A cast, or an i32 value computed on words (vector_int.py) where a float or a mask is wanted."""
    floats = lambda k: expr(k, v, loaded, rows, slots, out, step)  # noqa: E731
    if isinstance(e, Cast) and e.dtype is not DType.I32:
        if e.x.dtype is not DType.I32 or not on_words(e.x):
            # NOTE: f32 of f32, of a mask (1.0 / 0.0 already), or of loop values and constants, which
            # the float ops compute exactly (below 2**24)
            return expr(e.x, v, loaded, rows, slots, out, step, target)
        x = int_expr(e.x, loaded, rows, slots, out, step, floats)
        row = _dst(target, x.shared, slots)
        step.ops.append(out.add("vitof", row, x.row, 1 if x.shared else rows))
        return Val(row, x.shared)
    return int_expr(e, loaded, rows, slots, out, step, floats, target)


def value(v: VectorStmt, loaded: dict, rows: int, slots, out: Stream, step: Step, target: int | None) -> Val:  # type: ignore[no-untyped-def]
    """The statement's value (its contribution, for a reduction): on i32 words for an i32 result."""
    if ints(v):
        floats = lambda k: expr(k, v, loaded, rows, slots, out, step)  # noqa: E731
        return int_expr(v.value, loaded, rows, slots, out, step, floats, target)
    return expr(v.value, v, loaded, rows, slots, out, step, target)


def ints(v: VectorStmt) -> bool:
    """Whether `v` computes and stores i32 words (an arg-reduction's positions are f32, stored rounded)."""
    return v.out.buffer.dtype is DType.I32 and v.reduce not in ARG


def _compare(e: Binary, v, loaded, rows, slots, out, step, target=None) -> Val:  # type: ignore[no-untyped-def]
    """A comparison as a 1.0 / 0.0 mask: against an immediate (vcmps) or a second value (vcmp); of
    i32 values with data, on words (vicmp)."""
    lhs, rhs, op = e.lhs, e.rhs, e.op
    if lhs.dtype is DType.I32 and (on_words(lhs) or on_words(rhs)):
        floats = lambda k: expr(k, v, loaded, rows, slots, out, step)  # noqa: E731
        a, b = (int_expr(k, loaded, rows, slots, out, step, floats) for k in (lhs, rhs))
        return _mask("vicmp", op, a, b, rows, slots, out, step, target)
    if isinstance(lhs, Const):
        lhs, rhs, op = rhs, lhs, MIRROR[op]
    a = expr(lhs, v, loaded, rows, slots, out, step)
    if isinstance(rhs, Const):
        dst = _dst(target, a.shared, slots)
        step.ops.append(
            out.add("vcmps", dst, a.row, 1 if a.shared else rows, f32_bits(float(rhs.value)), CMP_INDEX[op])
        )
        return Val(dst, a.shared)
    b = expr(rhs, v, loaded, rows, slots, out, step)
    return _mask("vcmp", op, a, b, rows, slots, out, step, target)


def _mask(instr: str, op: BinaryOp, a: Val, b: Val, rows: int, slots, out: Stream, step: Step, target) -> Val:  # type: ignore[no-untyped-def]
    """`a op b` as a 1.0 / 0.0 mask by `instr` (vcmp on f32 values, vicmp on i32 words)."""
    if a.shared and not b.shared:
        a, b, op = b, a, MIRROR[op]
    shared = a.shared and b.shared
    dst = _dst(target, shared, slots)
    step.ops.append(
        out.add(instr, dst, a.row, 1 if shared else rows, b.row, 1, int(not b.shared), CMP_INDEX[op])
    )
    return Val(dst, shared)


def _dst(target: int | None, shared: bool, slots) -> int:  # type: ignore[no-untyped-def]
    return target if target is not None and not shared else next(slots)


def _with_constant(e: Binary, v, loaded, rows, slots, out, step, target=None) -> Val:  # type: ignore[no-untyped-def]
    const_left = isinstance(e.lhs, Const)
    c = float((e.lhs if const_left else e.rhs).value)  # type: ignore[union-attr]
    x = expr(e.rhs if const_left else e.lhs, v, loaded, rows, slots, out, step)
    n = 1 if x.shared else rows
    op = e.op
    if op is BinaryOp.SUB and const_left:  # c - x
        neg = next(slots)
        step.ops.append(out.add("vmuls", neg, x.row, n, f32_bits(-1.0)))
        x, op = Val(neg, x.shared), BinaryOp.ADD
    elif op is BinaryOp.SUB:
        op, c = BinaryOp.ADD, -c
    elif op is BinaryOp.DIV and const_left:  # c / x
        inv = next(slots)
        step.ops.append(out.add("vrecip", inv, x.row, n))
        x, op = Val(inv, x.shared), BinaryOp.MUL
    elif op is BinaryOp.DIV:
        op, c = BinaryOp.MUL, 1.0 / c if c else math.inf
    dst = _dst(target, x.shared, slots)
    step.ops.append(out.add(SCALAR[op], dst, x.row, n, f32_bits(c)))
    return Val(dst, x.shared)


def combine(v: VectorStmt, val: Val, res: int, rows: int, first: bool, out: Stream, step: Step) -> None:
    """The step's value into the tile's result rows: copied (a map, or a reduction's first step) or
    combined with what they hold."""
    op = (INT_BINARY if ints(v) else BINARY)[COMBINE[v.reduce]] if v.reduce is not None else ""
    if val.shared:  # NOTE: one row for every row: copied down the rows by vsel's stride-0 operands
        if first or v.reduce is None:
            step.ops.append(out.add("vsel", res, val.row, rows, val.row, val.row, 0, 0, 0))
        else:
            step.ops.append(out.add(op, res, res, rows, val.row, 1, 0))
        return
    if (first or v.reduce is None) and val.row == res:
        return  # NOTE: computed in place (`expr`'s target)
    if first or v.reduce is None:  # NOTE: a copy of the words, whatever they hold
        step.ops.append(out.add("vsel", res, val.row, rows, val.row, val.row, 1, 1, 1))
    else:
        step.ops.append(out.add(op, res, res, rows, val.row, 1, 1))


def finish(
    v: VectorStmt, res: int, rows: int, out: Stream, step: Step, buf: dict, base: dict, dim: int, slots=None
) -> None:  # type: ignore[no-untyped-def]
    """A lane reduction's row value (broadcast to every lane), then the initial value folded in."""
    if ints(v):  # NOTE: i32 words: their own reductions, an initial value from a viota.i row
        if v.lane_reduced:
            step.ops.append(out.add(INT_FINISH[v.reduce], res, res, rows))
        if v.reduce is not None and v.init is not None and v.init != INT_IDENTITY[v.reduce]:
            assert slots is not None
            row = next(slots)
            step.ops.append(out.add("viota.i", row, 1, AXIS.choices.index("none"), int(v.init) & 0xFFFFFFFF))
            step.ops.append(out.add(INT_BINARY[COMBINE[v.reduce]], res, res, rows, row, 1, 0))
        return
    if v.lane_reduced:
        if v.reduce == "min":
            step.ops.append(out.add("vmuls", res, res, rows, f32_bits(-1.0)))
            step.ops.append(out.add("vredmax", res, res, rows))
            step.ops.append(out.add("vmuls", res, res, rows, f32_bits(-1.0)))
        else:
            step.ops.append(out.add("vredsum" if v.reduce == "add" else "vredmax", res, res, rows))
    if v.reduce is not None and v.init is not None and v.init != IDENTITY[v.reduce]:
        step.ops.append(out.add(SCALAR[COMBINE[v.reduce]], res, res, rows, f32_bits(v.init)))


def _onto_own(
    v: VectorStmt, res: int, rows: int, at: dict, cols: int, buf: dict, slots, out: Stream, step: Step
) -> None:  # type: ignore[no-untyped-def]
    """A reduction with no initialisation adds onto what its tensor holds: the tile's region of it
    (one column per row for a lane reduction, broadcast by vredsum) loaded and combined last."""
    own, n = next(slots), rows if v.rows is not None else 1
    region = (v.rows, n), (None, 1) if v.lane_reduced else (v.lane, cols)
    step.loads += load_region(out, "dma.load.acc", own, buf[v.out.buffer.name], v.out, at, *region)
    if v.lane_reduced:
        step.ops.append(out.add("viredsum" if ints(v) else "vredsum", own, own, n))
    assert v.reduce is not None
    step.ops.append(out.add((INT_BINARY if ints(v) else BINARY)[COMBINE[v.reduce]], res, res, n, own, 1, 1))


def store(v: VectorStmt, res: int, rows: int, base: dict, dim: int, buf: dict, out: Stream) -> Item:
    cols = 1 if v.lane_reduced else min(dim, v.lane.extent - base.get(v.lane, 0))
    acc = v.out
    where = (buf[acc.buffer.name], acc.at(base), rows, cols, row_stride(acc, v.rows, rows))
    return out.add("dma.store.i", res, *where) if ints(v) else out.add("dma.store", res, *where, 0)
