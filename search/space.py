"""The search space of one kernel: the decisions the scheduling passes offer, as a tree of states.

    space = Space(program, target)       state = space.root()
    state.actions() -> [Action]          each with a readable `label`, a `prior` and the `steps` it adds
    state.apply(action) -> State         state.is_terminal(), state.schedule(), state.key()

CPU decisions go one top-level nest (statement) at a time, most work first; inside a nest in the
order of the default scheduler's GEMM recipe (each sees the loops the previous made):

    recipe       the default scheduler's steps for this nest, whole -- or search the nest:
    split L      per band loop: none, or a factor (divisors and non-divisors: powers of two, multiples
                 of the vector width, register-tile sizes, equal blocks); `split L_o`: a second level
    order        a permutation of each level of the tiled band: cache blocks, tiles, register tile
    unroll       one loop fully unrolled, or split and its inner part unrolled
    vectorize    the innermost loop (`reduce` where it is a reduction)
    stage T      per input: none, `cache_read` or `pack ... block D F` at a loop, with a parallel fill
    cache_write  the output's tile at a loop;  parallel: a loop (`reduce`, or two loops fused first)

Accelerator, per contraction group (`targets/accel/mapping.py`'s `search_space`): recipe, a tile size
per loop, the tile loops' order, double buffering (which emits tile, reorder, double_buffer).

Every action is legal (candidates raising `ScheduleError` are dropped).  The default's steps for a
nest are one `recipe` action, and its decisions get the highest priors in searched slots.  `key()`
hashes the canonical nest (plus steps it does not show, and the next slot while decisions remain):
different paths to the same code share statistics.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from kcomp import schedule as S
from kcomp.autoschedule import default_schedule
from kcomp.errors import ScheduleError
from kcomp.expr import Buffer, Var, free_vars, loads
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.lower import lower
from kcomp.passes import apply, apply_step
from kcomp.passes.common import body_exprs
from kcomp.printer import canonical, symbol_names
from kcomp.program import Program
from kcomp.schedule import Schedule, Step, format_step

CPU_PHASES = ("recipe", "split", "split2", "order", "unroll", "vectorize", "stage", "cache_write", "parallel")
ACCEL_PHASES = ("recipe", "tile", "order", "double_buffer")
UNSEEN = (S.DoubleBuffer,)  # steps that leave the loop nest as it is
DEFAULT_BOOST = 8.0  # prior multiplier of the choices the default scheduler makes
MAX_FACTORS = 16  # split candidates per loop (the best by prior)
MAX_ORDERS = 48
STAGE_LIMIT = 1 << 21  # elements of a staged copy (cache_read / pack)
TILE_LIMIT = 1 << 14  # elements of a cache_write tile
DEFAULT_RECIPE = "default recipe"


@dataclass(frozen=True)
class Action:
    """A decision: the steps it appends (none: "leave as is"), its prior, `kind` (the family profile
    guidance scales priors by), `size` (tile or block size, 0 if none) and `choice` (what a decision
    whose steps come later, an accelerator tile, records)."""

    label: str
    steps: tuple[Step, ...]
    prior: float
    kind: str
    size: int = 0
    choice: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Plan:
    """What the decisions taken so far in the current nest (or accelerator group) tell later slots."""

    band0: tuple[Var, ...] = ()  # the nest's band when its decisions started
    split: tuple[tuple[Var, Var] | None, ...] = ()  # per band0 loop: (outer, inner) once split
    split2: tuple[tuple[Var, Var] | None, ...] = ()  # per band0 loop: its outer loop split again
    inputs: tuple[Buffer, ...] = ()  # tensors the nest reads (one stage slot each)
    group: dict | None = None  # accelerator: this group's entry of search_space
    pending: tuple[Any, ...] = ()  # accelerator: tile sizes, then the order, chosen so far

    def slots(self, phase: str) -> int:
        """How many decisions a phase takes here: one per band loop, input or accelerator loop."""
        per = {"split": self.band0, "split2": self.band0, "stage": self.inputs}
        return len(per[phase]) if phase in per else len(self.group["loops"]) if phase == "tile" else 1

    def levels(self) -> list[list[Var]]:
        """The tiled band's levels, outermost first: cache blocks, tiles (and unsplit loops), register tile."""
        g0 = [s2[0] for s2 in self.split2 if s2]
        rows = zip(self.band0, self.split, self.split2, strict=True)
        g1 = [s2[1] if s2 else s[0] if s else v for v, s, s2 in rows]
        g2 = [s[1] for s in self.split if s]
        return [g for g in (g0, g1, g2) if g]


