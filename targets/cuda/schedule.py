"""The CUDA target's default schedule: the fusion rules every target shares, then per top-level
nest one of two rules (docs/cuda.md, "The default schedule"):

    a block per row     for n (independent): {mx max= X[n, d] over d; Y[n, d] = ..}:
                        bind n blockIdx.x; split d 256; reorder d_i d_o; bind d_i threadIdx.x reduce; ..
                        when points are few or a thread per point would not coalesce
    a thread per point  for i, j (independent), k:  split j 256; bind j_i threadIdx.x;
                        bind i blockIdx.y; bind j_o blockIdx.x; cache_write C at j_i

A nest with no independent outer loop (a reduction to one value) is one block sharing it
(`reduce`).  Shared-memory and register tiles for contractions are the tuner's (rules.py); this rule
makes every kernel run on the GPU's threads, with coalesced accesses where the layout allows.
"""

from __future__ import annotations

import math

from kcomp.autofuse import Builder, fuse_by_rule
from kcomp.errors import ScheduleError
from kcomp.expr import Var, loads
from kcomp.loops import Alloc, Loop, LoopNest, Store, walk_stmts
from kcomp.loops.dependence import carried
from kcomp.passes import apply_step
from kcomp.passes.bind import LIMITS, thread_reduction
from kcomp.program import Program
from kcomp.schedule import Bind, CacheWrite, Fuse, Reorder, Schedule, Split, Step
from kcomp.search.loop_rules import top_nests
from kcomp.targets.cuda.emit import emit
from kcomp.targets.cuda.model import bytes_per_lane

FUSE_BUDGET = 8 << 10  # bytes of a fused intermediate's region: a thread's share of local memory
THREADS = 256  # threads per block: 8 warps, enough to hide latency with several blocks per SM
MANY_POINTS = 1 << 15  # independent points that fill a GPU's threads well enough on their own
ROW_MIN = 64  # a row's inner loop shorter than this stays one thread's (or is shared without `reduce`)


def default_schedule(program: Program, nest: LoopNest, fuse: bool = True) -> Schedule:
    """The rules above; when fusion leaves a thread more local memory than it may have (the emitter
    refuses it), the same rules without fusion."""
    b = Builder(nest)
    if fuse:
        fuse_by_rule(b, FUSE_BUDGET)
    for pos in range(len(top_nests(b.nest.body))):
        if not _rows_to_blocks(b, pos):
            _bind_outer(b, pos)
    if fuse and b.steps:
        try:
            emit(b.nest)
        except ScheduleError:
            return default_schedule(program, nest, fuse=False)
    return Schedule(tuple(b.steps))


def _one_block_reduction(b: Builder, pos: int) -> None:
    """A reduction to one place (no independent loop outside it): one block whose threads share it
    (`reduce`), rather than one thread."""
    top = top_nests(b.nest.body)[pos]
    if top.extent < ROW_MIN or isinstance(thread_reduction(top), str):
        return
    trial = Builder(b.nest)
    if not trial.try_step(Split(trial.name(top), min(THREADS, 1 << (top.extent.bit_length() - 1)))):
        return
    outer = top_nests(trial.nest.body)[pos]
    inner = outer.body[0]
    if not isinstance(inner, Loop) or not trial.try_step(Reorder((trial.name(inner), trial.name(outer)))):
        return
    if trial.try_step(Bind(trial.name(inner), "threadIdx", "x", True)):
        b.nest, b.steps = trial.nest, [*b.steps, *trial.steps]


def _rows_to_blocks(b: Builder, pos: int) -> bool:
    """A nest whose independent outer loops hold a row's worth of inner loops (a fused softmax or
    norm: reductions, then elementwise passes over the row): one block per row, each inner loop of
    ROW_MIN or more iterations shared by the block's threads (a reduction with `reduce`: partial
    results combined across the block), split so that a thread's iterations are a warp apart
    (coalesced).  Kept only when the emitter takes the result (shared memory for the row's
    intermediates); False leaves the nest to `_bind_outer`."""
    prefix = _independent_prefix(top_nests(b.nest.body)[pos])
    if not prefix or len(prefix) > 3:
        return False
    inner = [lp for lp in top_nests(prefix[-1].body) if lp.extent >= ROW_MIN]
    points = math.prod(lp.extent for lp in prefix)
    if not inner or (points >= MANY_POINTS and _coalesced(prefix[-1], prefix[-1].var)):
        return False  # one thread per point: enough of them, and a warp's accesses coalesce
    trial = Builder(b.nest)
    for lp, axis in zip(reversed(prefix), "xyz", strict=False):
        if lp.extent > LIMITS[f"blockIdx.{axis}"]:
            return False
    for lp, axis in reversed(list(zip(reversed(prefix), "xyz", strict=False))):
        if not trial.try_step(Bind(trial.name(lp), "blockIdx", axis)):
            return False
    bound = 0
    for lp in inner:
        reduce = carried(lp) is not None
        if reduce and isinstance(thread_reduction(lp), str):
            continue  # a reduction the threads cannot share (an arg-reduction): thread 0 runs it
        threads = min(THREADS, 1 << (lp.extent.bit_length() - 1))
        before = {x.var for x in _loops(trial).values()}
        if not trial.try_step(Split(trial.name(lp), threads)):
            continue
        made = {x.var: x for x in _loops(trial).values() if x.var not in before}
        outer = next(
            (x for x in made.values() if isinstance(x.body[0], Loop) and x.body[0].var in made), None
        )
        if outer is None or not trial.try_step(Reorder((trial.name(outer.body[0]), trial.name(outer)))):
            continue
        bound += trial.try_step(Bind(trial.name(outer.body[0]), "threadIdx", "x", reduce))
    if not bound:
        return False  # a block per point with one thread working: worse than a thread per point
    try:
        emit(trial.nest)
    except ScheduleError:
        return False
    b.nest, b.steps = trial.nest, [*b.steps, *trial.steps]
    return True


