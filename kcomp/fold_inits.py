"""`cache_write ... init` where a schedule allows it: the register tile starts from the reduction's
identity and the nest that filled the tensor with it is gone (passes/cache_write.py says when that
is legal).  The default scheduler (kcomp.autoschedule) writes plain `cache_write` steps, because its
rules find nests by position and the upgrade removes a top-level nest; it folds them here, last.

Removing an initialisation nest renumbers the loops named like it further on: with two reductions,
the second's `i_init1` becomes `i_init` once the first's `i_init` is gone.  The steps after the
upgraded one then name loops by their old names, so they are renamed to what the same loops are
called once the nest is gone (matched by identity at the upgraded step, and the names steps derive
from them, `i_init1_o`, with them); the renamed schedule must still apply, or nothing changes.
"""

from __future__ import annotations

from dataclasses import fields, replace

from kcomp.errors import ScheduleError
from kcomp.expr import Var
from kcomp.loops import LoopNest
from kcomp.passes import apply, apply_step
from kcomp.printer import symbol_names
from kcomp.schedule import CacheWrite, Schedule, Step

LOOP_FIELDS = ("loop", "loops", "outer", "inner", "at")  # the fields of steps that name loops


def fold_inits(naive: LoopNest, steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """Each `cache_write` of `steps` (applied to `naive`) upgraded to `cache_write ... init` where the
    whole schedule, renamed as the module docstring says, still applies."""
    out = list(steps)
    for k, step in enumerate(out):
        if not isinstance(step, CacheWrite) or step.init:
            continue
        folded = CacheWrite(step.tensor, step.at, True)
        for trial in (
            [*out[:k], folded, *out[k + 1 :]],
            [*out[:k], folded, *_renamed(naive, out, k, folded)],
        ):
            try:
                apply(naive, Schedule(tuple(trial)))
            except ScheduleError:
                continue
            out = trial
            break
    return tuple(out)


def unfold_inits(naive: LoopNest, schedule: Schedule) -> Schedule:
    """`schedule` (applied to `naive`) with every `cache_write ... init` back to a plain `cache_write`,
    the steps after each renamed back to the loops' names while the fill nest stays: the form
    whose nests stay where the rules find them (the search's units work on it, then fold again)."""
    out = list(schedule.steps)
    for k, step in enumerate(out):
        if isinstance(step, CacheWrite) and step.init:
            plain = CacheWrite(step.tensor, step.at)
            out = [*out[:k], plain, *_renamed(naive, out, k, plain)]
    return Schedule(tuple(out))


def _renamed(naive: LoopNest, steps: list[Step], k: int, other: CacheWrite) -> list[Step]:
    """The steps after `steps[k]`, their loop names as they are once `other` (the same cache_write,
    folded or not) replaces it."""
    try:
        before = apply(naive, Schedule(tuple(steps[:k])))
        old, new = symbol_names(apply_step(before, steps[k])), symbol_names(apply_step(before, other))
    except ScheduleError:
        return steps[k + 1 :]
    rename = {old[v]: new[v] for v in old if isinstance(v, Var) and v in new and old[v] != new[v]}
    return [_rename_step(s, rename) for s in steps[k + 1 :]] if rename else steps[k + 1 :]


def _rename_step(step: Step, rename: dict[str, str]) -> Step:
    def one(name: str) -> str:
        for old in sorted(rename, key=len, reverse=True):  # NOTE: `i_init1_o` was derived from `i_init1`
            if name == old or name.startswith(old + "_"):
                return rename[old] + name[len(old) :]
        return name

    changes = {}
    for f in fields(step):  # type: ignore[arg-type]
        if f.name in LOOP_FIELDS:
            value = getattr(step, f.name)
            changes[f.name] = tuple(map(one, value)) if isinstance(value, tuple) else one(value)
    return replace(step, **changes)  # type: ignore[type-var]
