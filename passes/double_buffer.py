"""double_buffer: an accelerator mapping hint, checked here and read by the backend from the schedule.

    tile i j k 128 64 128          double_buffer         the accelerator backend (targets/accel) keeps
    double_buffer                  double_buffer A B     two on-chip buffers per tile of each operand
                                                         (or of the named ones), so the DMA of tile t+1
                                                         overlaps the matrix unit's work on tile t

The loop nest is returned unchanged (before == after): buffering is a property of the generated
program, not of the loops, and `kcomp.targets.accel` reads the step from the schedule.  Legal when
the nest has a tiled loop to pipeline (a loop split by `split` or `tile`) and every named tensor
exists.
"""

from __future__ import annotations

from kcomp.affine import affine
from kcomp.loops import LoopNest, Store, walk_stmts
from kcomp.loops.common import Resolver, extents
from kcomp.schedule import DoubleBuffer, format_step


def double_buffer(nest: LoopNest, step: DoubleBuffer) -> LoopNest:
    r = Resolver(nest, format_step(step))
    for name in step.tensors:
        r.buffer(name)  # ScheduleError naming the tensors when there is no such one
    if not _has_tile_loop(nest):
        raise r.error(
            "there is no tiled loop to pipeline; tile the contraction first (e.g. tile i j k 64 64 64)"
        )
    return nest


def _has_tile_loop(nest: LoopNest) -> bool:
    """Whether some index reads `outer * T + inner` with T the inner loop's extent: the shape `split`
    leaves (decided by meaning, not by loop names)."""
    extent = extents(nest)
    for s in walk_stmts(nest.body):
        if not isinstance(s, Store):
            continue
        for e in s.index:
            form = affine(e) or {}
            coefs = {v: c for v, c in form.items() if v is not None}
            if any(
                coefs.get(o) == c * extent.get(v, 0) for v, c in coefs.items() for o in coefs if o is not v
            ):
                return True
    return False
