"""The accelerator's decisions in the search space (`search/space.py` walks them): a tile size per
loop of a contraction group, the tile loops' order, then buffering, which emits the group's steps.

Kept apart from the CPU slots because everything here is read off the accelerator backend
(`targets/accel/mapping.py`): its candidate tiles, its memory check and its buffer fitting, so a path
through these slots always ends in a mapping the backend accepts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kcomp import schedule as S
from kcomp.schedule import Step, format_step

if TYPE_CHECKING:
    from kcomp.search.space import Action, State


def _mapping(state: State, chosen: tuple[Any, ...]) -> tuple[Any, Any]:
    """The group under the cursor and the single-buffered mapping of the tiles (and order) chosen so
    far, the tiles not chosen yet at their smallest."""
    from kcomp.targets.accel.mapping import Mapping
    from kcomp.targets.accel.match import match

    g, entry = match(state.nest).groups[state.pos], state.plan.group
    assert entry is not None
    tiles = [c for c in chosen if isinstance(c, int)]
    sizes = [*tiles, *(min(entry["tiles"][n]) for n in entry["loops"][len(tiles) :])]
    roles = dict(zip([r for r in "ijk" if g.role(r) is not None], sizes, strict=True))
    by_name = dict(zip((f"{n}_o" for n in entry["loops"]), roles, strict=True))
    order = [by_name[o] for o in chosen[-1]] if chosen and isinstance(chosen[-1], tuple) else list(roles)
    return g, Mapping(roles.get("i", 1), roles.get("j", 1), roles.get("k", 1), tuple(order), frozenset())


def accel_fits(state: State, chosen: tuple[Any, ...]) -> bool:
    """Whether the tiles (and order) chosen so far, the other tiles at their smallest, fit
    single-buffered (larger tiles only need more memory: a choice passing this can be completed)."""
    from kcomp.targets.accel.codegen import reserved_rows
    from kcomp.targets.accel.mapping import fits

    g, m = _mapping(state, chosen)
    cfg = state.space.target.cfg
    return fits(g, m, cfg, reserved_rows(g, cfg))


def accel_candidates(state: State) -> list[Action]:
    """A tile size per loop, then the tile loops' order, then buffering, which emits the group's
    steps (`tile`, `reorder` when the order changes, `double_buffer` of every operand that fits
    twice, C last: a C tile too large to double-buffer still has its stores overlapped panel by
    panel, so large single-buffered C tiles are worth offering)."""
    from kcomp.search.space import DEFAULT_BOOST, Action
    from kcomp.targets.accel.codegen import reserved_rows
    from kcomp.targets.accel.mapping import ALL, fit_buffers

    g, pending, k = state.plan.group or {}, state.plan.pending, state.cursor[2]
    default, loops = g["default"], tuple(g["loops"])
    if state.phase == "tile":
        boost = {t: DEFAULT_BOOST if t == default["tiles"][k] else 1.0 for t in g["tiles"][loops[k]]}
        return [Action(f"tile {loops[k]} {t}", (), b, "tile", t, (t,)) for t, b in boost.items()]
    if state.phase == "order":
        boost = {tuple(o): DEFAULT_BOOST if o == default["order"] else 1.0 for o in g["orders"]}
        return [Action(f"order {' '.join(o)}", (), b, "order", 0, (o,)) for o, b in boost.items()]
    tiles, natural = tuple(pending[: len(loops)]), tuple(f"{n}_o" for n in loops)
    order = pending[len(loops)] if len(pending) > len(loops) else natural
    steps: tuple[Step, ...] = (S.Tile(loops, tiles), *((S.Reorder(order),) if order != natural else ()))
    text = "; ".join(map(format_step, steps))
    group, m = _mapping(state, tuple(pending))
    cfg = state.space.target.cfg
    doubled = fit_buffers(group, replace(m, double_buffer=ALL), cfg, reserved_rows(group, cfg)).double_buffer
    single = Action(f"{text} (single buffers)", steps, DEFAULT_BOOST if not default["double_buffer"] else 1.0,
                    "double_buffer", 0)  # fmt: skip
    if not doubled:
        return [single]
    names = () if doubled == ALL else tuple(g["tensors"][op] for op in sorted(doubled))
    step = S.DoubleBuffer(names)
    on = DEFAULT_BOOST if sorted(doubled) == default["double_buffer"] else 1.0
    return [Action(f"{text}; {format_step(step)}", (*steps, step), on, "double_buffer", 1), single]
