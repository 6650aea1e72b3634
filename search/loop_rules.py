"""The loop-transformation rules of the search space (search/rules.py): what a loop-nest target (the
CPU) offers the tuner, one top-level nest (statement) at a time, most work first; inside a nest in the
order of the default scheduler's GEMM recipe (each sees the loops the previous made):

    split L      per band loop: none, or a factor (divisors and non-divisors: powers of two, multiples
                 of the vector width, register-tile sizes, equal blocks); `split L_o`: a second level
    order        a permutation of each level of the tiled band: cache blocks, tiles, register tile
    unroll       one loop fully unrolled, or split and its inner part unrolled
    vectorize    the innermost loop (`reduce` where it is a reduction)
    stage T      per input: none, `cache_read` or `pack ... block D F` at a loop, with a parallel fill
    cache_write  the output's tile at a loop;  parallel: a loop (`reduce`, or two loops fused first)

The default's decisions get the highest priors in searched slots (`DEFAULT_BOOST`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kcomp import schedule as S
from kcomp.expr import Buffer, Var, free_vars, loads
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import body_exprs
from kcomp.passes import apply_step
from kcomp.printer import symbol_names
from kcomp.schedule import Schedule, Step, format_step
from kcomp.search.rules import DEFAULT_BOOST, Action, Units

if TYPE_CHECKING:
    from kcomp.search.space import State

PHASES = ("split", "split2", "order", "unroll", "vectorize", "stage", "cache_write", "parallel")
MAX_FACTORS = 16  # split candidates per loop (the best by prior)
MAX_ORDERS = 48
STAGE_LIMIT = 1 << 21  # elements of a staged copy (cache_read / pack)
TILE_LIMIT = 1 << 14  # elements of a cache_write tile


class LoopRules:
    """The rules for a machine with `lanes` f32 vector lanes and `cores` threads."""

    phases = PHASES

    def __init__(self, lanes: int, cores: int):
        self.lanes, self.cores = max(1, lanes), max(1, cores)

    def units(self, naive: LoopNest, default: Schedule) -> Units:
        work = tuple(_work(t) for t in top_nests(naive.body))  # iterations of each nest
        order = tuple(sorted(range(len(work)), key=lambda p: -work[p]))
        return Units(order, work, tuple(_by_nest(naive, default, len(work))))

    def enter(self, state: State) -> LoopPlan:
        top = top_nests(state.nest.body)[state.pos]
        written = {s.buffer for s in walk_stmts((top,)) if isinstance(s, Store)}
        inputs = [ld.buffer for e in body_exprs((top,)) for ld in loads(e) if ld.buffer not in written]
        loops, none = tuple(lp.var for lp in band(top)), (None,) * len(band(top))
        return LoopPlan(loops, none, none, tuple(dict.fromkeys(inputs)))

    def candidates(self, state: State) -> list[Action]:
        slot = {"split": _split_candidates, "split2": _split_candidates, "order": _order_candidates}
        slot |= {"unroll": _unroll_candidates, "vectorize": _vectorize_candidates, "stage": _stage_candidates}
        slot |= {"cache_write": _cache_write_candidates, "parallel": _parallel_candidates}
        loops = band(top_nests(state.nest.body)[state.pos])
        make = _Maker(set(state.default_steps[state.pos]))
        return slot[state.phase](self, state, loops, state.space.names(state.nest), make)

    def advance(self, state: State, action: Action, nest: LoopNest) -> LoopPlan | None:
        """Refuse staged copies and register tiles past their size limits; record what a split made."""
        plan = state.plan
        assert isinstance(plan, LoopPlan)
        if action.kind in ("stage", "cache_write"):
            old = {s.buffer for s in walk_stmts(state.nest.body) if isinstance(s, Alloc)}
            new = [
                s.buffer.size for s in walk_stmts(nest.body) if isinstance(s, Alloc) and s.buffer not in old
            ]
            if max(new, default=0) > (STAGE_LIMIT if action.kind == "stage" else TILE_LIMIT):
                return None
        if state.phase in ("split", "split2") and action.steps:
            sub = state.cursor[2]
            old_vars = {lp.var for lp in band(top_nests(state.nest.body)[state.pos])}
            made = [lp.var for lp in band(top_nests(nest.body)[state.pos]) if lp.var not in old_vars]
            records = getattr(plan, state.phase)
            plan = replace(plan, **{state.phase: (*records[:sub], (made[0], made[1]), *records[sub + 1 :])})
        return plan

    def finishes(self, action: Action) -> bool:
        return False


@dataclass(frozen=True)
class LoopPlan:
    """What the decisions taken so far in the current nest tell its later slots."""

    band0: tuple[Var, ...] = ()  # the nest's band when its decisions started
    split: tuple[tuple[Var, Var] | None, ...] = ()  # per band0 loop: (outer, inner) once split
    split2: tuple[tuple[Var, Var] | None, ...] = ()  # per band0 loop: its outer loop split again
    inputs: tuple[Buffer, ...] = ()  # tensors the nest reads (one stage slot each)

    def slots(self, phase: str) -> int:
        """How many decisions a phase takes here: one per band loop or input, else one."""
        per = {"split": self.band0, "split2": self.band0, "stage": self.inputs}
        return len(per[phase]) if phase in per else 1

    def describe(self, names: dict) -> str:
        levels = [[names.get(v, "?") for v in g] for g in self.levels()]
        return f"{levels} ()"

    def levels(self) -> list[list[Var]]:
        """The tiled band's levels, outermost first: cache blocks, tiles (and unsplit loops), register tile."""
        g0 = [s2[0] for s2 in self.split2 if s2]
        rows = zip(self.band0, self.split, self.split2, strict=True)
        g1 = [s2[1] if s2 else s[0] if s else v for v, s, s2 in rows]
        g2 = [s[1] for s in self.split if s]
        return [g for g in (g0, g1, g2) if g]


