"""Random schedule steps drawn on a loop nest as it stands, for fuzzing and property tests.

    step = draw_step(RandomChooser(random.Random(0)), nest)     # or None: the drawn kind does not apply
    step = draw_bind(RandomChooser(random.Random(0)), nest)     # a launch: bind (or the split before it)

A step (split [guard|peel], tile, reorder, fuse, unroll, vectorize [reduce], parallel [reduce],
cache_write, cache_read, pack, scan_blocks, layout) names the current loops and tensors of `nest`; whether it is
legal is for the pass to say (`apply_step` raises `ScheduleError`), and, through `draw_steps`'s
`accept`, for the target (the CUDA emitter refuses more than 1024 threads per block, say).  `draw_bind`
draws the steps of a launch: a loop of the kernel's prefix to a grid axis, an inner one to a block
axis, sometimes a split first (docs/cuda.md).  The draws go through a
`Chooser`, so the same code serves `random.Random` (kcomp fuzz) and hypothesis (whose `draw`
shrinks): tests/passes/test_random_schedules.py wraps `draw` in a chooser of its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from kcomp.errors import ScheduleError
from kcomp.expr import Scope
from kcomp.loops import Alloc, Guard, Loop, LoopNest, walk_stmts
from kcomp.loops.common import enclosing
from kcomp.loops.dependence import accesses
from kcomp.passes import apply_step
from kcomp.printer import symbol_names
from kcomp.schedule import (
    Bind,
    CacheRead,
    CacheWrite,
    ComputeAt,
    Epilogue,
    Fuse,
    Inline,
    Layout,
    Materialize,
    Online,
    Pack,
    Parallel,
    Reorder,
    ScanBlocks,
    Split,
    Step,
    Tile,
    Unroll,
    Vectorize,
    Welford,
)

T = TypeVar("T")

KINDS = (
    "split",
    "tile",
    "reorder",
    "fuse",
    "unroll",
    "vectorize",
    "parallel",
    "cache_write",
    "cache_read",
    "pack",
    "scan_blocks",
)
# Drawn when the nest has intermediates: a layout, and the fusion steps (docs/fusion.md).
FUSION_KINDS = (
    "layout",
    "compute_at",
    "compute_at",
    "inline",
    "materialize",
    "online",
    "welford",
    "epilogue",
)


class Chooser(Protocol):
    def choice(self, items: Sequence[T]) -> T: ...
    def integer(self, lo: int, hi: int) -> int: ...  # lo..hi inclusive
    def flag(self) -> bool: ...
    def permutation(self, items: Sequence[T]) -> list[T]: ...
    def subset(self, items: Sequence[T], min_size: int) -> list[T]: ...  # distinct, in drawn order


class RandomChooser:
    """A `Chooser` over `random.Random`."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def choice(self, items: Sequence[T]) -> T:
        return self.rng.choice(list(items))

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def flag(self) -> bool:
        return self.rng.random() < 0.5

    def permutation(self, items: Sequence[T]) -> list[T]:
        return self.rng.sample(list(items), len(items))

    def subset(self, items: Sequence[T], min_size: int) -> list[T]:
        return self.rng.sample(list(items), self.rng.randint(min_size, len(items)))


def band(loop: Loop) -> list[Loop]:
    """`loop` and the loops perfectly nested inside it (guards in between allowed), outermost first."""
    chain = [loop]
    while True:
        body = chain[-1].body
        while len(body) == 1 and isinstance(body[0], Guard):
            body = body[0].body
        if len(body) != 1 or not isinstance(body[0], Loop):
            return chain
        chain.append(body[0])