@dataclass(frozen=True, eq=False)
class State:
    space: Space
    nest: LoopNest
    by_nest: tuple[tuple[Step, ...], ...]  # steps per top-level nest (or group), in program order
    order: tuple[Step, ...]  # all steps, in the order they were taken
    cursor: tuple[int, int, int]  # (index into space.nest_order, phase, sub-slot)
    plan: Plan
    memo: dict = field(default_factory=dict, repr=False)

    def is_terminal(self) -> bool:
        return self.cursor[0] >= len(self.space.nest_order)

    @property
    def pos(self) -> int:
        return self.space.nest_order[self.cursor[0]]

    @property
    def phase(self) -> str:
        return self.space.phases[self.cursor[1]]

    def key(self) -> str:
        """sha256 of the canonical nest (`structural_hash` when nothing else applies), the steps it
        does not show, and while decisions remain the next slot and what it depends on."""
        if "key" not in self.memo:
            unseen = "; ".join(format_step(s) for s in self.order if isinstance(s, UNSEEN))
            text = canonical(self.nest) + (f"#unseen {unseen}" if unseen else "")
            if not self.is_terminal():
                names = self.space.names(self.nest)
                levels = [[names.get(v, "?") for v in g] for g in self.plan.levels()]
                text += f"#{self.cursor} {levels} {self.plan.pending}"
            self.memo["key"] = hashlib.sha256(text.encode()).hexdigest()
        return self.memo["key"]

    def schedule(self) -> Schedule:
        """The steps so far grouped by nest in program order (in the order taken, should that
        grouping not replay to the same nest)."""
        if "schedule" not in self.memo:
            grouped = Schedule(tuple(s for steps in self.by_nest for s in steps))
            if grouped.steps != self.order and not self.space.replays(grouped, self.nest):
                grouped = Schedule(self.order)
            self.memo["schedule"] = grouped
        return self.memo["schedule"]

    def candidates(self) -> list[Action]:
        """The slot's actions before the legality check, highest prior first (priors sum to 1).
        Cheaper than `actions()`: a strategy may take these and check each with `is_legal`."""
        if "candidates" not in self.memo:
            found = [] if self.is_terminal() else _candidates(self)
            total = sum(a.prior for a in found) or 1.0
            self.memo["candidates"] = sorted(
                (replace(a, prior=a.prior / total) for a in found), key=lambda a: -a.prior
            )
        return self.memo["candidates"]

    def actions(self) -> list[Action]:
        """The legal actions, highest prior first (priors sum to 1)."""
        if "actions" not in self.memo:
            kept = [a for a in self.candidates() if self.is_legal(a)]
            total = sum(a.prior for a in kept) or 1.0
            self.memo["actions"] = [replace(a, prior=a.prior / total) for a in kept]
        return self.memo["actions"]

    def is_legal(self, action: Action) -> bool:
        """Whether `action`'s steps apply (remembered: `apply` reuses the result)."""
        stepped = self.memo.setdefault("stepped", {})
        if action.label not in stepped:
            stepped[action.label] = _transition(self, action)
        return stepped[action.label] is not None

    def apply(self, action: Action) -> State:
        """The state after `action`, its cursor on the next slot with something to decide (cached)."""
        if not self.is_legal(action):
            raise ScheduleError(f"action '{action.label}' is not legal here")
        stepped, settled = self.memo["stepped"][action.label], self.memo.setdefault("settled", {})
        if action.label not in settled:
            same_nest = stepped.cursor[0] == self.cursor[0]
            settled[action.label] = _settle(stepped) if same_nest else _enter(stepped)
        return settled[action.label]