def top_nests(body: tuple[Stmt, ...]) -> list[Loop]:
    """The outermost loops (one per statement), through allocations and guards."""
    return [lp for _, lp in _inner(body, ())]


def band(top: Loop) -> list[Loop]:
    """`top` and the loops down to its heaviest statement through guards and allocations, past the
    copy loops staging adds (named after their buffer); before staging, the perfectly nested band."""
    chain = [top]
    while inner := _inner(chain[-1].body, ()):
        chain.append(max(inner, key=lambda c: (not c[0], _work(c[1])))[1])
    return chain


def _inner(body: tuple[Stmt, ...], staged: tuple[str, ...]) -> list[tuple[bool, Loop]]:
    """The loops of `body` through allocations and guards, each with whether it is a staging copy."""
    out: list[tuple[bool, Loop]] = []
    for s in body:
        if isinstance(s, Loop):
            out.append((any(s.var.name.startswith(f"{b}_") for b in staged), s))
        elif isinstance(s, Alloc | Guard):
            out += _inner(s.body, (*staged, s.buffer.name) if isinstance(s, Alloc) else staged)
    return out


def _work(loop: Loop) -> int:
    return loop.extent * max([1, *map(_work, top_nests(loop.body))])


def _by_nest(naive: LoopNest, schedule: Schedule, count: int) -> list[tuple[Step, ...]]:
    """The steps of `schedule` per top-level nest, found by the first loop each names."""
    out: list[list[Step]] = [[] for _ in range(count)]
    nest, last = naive, 0
    for step in schedule.steps:
        name = next((getattr(step, f) for f in ("loop", "at", "outer") if hasattr(step, f)), None)
        name = name or next(iter(getattr(step, "loops", ())), None)
        names = symbol_names(nest)
        for pos, top in enumerate(top_nests(nest.body)):
            if any(isinstance(s, Loop) and names[s.var] == name for s in walk_stmts((top,))):
                last = pos
        out[last].append(step)
        nest = apply_step(nest, step)
    return [tuple(s) for s in out]


def _store(loops: list[Loop]) -> Store | None:
    return next((s for s in reversed(list(walk_stmts(loops[-1].body))) if isinstance(s, Store)), None)


def _innermost(store: Store | None, var: Var) -> bool:
    """Whether `var` indexes the last dimension of the store (a rank-0 store has none)."""
    return store is not None and bool(store.index) and var in free_vars(store.index[-1])


def _reduction(var: Var, store: Store | None) -> bool:
    return store is not None and not any(var in free_vars(e) for e in store.index)


# ---------------------------------------------------------------- candidates per slot


@dataclass
class _Maker:
    """Builds actions, boosting the default scheduler's choices for this nest (`hint`)."""

    hint: set[Step]

    def __call__(self, label: str, steps: tuple[Step, ...], score: float, kind: str, size: int = 0) -> Action:
        boost = DEFAULT_BOOST * len(steps) if steps and all(s in self.hint for s in steps) else 1.0
        return Action(label, steps, score * boost, kind, size)

    def none(
        self, label: str, score: float, kind: str, does: type | tuple[type, ...], tensor: str = ""
    ) -> Action:
        """ "Leave as is", boosted when the default takes no step of that type (for that tensor) here."""
        same = [s for s in self.hint if isinstance(s, does) and getattr(s, "tensor", tensor) == tensor]
        boost = 1.0 if same else DEFAULT_BOOST
        return Action(label, (), score * boost, kind)


