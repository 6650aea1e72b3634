"""The accelerator's decisions in the search space (`AccelRules`, search/rules.py): per contraction
group, a tile size per loop, the tile loops' order, then buffering, which emits the group's steps.

Everything here is read off the backend (mapping.py): its candidate tiles, its memory check and its
buffer fitting, so a path through these slots always ends in a mapping the backend accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import permutations
from typing import TYPE_CHECKING, Any

from kcomp import schedule as S
from kcomp.loops import LoopNest
from kcomp.schedule import Schedule, Step, format_step
from kcomp.search.rules import DEFAULT_BOOST, Action, Units
from kcomp.targets.accel.compiler.backend import mappings
from kcomp.targets.accel.compiler.codegen import reserved_rows
from kcomp.targets.accel.compiler.mapping import (
    ALL,
    Mapping,
    base_name,
    default_mapping,
    fit_buffers,
    fits,
    present,
    tile_candidates,
)
from kcomp.targets.accel.compiler.match import match
from kcomp.targets.accel.machine.config import AccelConfig

if TYPE_CHECKING:
    from kcomp.search.space import State

PHASES = ("tile", "order", "double_buffer")


@dataclass(frozen=True)
class AccelPlan:
    """A group's entry of `search_space` and the tile sizes, then the order, chosen so far."""

    group: dict
    pending: tuple[Any, ...] = ()

    def slots(self, phase: str) -> int:
        return len(self.group["loops"]) if phase == "tile" else 1

    def describe(self, names: dict) -> str:
        return f"[] {self.pending}"


class AccelRules:
    """The mapping decisions of the accelerator of configuration `cfg`."""

    phases = PHASES

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg

    def units(self, naive: LoopNest, default: Schedule) -> Units:
        """One unit per contraction group, in program order; its recipe is the default's steps for it
        (a mapping spells each group as a `tile` step and what follows it: `group_steps`)."""
        count = len(match(naive, self.cfg).groups)
        steps: list[tuple[Step, ...]] = []
        for step in default.steps:
            if isinstance(step, S.Tile) or not steps:
                steps.append(())
            steps[-1] += (step,)
        if len(steps) != count:  # not one tile per group: the whole default is the first recipe
            steps = [default.steps] + [()] * (count - 1)
        return Units(tuple(range(count)), (1,) * count, tuple(steps))

    def enter(self, state: State) -> AccelPlan:
        return AccelPlan(search_space(state.nest, self.cfg)[state.pos])

    def candidates(self, state: State) -> list[Action]:
        """A tile size per loop, then the tile loops' order, then buffering, which emits the group's
        steps (`tile`, `reorder` when the order changes, `double_buffer` of every operand that fits
        twice, C last: a C tile too large to double-buffer still has its stores overlapped panel by
        panel, so large single-buffered C tiles are worth offering)."""
        plan = state.plan
        assert isinstance(plan, AccelPlan)
        g, pending, k = plan.group, plan.pending, state.cursor[2]
        default, loops = g["default"], tuple(g["loops"])
        if state.phase == "tile":
            boost = {t: DEFAULT_BOOST if t == default["tiles"][k] else 1.0 for t in g["tiles"][loops[k]]}
            return [Action(f"tile {loops[k]} {t}", (), b, "tile", t, (t,)) for t, b in boost.items()]
        if state.phase == "order":
            boost = {tuple(o): DEFAULT_BOOST if o == default["order"] else 1.0 for o in g["orders"]}
            return [Action(f"order {' '.join(o)}", (), b, "order", 0, (o,)) for o, b in boost.items()]
        tiles = tuple(pending[: len(loops)])
        natural = tuple(f"{n}_o" for n in loops[1 if g["stack"] else 0 :])  # the roles' tile loops
        order = pending[len(loops)] if len(pending) > len(loops) else natural
        steps: tuple[Step, ...] = (S.Tile(loops, tiles), *((S.Reorder(order),) if order != natural else ()))
        text = "; ".join(map(format_step, steps))
        group, m = _mapping(state, tuple(pending), self.cfg)
        doubled = fit_buffers(group, replace(m, double_buffer=ALL), self.cfg, reserved_rows(group, self.cfg))
        single_boost = DEFAULT_BOOST if not default["double_buffer"] else 1.0
        single = Action(f"{text} (single buffers)", steps, single_boost, "double_buffer", 0)
        if not doubled.double_buffer:
            return [single]
        names = (
            ()
            if doubled.double_buffer == ALL
            else tuple(g["tensors"][op] for op in sorted(doubled.double_buffer))
        )
        step = S.DoubleBuffer(names)
        on = DEFAULT_BOOST if sorted(doubled.double_buffer) == default["double_buffer"] else 1.0
        return [Action(f"{text}; {format_step(step)}", (*steps, step), on, "double_buffer", 1), single]

    def advance(self, state: State, action: Action, nest: LoopNest) -> AccelPlan | None:
        """A tile or order choice must still fit with the tiles not chosen yet at their smallest; the
        buffering choice must be a mapping the backend accepts (`ScheduleError` refuses it)."""
        plan = state.plan
        assert isinstance(plan, AccelPlan)
        if action.kind == "double_buffer":
            mappings(nest, self.cfg, Schedule(state.order + action.steps))
        if action.choice and not self._fits(state, (*plan.pending, *action.choice)):
            return None
        return replace(plan, pending=plan.pending + action.choice)

    def finishes(self, action: Action) -> bool:
        return action.kind == "double_buffer"

    def _fits(self, state: State, chosen: tuple[Any, ...]) -> bool:
        """Whether the tiles (and order) chosen so far, the other tiles at their smallest, fit
        single-buffered (larger tiles only need more memory: a choice passing this can be completed)."""
        g, m = _mapping(state, chosen, self.cfg)
        return fits(g, m, self.cfg, reserved_rows(g, self.cfg))


