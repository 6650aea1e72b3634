"""Which loops carry a dependence: the legality question behind parallel, vectorize and reorder.

A loop's iterations are independent when no iteration writes a place that another iteration reads
or writes.  The test is conservative (it may refuse a legal loop, never accept an illegal one):

- buffers allocated inside the loop are private to an iteration and ignored;
- for every other buffer written in the body, all accesses (stores and loads) must use the same
  index expressions, so an iteration only touches "its own" places, and
- that index must separate iterations: some dimension is affine, with coefficient `c` on the loop
  variable and a remainder spanning fewer than `|c|` values over the loops nested inside.

    for i: C[i, j] = C[i, j] + A[i, k] * B[k, j]     independent in i (dimension 0, c = 1)
    for k: C[i, j] = C[i, j] + ...                   carried: k appears in no index of C
    for i_o: for i_i: X[i_o * 6 + i_i] = ...         independent in i_o (c = 6, i_i spans 6)
"""

from __future__ import annotations

from kcomp.affine import affine, from_affine, interval
from kcomp.expr import Buffer, Expr, Load, Var, free_vars, walk
from kcomp.loops import Alloc, Guard, Loop, Stmt, Store, walk_stmts
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
            return f"{buf.name} is accessed at different indices ({'; '.join(sorted(keys))})"
        if not _separates(indices[0], loop.var, inner):
            if not any(loop.var in free_vars(e) for e in indices[0]):
                return f"every iteration updates the same {buf.name}[{_key(indices[0])}] (a reduction)"
            return f"iterations may write the same elements of {buf.name}"
    return None


def _separates(index: tuple[Expr, ...], var: Var, inner: dict[Var, int]) -> bool:
    for e in index:
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
    return False


def is_reduction_of(loop: Loop) -> list[Buffer]:
    """Buffers every iteration of `loop` updates in the same place (the loop is their reduction axis)."""
    written, _ = accesses(loop.body)
    return [b for b, idx in written.items() if not any(loop.var in free_vars(e) for i in idx for e in i)]