class Space:
    """The decisions for one kernel on one target (a `Target`, or anything with `name`,
    `vector_bits` and `cores`; an accelerator target also has `cfg`)."""

    def __init__(self, program: Program, target: Any):
        self.program, self.target = program, target
        self.family = str(getattr(target, "name", target)).split(":")[0]
        self.naive = lower(program)
        self.lanes = max(1, getattr(target, "vector_bits", 0) // 32)
        self.cores = max(1, getattr(target, "cores", 1))
        self.default = default_schedule(program, self.naive, target)
        self._replays: dict[str, bool] = {}
        self._names: dict[int, tuple[LoopNest, dict]] = {}
        if self.family == "accel":
            self.phases = ACCEL_PHASES
            self.nest_order = tuple(range(len(self.accel_groups(self.naive))))
            self.work = [1] * len(self.nest_order)
            self.default_steps = [self.default.steps] + [()] * (len(self.nest_order) - 1)
            return
        self.phases = CPU_PHASES
        self.work = [_work(t) for t in top_nests(self.naive.body)]  # iterations of each nest
        self.nest_order = tuple(sorted(range(len(self.work)), key=lambda p: -self.work[p]))
        self.default_steps = _by_nest(self.naive, self.default, len(self.work))

    def root(self) -> State:
        empty = tuple(() for _ in self.default_steps)
        return _enter(State(self, self.naive, empty, (), (0, 0, 0), Plan()))

    def accel_groups(self, nest: LoopNest) -> list[dict]:
        from kcomp.targets.accel.mapping import search_space

        return search_space(nest, self.target.cfg)

    def names(self, nest: LoopNest) -> dict:
        """`symbol_names(nest)`, remembered for the nests of recent states."""
        if id(nest) not in self._names or self._names[id(nest)][0] is not nest:
            self._names[id(nest)] = (nest, symbol_names(nest))
        return self._names[id(nest)][1]

    def replays(self, schedule: Schedule, nest: LoopNest) -> bool:
        """Whether `schedule` applied to the naive nest gives `nest` (cached by schedule text)."""
        if schedule.hash not in self._replays:
            try:
                self._replays[schedule.hash] = canonical(apply(self.naive, schedule)) == canonical(nest)
            except ScheduleError:
                self._replays[schedule.hash] = False
        return self._replays[schedule.hash]


# ---------------------------------------------------------------- nests and bands


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


# ---------------------------------------------------------------- transitions


def _transition(state: State, action: Action) -> State | None:
    nest, space = state.nest, state.space
    try:
        for step in action.steps:
            nest = apply_step(nest, step)
        if action.kind == "double_buffer":  # the backend checks the mapping fits the memories
            from kcomp.targets.accel.backend import mappings

            mappings(nest, space.target.cfg, Schedule(state.order + action.steps))
    except ScheduleError:
        return None
    from kcomp.search.accel_space import accel_fits

    if action.choice and not accel_fits(state, (*state.plan.pending, *action.choice)):
        return None
    if action.kind in ("stage", "cache_write"):
        old = {s.buffer for s in walk_stmts(state.nest.body) if isinstance(s, Alloc)}
        new = [s.buffer.size for s in walk_stmts(nest.body) if isinstance(s, Alloc) and s.buffer not in old]
        if max(new, default=0) > (STAGE_LIMIT if action.kind == "stage" else TILE_LIMIT):
            return None
    plan, (n, phase, sub), pos = state.plan, state.cursor, state.pos
    by_nest = (*state.by_nest[:pos], state.by_nest[pos] + action.steps, *state.by_nest[pos + 1 :])
    if state.phase in ("split", "split2") and action.steps:
        old_vars = {lp.var for lp in band(top_nests(state.nest.body)[state.pos])}
        new = [lp.var for lp in band(top_nests(nest.body)[state.pos]) if lp.var not in old_vars]
        records = getattr(plan, state.phase)
        plan = replace(plan, **{state.phase: (*records[:sub], (new[0], new[1]), *records[sub + 1 :])})
    plan = replace(plan, pending=plan.pending + action.choice)
    done = action.label.startswith(DEFAULT_RECIPE) or action.kind == "double_buffer"
    cursor = (n + 1, 0, 0) if done else (n, phase, sub + 1)
    return State(space, nest, by_nest, state.order + action.steps, cursor, plan)


def _enter(state: State) -> State:
    """Start the nest (or group) under the cursor: read what its slots need, find its first decision."""
    if state.is_terminal():
        return state
    if state.space.family == "accel":
        plan = Plan(group=state.space.accel_groups(state.nest)[state.pos])
    else:
        top = top_nests(state.nest.body)[state.pos]
        written = {s.buffer for s in walk_stmts((top,)) if isinstance(s, Store)}
        inputs = [ld.buffer for e in body_exprs((top,)) for ld in loads(e) if ld.buffer not in written]
        loops, none = tuple(lp.var for lp in band(top)), (None,) * len(band(top))
        plan = Plan(loops, none, none, tuple(dict.fromkeys(inputs)))
    return _settle(replace(state, cursor=(state.cursor[0], 0, 0), plan=plan, memo={}))


def _settle(state: State) -> State:
    """Move the cursor past slots with nothing to decide; a slot with a single choice takes it."""
    n, phase, sub = state.cursor
    while True:
        if phase >= len(state.space.phases):
            return _enter(replace(state, cursor=(n + 1, 0, 0), memo={}))
        if sub >= state.plan.slots(state.space.phases[phase]):
            phase, sub = phase + 1, 0
            continue
        probe = replace(state, cursor=(n, phase, sub), memo={})
        found = probe.candidates()
        if len(found) > 1 or (found and found[0].steps):
            return probe
        if found and found[0].choice:
            state = _transition(probe, found[0]) or probe
            n, phase, sub = state.cursor
            continue
        sub += 1


# ---------------------------------------------------------------- candidates per slot


def _candidates(state: State) -> list[Action]:
    from kcomp.search.accel_space import accel_candidates

    space, pos, phase = state.space, state.pos, state.phase
    if phase == "recipe":
        steps = space.default_steps[pos]
        text = "; ".join(map(format_step, steps)) or "no steps"
        default = Action(f"{DEFAULT_RECIPE} ({text})", steps, 0.6, "recipe")
        return [default, Action(f"search nest {pos}", (), 0.4, "recipe")]
    if space.family == "accel":
        return accel_candidates(state)
    slot = {"split": _split_candidates, "split2": _split_candidates, "order": _order_candidates}
    slot |= {"unroll": _unroll_candidates, "vectorize": _vectorize_candidates, "stage": _stage_candidates}
    slot |= {"cache_write": _cache_write_candidates, "parallel": _parallel_candidates}
    loops = band(top_nests(state.nest.body)[pos])
    return slot[phase](state, loops, space.names(state.nest), _Maker(set(space.default_steps[pos])))


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


def _split_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
    plan, lanes, level2, k = state.plan, state.space.lanes, state.phase == "split2", state.cursor[2]
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


def _order_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
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
    return out[:MAX_ORDERS] if len(out) > 1 else []


def _register(state: State, loops: list[Loop]) -> set[Var]:
    """The register tile: the innermost level of a tiled band, else the innermost loop."""
    return set(state.plan.levels()[-1]) if any(state.plan.split) else {loops[-1].var}


def _unroll_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
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


def _vectorize_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
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
    score = max(0.2, 1.0 + 2 * contiguous - 3 * strided) * (2.0 if lp.extent >= state.space.lanes else 0.5)
    name = names[lp.var]
    out = [make.none("vectorize: none", 1.0, "vectorize", S.Vectorize)]
    out.append(make(f"vectorize {name}", (S.Vectorize(name),), score, "vectorize", lp.extent))
    if _reduction(lp.var, _store(loops)):
        out.append(
            make(f"{format_step(S.Vectorize(name, True))}", (S.Vectorize(name, True),), score, "vectorize")
        )
    return out


def _stage_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
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
            if state.space.cores > 1:
                steps = (step, S.Parallel(fill))
                out.append(make(f"{format_step(step)}; parallel {fill}", steps, score * weight, "stage"))
    return out


def _cache_write_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
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


def _parallel_candidates(state: State, loops: list[Loop], names: dict, make: _Maker) -> list[Action]:
    cores, store = state.space.cores, _store(loops)
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


__all__ = ["Action", "Space", "State", "split_factors"]