def _coalesced(top: Loop, lane: Var) -> bool:
    """Whether every access to a global array under `top` is one a warp coalesces when `lane` differs
    between its lanes (contiguous or shared by the warp)."""
    private = {a.buffer for a in walk_stmts((top,)) if isinstance(a, Alloc)}
    for st in walk_stmts((top,)):
        if not isinstance(st, Store):
            continue
        for buf, index in [(st.buffer, st.index), *((ld.buffer, ld.index) for ld in loads(st.value))]:
            if buf not in private and bytes_per_lane(buf, index, lane) > buf.dtype.itemsize:
                return False
    return True


def _independent_prefix(top: Loop) -> list[Loop]:
    """The perfectly nested loops from `top` down whose iterations are independent."""
    out, node = [], top
    while isinstance(node, Loop) and carried(node) is None:
        out.append(node)
        if len(node.body) != 1:
            break
        node = node.body[0]
    return out


def _bind_outer(b: Builder, pos: int) -> None:
    """Threads along the innermost independent loop (the contiguous one, so a warp's accesses
    coalesce), the next one filling the block to `THREADS`; the loops outside them, blocks."""
    prefix = _independent_prefix(top_nests(b.nest.body)[pos])
    if not prefix:
        _one_block_reduction(b, pos)
        return
    while len(prefix) > 3 and _try(b, Fuse(b.name(prefix[0]), b.name(prefix[1])), pos):
        prefix = _independent_prefix(top_nests(b.nest.body)[pos])
    x, rest = prefix[-1], prefix[:-1][-2:]
    blocks = [b.name(lp) for lp in rest]  # outermost first; splitting x renames nothing outside it
    if x.extent <= THREADS:
        b.try_step(Bind(b.name(x), "threadIdx", "x"))
        ty = _largest_divisor(rest[-1].extent, THREADS // x.extent) if rest else 1
        if ty > 1 and b.try_step(Split(blocks[-1], ty)):
            split = _independent_prefix(top_nests(b.nest.body)[pos])
            b.try_step(Bind(b.name(split[len(rest)]), "threadIdx", "y"))
            blocks[-1] = b.name(split[len(rest) - 1])
    elif b.try_step(Split(b.name(x), THREADS)):
        split = _independent_prefix(top_nests(b.nest.body)[pos])
        b.try_step(Bind(b.name(split[len(rest) + 1]), "threadIdx", "x"))
        blocks.append(b.name(split[len(rest)]))
    # grid x is the largest axis: the innermost block loop; blocks bind outermost first
    for name, axis in reversed(list(zip(reversed(blocks), "xyz", strict=False))):
        lp = _loops(b).get(name)
        if (
            lp is None
            or lp.extent > LIMITS[f"blockIdx.{axis}"]
            or not b.try_step(Bind(name, "blockIdx", axis))
        ):
            break
    _accumulate_in_register(b, pos)


def _loops(b: Builder) -> dict[str, Loop]:
    names = b.names()
    return {names[lp.var]: lp for lp in walk_stmts(b.nest.body) if isinstance(lp, Loop)}


def _largest_divisor(n: int, limit: int) -> int:
    return max((d for d in range(1, min(n, limit) + 1) if n % d == 0), default=1)


def _try(b: Builder, step: Step, pos: int) -> bool:
    """`step`, kept only when the nest at `pos` still starts with an independent loop (the fused index
    of some nests is beyond the dependence test, and the loop would no longer bind)."""
    try:
        nest = apply_step(b.nest, step)
    except ScheduleError:
        return False
    if not _independent_prefix(top_nests(nest.body)[pos]):
        return False
    b.nest, b.steps = nest, [*b.steps, step]
    return True


def _accumulate_in_register(b: Builder, pos: int) -> None:
    """A thread's point of a reduction accumulates in a register, written back once."""
    threads = [
        lp for lp in walk_stmts((top_nests(b.nest.body)[pos],)) if isinstance(lp, Loop) and lp.kind.is_thread
    ]
    if not threads:
        return
    inner = threads[-1]
    loops = [s for s in walk_stmts(inner.body) if isinstance(s, Loop)]
    updates = [s for s in walk_stmts(inner.body) if isinstance(s, Store)]
    if loops and len(updates) == 1:
        buf = updates[0].buffer
        b.try_step(CacheWrite(b.names().get(buf, buf.name), b.name(inner)))