def split_factors(n: int, lanes: int) -> list[int]:
    """Factors worth trying for a loop of extent `n`: powers of two, multiples of the vector width,
    small register-tile sizes, divisors near those, and equal blocks (`ceil(n / ceil(n / t))`)."""
    out = {1 << p for p in range(1, 11)} | {lanes * m for m in (1, 2, 3, 4, 6, 8)}
    out |= {*range(2, 9), 12, 14, 24, 28}
    divisors = [d for d in range(2, n) if n % d == 0]
    for t in (4, 8, 16, 32, 64, 128, 256):
        if divisors:
            out.add(min(divisors, key=lambda d, t=t: (abs(math.log(d / t)), d)))
        out.add(-(-n // -(-n // t)))
    return sorted(f for f in out if 1 < f < n)


def _split_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    plan, lanes, level2, k = state.plan, rules.lanes, state.phase == "split2", state.cursor[2]
    if level2 and plan.split[k] is None:
        return []
    var = plan.split[k][0] if level2 else plan.band0[k]
    loop = next((lp for lp in loops if lp.var is var), None)
    if loop is None:
        return []
    name, n, store = names[var], loop.extent, _store(loops)
    contiguous = not level2 and _innermost(store, var)
    scored = []
    factors = split_factors(n, lanes) if not level2 else [f for f in split_factors(n, 1) if f <= 64]
    factors += [
        h.factor for h in make.hint if isinstance(h, S.Split) and h.loop == name and h.factor not in factors
    ]
    for f in factors:
        score = (1.5 if n % f == 0 else 1.0) * (2.0 if contiguous and f % lanes == 0 else 1.0)
        score *= 1.0 if 4 <= f <= 256 else 0.5
        scored.append(make(f"split {name} {f}", (S.Split(name, f),), score, "split", f))
    scored.sort(key=lambda a: (-a.prior, a.size))
    return [make.none(f"split {name}: none", 4.0 if level2 else 2.0, "split", S.Split), *scored[:MAX_FACTORS]]


def _perms(group: list[Var], store: Store | None, inner: bool, last: bool) -> list[tuple[tuple, float]]:
    """Orders of one level with scores: the contiguous loop innermost in the last level, reduction
    loops first in the register tile and in the levels above it (the recipe's `k_o ... k_i ...`)."""
    orders = list(itertools.permutations(group)) if len(group) <= 4 else [tuple(group)]
    if len(group) > 4:
        for v in group:
            rest = [w for w in group if w is not v]
            orders += [(*rest, v), (v, *rest)]
    out = []
    for order in dict.fromkeys(orders):
        score = 1.5 if list(order) == group else 1.0
        if last and _innermost(store, order[-1]):
            score *= 3.0
        if (inner or not last) and _reduction(order[0], store):
            score *= 2.0
        out.append((order, score))
    return out


def _order_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    levels, current = state.plan.levels(), [lp.var for lp in loops]
    if sorted(v.uid for g in levels for v in g) != sorted(v.uid for v in current):
        return []
    store, last = _store(loops), len(levels) - 1
    per_level = [_perms(g, store, inner=last > 0 and k == last, last=k == last) for k, g in enumerate(levels)]
    out = []
    for combo in itertools.product(*per_level):
        order = [v for part, _ in combo for v in part]
        score, label = math.prod(s for _, s in combo), " ".join(names[v] for v in order)
        if order == current:
            out.append(make.none(f"order {label} (as is)", score, "order", S.Reorder))
        else:
            out.append(make(f"order {label}", (S.Reorder(tuple(names[v] for v in order)),), score, "order"))
    out.sort(key=lambda a: -a.prior)
    out = out[:MAX_ORDERS]
    if out and not any(not a.steps for a in out):  # the loops as they are: always legal
        as_is = " ".join(names[v] for v in current)
        out.append(make.none(f"order {as_is} (as is)", min(a.prior for a in out), "order", S.Reorder))
    return out if len(out) > 1 else []


def _register(state: State, loops: list[Loop]) -> set[Var]:
    """The register tile: the innermost level of a tiled band, else the innermost loop."""
    return set(state.plan.levels()[-1]) if any(state.plan.split) else {loops[-1].var}


def _unroll_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    register = _register(state, loops)
    out = [make.none("unroll: none", 1.5, "unroll", S.Unroll)]
    for lp in loops:
        name = names[lp.var]
        if lp.kind is LoopKind.SERIAL and 2 <= lp.extent <= 16:
            score = 3.0 if lp.var in register and lp.extent <= 8 else 1.0
            out.append(make(f"unroll {name}", (S.Unroll(name),), score, "unroll", lp.extent))
        elif lp.kind is LoopKind.SERIAL and lp.extent > 16 and lp is not loops[-1]:
            for u in (2, 4, 8):
                steps = (S.Split(name, u), S.Unroll(f"{name}_i"))
                out.append(make(f"split {name} {u}; unroll {name}_i", steps, 0.3, "unroll", u))
    return out


def _vectorize_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    k = len(loops) - 1
    while k > 0 and loops[k].kind is LoopKind.UNROLLED:
        k -= 1
    lp = loops[k]
    if lp.kind is not LoopKind.SERIAL:
        return []
    indices = [s.index for s in walk_stmts(lp.body) if isinstance(s, Store)]
    indices += [ld.index for e in body_exprs(lp.body) for ld in loads(e)]
    contiguous = sum(1 for idx in indices if idx and lp.var in free_vars(idx[-1]))
    strided = sum(1 for idx in indices for e in idx[:-1] if lp.var in free_vars(e))
    score = max(0.2, 1.0 + 2 * contiguous - 3 * strided) * (2.0 if lp.extent >= rules.lanes else 0.5)
    name = names[lp.var]
    out = [make.none("vectorize: none", 1.0, "vectorize", S.Vectorize)]
    out.append(make(f"vectorize {name}", (S.Vectorize(name),), score, "vectorize", lp.extent))
    if _reduction(lp.var, _store(loops)):
        out.append(
            make(f"{format_step(S.Vectorize(name, True))}", (S.Vectorize(name, True),), score, "vectorize")
        )
    return out


def _stage_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    """Stage `tensor` at a loop outside the register tile: cache_read, or pack blocked by the extent
    of a register-tile loop indexing a dimension (B's columns by NR), each with its fill in parallel."""
    tensor = state.plan.inputs[state.cursor[2]]
    t, register = names[tensor], _register(state, loops)
    out = [make.none(f"stage {t}: none", 3.0, "stage", (S.CacheRead, S.Pack), t)]
    extent = {lp.var: lp.extent for lp in loops if lp.var in register}
    blocks = set()
    for ld in (ld for e in body_exprs(loops[-1].body) for ld in loads(e) if ld.buffer is tensor):
        for d, e in enumerate(ld.index):
            blocks |= {(d, extent[v]) for v in free_vars(e) if extent.get(v, 1) > 1}
    for lp in (lp for lp in loops if lp.var not in register):
        at, score = names[lp.var], 2.0 if _reduction(lp.var, _store(loops)) else 1.0
        forms = [(S.CacheRead(t, at), f"{t}_local_0", 1.0)]
        forms += [(S.Pack(t, at, d, f), f"{t}_pack_0", 2.0) for d, f in sorted(blocks)]
        for step, fill, weight in forms:
            out.append(make(format_step(step), (step,), score * weight, "stage", getattr(step, "factor", 0)))
            if rules.cores > 1:
                steps = (step, S.Parallel(fill))
                out.append(make(f"{format_step(step)}; parallel {fill}", steps, score * weight, "stage"))
    return out


def _cache_write_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    store = _store(loops)
    if store is None:
        return []
    c, register = names[store.buffer], _register(state, loops)
    outer = [lp for lp in loops if lp.var not in register]
    out = [make.none(f"cache_write {c}: none", 2.0, "cache_write", S.CacheWrite)]
    for lp in outer:
        score, at = 3.0 if lp is outer[-1] and any(state.plan.split) else 1.0, names[lp.var]
        out.append(make(f"cache_write {c} at {at}", (S.CacheWrite(c, at),), score, "cache_write"))
    return out


def _parallel_candidates(
    rules: LoopRules, state: State, loops: list[Loop], names: dict, make: _Maker
) -> list[Action]:
    cores, store = rules.cores, _store(loops)
    if cores <= 1:
        return []
    out, first = [make.none("parallel: none", 1.0, "parallel", S.Parallel)], True
    for lp in (lp for lp in loops if lp.kind is LoopKind.SERIAL and lp.extent >= 2):
        name, score = names[lp.var], 3.0 if first and lp.extent >= cores else 1.0
        first = first and lp.extent < cores
        out.append(make(f"parallel {name}", (S.Parallel(name),), score, "parallel", lp.extent))
        if _reduction(lp.var, store):
            out.append(make(f"parallel {name} reduce", (S.Parallel(name, True),), 0.5 * score, "parallel"))
    a, b = loops[0], loops[1] if len(loops) > 1 else None
    if b is not None and a.extent < 4 * cores and a.body == (b,) and a.kind is b.kind is LoopKind.SERIAL:
        steps = (S.Fuse(names[a.var], names[b.var]), S.Parallel(f"{names[a.var]}_{names[b.var]}"))
        out.append(make("; ".join(map(format_step, steps)), steps, 1.0, "parallel"))
    return out


__all__ = ["LoopPlan", "LoopRules", "band", "split_factors", "top_nests"]
