"""fuse: two directly nested loops become one (the Halide/TVM meaning, not producer fusion).

    for i in 0..4: for j in 0..6: S(i, j)      fuse i j      for i_j in 0..24: S(i_j // 6, i_j % 6)

The inner loop must be the outer loop's whole body.  The fused loop, named `OUTER_INNER`, keeps the
outer loop's kind (fuse, then `parallel`, gives threads a longer loop to share), so a parallel or
vector outer loop (or one bound to CUDA's blocks or threads) needs an inner loop with independent
iterations (and a parallel one must not be a reduction axis, `parallel LOOP reduce`), and an unrolled
one a fused extent within the unroll limit.
"""

from __future__ import annotations

from kcomp.affine import const
from kcomp.expr import Binary, BinaryOp, Var
from kcomp.loops import Loop, LoopKind, LoopNest
from kcomp.loops.common import Resolver, replace_stmt, substitute_body
from kcomp.loops.dependence import carried, is_reduction_of
from kcomp.passes.annotate import UNROLL_LIMIT
from kcomp.schedule import Fuse, format_step

_HOW = {LoopKind.PARALLEL: "in parallel", LoopKind.VECTOR: "in SIMD lanes"}


def fuse(nest: LoopNest, step: Fuse) -> LoopNest:
    r = Resolver(nest, format_step(step))
    outer, inner = r.loop(step.outer), r.loop(step.inner)
    if len(outer.body) != 1 or outer.body[0] is not inner:
        raise r.error(
            f"loop {step.inner} is not the whole body of loop {step.outer}; only directly nested loops fuse"
        )
    if outer.kind in _HOW and (why := carried(inner)) is not None:
        raise r.error(
            f"{step.outer} is {outer.kind.value} and the fused loop would run {step.inner}"
            f" {_HOW[outer.kind]} too, but {why}"
        )
    if (outer.kind.is_block or outer.kind.is_thread) and (why := carried(inner)) is not None:
        raise r.error(
            f"{step.outer} is bound to {outer.kind.value} and the fused loop would run {step.inner}"
            f" on CUDA's {'blocks' if outer.kind.is_block else 'threads'} too, but {why}"
        )
    if outer.kind is LoopKind.PARALLEL and (sums := is_reduction_of(outer)):
        raise r.error(
            f"{step.outer} is a parallel reduction into {', '.join(r.name(b) for b in sums)}; fused with"
            f" {step.inner} its threads would no longer own private partial results"
        )
    n = inner.extent
    if outer.kind is LoopKind.UNROLLED and outer.extent * n > UNROLL_LIMIT:
        raise r.error(
            f"{step.outer} is unrolled and the fused loop would have {outer.extent * n} iterations"
            f" (unroll limit {UNROLL_LIMIT})"
        )
    fused = Var(f"{step.outer}_{step.inner}")
    body = substitute_body(
        inner.body,
        {
            outer.var: Binary(BinaryOp.FLOORDIV, fused, const(n)),
            inner.var: Binary(BinaryOp.MOD, fused, const(n)),
        },
    )
    return replace_stmt(nest, outer, Loop(fused, outer.extent * n, outer.kind, body))
