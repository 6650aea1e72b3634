"""The values and facts the vector-loop emitters share (vector.py, vector_loads.py): a value's C text
and whether it is a vector, how an index grows per lane, a register-promoted local buffer."""

from __future__ import annotations

from dataclasses import dataclass, field

from kcomp.affine import const, simplify
from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Unary, UnaryOp, Var, free_vars


class Unvectorizable(Exception):
    """This loop has something the SIMD path does not handle; emit it as scalar code."""


@dataclass
class Promotion:
    """A small local buffer kept in vector registers: one C variable per W-lane slot."""

    buffer: Buffer
    slots: dict[int, str] = field(default_factory=dict)
    failed: bool = False
    lanes: set[str | None] = field(default_factory=set)  # the lane counts of its accesses
    unaligned: bool = False

    def slot(self, offset: int, width: int, name: str, lanes: str | None = None) -> str:
        """The register for the W lanes at `offset`.  Offsets are multiples of W, or (a tile whose
        rows are shorter than a vector: 15 columns of a 16-lane machine) every access covers the same
        constant number of lanes L and the offsets are multiples of L, so no two registers overlap."""
        self.lanes.add(lanes)
        self.unaligned |= offset % width != 0
        if self.unaligned:
            (only,) = self.lanes if len(self.lanes) == 1 else (None,)
            if only is None or not only.isdigit() or any(o % int(only) for o in (*self.slots, offset)):
                self.failed = True
        if offset not in self.slots:
            self.slots[offset] = f"{name}_v{offset}"
        return self.slots[offset]


@dataclass(frozen=True)
class V:
    text: str
    vector: bool
    dtype: DType  # compute type; BOOL vectors are i32 masks


def lane_coef(e: Expr, v: Var) -> int | None:
    """How `e` grows per step of `v` when that is a constant (e may be non-affine in other variables)."""
    if v not in free_vars(e):
        return 0
    match e:
        case Var():
            return 1
        case Binary(op=BinaryOp.ADD | BinaryOp.SUB, lhs=a, rhs=b):
            ca, cb = lane_coef(a, v), lane_coef(b, v)
            if ca is None or cb is None:
                return None
            return ca + cb if e.op is BinaryOp.ADD else ca - cb
        case Binary(op=BinaryOp.MUL, lhs=a, rhs=b):
            if isinstance(b, Const) and (ca := lane_coef(a, v)) is not None:
                return ca * int(b.value)
            if isinstance(a, Const) and (cb := lane_coef(b, v)) is not None:
                return cb * int(a.value)
        case Unary(op=UnaryOp.NEG, x=x):
            c = lane_coef(x, v)
            return None if c is None else -c
    return None


def flat_expr(buf: Buffer, index: tuple[Expr, ...]) -> Expr:
    """Row-major flat offset as an expression (for constant folding and lane coefficients)."""
    out: Expr = const(0)
    for i, n in zip(index, buf.shape, strict=True):
        out = Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, out, const(n)), i)
    return simplify(out)
