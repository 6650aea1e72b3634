"""Index algebra shared by the checker, the passes and the emitters.

Indices in kcomp are quasi-affine integer expressions of loop variables.  Three questions come up
everywhere, answered here once:

- `interval(e, extents)`: the range of `e` when each variable runs over `0 .. extent-1`;
- `affine(e)`: `e` as `{var: coefficient, None: constant}` when it is affine, else None;
- `simplify(e)`: constant folding and the identities below, applied bottom-up, so that an
  unrolled index such as `(0 * 6 + 2) * 16 + c` prints (and vectorizes) as `32 + c`.

Rules of `simplify` (integers only; floats are never reassociated):
    c1 op c2 -> c          x + 0 -> x      x * 1 -> x      x * 0 -> 0      x // 1 -> x
    x % 1 -> 0             affine sums are collected: (x + 2) + 3 -> x + 5
"""

from __future__ import annotations

from kcomp.dtypes import DType
from kcomp.expr import COMPARISONS, Binary, BinaryOp, Const, Expr, Unary, UnaryOp, Var, free_vars, rewrite

Affine = dict[Var | None, int]


def interval(e: Expr, ranges: dict[Var, int]) -> tuple[int, int] | None:
    """Bounds of an index expression over the variables' ranges; None when data-dependent."""
    match e:
        case Const(value=v):
            return (int(v), int(v))
        case Var():
            return (0, ranges[e] - 1) if e in ranges else None
        case Unary(op=UnaryOp.NEG, x=x):
            iv = interval(x, ranges)
            return None if iv is None else (-iv[1], -iv[0])
        case Binary(op=op, lhs=a, rhs=b):
            ia, ib = interval(a, ranges), interval(b, ranges)
            if ia is None or ib is None:
                return None
            if op is BinaryOp.ADD:
                return (ia[0] + ib[0], ia[1] + ib[1])
            if op is BinaryOp.SUB:
                return (ia[0] - ib[1], ia[1] - ib[0])
            if op is BinaryOp.MUL:
                c = [x * y for x in ia for y in ib]
                return (min(c), max(c))
            if op is BinaryOp.FLOORDIV and ib[0] == ib[1] > 0:
                return (ia[0] // ib[0], ia[1] // ib[0])
            if op is BinaryOp.MOD and ib[0] == ib[1] > 0:
                if ia[0] >= 0 and ia[1] < ib[0]:
                    return ia
                return (0, ib[0] - 1)
            if op is BinaryOp.MIN:
                return (min(ia[0], ib[0]), min(ia[1], ib[1]))
            if op is BinaryOp.MAX:
                return (max(ia[0], ib[0]), max(ia[1], ib[1]))
    return None


def affine(e: Expr) -> Affine | None:
    """`e` as coefficients per variable (key None: the constant term), or None if not affine."""
    match e:
        case Const(value=v) if isinstance(v, int) and not isinstance(v, bool):
            return {None: v}
        case Var():
            return {e: 1}
        case Unary(op=UnaryOp.NEG, x=x):
            a = affine(x)
            return None if a is None else {k: -c for k, c in a.items()}
        case Binary(op=BinaryOp.ADD | BinaryOp.SUB, lhs=l, rhs=r):
            a, b = affine(l), affine(r)
            if a is None or b is None:
                return None
            sign = 1 if e.op is BinaryOp.ADD else -1
            out = dict(a)
            for k, c in b.items():
                out[k] = out.get(k, 0) + sign * c
            return {k: c for k, c in out.items() if c != 0 or k is None}
        case Binary(op=BinaryOp.MUL, lhs=l, rhs=r):
            a, b = affine(l), affine(r)
            if a is None or b is None:
                return None
            if set(a) <= {None}:
                a, b = b, a
            if not set(b) <= {None}:
                return None
            k = b.get(None, 0)
            return {v: c * k for v, c in a.items() if c * k != 0 or v is None}
    return None


def coefficient(e: Expr, var: Var) -> int | None:
    """How `e` changes when `var` grows by one, if `e` is affine in `var` (other parts may be anything)."""
    a = affine(e)
    if a is not None:
        return a.get(var, 0)
    if var not in free_vars(e):
        return 0
    return None


def const(value: int) -> Const:
    return Const(value, DType.I32)


def from_affine(a: Affine) -> Expr:
    """An expression for `a`, variables in insertion order, the constant last."""
    terms: list[Expr] = []
    for v, c in a.items():
        if v is None or c == 0:
            continue
        terms.append(v if c == 1 else Binary(BinaryOp.MUL, v, const(c)))
    k = a.get(None, 0)
    if not terms:
        return const(k)
    out = terms[0]
    for t in terms[1:]:
        out = Binary(BinaryOp.ADD, out, t)
    if k > 0:
        out = Binary(BinaryOp.ADD, out, const(k))
    elif k < 0:
        out = Binary(BinaryOp.SUB, out, const(-k))
    return out


def _fold(op: BinaryOp, a: int, b: int) -> int | bool | None:
    match op:
        case BinaryOp.ADD:
            return a + b
        case BinaryOp.SUB:
            return a - b
        case BinaryOp.MUL:
            return a * b
        case BinaryOp.FLOORDIV if b != 0:
            return a // b
        case BinaryOp.MOD if b != 0:
            return a % b
        case BinaryOp.MAX:
            return max(a, b)
        case BinaryOp.MIN:
            return min(a, b)
        case BinaryOp.LT:
            return a < b
        case BinaryOp.LE:
            return a <= b
        case BinaryOp.GT:
            return a > b
        case BinaryOp.GE:
            return a >= b
        case BinaryOp.EQ:
            return a == b
        case BinaryOp.NE:
            return a != b
    return None


def _is_int(e: Expr) -> bool:
    return e.dtype is DType.I32


def _rule(e: Expr) -> Expr | None:
    if not isinstance(e, Binary) or not (_is_int(e.lhs) and _is_int(e.rhs)):
        return None
    a, b = e.lhs, e.rhs
    if isinstance(a, Const) and isinstance(b, Const):
        v = _fold(e.op, int(a.value), int(b.value))
        if v is None or (not isinstance(v, bool) and not -(2**31) <= v < 2**31):
            return None
        return Const(v, DType.BOOL) if e.op in COMPARISONS else const(v)
    match e.op:
        case BinaryOp.FLOORDIV if isinstance(b, Const) and b.value == 1:
            return a  # x // 1 -> x
        case BinaryOp.MOD if isinstance(b, Const) and b.value == 1:
            return const(0)  # x % 1 -> 0
        case BinaryOp.ADD | BinaryOp.SUB | BinaryOp.MUL:
            lin = affine(e)
            if lin is not None:
                return from_affine(lin)  # collects terms, drops +0, *1, *0
    return None


def simplify(e: Expr) -> Expr:
    """`e` with integer constants folded and affine index arithmetic collected (see the module rules)."""
    return rewrite(e, _rule)


def simplify_within(e: Expr, ranges: dict[Var, int]) -> Expr:
    """`simplify`, plus floor division and modulo by a constant d of an affine value whose part not
    divisible by d stays in [0, d) over `ranges`: `(4*k_o + k_i) // 4 -> k_o` and `% 4 -> k_i` for
    k_i < 4 (what a split leaves behind in a grouped convolution's `k // 4`), and
    `(2*h - 2*r + 2) // 2 -> h - r + 1` (a transposed convolution's phase, passes/phases.py)."""

    def rule(x: Expr) -> Expr | None:
        if not (
            isinstance(x, Binary)
            and x.op in (BinaryOp.FLOORDIV, BinaryOp.MOD)
            and isinstance(x.rhs, Const)
            and _is_int(x.lhs)
            and int(x.rhs.value) > 0
        ):
            return None
        d, a = int(x.rhs.value), affine(x.lhs)
        if a is None:
            return None
        whole = {v: c // d for v, c in a.items() if v is not None and c % d == 0}
        rest: Affine = {v: c for v, c in a.items() if v is not None and c % d != 0}
        # NOTE: the constant's multiple of d moves to the quotient: (2*x - 2) // 2 -> x - 1
        k = a.get(None, 0)
        for q in dict.fromkeys((0, k // d)):
            rest[None] = k - q * d
            span = interval(from_affine(rest), ranges)
            if span is not None and span[0] >= 0 and span[1] < d:
                return from_affine({**whole, None: q}) if x.op is BinaryOp.FLOORDIV else from_affine(rest)
        return None

    return simplify(rewrite(simplify(e), rule))
