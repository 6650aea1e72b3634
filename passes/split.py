"""split: one loop becomes two, `i -> i_o * factor + i_i`.

    for i in 0..10: S(i)          split i 4          for i_o in 0..3:
                                                       for i_i in 0..4:
                                                         if i_o * 4 + i_i < 10: S(i_o * 4 + i_i)

With `peel` the remainder gets its own loop instead of a guard, so the main loops carry no test:
`for i_o in 0..2: for i_i in 0..4: S(...)` then `for i_t in 0..2: S(8 + i_t)` (a clone of the body).
The new loops are named `NAME_o`, `NAME_i` (and `NAME_t`) after the printed name of the split loop.
The outer loop keeps a parallel kind; everything else starts serial.  A factor equal to the extent is
allowed (outer extent 1); a larger one is refused.
"""

from __future__ import annotations

from kcomp.affine import const, simplify_within
from kcomp.expr import Binary, BinaryOp, Var, substitute
from kcomp.loops import Guard, Loop, LoopKind, LoopNest
from kcomp.loops.common import Resolver, clone, map_exprs, replace_stmt, substitute_body
from kcomp.schedule import Split, format_step


def split(nest: LoopNest, step: Split) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    name, n, f = r.name(loop.var), loop.extent, step.factor
    if f > n:
        raise r.error(f"factor {f} is larger than the extent {n} of loop {name}")
    outer, inner = Var(f"{name}_o"), Var(f"{name}_i")
    index = Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, outer, const(f)), inner)
    # NOTE: the inner variable's range lets `(f*o + i) // f` fold to `o` (a grouped channel index)
    body = map_exprs(loop.body, lambda e: simplify_within(substitute(e, {loop.var: index}), {inner: f}))
    outer_kind = loop.kind if loop.kind is LoopKind.PARALLEL else LoopKind.SERIAL
    if n % f == 0:
        return replace_stmt(
            nest, loop, Loop(outer, n // f, outer_kind, (Loop(inner, f, LoopKind.SERIAL, body),))
        )
    if step.tail == "guard":
        guarded = (Guard(Binary(BinaryOp.LT, index, const(n)), body),)
        return replace_stmt(
            nest, loop, Loop(outer, -(-n // f), outer_kind, (Loop(inner, f, LoopKind.SERIAL, guarded),))
        )
    if n // f == 0:
        raise r.error(f"factor {f} leaves no full tile of loop {name} (extent {n}) to peel from")
    tail = Var(f"{name}_t")
    # NOTE: clone renames only the variables the body binds; the split variable is still loop.var
    tail_body = substitute_body(clone(loop.body), {loop.var: Binary(BinaryOp.ADD, const(n // f * f), tail)})
    main = Loop(outer, n // f, outer_kind, (Loop(inner, f, LoopKind.SERIAL, body),))
    return replace_stmt(nest, loop, (main, Loop(tail, n % f, LoopKind.SERIAL, tail_body)))
