"""Prefix scans on the vector unit: a first-order recurrence along one loop
(`Y[b, i] = Y[b, i - 1, pad=0] + X[b, i]`, what `scan` lowers to, or the same written by hand) read
back as a scan, and its instructions.

Whatever the source order, the recurrence is read with every index running forward: a reversed scan
(`Y[b, n-1-w] = Y[b, n-w] + ...`) has its loop flipped and runs from the end.  Two layouts:

    along the lanes  the scan's loop is contiguous: each dim-wide chunk is one `vscan` per row, its
                     carry the previous chunk's edge column (the chunks of a row run in order)
    along the rows   another loop is contiguous: row r combines row r - 1 (one vector op per row), the
                     tile's first row the previous tile's edge row (the tiles of a column run in order)

The first element combines the identity (a padded read of the element before the tensor) or the
constant an initialising statement stored there (an exclusive scan's `Y[b, 0] = 0`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Const, Expr, Load, Var, loads, substitute
from kcomp.loops import Store
from kcomp.targets.accel.compiler.nest import Access, Axis, Nest, access_of, cannot
from kcomp.targets.accel.compiler.stream import Item, Stream
from kcomp.targets.accel.compiler.vector_ops import (
    BINARY,
    COMBINE,
    IDENTITY,
    INT_BINARY,
    INT_IDENTITY,
    REDUCE,
    SCALAR,
)
from kcomp.targets.accel.machine.isa import AXIS, CMP, SCAN_FIELDS, f32_bits

_FN, _DIR, _CIN = (f.choices for f in SCAN_FIELDS[4:])


@dataclass(frozen=True, eq=False)
class Scan:
    """A recurrence read as a scan along `axis` (every index of the nest running forward)."""

    axis: Axis
    op: str  # add, mul, max, min
    reverse: bool  # element i combines the elements after it: runs from the end
    start: float | None  # what the first element combines besides its value: None for the identity
    words: bool = False  # an i32 scan: on the accumulator's words (viscan, the vi* operations)

    @property
    def identity(self) -> float:
        return INT_IDENTITY[self.op] if self.words else IDENTITY[self.op]


def recurrence(n: Nest, init: Nest | None) -> tuple[Nest, Scan, Expr] | None:
    """(the nest with a reversed loop flipped, the scan, the value each element contributes) when
    `n` is a first-order recurrence along one loop; None when it is not one; Unsupported when it is
    one the vector unit cannot start (its first element reads what the tensor holds)."""
    found = _shift(n)
    if found is None:
        return None
    axis, step, delta = found[:3]
    if delta != step:  # NOTE: it reads what a later iteration stores (the old value): not a scan
        return None
    if step < 0:  # NOTE: `Y[n-1-w] = Y[n-w] + ...`: with w' = n-1-w every index runs forward
        (var,) = axis.loops
        flip = {var: Binary(BinaryOp.SUB, Const(axis.extent - 1, DType.I32), var)}
        store = n.store
        index = tuple(substitute(e, flip) for e in store.index)
        n = replace(n, store=Store(store.buffer, index, substitute(store.value, flip)))
        found = _shift(n)
        assert found is not None
    axis, step, delta, dim, prev, value, read = found
    reverse = delta < 0
    first = prev.dims[dim].const + (axis.extent - 1 if reverse else 0)  # what the first element reads
    size = prev.dims[dim].size
    op = REDUCE[n.store.value.op]  # type: ignore[union-attr]
    words = n.store.buffer.dtype is DType.I32
    identity = (INT_IDENTITY if words else IDENTITY)[op]
    start: float | None = None
    if 0 <= first < size:
        start = _initial(init, n, dim, first)
        if start is None:
            raise cannot(
                n.text, "its first element reads what the tensor holds (no constant stored there first)"
            )
    elif read.pad is None or float(read.pad) != identity:
        raise cannot(n.text, "its first element reads a pad that is not the identity of its operation")
    return n, Scan(axis, op, reverse, None if start == identity else start, words), value


def _shift(n: Nest) -> tuple[Axis, int, int, int, Access, Expr, Load] | None:
    """(axis, its coefficient, the distance back to the element read, dimension, that element's
    access, the contribution, its read) when `n` stores `prev op value` and `prev` is the element next
    to the stored one along one loop (stored by the iteration before when the two signs agree)."""
    store = n.store
    v = store.value
    if not isinstance(v, Binary) or v.op not in REDUCE:
        return None
    for prev, value in ((v.lhs, v.rhs), (v.rhs, v.lhs)):
        if not isinstance(prev, Load) or prev.buffer is not store.buffer:
            continue
        if any(ld.buffer is store.buffer for ld in loads(value)):
            return None
        out = access_of(n, store.buffer, store.index)
        acc = access_of(n, prev.buffer, prev.index, prev.pad is not None)
        if not (out.regular and acc.regular) or any(not d.regular for d in (*out.dims, *acc.dims)):
            return None
        moved = [k for k, (a, b) in enumerate(zip(out.dims, acc.dims, strict=True)) if a.const != b.const]
        if len(moved) != 1 or any(a.coef != b.coef for a, b in zip(out.dims, acc.dims, strict=True)):
            return None
        (k,) = moved
        coef = out.dims[k].coef
        if len(coef) != 1:
            return None
        ((axis, step),) = coef.items()
        delta = out.dims[k].const - acc.dims[k].const
        if step not in (1, -1) or delta not in (1, -1):
            return None
        if any(axis in d.coef for j, d in enumerate(out.dims) if j != k):
            return None
        return axis, step, delta, k, acc, value, prev
    return None


def _initial(init: Nest | None, n: Nest, dim: int, position: int) -> float | None:
    """The constant `init` stores at `position` along dimension `dim` of every line of the scan
    (`Y[b, 0] = 0` over the whole of b), else None."""
    if init is None or init.store.buffer is not n.store.buffer or not isinstance(init.store.value, Const):
        return None
    shape = n.store.buffer.shape
    for k, e in enumerate(init.store.index):
        if k == dim:
            if not (isinstance(e, Const) and e.value == position):
                return None
        elif not (isinstance(e, Var) and any(lp.var is e and lp.extent == shape[k] for lp in init.loops)):
            return None
    return float(init.store.value.value)


# -- instructions ---------------------------------------------------------------------------------
def tiles_in_order(scan: Scan, chunks: list[int], starts: list[int]) -> tuple[list[int], list[int]]:
    """The lane chunks and row-tile starts in the order the scan visits them (from the end reversed)."""
    if scan.reverse:
        return chunks[::-1], starts[::-1]
    return chunks, starts


def emit_lane_scan(
    scan: Scan,
    res: int,
    src: int,
    prev: int | None,
    rows: int,
    cols: int,
    dim: int,
    slots,
    out: Stream,
    ops: list[Item],
) -> None:  # type: ignore[no-untyped-def]
    """One chunk of a scan along the lanes, from `src` into `res`: a reversed scan's partial chunk has
    its columns past `cols` set to the identity first (they would take part); then vscan, carrying in
    `prev`'s edge column (the chunk before), or the first element's start."""
    if scan.reverse and cols < dim:
        mask = next(slots)
        ops.append(out.add("viota", mask, 1, AXIS.choices.index("col"), f32_bits(0.0)))
        ops.append(out.add("vcmps", mask, mask, 1, f32_bits(float(cols)), CMP.choices.index("lt")))
        ident = _constant(scan, scan.identity, slots, out, ops)
        ops.append(out.add("vsel", res, mask, rows, src, ident, 0, 1, 0))
        src = res
    carry = prev is not None
    args = (
        _FN.index(scan.op),
        _DIR.index("rev" if scan.reverse else "fwd"),
        _CIN.index("carry" if carry else "none"),
    )
    ops.append(out.add("viscan" if scan.words else "vscan", res, src, rows, prev if carry else 0, *args))
    if not carry and scan.start is not None:
        _start(scan, res, rows, slots, out, ops)


def emit_row_scan(
    scan: Scan, res: int, prev: int | None, rows: int, slots, out: Stream, ops: list[Item]
) -> None:  # type: ignore[no-untyped-def]
    """One tile of a scan down the rows, in place in `res`: each row combines the one before it (the
    first, `prev`: the previous tile's edge row, or the first element's start)."""
    order = range(rows - 1, -1, -1) if scan.reverse else range(rows)
    before = prev
    op = (INT_BINARY if scan.words else BINARY)[COMBINE[scan.op]]
    for r in order:
        if before is not None:
            ops.append(out.add(op, res + r, res + r, 1, before, 1, 1))
        elif scan.start is not None:
            _start(scan, res + r, 1, slots, out, ops)
        before = res + r


def _constant(scan: Scan, value: float, slots, out: Stream, ops: list[Item]) -> int:  # type: ignore[no-untyped-def]
    """A row holding `value` (an i32 word for an i32 scan)."""
    row = next(slots)
    none = AXIS.choices.index("none")
    if scan.words:
        ops.append(out.add("viota.i", row, 1, none, int(value) & 0xFFFFFFFF))
    else:
        ops.append(out.add("viota", row, 1, none, f32_bits(value)))
    return row


def _start(scan: Scan, res: int, rows: int, slots, out: Stream, ops: list[Item]) -> None:  # type: ignore[no-untyped-def]
    """The first element's start combined into `rows` rows at `res`."""
    assert scan.start is not None
    if scan.words:
        row = _constant(scan, scan.start, slots, out, ops)
        ops.append(out.add(INT_BINARY[COMBINE[scan.op]], res, res, rows, row, 1, 0))
    else:
        ops.append(out.add(SCALAR[COMBINE[scan.op]], res, res, rows, f32_bits(scan.start)))


def emit_scan(v, at, res, src, prev, rows, r_max, cols, dim, slots, out, ops) -> None:  # type: ignore[no-untyped-def]
    """VectorStmt `v`'s scan, one tile of values in `src` into `res` (a scan down the rows: in place,
    `src` is `res`), carried on from the previous tile's result `prev` unless the tile starts its line."""
    scan = v.scan
    if scan.axis is v.lane:
        first = (v.lane.extent - 1) // dim * dim if scan.reverse else 0
        carry = prev if at[v.lane] != first else None
        emit_lane_scan(scan, res, src, carry, rows, cols, dim, slots, out, ops)
    else:
        assert src == res
        first = (v.rows.extent - 1) // r_max * r_max if scan.reverse else 0
        edge = prev if scan.reverse else prev + r_max - 1
        emit_row_scan(scan, res, edge if at[v.rows] != first else None, rows, slots, out, ops)
