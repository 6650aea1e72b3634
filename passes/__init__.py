"""Schedule steps applied to the loop IR: one module per transformation, dispatched by step type.

    apply(nest, schedule) -> nest          every step: legality check, then a pure rewrite

`PASSES` maps each `Step` class to its pass; adding a step is a module here, a dataclass in
`kcomp.schedule`, and one entry below.
"""

from __future__ import annotations

from collections.abc import Callable

from kcomp.config import config
from kcomp.loops import LoopNest
from kcomp.loops.verify import VerifyError, verify
from kcomp.passes.annotate import parallel, unroll, vectorize
from kcomp.passes.bind import bind
from kcomp.passes.cache_read import cache_read
from kcomp.passes.cache_write import cache_write
from kcomp.passes.compute_at import compute_at
from kcomp.passes.double_buffer import double_buffer
from kcomp.passes.epilogue import epilogue
from kcomp.passes.fuse import fuse
from kcomp.passes.inline import inline, materialize
from kcomp.passes.layout import layout
from kcomp.passes.online import online
from kcomp.passes.phases import phases
from kcomp.passes.reorder import reorder
from kcomp.passes.scan_blocks import scan_blocks
from kcomp.passes.split import split
from kcomp.passes.tile import tile
from kcomp.passes.welford import welford
from kcomp.schedule import (
    Bind,
    CacheRead,
    CacheWrite,
    ComputeAt,
    DoubleBuffer,
    Epilogue,
    Fuse,
    Inline,
    Layout,
    Materialize,
    Online,
    Pack,
    Parallel,
    Phases,
    Reorder,
    ScanBlocks,
    Schedule,
    Split,
    Step,
    Tile,
    Unroll,
    Vectorize,
    Welford,
    format_step,
)

PASSES: dict[type, Callable[[LoopNest, Step], LoopNest]] = {
    Split: split,
    Tile: tile,
    Reorder: reorder,
    Fuse: fuse,
    Vectorize: vectorize,
    Parallel: parallel,
    Unroll: unroll,
    CacheWrite: cache_write,
    CacheRead: cache_read,
    Epilogue: epilogue,
    Welford: welford,
    Pack: cache_read,
    Layout: layout,
    DoubleBuffer: double_buffer,
    ComputeAt: compute_at,
    Inline: inline,
    Materialize: materialize,
    Online: online,
    Phases: phases,
    ScanBlocks: scan_blocks,
    Bind: bind,
}


def apply_step(nest: LoopNest, step: Step) -> LoopNest:
    """`nest` after one step; with `Config.verify` (KCOMP_VERIFY=1, which the tests set) the result's
    invariants are checked here, so a pass that breaks one is caught at its step."""
    out = PASSES[type(step)](nest, step)
    if config().verify:
        try:
            verify(out)
        except VerifyError as e:
            raise VerifyError(f"after step '{format_step(step)}': {e}") from None
    return out


def apply(nest: LoopNest, schedule: Schedule) -> LoopNest:
    """`nest` transformed by every step in order; the first illegal step raises `ScheduleError`."""
    for step in schedule.steps:
        nest = apply_step(nest, step)
    return nest