def _mapping(state: State, chosen: tuple[Any, ...], cfg: AccelConfig) -> tuple[Any, Mapping]:
    """The group under the cursor and the single-buffered mapping of the tiles (and order) chosen so
    far, the tiles not chosen yet at their smallest."""
    plan = state.plan
    assert isinstance(plan, AccelPlan)
    g, entry = match(state.nest, cfg).groups[state.pos], plan.group
    tiles = [c for c in chosen if isinstance(c, int)]
    sizes = [*tiles, *(min(entry["tiles"][n]) for n in entry["loops"][len(tiles) :])]
    th = sizes.pop(0) if entry["stack"] else 1
    roles = dict(zip([r for r in "ijk" if g.role(r) is not None], sizes, strict=True))
    by_name = dict(zip((f"{n}_o" for n in entry["loops"][1 if entry["stack"] else 0 :]), roles, strict=True))
    order = [by_name[o] for o in chosen[-1]] if chosen and isinstance(chosen[-1], tuple) else list(roles)
    return g, Mapping(
        roles.get("i", 1), roles.get("j", 1), roles.get("k", 1), tuple(order), frozenset(), th=th
    )


def search_space(nest: LoopNest, cfg: AccelConfig) -> list[dict]:
    """The mapping decisions of each contraction group of `nest`, as plain data: tile size candidates
    per loop (dim x 2^n and the whole extent; a combination that does not fit is a ScheduleError when
    it is compiled), tile-loop orders, double buffering on/off, and the default's choice.  A group
    with a stack axis (match.py's i2) tiles it first: how many whole i ranges one tile stacks."""
    out = []
    for g in match(nest, cfg).groups:
        roles = present(g, ("i", "j", "k"))
        tiles = {base_name(g, r): tile_candidates(g.extent(r), cfg.dim, r == "i") for r in roles}
        default = default_mapping(g, cfg, reserved_rows(g, cfg))
        loops, extents = [base_name(g, r) for r in roles], [g.extent(r) for r in roles]
        chosen = [default.tile(r) for r in roles]
        if g.stack is not None:
            name = g.stack.name
            tiles = {name: tile_candidates(g.stack.extent, 1, False)} | tiles
            loops, extents, chosen = [name, *loops], [g.stack.extent, *extents], [default.th, *chosen]
        out.append(
            {
                "statement": g.text,
                "tensors": g.tensors,
                "loops": loops,
                "stack": g.stack is not None,
                "extents": extents,
                "tiles": tiles,
                "orders": [[f"{base_name(g, r)}_o" for r in p] for p in permutations(roles)],
                "double_buffer": [True, False],
                "default": {
                    "tiles": chosen,
                    "order": [f"{base_name(g, r)}_o" for r in default.order],
                    "double_buffer": sorted(default.double_buffer),
                },
            }
        )
    return out


__all__ = ["AccelPlan", "AccelRules", "search_space"]
