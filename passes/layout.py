"""layout: store an intermediate tensor with its dimensions permuted.

    alloc T: f32[64, 32]   T[i, j] = ...; ... T[i, j]      layout T 1 0      alloc T: f32[32, 64]  T[j, i] = ...

Only tensors the kernel allocates (temporaries, staged buffers) can change layout: inputs and
outputs have the layout of the caller's arrays (docs/abi.md).
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.loops import Alloc, LoopNest, map_stmts, walk_stmts
from kcomp.loops.common import Resolver, rename_buffer
from kcomp.schedule import Layout, format_step


def layout(nest: LoopNest, step: Layout) -> LoopNest:
    r = Resolver(nest, format_step(step))
    buf = r.buffer(step.tensor)
    alloc = next((s for s in walk_stmts(nest.body) if isinstance(s, Alloc) and s.buffer is buf), None)
    if alloc is None:
        raise r.error(f"{step.tensor} is an argument of the kernel; only intermediate tensors change layout")
    if not buf.shape:  # NOTE: and `layout T` with no dimensions has no text form to replay
        raise r.error(f"{step.tensor} has no dimensions to reorder")
    if len(step.order) != len(buf.shape):
        raise r.error(f"{step.tensor} has {len(buf.shape)} dimensions, the order names {len(step.order)}")
    new = replace(buf, shape=tuple(buf.shape[d] for d in step.order))
    body = rename_buffer(alloc.body, buf, new, lambda idx: tuple(idx[d] for d in step.order))
    return replace(nest, body=map_stmts(nest.body, lambda s: Alloc(new, body) if s is alloc else None))