def draw_step(choose: Chooser, nest: LoopNest) -> Step | None:
    """A random step naming loops and tensors of `nest` (None: the drawn kind does not apply here)."""
    names = symbol_names(nest)
    loops = [s for s in walk_stmts(nest.body) if isinstance(s, Loop)]
    if not loops:
        return None
    loop = choose.choice(loops)
    name = names[loop.var]
    written, read = accesses(nest.body)
    temps = [s.buffer for s in walk_stmts(nest.body) if isinstance(s, Alloc)]
    kind = choose.choice((*KINDS, *FUSION_KINDS) if temps else KINDS)
    match kind:
        case "split":
            return Split(name, choose.integer(1, loop.extent), choose.choice(("guard", "peel")))
        case "tile":
            chain = band(loop)[:3]
            if len(chain) < 2:
                return None
            chain = chain[: choose.integer(2, len(chain))]
            factors = tuple(choose.integer(1, lp.extent) for lp in chain)
            return Tile(tuple(names[lp.var] for lp in chain), factors)
        case "reorder":
            chain = band(loop)
            if len(chain) < 2:
                return None
            picked = choose.subset(chain, 2)
            return Reorder(tuple(names[lp.var] for lp in choose.permutation(picked)))
        case "fuse":
            if len(loop.body) != 1 or not isinstance(loop.body[0], Loop):
                return None
            return Fuse(name, names[loop.body[0].var])
        case "unroll":
            return Unroll(name) if loop.extent <= 8 else None
        case "vectorize":
            return Vectorize(name, choose.flag())
        case "parallel":
            return Parallel(name, choose.flag())
        case "scan_blocks":  # NOTE: legal on a scan's recurrence only
            return ScanBlocks(name, choose.integer(2, max(2, loop.extent)))
        case "cache_write":
            if not written:
                return None
            return CacheWrite(names[choose.choice(sorted(written, key=names.get))], name)
        case "cache_read":
            if not read:
                return None
            buf = choose.choice(sorted(read, key=names.get))
            stride = choose.choice([1, 1, 2, 3])
            if stride > 1 and buf.shape:  # staged by phase (a strided window's layout)
                return CacheRead(names[buf], name, choose.integer(0, len(buf.shape) - 1), stride)
            return CacheRead(names[buf], name)
        case "pack":
            if not read:
                return None
            buf = choose.choice(sorted(read, key=names.get))
            if not buf.shape:
                return None
            return Pack(names[buf], name, choose.integer(0, len(buf.shape) - 1), choose.integer(1, 16))
        case "compute_at":
            return ComputeAt(names[choose.choice(temps)], name)
        case "inline":
            return Inline(names[choose.choice(temps)])
        case "materialize":
            return Materialize(names[choose.choice(temps)])
        case "epilogue":  # a consumer into a write-back: legal only after a cache_write there
            return Epilogue(names[choose.choice(sorted(written, key=names.get))], name) if written else None
        case "online" | "welford":
            if len(temps) < 2:
                return None
            m, t = choose.subset(temps, 2)[:2]
            return (Online if kind == "online" else Welford)(names[m], names[t])
        case _:
            buf = choose.choice(temps)
            return Layout(names[buf], tuple(choose.permutation(range(len(buf.shape)))))


SPLITS = (2, 4, 8, 16, 32, 64)  # factors of a split before a bind: blocks of a few threads to a warp's two


def draw_bind(choose: Chooser, nest: LoopNest) -> Step | None:
    """A random step of a launch: a loop not bound yet to a grid axis (where only block loops and global
    allocations enclose it) or to a block axis, or, one time in four, a split that makes a loop to bind
    (None: nothing left to bind).  Whether the binding is legal is the `bind` pass's to say."""
    names = symbol_names(nest)
    loops = [
        s for s in walk_stmts(nest.body) if isinstance(s, Loop) and not (s.kind.is_block or s.kind.is_thread)
    ]
    if not loops:
        return None
    loop = choose.choice(loops)
    name = names[loop.var]
    if loop.extent > 2 and choose.integer(0, 3) == 0:
        factor = choose.choice([f for f in SPLITS if f < loop.extent] + [choose.integer(2, loop.extent)])
        return Split(name, factor, choose.choice(("guard", "peel")))
    in_prefix = all(
        (isinstance(s, Loop) and s.kind.is_block) or (isinstance(s, Alloc) and s.buffer.scope is Scope.GLOBAL)
        for s in enclosing(nest, loop)
    )
    level = "blockIdx" if in_prefix and choose.integer(0, 3) > 0 else "threadIdx"
    if level == "threadIdx" and choose.integer(0, 3) == 0:
        return Bind(name, level, "x", reduce=True)  # a reduction's loop, where it is one
    return Bind(name, level, choose.choice(("x", "x", "y", "z")))


def draw_steps(
    choose: Chooser,
    nest: LoopNest,
    count: int,
    tries: int = 8,
    draw: Callable[[Chooser, LoopNest], Step | None] = draw_step,
    accept: Callable[[LoopNest], object] | None = None,
) -> tuple[LoopNest, list[Step], Exception | None]:
    """Up to `count` legal steps from `draw`, each redrawn up to `tries` times while the pass (or
    `accept`, the target's check of the nest after it: `ScheduleError` to refuse) refuses it.

    Returns the nest after them, the steps, and the exception a pass (or `accept`) raised that was not
    a `ScheduleError` (a kcomp bug: drawing stops there and that step ends the list, so replaying the
    steps reproduces it), else None."""
    steps: list[Step] = []
    for _ in range(count):
        for _ in range(tries):
            step = draw(choose, nest)
            if step is None:
                continue
            try:
                after = apply_step(nest, step)
                if accept is not None:
                    accept(after)
                nest = after
            except ScheduleError:
                continue
            except Exception as e:  # any other error of a pass, a KcompError too, is a bug
                return nest, [*steps, step], e
            steps.append(step)
            break
    return nest, steps, None
