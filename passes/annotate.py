"""parallel, vectorize, unroll: steps that change how a loop runs, not which iterations exist.

    parallel i        OpenMP threads share the iterations of i (they must be independent; no
                      parallel loop inside or around i, no vector loop around it)
    vectorize j       the emitter runs j in SIMD lanes (iterations independent, or `reduce`; no
                      parallel or vector loop inside j, no vector loop around it)
    unroll i_i        the emitter repeats the body `extent` times (no legality condition)

Each checks legality and sets the loop's kind.  `vectorize j reduce` is the reduction strategy for a
loop whose single statement accumulates into one place (`s[i] = s[i] + x[i, j]`): lanes keep partial
results that are combined after the loop, which reassociates the operation (allowed by the numeric
policy for + and *, exact for max and min).
"""

from __future__ import annotations

from kcomp.expr import Binary, BinaryOp, Load, free_vars, loads
from kcomp.loops import Loop, LoopKind, LoopNest, Store, walk_stmts
from kcomp.loops.common import Resolver, enclosing, set_kind
from kcomp.loops.dependence import carried, reduction_updates
from kcomp.schedule import Parallel, Unroll, Vectorize, format_step

UNROLL_LIMIT = 64
REDUCE_OPS = frozenset({BinaryOp.ADD, BinaryOp.MUL, BinaryOp.MAX, BinaryOp.MIN})


def parallel(nest: LoopNest, step: Parallel) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    if step.reduce:
        _check_parallel_reduction(r, loop)
    elif (why := carried(loop)) is not None:
        hint = " (or use `parallel LOOP reduce`)" if "reduction" in why else ""
        raise r.error(
            f"cannot run {step.loop} in parallel: {why}; parallelize a loop whose iterations are independent{hint}"
        )
    for s in walk_stmts(loop.body):
        if isinstance(s, Loop) and s.kind is LoopKind.PARALLEL:
            raise r.error(
                f"loop {r.name(s.var)} inside {step.loop} is parallel already; nested parallelism is not supported"
            )
    for s in enclosing(nest, loop):
        if isinstance(s, Loop) and s.kind is LoopKind.PARALLEL:
            raise r.error(
                f"loop {r.name(s.var)} around {step.loop} is parallel already; nested parallelism is not supported"
            )
        if isinstance(s, Loop) and s.kind is LoopKind.VECTOR:
            raise r.error(
                f"loop {r.name(s.var)} around {step.loop} is vector; threads cannot start inside SIMD lanes"
            )
    return set_kind(nest, loop, LoopKind.PARALLEL)


def unroll(nest: LoopNest, step: Unroll) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    if loop.extent > UNROLL_LIMIT:
        raise r.error(
            f"extent {loop.extent} is too large to unroll fully (limit {UNROLL_LIMIT}); split it first"
        )
    return set_kind(nest, loop, LoopKind.UNROLLED)


def vectorize(nest: LoopNest, step: Vectorize) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    for s in walk_stmts(loop.body):
        if isinstance(s, Loop) and s.kind in (LoopKind.PARALLEL, LoopKind.VECTOR):
            raise r.error(
                f"loop {r.name(s.var)} inside {step.loop} is {s.kind.value}; vectorize an innermost loop"
            )
    for s in enclosing(nest, loop):
        if isinstance(s, Loop) and s.kind is LoopKind.VECTOR:
            raise r.error(f"loop {r.name(s.var)} around {step.loop} is vector already; vectors do not nest")
    why = carried(loop)
    if step.reduce:
        _check_reduction(r, loop)
    elif why is not None:
        hint = " (use `vectorize LOOP reduce` for a reduction)" if "reduction" in why else ""
        raise r.error(f"cannot vectorize {step.loop}: {why}{hint}")
    return set_kind(nest, loop, LoopKind.VECTOR)


PRIVATE_COPY_LIMIT = 1 << 20  # elements of each thread's private copy of a reduced buffer


def _check_parallel_reduction(r: Resolver, loop: Loop) -> None:
    name = r.name(loop.var)
    ops = reduction_updates(loop)
    if ops is None:
        raise r.error(
            f"parallel {name} reduce needs a loop whose only dependence is updates `x = x + v` or"
            " `x = x * v` of places not indexed by it"
        )
    for buf in ops:
        if buf.size > PRIVATE_COPY_LIMIT:
            raise r.error(f"{buf.name} has {buf.size} elements: too large for a private copy per thread")


def _check_reduction(r: Resolver, loop: Loop) -> None:
    name = r.name(loop.var)
    body = loop.body
    if len(body) != 1 or not isinstance(body[0], Store):
        raise r.error(f"vectorize {name} reduce needs a loop whose body is one update statement")
    s = body[0]
    if any(loop.var in free_vars(i) for i in s.index):
        raise r.error(
            f"{s.buffer.name} is indexed by {name}: not a reduction over {name}; vectorize without `reduce`"
        )
    v = s.value
    if not (
        isinstance(v, Binary) and v.op in REDUCE_OPS and isinstance(v.lhs, Load) and v.lhs.buffer is s.buffer
    ):
        raise r.error(
            f"vectorize {name} reduce needs {s.buffer.name}[..] = {s.buffer.name}[..] op value with op + * max min"
        )
    same = v.lhs.index == s.index or [str(a) for a in v.lhs.index] == [str(a) for a in s.index]
    if not same or any(ld.buffer is s.buffer for ld in loads(v.rhs)):
        raise r.error(f"the value accumulated into {s.buffer.name} must not read {s.buffer.name} elsewhere")
