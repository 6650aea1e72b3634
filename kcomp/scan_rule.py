"""The default scheduler's rule for a prefix scan too long for the lines around it to keep every
core busy (a 1-D cumsum, a few long rows): `scan_blocks` into BLOCKS_PER_CORE blocks per core, both
passes' block loops on the threads, pass 1's block totals vectorized when it reduces with a vector
instruction.  Pass 2 runs each block's chain in a register; its add latency bounds it.

A scan with lines enough for the cores is left to the generic rules: its lines run in parallel and
the emitters keep each line's carried element in a register (`kcomp.loops.carry`).
"""

from __future__ import annotations

import math

from kcomp.autofuse import Builder
from kcomp.loops import Alloc, Loop, LoopNest, walk_stmts
from kcomp.loops.carry import recurrence
from kcomp.schedule import Parallel, ScanBlocks, Vectorize

BLOCKS_PER_CORE = 2  # a thread that finishes first takes no other's block (static schedule): few
MIN_BLOCK = 1024  # elements a block needs for its thread and its vector loop to pay


def is_scan(chain: list[Loop]) -> bool:
    """Whether the innermost loop of a nest's perfect chain is a scan's recurrence."""
    return recurrence(chain[-1]) is not None


def schedule_scan(b: Builder, chain: list[Loop], width: int, cores: int) -> bool:
    """Apply the rule (module docstring) to the scan nest whose perfect chain is `chain`; whether it
    took the nest.  The nest gains top-level loops (the passes), so the default scheduler applies
    this rule last, to its scans from the last to the first."""
    inner = chain[-1]
    if recurrence(inner) is None or cores < 2:
        return False
    lines = math.prod(lp.extent for lp in chain[:-1])
    # NOTE: blocks that divide the loop need no guard, so pass 1 vectorizes: the first such count
    blocks = next(
        (k for k in range(cores * BLOCKS_PER_CORE, cores * 8) if inner.extent % k == 0),
        cores * BLOCKS_PER_CORE,
    )
    if lines >= cores or inner.extent < blocks * MIN_BLOCK:
        return False
    before = (b.nest, b.steps)
    if not b.try_step(ScanBlocks(b.name(inner), blocks)):
        return False
    found = _passes(b, before[0])
    if found is None:  # NOTE: not the shape scan_blocks makes: keep the plain recurrence
        b.nest, b.steps = before
        return False
    pass1, pass2 = found
    totals = next(s for s in pass1.body if isinstance(s, Loop)) if len(pass1.body) > 1 else None
    if totals is not None and width > 1:
        b.try_step(Vectorize(b.name(totals), reduce=True))
    b.try_step(Parallel(b.name(pass1)))
    b.try_step(Parallel(b.name(pass2)))
    return True


def _passes(b: Builder, before: LoopNest) -> tuple[Loop, Loop] | None:
    """The block loops of pass 1 and pass 2 that `scan_blocks` just made (in the allocation of its
    offsets, the one new statement holding four)."""
    old = {id(s) for s in walk_stmts(before.body)}
    for s in walk_stmts(b.nest.body):
        if isinstance(s, Alloc) and id(s) not in old and len(s.body) == 4:
            first, _, _, second = s.body
            if isinstance(first, Loop) and isinstance(second, Loop):
                return first, second
    return None
