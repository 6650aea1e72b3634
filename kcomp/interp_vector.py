"""When the interpreter may run an innermost loop's iterations as numpy array operations at once.

Running statement by statement over all iterations ("lanes") gives the loop's results exactly when
no iteration sees another one's writes.  That holds when every buffer written in the loop is either

- *own-element*: every access to it (loads and stores) uses one identical index that contains the
  loop variable itself, so iteration t touches only its own elements; or
- *a reduction*: a single `X[idx] = X[idx] op rest` with op in +, *, max, min, `idx` free of the loop
  variable, no other access to X in the loop, and X stored in its compute type (no rounding between
  steps) -- evaluated as `ufunc.accumulate`, which folds left to right like the loop.

Anything else (nested loops or allocs, other write patterns) runs element by element.
"""

from __future__ import annotations

import numpy as np

from kcomp import semantics
from kcomp.expr import Binary, BinaryOp, Buffer, Expr, Load, free_vars, walk
from kcomp.loops import Guard, Loop, Stmt, Store

REDUCE_UFUNC: dict[BinaryOp, np.ufunc] = {
    op: semantics.BINARY[op] for op in (BinaryOp.ADD, BinaryOp.MUL, BinaryOp.MAX, BinaryOp.MIN)
}


def vector_plan(loop: Loop) -> set[Store] | None:
    """The reduction stores of `loop` if its iterations can run as lanes, else None."""
    stores: list[Store] = []
    exprs: list[Expr] = []
    if not _collect(loop.body, stores, exprs):
        return None
    accesses: dict[Buffer, list[tuple[Expr, ...]]] = {}
    for s in stores:
        accesses.setdefault(s.buffer, []).append(s.index)
    for e in exprs:
        for n in walk(e):
            if isinstance(n, Load) and n.buffer in accesses:
                accesses[n.buffer].append(n.index)
    reductions: set[Store] = set()
    for buf, indices in accesses.items():
        writes = [s for s in stores if s.buffer is buf]
        first = indices[0]
        if all(ix == first for ix in indices) and any(i is loop.var for i in first):
            continue  # own-element
        if len(writes) == 1 and len(indices) == 2 and _is_reduction(writes[0], loop):
            reductions.add(writes[0])
            continue
        return None
    return reductions


def _collect(body: tuple[Stmt, ...], stores: list[Store], exprs: list[Expr]) -> bool:
    """Stores and every expression under `body`; False when a Loop or Alloc sits inside."""
    for s in body:
        if isinstance(s, Store):
            stores.append(s)
            exprs.extend((*s.index, s.value))
        elif isinstance(s, Guard):
            exprs.append(s.cond)
            if not _collect(s.body, stores, exprs):
                return False
        else:
            return False
    return True


def _is_reduction(s: Store, loop: Loop) -> bool:
    v = s.value
    return (
        isinstance(v, Binary)
        and v.op in REDUCE_UFUNC
        and isinstance(v.lhs, Load)
        and v.lhs.buffer is s.buffer
        and v.lhs.index == s.index
        and v.lhs.pad is None
        and s.buffer.dtype is s.buffer.dtype.compute
        and v.rhs.dtype.compute is s.buffer.dtype
        and not any(loop.var in free_vars(i) for i in s.index)
        and not any(isinstance(n, Load) and n.buffer is s.buffer for n in walk(v.rhs))
    )
