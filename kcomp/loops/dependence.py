"""Which loops carry a dependence: the legality question behind parallel, vectorize and reorder.

A loop's iterations are independent when no iteration writes a place that another iteration reads
or writes.  The test is conservative (it may refuse a legal loop, never accept an illegal one):

- buffers allocated inside the loop are private to an iteration and ignored;
- for every other buffer written in the body, all accesses (stores and loads) must use the same
  index expressions, so an iteration only touches "its own" places, or at least agree on the
  dimensions that separate iterations (a scan's `Y[b, i]` and `Y[b, i - 1]` over b), and
- that index must separate iterations: some dimension is affine, with coefficient `c` on the loop
  variable and a remainder spanning fewer than `|c|` values over the loops nested inside (a pair
  of dimensions `e // c, e % c`, the index of a fused loop, counts as the dimension `e`).

    for i: C[i, j] = C[i, j] + A[i, k] * B[k, j]     independent in i (dimension 0, c = 1)
    for k: C[i, j] = C[i, j] + ...                   carried: k appears in no index of C
    for i_o: for i_i: X[i_o * 6 + i_i] = ...         independent in i_o (c = 6, i_i spans 6)
    for i_j: Y[i_j // 6, i_j % 6] = ...              independent in i_j (together they give i_j)
"""

from __future__ import annotations

import math

from kcomp.affine import affine, from_affine, interval
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Var, free_vars, loads, rewrite, walk
from kcomp.loops import Alloc, Guard, Loop, Stmt, Store, walk_stmts
from kcomp.loops.common import body_exprs
from kcomp.printer import format_expr


def accesses(
    body: tuple[Stmt, ...],
) -> tuple[dict[Buffer, list[tuple[Expr, ...]]], dict[Buffer, list[tuple[Expr, ...]]]]:
    """Stores and loads of `body` per buffer (indices), allocations inside excluded."""
    private = {s.buffer for s in walk_stmts(body) if isinstance(s, Alloc)}
    written: dict[Buffer, list[tuple[Expr, ...]]] = {}
    read: dict[Buffer, list[tuple[Expr, ...]]] = {}

    def note_loads(e: Expr) -> None:
        for n in walk(e):
            if isinstance(n, Load) and n.buffer not in private:
                read.setdefault(n.buffer, []).append(n.index)

    for s in walk_stmts(body):
        if isinstance(s, Store):
            if s.buffer not in private:
                written.setdefault(s.buffer, []).append(s.index)
            for e in (*s.index, s.value):
                note_loads(e)
        elif isinstance(s, Guard):
            note_loads(s.cond)
    return written, read


def _key(index: tuple[Expr, ...]) -> str:
    return ", ".join(format_expr(e, typed=True) for e in index)


def carried(loop: Loop) -> str | None:
    """Why iterations of `loop` depend on each other (a phrase for messages), or None if independent."""
    written, read = accesses(loop.body)
    inner = {s.var: s.extent for s in walk_stmts(loop.body) if isinstance(s, Loop)}
    for buf, indices in written.items():
        keys = {_key(i) for i in indices} | {_key(i) for i in read.get(buf, [])}
        if len(keys) > 1:
            # NOTE: a dimension every access indexes alike that separates iterations keeps them
            # apart whatever the other dimensions do (a scan `Y[b, i] = Y[b, i - 1] + ..` over b)
            common = _common_dims([*indices, *read.get(buf, [])])
            if not common or not _separates(common, loop.var, inner, loop.extent):
                return f"{buf.name} is accessed at different indices ({'; '.join(sorted(keys))})"
            continue
        separated = _separates(indices[0], loop.var, inner, loop.extent)
        if not separated and not _separates_fused(indices[0], loop.var, inner):
            if not any(loop.var in free_vars(e) for e in indices[0]):
                return f"every iteration updates the same {buf.name}[{_key(indices[0])}] (a reduction)"
            return f"iterations may write the same elements of {buf.name}"
    return None


def _common_dims(indices: list[tuple[Expr, ...]]) -> tuple[Expr, ...]:
    """The dimensions every index of `indices` writes the same expression in."""
    first = indices[0]
    return tuple(
        e
        for k, e in enumerate(first)
        if all(
            len(i) == len(first) and format_expr(i[k], typed=True) == format_expr(e, typed=True)
            for i in indices
        )
    )


