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

from kcomp.expr import Binary, BinaryOp, Load, Scope, free_vars, loads
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Store, walk_stmts
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
    if step.reduce:
        if step.binding != "threadIdx.x":
            raise r.error("only threadIdx.x combines partial results across threads (reduce)")
        found = thread_reduction(loop)
        if isinstance(found, str):
            raise r.error(f"cannot bind {step.loop} as a reduction: {found}")
    elif (why := carried(loop)) is not None:
        hint = " (or `bind LOOP threadIdx.x reduce`)" if "reduction" in why else ""
        raise r.error(
            f"cannot bind {step.loop} to {step.binding}: {why}; bind a loop whose iterations are independent{hint}"
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


REDUCE_OPS = frozenset({BinaryOp.ADD, BinaryOp.MUL, BinaryOp.MAX, BinaryOp.MIN})


def thread_reduction(loop: Loop) -> tuple[Store, BinaryOp] | str:
    """The update `x[..] = x[..] op v` at the bottom of `loop`'s chain of loops and guards, with its
    op, when the chain is a reduction into one place the threads of `loop` can share (op + * max
    min, reassociated as `vectorize ... reduce` does); else why not."""
    node, chain = loop, [loop.var]
    while True:
        if len(node.body) != 1:
            return "its body must be one statement, through loops and guards, down to one update"
        node = node.body[0]
        if isinstance(node, Store):
            break
        if isinstance(node, Loop):
            chain.append(node.var)
        elif not isinstance(node, Guard):
            return "an allocation inside it"
    v = node.value
    if not (
        isinstance(v, Binary)
        and v.op in REDUCE_OPS
        and isinstance(v.lhs, Load)
        and v.lhs.buffer is node.buffer
    ):
        return f"{node.buffer.name}[..] = {node.buffer.name}[..] op value with op + * max min is needed"
    same = [str(a) for a in v.lhs.index] == [str(a) for a in node.index]
    if not same or any(ld.buffer is node.buffer for ld in loads(v.rhs)):
        return f"the value accumulated into {node.buffer.name} must not read {node.buffer.name} elsewhere"
    if any(var in free_vars(e) for e in node.index for var in chain):
        return f"{node.buffer.name} is indexed by a loop of the reduction: not one place"
    return node, v.op
