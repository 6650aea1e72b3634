"""The search space of one kernel on one target: the decisions its rules offer, as a tree of states.

    space = Space(program, target)       state = space.root()
    state.actions() -> [Action]          each with a readable `label`, a `prior` and the `steps` it adds
    state.apply(action) -> State         state.is_terminal(), state.schedule(), state.key()

The first decision is the fusion of the kernel's intermediates (`search/fusion.py`: the default
scheduler's fusion, none, and variations of it: compute_at levels, inline or materialize, one-pass
or not); the units that follow are the top-level nests of the nest that fusion leaves.  The target
supplies the rules (`target.search_rules()`, search/rules.py: the CPU's loop
transformations in search/loop_rules.py, the accelerator's mapping decisions in its own package)
and the default schedule; the space walks them unit by unit, each unit starting with the `recipe`
slot: the default schedule's steps for the unit, whole, or search it.

Every action is legal (candidates raising `ScheduleError`, or refused by the rules, are dropped).
`key()` hashes the canonical nest (plus steps it does not show, and the next slot while decisions
remain): different paths to the same code share statistics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from kcomp import schedule as S
from kcomp.errors import ScheduleError
from kcomp.fold_inits import fold_inits, unfold_inits
from kcomp.loops import LoopNest
from kcomp.lower import lower
from kcomp.passes import apply, apply_step
from kcomp.printer import canonical, symbol_names
from kcomp.program import Program
from kcomp.schedule import Schedule, Step, format_step
from kcomp.search.fusion import Variant, fusion_variants, per_nest_default
from kcomp.search.rules import Action, Plan, Rules

UNSEEN = (S.DoubleBuffer,)  # steps that leave the loop nest as it is
DEFAULT_RECIPE = "default recipe"


@dataclass(frozen=True)
class _Start:
    """The plan before a unit is entered (no slots)."""

    def slots(self, phase: str) -> int:
        return 0

    def describe(self, names: dict) -> str:
        return "[] ()"


@dataclass(frozen=True, eq=False)
class State:
    space: Space
    nest: LoopNest
    by_nest: tuple[tuple[Step, ...], ...]  # steps per unit, in program order
    order: tuple[Step, ...]  # all steps, in the order they were taken
    cursor: tuple[int, int, int]  # (index into the variant's unit order, phase, sub-slot)
    plan: Plan
    memo: dict = field(default_factory=dict, repr=False)
    variant: int = -1  # the fusion variant taken (-1: not decided yet)

    @property
    def fusion(self) -> Variant:
        return self.space.variant(max(self.variant, 0))

    @property
    def default_steps(self) -> tuple[tuple[Step, ...], ...]:
        """The default schedule's steps per unit of this state's fusion variant."""
        return self.fusion.units.default_steps

    def is_terminal(self) -> bool:
        return self.variant >= 0 and self.cursor[0] >= len(self.fusion.units.order)

    @property
    def pos(self) -> int:
        return self.fusion.units.order[self.cursor[0]]

    @property
    def phase(self) -> str:
        return self.space.phases[self.cursor[1]]

    def key(self) -> str:
        """sha256 of the canonical nest (`structural_hash` when nothing else applies), the steps it
        does not show, and while decisions remain the next slot and what it depends on."""
        if "key" not in self.memo:
            unseen = "; ".join(format_step(s) for s in self.order if isinstance(s, UNSEEN))
            text = (
                canonical(self.nest)
                + (f"#unseen {unseen}" if unseen else "")
                + ("#fusion" if self.variant < 0 else "")
            )
            if not self.is_terminal():
                text += f"#{self.cursor} {self.plan.describe(self.space.names(self.nest))}"
            self.memo["key"] = hashlib.sha256(text.encode()).hexdigest()
        return self.memo["key"]

    def schedule(self) -> Schedule:
        """The fusion steps, then the steps so far grouped by unit in program order (in the order
        taken, should that grouping not replay to the same nest)."""
        if "schedule" not in self.memo:
            prefix = self.fusion.steps if self.variant >= 0 else ()
            grouped = Schedule(prefix + tuple(s for steps in self.by_nest for s in steps))
            if grouped.steps != prefix + self.order and not self.space.replays(grouped, self.nest):
                grouped = Schedule(prefix + self.order)
            # NOTE: tiles that may start from the fill's constant do, last (it removes a nest)
            self.memo["schedule"] = Schedule(fold_inits(self.space.naive, grouped.steps))
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
        if action.label not in settled and self.variant < 0:
            settled[action.label] = stepped
        if action.label not in settled:
            same_nest = stepped.cursor[0] == self.cursor[0]
            settled[action.label] = _settle(stepped) if same_nest else _enter(stepped)
        return settled[action.label]


class Space:
    """The decisions for one kernel on one target (a `kcomp.targets.Target`: its `search_rules()`
    and `default_schedule`)."""

    def __init__(self, program: Program, target: Any, *, fused_default: bool = True):
        self.program, self.target = program, target
        self.naive = lower(program)
        self.rules: Rules = target.search_rules()
        self.phases = ("recipe", *self.rules.phases)
        self.default = unfold_inits(self.naive, target.default_schedule(program, self.naive))
        self._replays: dict[str, bool] = {}
        self._names: dict[int, tuple[LoopNest, dict]] = {}
        self._variants = fusion_variants(program, target, self.naive, self.default, fused_default)
        units = self.variant(0).units
        self.nest_order, self.work, self.default_steps = units.order, units.work, units.default_steps

    def variant(self, k: int) -> Variant:
        """Fusion variant `k` (0: the one the baseline uses), its units computed on first use."""
        v = self._variants[k]
        if v.units is None:
            nest = apply(self.naive, Schedule(v.steps))
            rest = v.rest if v.rest is not None else per_nest_default(self.target, self.program, nest)
            v.nest, v.units = nest, self.rules.units(nest, Schedule(rest))
        return v

    def root(self) -> State:
        if len(self._variants) == 1:
            return _start_variant(self, 0)
        return State(self, self.naive, (), (), (0, 0, 0), _Start())

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


# ---------------------------------------------------------------- transitions


def _start_variant(space: Space, k: int) -> State:
    v = space.variant(k)
    assert v.nest is not None and v.units is not None
    empty = tuple(() for _ in v.units.default_steps)
    return _enter(State(space, v.nest, empty, (), (0, 0, 0), _Start(), variant=k))


def _transition(state: State, action: Action) -> State | None:
    nest, space = state.nest, state.space
    if state.variant < 0:
        try:
            return _start_variant(space, action.choice[0])
        except ScheduleError:
            return None
    try:
        for step in action.steps:
            nest = apply_step(nest, step)
        plan = state.plan if state.phase == "recipe" else space.rules.advance(state, action, nest)
    except ScheduleError:
        return None
    if plan is None:
        return None
    n, phase, sub = state.cursor
    pos = state.pos
    by_nest = (*state.by_nest[:pos], state.by_nest[pos] + action.steps, *state.by_nest[pos + 1 :])
    done = state.phase == "recipe" and action.label.startswith(DEFAULT_RECIPE)
    done = done or (state.phase != "recipe" and space.rules.finishes(action))
    cursor = (n + 1, 0, 0) if done else (n, phase, sub + 1)
    return State(space, nest, by_nest, state.order + action.steps, cursor, plan, variant=state.variant)


def _enter(state: State) -> State:
    """Start the unit under the cursor: read what its slots need, find its first decision."""
    if state.variant < 0 or state.is_terminal():
        return state
    plan = state.space.rules.enter(state)
    return _settle(replace(state, cursor=(state.cursor[0], 0, 0), plan=plan, memo={}))


def _settle(state: State) -> State:
    """Move the cursor past slots with nothing to decide; a slot with a single choice takes it."""
    n, phase, sub = state.cursor
    while True:
        if phase >= len(state.space.phases):
            return _enter(replace(state, cursor=(n + 1, 0, 0), memo={}))
        name = state.space.phases[phase]
        if sub >= (1 if name == "recipe" else state.plan.slots(name)):
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


def _candidates(state: State) -> list[Action]:
    if state.variant < 0:
        return [
            Action(v.label, v.steps, v.prior, "fusion", choice=(k,))
            for k, v in enumerate(state.space._variants)
        ]
    if state.phase != "recipe":
        return state.space.rules.candidates(state)
    pos = state.pos
    steps = state.default_steps[pos]
    text = "; ".join(map(format_step, steps)) or "no steps"
    default = Action(f"{DEFAULT_RECIPE} ({text})", steps, 0.6, "recipe")
    return [default, Action(f"search nest {pos}", (), 0.4, "recipe")]


__all__ = ["Action", "Space", "State"]
