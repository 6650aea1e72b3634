"""`bind k threadIdx.x reduce` on the CUDA target: a reduction's loop shared by a row of the block.

Each thread accumulates its iterations into a register (a one-element local array, the partial),
the row's threads (its threadIdx.x lanes) combine their partials (`kc_block_reduce`: shuffles within
a warp, then, for rows wider than a warp, shared memory), and one thread updates the reduced place,
which later statements of the block read after the barrier the emitter puts there.  Every thread of
the block must reach the combination's barriers, so no thread loop around the reduction may be
narrower than the block, and its width must be a power of two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcomp.dtypes import DType
from kcomp.errors import ScheduleError
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Scope, free_vars
from kcomp.loops import Guard, Loop, Stmt, Store, map_stmts
from kcomp.passes.bind import thread_reduction
from kcomp.targets.cfamily.cexpr import emit_const

if TYPE_CHECKING:
    from kcomp.targets.cuda.emit import CudaEmitter

# `bind k threadIdx.x reduce`: the partial results of a row of the block (its threadIdx.x lanes) are
# combined by shuffles within a warp, then, for rows wider than a warp, through shared memory.  The
# leading barrier keeps a previous reduction's readers ahead of this one's writers.
BLOCK_REDUCE = """\
template <class T, class F>
__device__ inline T kc_block_reduce(T v, F op) {
    const unsigned bx = blockDim.x, n = blockDim.x * blockDim.y * blockDim.z;
    const unsigned tid = threadIdx.x + bx * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned lanes = n - (tid & ~31u) < 32u ? n - (tid & ~31u) : 32u;
    const unsigned mask = lanes == 32u ? 0xffffffffu : ((1u << lanes) - 1u);
    const int width = bx < 32u ? (int)bx : 32;
    for (int off = width / 2; off > 0; off /= 2) v = op(v, __shfl_xor_sync(mask, v, off, width));
    if (bx <= 32u) return v;
    __shared__ T kc_red[32];
    __syncthreads();
    if ((tid & 31u) == 0) KC_STS(kc_red, tid / 32u, 32, v);
    __syncthreads();
    const unsigned first = (tid / bx) * (bx / 32u);
    T r = KC_LDS(kc_red, first, 32);
    for (unsigned w = 1; w < bx / 32u; ++w) r = op(r, KC_LDS(kc_red, first + w, 32));
    return r;
}
"""

IDENTITY = {  # the value a thread's partial result starts from, per reduction op
    BinaryOp.ADD: lambda d: 0,
    BinaryOp.MUL: lambda d: 1,
    BinaryOp.MAX: lambda d: float("-inf") if d.is_float else d.bounds[0],
    BinaryOp.MIN: lambda d: float("inf") if d.is_float else d.bounds[1],
}


def reduce_loop(emitter: CudaEmitter, s: Loop, depth: int) -> list[str]:
    """`bind k threadIdx.x reduce`: each thread accumulates its iterations into a register, the
    block's row of threads combines them (`kc_block_reduce`: every thread of the block must get
    there, so no thread loop around it may be narrower than the block), and lane 0 updates the
    reduced place."""
    k = emitter.kernel
    assert k is not None
    found = thread_reduction(s)
    if isinstance(found, str):
        raise ScheduleError(f"kernel {k.name}: a reduction across threads: {found}")
    store, op = found
    bx = k.block["x"]
    if bx & (bx - 1):
        raise ScheduleError(
            f"kernel {k.name}: a reduction across threads needs a power-of-two blockDim.x, not {bx}"
        )
    if any(lp.extent < k.block[lp.kind.axis] for lp in emitter.chain):
        raise ScheduleError(
            f"kernel {k.name}: a reduction across threads inside a thread loop narrower than the block:"
            " every thread must reach its barriers"
        )
    emitter.reduces = True
    assert isinstance(store.value, Binary)
    dtype = store.value.dtype.compute
    part = Buffer(emitter.names.fresh("kc_part"), dtype, (1,), Scope.LOCAL)
    zero = (Const(0, DType.I32),)
    partial = Store(part, zero, Binary(op, Load(part, zero), store.value.rhs))
    chain = map_stmts(s.body, lambda x: partial if x is store else None)
    emitter.space[part] = "local"
    pad, ind, name, var = emitter.INDENT * depth, emitter.INDENT, emitter.names(part), emitter.names(s.var)
    guarded = s.extent < bx
    emitter.chain.append(s)
    emitter.in_leaf = True  # the partial is the thread's own: no index-0 guard inside
    try:
        with emitter.repeated(s.extent, s.var):
            body = emitter.block(chain, depth + 2 + guarded, True)
    finally:
        emitter.chain.pop()
        emitter.in_leaf = False
    if guarded:
        body = [f"{pad}{ind * 2}if ({var} < {s.extent}) {{", *body, f"{pad}{ind * 2}}}"]
    combine = emitter.expr.binary(op, dtype, "a", "b")
    final: Stmt = Store(
        store.buffer, store.index, Binary(op, Load(store.buffer, store.index), Load(part, zero))
    )
    for cond in reversed(_outer_guards(s)):  # NOTE: a tail guard of an outer loop bounds the write too
        final = Guard(cond, (final,))
    # one thread writes: lane 0 of the row, and of the block's axes no loop around binds (every
    # row there reduced the same values)
    bound = {lp.kind.axis for lp in emitter.chain}
    lead = " && ".join(
        f"threadIdx.{a} == 0" for a in "xyz" if a == "x" or (k.block[a] > 1 and a not in bound)
    )
    emitter.in_leaf = True
    try:
        with emitter.repeated(1, None):
            write = emitter.block((final,), depth + 2, True)
    finally:
        emitter.in_leaf = False
    return [
        f"{pad}{{",
        f"{pad}{ind}{dtype.c_type} {name}[1];",
        f"{pad}{ind}{name}[0] = {emit_const(IDENTITY[op](dtype), dtype)};",
        f"{pad}{ind}{{",
        f"{pad}{ind * 2}const int64_t {var} = threadIdx.x;",
        *body,
        f"{pad}{ind}}}",
        f"{pad}{ind}{name}[0] = kc_block_reduce({name}[0], []({dtype.c_type} a, {dtype.c_type} b)"
        f" {{ return {combine}; }});",
        f"{pad}{ind}if ({lead}) {{",
        *write,
        f"{pad}{ind}}}",
        f"{pad}}}",
    ]


def _outer_guards(loop: Loop) -> list[Expr]:
    """The conditions of the guards in `loop`'s chain (down to its update) that no loop of the chain
    changes: they hold for the update's place, so the combined value's write obeys them as well."""
    chain, conds, node = {loop.var}, [], loop
    while not isinstance(node, Store):
        node = node.body[0]
        if isinstance(node, Loop):
            chain.add(node.var)
        elif isinstance(node, Guard):
            conds.append(node.cond)
    return [c for c in conds if not free_vars(c) & chain]
