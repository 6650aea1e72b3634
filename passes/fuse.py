"""fuse: two directly nested loops become one (the Halide/TVM meaning, not producer fusion).

    for i in 0..4: for j in 0..6: S(i, j)      fuse i j      for i_j in 0..24: S(i_j // 6, i_j % 6)

The inner loop must be the outer loop's whole body.  The fused loop, named `OUTER_INNER`, keeps the
outer loop's kind (fuse, then `parallel`, gives threads a longer loop to share).
"""

from __future__ import annotations

from kcomp.affine import const
from kcomp.expr import Binary, BinaryOp, Var
from kcomp.loops import Loop, LoopKind, LoopNest
from kcomp.passes.common import Resolver, replace_stmt, substitute_body
from kcomp.passes.dependence import carried
from kcomp.schedule import Fuse, format_step


def fuse(nest: LoopNest, step: Fuse) -> LoopNest:
    r = Resolver(nest, format_step(step))
    outer, inner = r.loop(step.outer), r.loop(step.inner)
    if len(outer.body) != 1 or outer.body[0] is not inner:
        raise r.error(
            f"loop {step.inner} is not the whole body of loop {step.outer}; only directly nested loops fuse"
        )
    if outer.kind is LoopKind.PARALLEL and (why := carried(inner)) is not None:
        raise r.error(
            f"{step.outer} is parallel and the fused loop would run {step.inner} in parallel too, but {why}"
        )
    fused = Var(f"{step.outer}_{step.inner}")
    n = inner.extent
    body = substitute_body(
        inner.body,
        {
            outer.var: Binary(BinaryOp.FLOORDIV, fused, const(n)),
            inner.var: Binary(BinaryOp.MOD, fused, const(n)),
        },
    )
    return replace_stmt(nest, outer, Loop(fused, outer.extent * n, outer.kind, body))
