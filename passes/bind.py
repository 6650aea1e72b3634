"""bind LOOP blockIdx.x|y|z / threadIdx.x|y|z: a loop's iterations become CUDA's blocks or threads.

The loop IR keeps its sequential meaning (the interpreter and the other targets run a bound loop
as a serial loop); binding promises the iterations are independent, which is what lets the CUDA
emitter hand them to blocks or threads that run in any order and at once.  So the legality check is
the parallel step's (no dependence carried by the loop) plus the shape of a launch:

  - a block loop sits in the kernel's prefix: only global allocations and other block loops around
    it (the grid is fixed before any statement of the kernel runs);
  - a thread loop may sit anywhere inside its kernel, but not inside another loop bound to the same
    thread axis and not around a block loop;
  - an axis is bound once per chain of enclosing loops, within CUDA's extent limits.
"""

from __future__ import annotations

from kcomp.expr import Scope
from kcomp.loops import Alloc, Loop, LoopKind, LoopNest, walk_stmts
from kcomp.loops.common import Resolver, enclosing, set_kind
from kcomp.loops.dependence import carried
from kcomp.schedule import Bind, format_step

# CUDA's limits on a launch: grid y and z, block x/y and z (the block's total is checked by the emitter)
LIMITS = {
    "blockIdx.x": 2**31 - 1,
    "blockIdx.y": 65535,
    "blockIdx.z": 65535,
    "threadIdx.x": 1024,
    "threadIdx.y": 1024,
    "threadIdx.z": 64,
}


def bind(nest: LoopNest, step: Bind) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    kind = LoopKind(step.binding)
    if loop.extent > LIMITS[step.binding]:
        raise r.error(
            f"extent {loop.extent} exceeds CUDA's limit of {LIMITS[step.binding]} for {step.binding}"
        )
    if (why := carried(loop)) is not None:
        raise r.error(
            f"cannot bind {step.loop} to {step.binding}: {why}; bind a loop whose iterations are independent"
        )
    around = enclosing(nest, loop)
    for s in [*around, *walk_stmts(loop.body)]:
        if isinstance(s, Loop) and s.kind is kind:
            raise r.error(f"loop {r.name(s.var)} is bound to {step.binding} already; an axis is bound once")
    if kind.is_block:
        for s in around:
            global_alloc = isinstance(s, Alloc) and s.buffer.scope is Scope.GLOBAL
            if not (global_alloc or (isinstance(s, Loop) and s.kind.is_block)):
                what = f"loop {r.name(s.var)}" if isinstance(s, Loop) else "a statement"
                raise r.error(
                    f"{what} encloses {step.loop}: a block loop must be outermost in its kernel"
                    " (only other block loops around it)"
                )
    else:
        for s in walk_stmts(loop.body):
            if isinstance(s, Loop) and s.kind.is_block:
                raise r.error(f"block loop {r.name(s.var)} is inside {step.loop}: blocks enclose threads")
    return set_kind(nest, loop, kind)
