"""Statements the vector unit runs on its own: elementwise maps, broadcasts and reductions that are not
a contraction's epilogue (softmax, the norms, activation chains, row sums).

A `VectorStmt` lays the statement over tiles of accumulator rows:

    lane    the axis along the dim columns of a row: contiguous in every operand that uses it
            (a reduced axis when one is: a *lane reduction*, finished by vredsum/vredmax; else the
            output's contiguous axis)
    rows    an output axis over accumulator rows (any DRAM stride)
    outer   the output's other axes, one tile after another
    serial  the other reduced axes, accumulated step by step into the same rows

Each operand is a `Leaf` by how it varies: `lanes` (a row of dim elements per accumulator row; read
transposed when it is strided along the lanes and contiguous along the rows), `row` (one value per
row, broadcast across the lanes after its load), `vector` (one row shared by every row: a bias
b[d]), `scalar` (one value), `param` (a scalar parameter's row of copies) or `index` (a loop's
value, made by viota: masks such as `select(j <= i, ...)` compare them with vcmp and pick with vsel)
or `fixed` (built from loops that no lane or row changes, `b % 2 == 0`: computed per step here).  Padded reads keep their
pad (0 or ±inf: the pad DMAs' fill).  When no loop can be the lanes the statement runs one column
per row (`ONE`).  Anything else is an `Unsupported` error that says why (a select, a cast, a
data-dependent index, integer division, a pad the DMA cannot fill).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kcomp.dtypes import DType
from kcomp.expr import (
    COMPARISONS,
    LOGICAL,
    Binary,
    BinaryOp,
    Cast,
    Const,
    Expr,
    Load,
    Param,
    Select,
    Unary,
    UnaryOp,
    Var,
    children,
    free_vars,
    loads,
    rewrite,
    walk,
)
from kcomp.printer import format_expr
from kcomp.semantics import BINARY as BINARY_FN
from kcomp.semantics import UNARY as UNARY_FN
from kcomp.semantics import binary, cast, unary
from kcomp.targets.accel.compiler.nest import Access, Axis, Nest, access_of, cannot, is_own
from kcomp.targets.accel.compiler.vector_ops import REDUCE
from kcomp.targets.accel.compiler.vector_scan import Scan, recurrence
from kcomp.targets.accel.machine.config import MAX_DIM

UNARY = {
    UnaryOp.EXP: "vexp",
    UnaryOp.LOG: "vlog",
    UnaryOp.SQRT: "vsqrt",
    UnaryOp.RSQRT: "vrsqrt",
    UnaryOp.TANH: "vtanh",
    UnaryOp.ERF: "verf",
    UnaryOp.SIGMOID: "vsigmoid",
    UnaryOp.ABS: "vabs",
}
ARITH = {BinaryOp.ADD, BinaryOp.SUB, BinaryOp.MUL, BinaryOp.DIV, BinaryOp.MAX, BinaryOp.MIN}
ARG = ("argmax", "argmin")
WORDS = {DType.F32, DType.I32, DType.BOOL}  # what a vector-unit value holds: f32, i32 words, a mask


@dataclass(eq=False)
class Leaf:
    """One tensor read or parameter of the statement, loaded into accumulator rows at each step."""

    kind: str  # lanes, row, vector, scalar, param, index
    access: Access | None = None
    axis: Axis | None = None  # an index leaf's axis
    fixed: Expr | None = None  # a fixed leaf's expression, over the loops of `axes`
    axes: dict[Var, Axis] = field(default_factory=dict)
    param: str | None = None
    pad: float = 0.0  # what a padded read gives outside the tensor
    transposed: bool = False  # strided along the lanes, contiguous along the rows: dma.load.acc.t

    @property
    def masked(self) -> bool:
        """A per-row value whose halo rows hold a nonzero pad in every column: before its broadcast
        sum, column 0 is picked out (two more rows: the mask and a zero)."""
        acc = self.access
        return (
            self.kind in ("row", "scalar")
            and bool(self.pad)
            and acc is not None
            and acc.padded
            and not acc.gathers
        )


@dataclass(eq=False)
class VectorStmt:
    """One statement on the vector unit (module docstring)."""

    text: str
    out: Access
    lane: Axis
    rows: Axis | None
    outer: tuple[Axis, ...]
    serial: tuple[Axis, ...]
    value: Expr  # the contribution (a reduction) or the value (a map)
    leaves: dict[Expr, Leaf] = field(default_factory=dict)  # per Load (equal reads once) and Param node
    reduce: str | None = None  # add, max, min, argmax, argmin (the position of the first best value)
    init: float | None = None  # the initialising constant folded in (a reduction)
    onto_own: bool = False  # a reduction with no initialisation accumulates onto what DRAM holds
    lane_reduced: bool = False  # the lanes run along a reduced axis: vredsum / vredmax finish each row
    one_lane: VectorStmt | None = None  # the same statement one column per row (codegen's `fit`)
    scan: Scan | None = None  # a prefix scan along the lanes or down the rows (vector_scan.py)

    def extent(self, axis: Axis | None) -> int:
        return axis.extent if axis is not None else 1

    def nodes(self) -> int:
        """Values one step holds at once, at most: every node of the expression (and an
        arg-reduction's copy down the rows, negation, position and mask, and the three rows of its finish)."""
        masks = 2 * sum(leaf.masked for leaf in self.leaves.values())
        scan = 2 if self.scan is not None else 0  # NOTE: a reversed chunk's tail mask and identity
        nodes = _count(self.value)
        if self.out.buffer.dtype is DType.I32 or any(x.dtype is DType.I32 for x in walk(self.value)):
            nodes = 2 * nodes + 1  # NOTE: conversions of loop values, copies down, the initial value
        return nodes + (7 if self.reduce in ARG else 0) + masks + self.onto_own + scan


# NOTE: the lane axis when no loop can be one: one column per accumulator row (slow, but it maps)
ONE = Axis("1", (), (), 1, -1)


def _rows_axis(lane: Axis, dims: list[Axis], reads: list[Access]) -> Axis | None:
    """The output axis over accumulator rows: the one that lets reads strided along the lanes load
    transposed (contiguous along it), then the longest."""
    strided = [r for r in reads if r.stride(lane) not in (0, 1)]
    others = [a for a in dims if a is not lane]
    return max(
        others, key=lambda a: (sum(r.stride(a) == 1 for r in strided), a.extent, a.position), default=None
    )


def _layout(
    lane: Axis, dims: list[Axis], reads: list[Access], rows: Axis | None = None
) -> tuple[Axis, Axis | None] | None:
    """(lane, rows) when every read can be loaded with `lane` along the columns: contiguous or
    constant along them, or strided along them and contiguous along the rows (loaded transposed);
    `rows` when given, else the best (`_rows_axis`)."""
    rows = rows or _rows_axis(lane, dims, reads)
    for acc in reads:
        if lane in acc.irregular:
            return None
        if acc.stride(lane) not in (0, 1) and (
            acc.stride(rows) not in (0, 1) or acc.padded or rows in acc.irregular
        ):
            return None
    return lane, rows


def _store_dims(n: Nest, out: Access) -> list[Axis]:
    """The axes of the stored tensor's dimensions: each dimension one loop running forward from any
    start (an exclusive scan stores from its second element on) or a constant (`E[b, 0] = 0`)."""
    dims: list[Axis] = []
    for d in out.dims:
        if not d.coef:
            continue
        (a, c), *more = d.coef.items()
        if more or c != 1 or a in dims or not d.regular:
            raise cannot(n.text, "the stored tensor must be indexed by one loop or a constant per dimension")
        dims.append(a)
    return dims


def fold(e: Expr) -> Expr:
    """`e` with every operation on constants alone computed (in f32, as the reference would) and
    numeric casts of constants applied: the vector unit has no instruction that makes a constant row."""

    def rule(n: Expr) -> Expr | None:
        if isinstance(n, Unary) and isinstance(n.x, Const) and n.op in UNARY_FN and n.dtype is DType.F32:
            return Const(float(UNARY_FN[n.op](np.float32(n.x.value))), DType.F32)
        if (
            isinstance(n, (Binary))
            and isinstance(n.lhs, Const)
            and isinstance(n.rhs, Const)
            and n.op in ARITH
            and n.dtype is DType.F32
        ):
            fn = BINARY_FN.get(n.op, np.divide)
            return Const(float(fn(np.float32(n.lhs.value), np.float32(n.rhs.value))), DType.F32)
        if isinstance(n, Cast) and isinstance(n.x, Const) and n.dtype is DType.F32:
            return Const(float(np.float32(n.x.value)), DType.F32)
        return None

    return rewrite(e, rule)


def vanishes(e: Expr, leaves: dict[Expr, Leaf]) -> bool:
    """Whether `e` is 0 where every read along the lanes reads 0 (so zero-filled columns add nothing)."""
    if isinstance(e, Load):
        return e in leaves and leaves[e].kind == "lanes" and leaves[e].pad == 0
    if isinstance(e, Unary):
        return e.op in (
            UnaryOp.NEG,
            UnaryOp.RELU,
            UnaryOp.ABS,
            UnaryOp.SQRT,
            UnaryOp.TANH,
            UnaryOp.ERF,
        ) and vanishes(e.x, leaves)
    if isinstance(e, Binary):
        if e.op is BinaryOp.MUL:
            return vanishes(e.lhs, leaves) or vanishes(e.rhs, leaves)
        if e.op in (BinaryOp.ADD, BinaryOp.SUB):
            return vanishes(e.lhs, leaves) and vanishes(e.rhs, leaves)
        if e.op is BinaryOp.DIV:
            return vanishes(e.lhs, leaves) and not any(
                x in leaves and leaves[x].kind == "lanes" for x in loads(e.rhs)
            )
    return False


def operands(e: Expr) -> tuple[Expr, ...]:
    """The operands of a vector-unit operation (none for a leaf: a tensor read's index is not one)."""
    return () if isinstance(e, Load) else children(e)


def _always_inside(acc: Access) -> bool:
    """Whether every index of `acc` that does not divide stays inside its dimension over the loops."""
    for d in acc.dims:
        lo = d.const + sum(min(0, c * (a.extent - 1)) for a, c in d.coef.items())
        hi = d.const + sum(max(0, c * (a.extent - 1)) for a, c in d.coef.items())
        if d.mod:
            lo, hi = 0, d.mod - 1
        if lo < 0 or hi >= d.size * d.div:
            return False
    return True


def _count(e: Expr) -> int:
    if isinstance(e, Binary):
        return 2 + _count(e.lhs) + _count(e.rhs)  # NOTE: a reciprocal or a negation may come first
    return 1 + sum(_count(k) for k in operands(e))


def vector_stmt(n: Nest, init: Nest | None = None, one_lane: bool = False) -> VectorStmt:
    """The statement of nest `n` on the vector unit; `init` a constant initialisation of the same
    tensor just before a reduction (folded in); `one_lane`: lay it out one column per row (the
    fallback a machine takes when it cannot run the first layout).  Unsupported (naming the
    reason) when it cannot run."""
    source = n
    scanned = recurrence(n, init) if n.arg is None else None
    scan = None
    if scanned is not None:
        n, scan, contribution = scanned
    store = n.store
    own = Load(store.buffer, store.index)
    value, reduce = fold(store.value), None
    if scan is not None:
        value = fold(contribution)
    elif n.arg is not None:
        reduce = "arg" + n.arg
    elif isinstance(value, Binary) and value.op in REDUCE and is_own(value.lhs, own):
        reduce, value = REDUCE[value.op], value.rhs
    elif isinstance(value, Binary) and value.op in REDUCE and is_own(value.rhs, own):
        reduce, value = REDUCE[value.op], value.lhs
    if reduce in REDUCE.values() and any(ld.buffer is store.buffer for ld in loads(value)):
        reduce, value = None, fold(store.value)  # NOTE: `Y[i] = Y[i] * Y[i]`: a map, in place
    if any(ld.buffer is store.buffer and (reduce is not None or not is_own(ld, own)) for ld in loads(value)):
        raise cannot(n.text, f"it reads {store.buffer.name}, the tensor it writes, other than in place")
    if any(a.tile is not None for a in n.axes):
        raise cannot(n.text, "its loops are split; the vector unit's tiles come from the backend")
    out = access_of(n, store.buffer, store.index)
    dims = _store_dims(n, out)
    reads = [access_of(n, ld.buffer, ld.index, ld.pad is not None) for ld in loads(value)]
    for ld, acc in zip(loads(value), reads, strict=True):
        if acc.gathers and (len(acc.gathers) > 1 or acc.divided or not _always_inside(acc)):
            raise cannot(n.text, f"{ld.buffer.name} is gathered through more than one computed index, or with"
                         " other indices that leave the tensor")  # fmt: skip
    reduced = [a for a in n.axes if a not in dims]
    if reduce in ARG and (n.position not in n.of or [n.of[n.position][0]] != reduced):
        raise cannot(n.text, "an arg-reduction stores the position along its one reduced loop")
    if reduced and reduce is None:
        raise cannot(n.text, "a loop that indexes no output dimension is not a reduction (+=, max=, min=)")
    if any(s < 0 for acc in (out, *reads) for s in acc.coef.values()):
        raise cannot(n.text, "an index runs backwards (a negative DRAM stride)")
    # NOTE: no vector-unit instruction multiplies across the lanes: a product reduces step by step
    candidates = [a for a in reduced if all(r.stride(a) in (0, 1) for r in reads) and reduce != "mul"]
    candidates += [a for a in dims if out.stride(a) == 1]
    # NOTE: the longest first (a 3-tap window is a poor row of lanes), reductions first among equals
    candidates.sort(key=lambda a: -min(a.extent, MAX_DIM))
    if one_lane:
        candidates = []
    if scan is not None:  # NOTE: a scan runs along the lanes or down the rows, no other way
        lane, rows = next(
            (
                layout
                for a in candidates
                if (layout := _layout(a, dims, reads, None if a is scan.axis else scan.axis)) is not None
            ),
            (ONE, scan.axis),
        )
    else:
        lane, rows = next(
            (layout for a in candidates if (layout := _layout(a, dims, reads)) is not None),
            (ONE, _rows_axis(ONE, dims, reads)),
        )
    outer = tuple(a for a in dims if a is not lane and a is not rows)
    serial = tuple(a for a in reduced if a is not lane)
    stmt = VectorStmt(
        n.text, out, lane, rows, outer, serial, value, reduce=reduce, lane_reduced=lane in reduced, scan=scan
    )
    _leaves(n, stmt, value)
    if reduce is not None and reduce not in ARG:  # NOTE: an arg-reduction's first step sets both values
        if init is not None:
            assert isinstance(init.store.value, Const)
            stmt.init = float(init.store.value.value)
        else:
            stmt.onto_own = True
    if lane is not ONE:
        stmt.one_lane = vector_stmt(source, init, one_lane=True)
    return stmt


def evaluate(leaf: Leaf, at: dict[Axis, int]) -> float:
    """A fixed leaf's value where the step's loops are `at`, in the language's own semantics."""

    def value(e: Expr) -> np.ndarray:
        if isinstance(e, Var):
            return np.asarray(at.get(leaf.axes[e], 0), dtype=np.int32)
        if isinstance(e, Const):
            return np.asarray(e.value, dtype=e.dtype.numpy)
        if isinstance(e, Unary):
            return unary(e.op, value(e.x))
        if isinstance(e, Binary):
            return binary(e.op, value(e.lhs), value(e.rhs))
        if isinstance(e, Select):
            return value(e.then) if value(e.cond) else value(e.other)
        assert isinstance(e, Cast)
        return cast(value(e.x), e.dtype)

    assert leaf.fixed is not None
    return float(value(leaf.fixed))


def _fixed(n: Nest, stmt: VectorStmt, e: Expr) -> bool:
    """Whether `e` is an operation on constants and loops that no lane or row changes."""
    if isinstance(e, (Load, Param, Const, Var)) or any(isinstance(x, (Load, Param)) for x in walk(e)):
        return False
    return all(v in n.of and n.of[v][0] not in (stmt.lane, stmt.rows) for v in free_vars(e))


def _leaves(n: Nest, stmt: VectorStmt, e: Expr) -> None:
    if _fixed(n, stmt, e):
        stmt.leaves[e] = Leaf("fixed", fixed=e, axes={v: n.of[v][0] for v in free_vars(e)})
    elif isinstance(e, Load):
        acc = access_of(n, e.buffer, e.index, e.pad is not None)
        along_lane = acc.stride(stmt.lane)
        along_rows = acc.stride(stmt.rows) or (stmt.rows in acc.irregular)
        if along_lane:
            kind = "lanes" if along_rows or stmt.rows is None else "vector"
        else:
            kind = "row" if along_rows else "scalar"
        pad = float(e.pad) if e.pad is not None else 0.0
        if acc.padded and acc.divided and kind in ("lanes", "vector"):  # NOTE: one value a row: _runs
            raise cannot(n.text, f"{e.buffer.name} is read padded through a dividing index along the lanes")
        stmt.leaves[e] = Leaf(kind, acc, pad=pad, transposed=along_lane not in (0, 1))
        if acc.gathers and stmt.leaves[e].transposed:
            raise cannot(
                n.text, f"{e.buffer.name} is gathered and strided along the lanes (no transposing gather)"
            )
    elif isinstance(e, Param):
        if e.dtype not in (DType.F32, DType.I32):
            raise cannot(
                n.text, f"parameter {e.name} is {e.dtype.value}; the vector unit computes in f32 and i32"
            )
        stmt.leaves[e] = Leaf("param", param=e.name)
    elif isinstance(e, Var):
        if e not in n.of:
            raise cannot(n.text, f"{n.names.get(e, e.name)} is not a loop of its nest")
        stmt.leaves[e] = Leaf("index", axis=n.of[e][0])
    elif isinstance(e, Binary):
        words = e.dtype is DType.I32 and e.op in (BinaryOp.FLOORDIV, BinaryOp.MOD)  # NOTE: vifdiv, vimod
        if e.op not in ARITH and e.op not in COMPARISONS and e.op not in LOGICAL and not words:
            raise cannot(n.text, f"`{e.op.value}` has no vector-unit instruction")
        _leaves(n, stmt, e.lhs)
        _leaves(n, stmt, e.rhs)
    elif isinstance(e, Unary):
        if e.op not in UNARY and e.op not in (UnaryOp.NEG, UnaryOp.RELU, UnaryOp.NOT):
            raise cannot(n.text, f"{e.op.value} has no vector-unit instruction")
        _leaves(n, stmt, e.x)
    elif isinstance(e, Select) or (isinstance(e, Cast) and {e.dtype, e.x.dtype} <= WORDS):
        for k in operands(e):
            _leaves(n, stmt, k)
    elif isinstance(e, Const):
        if not isinstance(e.value, (int, float)) or isinstance(e.value, bool):
            raise cannot(n.text, f"constant {format_expr(e)} is not a number")
    else:
        raise cannot(n.text, f"{format_expr(e, n.names)} has no vector-unit form (a cast of a tensor read)")
