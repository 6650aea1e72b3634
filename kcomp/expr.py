"""Scalar expressions, shared by the tensor IR (`kcomp.program`) and the loop IR (`kcomp.loops`).

    expr = Const(value, dtype) | Var(name) | Param(name, dtype) | Load(buffer, index*, pad)
         | Unary(op, x) | Binary(op, lhs, rhs) | Select(cond, then, else) | Cast(dtype, x)

`Var`, `Param` and `Buffer` are symbols: unique objects compared by identity, never by name, so a
rewrite can create a fresh `i` next to an old one.  In the tensor IR a `Var` is an index variable and a
`Buffer` a tensor; lowering turns the same objects into loop variables and buffers, so expressions move
from one IR to the other unchanged.  A `Load` with `pad=None` is known to be in bounds; otherwise an
out-of-bounds read yields `pad`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kcomp.dtypes import DType

_ids = itertools.count()


class Scope(enum.Enum):
    GLOBAL = "global"
    LOCAL = "local"
    SHARED = "shared"
    SCRATCHPAD = "scratchpad"
    ACCUMULATOR = "accumulator"


@dataclass(frozen=True, eq=False, slots=True)
class Var:
    """An index or loop variable (its values are i32 when used in arithmetic)."""

    name: str
    uid: int = field(default_factory=lambda: next(_ids), repr=False)

    @property
    def dtype(self) -> DType:
        return DType.I32


@dataclass(frozen=True, eq=False, slots=True)
class Param:
    """A scalar parameter passed by the caller (`eps: f32`)."""

    name: str
    dtype: DType


@dataclass(frozen=True, eq=False, slots=True)
class Buffer:
    """A tensor in the tensor IR, a buffer in the loop IR: row-major, static shape."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    scope: Scope = Scope.GLOBAL

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class UnaryOp(enum.Enum):
    NEG = "-"
    NOT = "not"
    EXP = "exp"
    LOG = "log"
    LOG1P = "log1p"  # log(1 + x), exact for tiny x
    EXPM1 = "expm1"  # exp(x) - 1, exact for tiny x
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    TANH = "tanh"
    ERF = "erf"
    SIGMOID = "sigmoid"
    RELU = "relu"
    ABS = "abs"


class BinaryOp(enum.Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    FLOORDIV = "//"
    MOD = "%"
    POW = "pow"
    MAX = "max"
    MIN = "min"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="
    AND = "and"
    OR = "or"


COMPARISONS = frozenset({BinaryOp.LT, BinaryOp.LE, BinaryOp.GT, BinaryOp.GE, BinaryOp.EQ, BinaryOp.NE})
LOGICAL = frozenset({BinaryOp.AND, BinaryOp.OR})
INFIX = frozenset(set(BinaryOp) - {BinaryOp.POW, BinaryOp.MAX, BinaryOp.MIN})
# Math functions that need floating-point operands.
FLOAT_FUNCTIONS = frozenset(
    {
        UnaryOp.EXP,
        UnaryOp.LOG,
        UnaryOp.LOG1P,
        UnaryOp.EXPM1,
        UnaryOp.SQRT,
        UnaryOp.RSQRT,
        UnaryOp.TANH,
        UnaryOp.ERF,
        UnaryOp.SIGMOID,
    }
)


@dataclass(frozen=True, slots=True)
class Const:
    value: float | int | bool
    dtype: DType


@dataclass(frozen=True, slots=True)
class Load:
    buffer: Buffer
    index: tuple[Expr, ...]
    pad: float | int | None = None

    @property
    def dtype(self) -> DType:
        return self.buffer.dtype


@dataclass(frozen=True, slots=True)
class Unary:
    op: UnaryOp
    x: Expr

    @property
    def dtype(self) -> DType:
        return DType.BOOL if self.op is UnaryOp.NOT else self.x.dtype


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOp
    lhs: Expr
    rhs: Expr

    @property
    def dtype(self) -> DType:
        if self.op in COMPARISONS or self.op in LOGICAL:
            return DType.BOOL
        return self.lhs.dtype


@dataclass(frozen=True, slots=True)
class Select:
    cond: Expr
    then: Expr
    other: Expr

    @property
    def dtype(self) -> DType:
        return self.then.dtype


@dataclass(frozen=True, slots=True)
class Cast:
    dtype: DType
    x: Expr


Expr = Const | Var | Param | Load | Unary | Binary | Select | Cast


def children(e: Expr) -> tuple[Expr, ...]:
    match e:
        case Load(index=idx):
            return idx
        case Unary(x=x) | Cast(x=x):
            return (x,)
        case Binary(lhs=a, rhs=b):
            return (a, b)
        case Select(cond=c, then=t, other=o):
            return (c, t, o)
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """Pre-order traversal of an expression tree."""
    yield e
    for c in children(e):
        yield from walk(c)


def rebuild(e: Expr, kids: tuple[Expr, ...]) -> Expr:
    """`e` with its children replaced by `kids` (same order as `children`)."""
    match e:
        case Load():
            return Load(e.buffer, kids, e.pad)
        case Unary():
            return Unary(e.op, kids[0])
        case Cast():
            return Cast(e.dtype, kids[0])
        case Binary():
            return Binary(e.op, kids[0], kids[1])
        case Select():
            return Select(kids[0], kids[1], kids[2])
    return e


def rewrite(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Bottom-up rewrite: `fn` returns a replacement, or None to keep the node (children rewritten)."""
    kids = children(e)
    if kids:
        new = tuple(rewrite(k, fn) for k in kids)
        if any(n is not k for n, k in zip(new, kids, strict=True)):
            e = rebuild(e, new)
    out = fn(e)
    return e if out is None else out


def substitute(e: Expr, mapping: dict[Var, Expr]) -> Expr:
    """Replace variables by expressions (identity-keyed)."""
    return rewrite(e, lambda n: mapping.get(n) if isinstance(n, Var) else None)


def free_vars(e: Expr) -> set[Var]:
    return {n for n in walk(e) if isinstance(n, Var)}


def loads(e: Expr) -> list[Load]:
    return [n for n in walk(e) if isinstance(n, Load)]


def conjuncts(e: Expr) -> list[Expr]:
    """The parts of a chain of `and`s (guards are built as conjunctions and split again by passes)."""
    if isinstance(e, Binary) and e.op is BinaryOp.AND:
        return conjuncts(e.lhs) + conjuncts(e.rhs)
    return [e]


def all_of(conds: list[Expr]) -> Expr:
    """`c0 and c1 and ...` (at least one condition)."""
    out = conds[0]
    for c in conds[1:]:
        out = Binary(BinaryOp.AND, out, c)
    return out