def _separates(index: tuple[Expr, ...], var: Var, inner: dict[Var, int], extent: int = 0) -> bool:
    """Some dimension gives different iterations of `var` different places: `c * var + rest` with
    `rest` spanning fewer than |c| values, or (`extent`: var's) every term of `rest` a multiple of some
    g > |c| * (extent - 1), so c * (v1 - v2) can never equal rest2 - rest1 (a loop split and
    reordered with its outer part inside: `X[256 * o + i]` over i, for threads)."""
    for e in (*index, *_recombined(index)):
        a = affine(e)
        if a is None or a.get(var, 0) == 0:
            continue
        c = abs(a[var])
        rest = {v: k for v, k in a.items() if v is not None and v is not var}
        if any(v not in inner for v in rest):
            # outer variables are the same in every iteration of `loop`: drop them
            rest = {v: k for v, k in rest.items() if v in inner}
        span = interval(from_affine(dict(rest)), inner) if rest else (0, 0)
        if span is not None and span[1] - span[0] < c:
            return True
        if rest and extent and c * (extent - 1) < math.gcd(*(abs(k) for k in rest.values())):
            return True
    return False


def _recombined(index: tuple[Expr, ...]) -> list[Expr]:
    """`e` for each pair of dimensions `e // c` and `e % c` (the index of a fused loop): together they
    determine `e`, so they separate iterations whenever `e` alone would."""
    divs = [d for d in index if isinstance(d, Binary) and d.op is BinaryOp.FLOORDIV]
    mods = [m for m in index if isinstance(m, Binary) and m.op is BinaryOp.MOD]
    return [
        d.lhs
        for d in divs
        if isinstance(d.rhs, Const) and any(m.lhs == d.lhs and m.rhs == d.rhs for m in mods)
    ]


def _separates_fused(index: tuple[Expr, ...], var: Var, inner: dict[Var, int]) -> bool:
    """A fused loop's variable appears as `var // c` and `var % c`: iterations are separated when the
    quotient and the remainder each are (the quotient with the remainder free, the remainder with the
    quotient fixed)."""
    divisors = {
        int(n.rhs.value)
        for e in index
        for n in walk(e)
        if isinstance(n, Binary)
        and n.op in (BinaryOp.FLOORDIV, BinaryOp.MOD)
        and n.lhs is var
        and isinstance(n.rhs, Const)
    }
    if len(divisors) != 1:
        return False
    c = divisors.pop()
    q, r = Var("q"), Var("r")

    def split(e: Expr) -> Expr | None:
        if isinstance(e, Binary) and e.lhs is var and isinstance(e.rhs, Const) and int(e.rhs.value) == c:
            return q if e.op is BinaryOp.FLOORDIV else r if e.op is BinaryOp.MOD else None
        return None

    new = tuple(rewrite(e, split) for e in index)
    if any(var in free_vars(e) for e in new):
        return False
    return _separates(new, q, {**inner, r: c}) and _separates(new, r, inner)


def is_reduction_of(loop: Loop) -> list[Buffer]:
    """Buffers every iteration of `loop` updates in the same place (the loop is their reduction axis)."""
    written, _ = accesses(loop.body)
    return [b for b, idx in written.items() if not any(loop.var in free_vars(e) for i in idx for e in i)]


PARALLEL_REDUCE_OPS = frozenset({BinaryOp.ADD, BinaryOp.MUL})


def reduction_updates(loop: Loop) -> dict[Buffer, BinaryOp] | None:
    """The buffers every iteration of `loop` updates in one place with `x = x + v` (or `*`), when
    those updates are the loop's only dependence; else None."""
    ops: dict[Buffer, BinaryOp] = {}
    private = {s.buffer for s in walk_stmts(loop.body) if isinstance(s, Alloc)}
    for s in walk_stmts(loop.body):
        if not isinstance(s, Store) or s.buffer in private:
            continue
        if any(loop.var in free_vars(i) for i in s.index):
            return None
        v = s.value
        if not (isinstance(v, Binary) and v.op in PARALLEL_REDUCE_OPS and isinstance(v.lhs, Load)):
            return None
        if v.lhs.buffer is not s.buffer or ops.get(s.buffer, v.op) is not v.op:
            return None
        ops[s.buffer] = v.op
    for e in body_exprs(loop.body):
        for ld in loads(e):
            if ld.buffer in ops and not any(
                ld is st.value.lhs
                for st in walk_stmts(loop.body)
                if isinstance(st, Store) and st.buffer in ops
            ):
                return None
    return ops or None
