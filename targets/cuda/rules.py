"""The CUDA target's decisions in the tuner's space (search/rules.py): one per top-level nest, a
tiling of its independent loops onto the launch.

    for O.., y, x (independent), k (reduction), ..:
        split y ty*ry, x tx*rx (and each inner part by its register tile ry, rx), k by kb
        reorder  O.. y_o x_o [k_o] y_t x_t k|k_i y_r x_r
        bind     O -> blockIdx.z, y_o -> blockIdx.y, x_o -> blockIdx.x, y_t -> threadIdx.y, x_t -> threadIdx.x
        cache_read every operand indexed by k at k_o     (shared-memory staging, `kb` > 0)
        cache_write the output at x_t, unroll y_r, vectorize x_r   (an ry x rx register tile per
                 thread; its rows float2/float4 accesses where rx is 2 or 4, vector.py)

The decision is the tuple (tx, ty, rx, ry, kb): a block of tx x ty threads, each computing an ry x rx
tile, with the reduction staged through shared memory kb at a time (0: read from global memory).
Every variant's steps are derived on the nest as it stands and dropped when a step does not apply
(splits that do not divide, a block over 1024 threads, staged tiles over 48 KiB), so the space holds
legal schedules only; the proxy model (model.py) or a GPU's timings rank them.  The default rule
(schedule.py) is the variant (256 or fewer, 1, 1, 1, 0) and stays a candidate through the space's
recipe phase.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcomp.autofuse import Builder
from kcomp.autoschedule import perfect_chain
from kcomp.errors import ScheduleError
from kcomp.expr import Load, Var, free_vars, loads
from kcomp.loops import Loop, LoopKind, LoopNest, Store, walk_stmts
from kcomp.loops.dependence import carried
from kcomp.passes.bind import LIMITS
from kcomp.schedule import (
    Bind,
    CacheRead,
    CacheWrite,
    Fuse,
    Reorder,
    Schedule,
    Split,
    Step,
    Unroll,
    Vectorize,
)
from kcomp.search.loop_rules import LoopRules, top_nests
from kcomp.search.rules import Action, Units
from kcomp.targets.cuda.emit import emit
from kcomp.targets.cuda.vector import WIDTHS

if TYPE_CHECKING:
    from kcomp.search.space import State

BLOCKS = (
    (32, 8),
    (16, 16),
    (32, 4),
    (64, 4),
    (128, 1),
    (256, 1),
    (64, 2),
    (8, 16),
    (8, 32),
    (4, 32),
)  # (tx, ty)
REGISTER_TILES = ((1, 1), (2, 2), (4, 4), (4, 2), (2, 1), (4, 1))  # (rx, ry)
K_BLOCKS = (0, 8, 16, 32)
MAX_VARIANTS = 48


@dataclass(frozen=True)
class Variant:
    tx: int
    ty: int
    rx: int
    ry: int
    kb: int

    def label(self) -> str:
        stage = f", k-block {self.kb} in shared memory" if self.kb else ""
        return f"block {self.tx}x{self.ty}, {self.ry}x{self.rx} per thread{stage}"


@dataclass(frozen=True)
class _Plan:
    def slots(self, phase: str) -> int:
        return 1

    def describe(self, names: dict) -> str:
        return "gpu"


class CudaRules:
    """One decision per nest: a `Variant`'s steps, or leaving the nest as the recipe phase left it."""

    phases = ("gpu",)

    def units(self, naive: LoopNest, default: Schedule) -> Units:
        return LoopRules(1, 1).units(naive, default)

    def enter(self, state: State) -> _Plan:
        return _Plan()

    def candidates(self, state: State) -> list[Action]:
        out = [Action("leave the nest as it is", (), 0.2, "gpu")]
        for v in variants(state.nest, state.pos):
            steps = tiled_steps(state.nest, state.pos, v)
            if steps:
                prior = 1.0 + (v.rx * v.ry > 1) + (v.kb > 0) + (v.tx * v.ty in (128, 256))
                out.append(Action(v.label(), steps, prior, "gpu", v.tx * v.ty))
        return out

    def advance(self, state: State, action: Action, nest: LoopNest) -> _Plan | None:
        return state.plan

    def finishes(self, action: Action) -> bool:
        return False


def _shape(nest: LoopNest, pos: int) -> tuple[list[Loop], Loop | None, Loop, Loop | None] | None:
    """(outer loops, y, x, k): the independent prefix's last two loops, and a reduction loop right
    under x, of the nest at `pos`; None when the nest has no independent outer loop."""
    chain = perfect_chain(top_nests(nest.body)[pos])
    prefix: list[Loop] = []
    for lp in chain:
        if carried(lp) is not None:
            break
        prefix.append(lp)
    if not prefix or any(lp.kind is not LoopKind.SERIAL for lp in chain):
        return None
    x = prefix[-1]
    y = prefix[-2] if len(prefix) > 1 else None
    rest = chain[len(prefix) :]
    k = rest[0] if rest else None
    return prefix[:-2], y, x, k


def variants(nest: LoopNest, pos: int) -> list[Variant]:
    shape = _shape(nest, pos)
    if shape is None:
        return []
    _, y, x, k = shape
    out = []
    for (tx, ty), (rx, ry), kb in itertools.product(BLOCKS, REGISTER_TILES, K_BLOCKS):
        if y is None and (ty > 1 or ry > 1):
            continue
        if x.extent % (tx * rx) or (y is not None and y.extent % (ty * ry)):
            continue
        if kb and (k is None or k.extent % kb or kb >= k.extent):
            continue
        out.append(Variant(tx, ty, rx, ry, kb))
    # NOTE: at most MAX_VARIANTS, taken in turn from each k-block (unstaged included), larger
    # register tiles and 256-thread blocks first within one
    groups = [
        sorted((v for v in out if v.kb == kb), key=lambda v: (-(v.rx * v.ry), v.tx * v.ty != 256))
        for kb in K_BLOCKS
    ]
    mixed = [v for row in itertools.zip_longest(*groups) for v in row if v is not None]
    return mixed[:MAX_VARIANTS]


def tiled_steps(nest: LoopNest, pos: int, v: Variant) -> tuple[Step, ...] | None:
    """The steps of variant `v` on the nest at `pos` (module docstring), or None where one does not apply."""
    shape = _shape(nest, pos)
    if shape is None:
        return None
    b = Builder(nest)
    while len(shape[0]) > 1:  # grid axes are three: the loops outside y and x become one (z)
        if not b.try_step(Fuse(b.name(shape[0][0]), b.name(shape[0][1]))):
            return None
        shape = _shape(b.nest, pos)
        if shape is None:
            return None
    outer, y, x, k = shape

    def split(var, factor):  # -> (outer var, inner var) of the split loop
        loop = next(lp for lp in perfect_chain(top_nests(b.nest.body)[pos]) if lp.var is var)
        if not b.try_step(Split(b.name(loop), factor)):
            raise _Refused
        chain = perfect_chain(top_nests(b.nest.body)[pos])
        at = next(n for n, lp in enumerate(chain) if lp.var not in known)
        known.update({chain[at].var, chain[at + 1].var})
        return chain[at].var, chain[at + 1].var

    known = {lp.var for lp in walk_stmts(b.nest.body) if isinstance(lp, Loop)}
    out = next(s for s in walk_stmts((top_nests(b.nest.body)[pos],)) if isinstance(s, Store)).buffer
    try:
        yo = yt = yr = None
        if y is not None:
            yo, yt = split(y.var, v.ty * v.ry)
            if v.ry > 1:
                yt, yr = split(yt, v.ry)
        xo, xt = split(x.var, v.tx * v.rx)
        xr = None
        if v.rx > 1:
            xt, xr = split(xt, v.rx)
        ko = ki = None
        if k is not None and v.kb:
            ko, ki = split(k.var, v.kb)
        names = b.names()
        order = [*(lp.var for lp in outer), yo, xo, ko, yt, xt, ki if ki else (k.var if k else None), yr, xr]
        if not b.try_step(Reorder(tuple(names[var] for var in order if var is not None))):
            raise _Refused
        names = b.names()
        binds = [(lp.var, "blockIdx", "z") for lp in outer[-1:]] + [
            (yo, "blockIdx", "y"),
            (xo, "blockIdx", "x"),
        ]
        binds += [(yt, "threadIdx", "y"), (xt, "threadIdx", "x")]
        loops = {lp.var: lp for lp in walk_stmts(b.nest.body) if isinstance(lp, Loop)}
        for var, level, axis in binds:
            if var is None:
                continue
            if loops[var].extent > LIMITS[f"{level}.{axis}"] or not b.try_step(Bind(names[var], level, axis)):
                raise _Refused
        if ko is not None:
            top = top_nests(b.nest.body)[pos]
            store = next(s for s in walk_stmts((top,)) if isinstance(s, Store))
            operands = {ld.buffer for ld in loads(store.value) if {ko, ki} & _index_vars(ld)}
            for buf in sorted(operands, key=lambda t: t.name):
                if buf is not store.buffer and not b.try_step(CacheRead(b.names()[buf], names[ko])):
                    raise _Refused
        b.try_step(CacheWrite(b.names()[out], b.names()[xt]))
        if yr is not None:
            b.try_step(Unroll(b.names()[yr]))
        if xr is not None and not (xr_width(b, xr) in WIDTHS and b.try_step(Vectorize(b.names()[xr]))):
            b.try_step(Unroll(b.names()[xr]))  # a register tile's columns: float2/float4 where they can be
        emit(b.nest)  # the emitter's limits: threads per block, shared and per-thread memory
    except (_Refused, ScheduleError):
        return None
    return tuple(b.steps)


def xr_width(b: Builder, var: Var) -> int:
    return next(lp.extent for lp in walk_stmts(b.nest.body) if isinstance(lp, Loop) and lp.var is var)


def _index_vars(load: Load) -> set[Var]:
    return {v for e in load.index for v in free_vars(e)}


class _Refused(Exception):
    """A step of the variant does not apply here."""
