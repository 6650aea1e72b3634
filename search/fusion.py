"""The fusion decision of the search space: which intermediates are inlined, computed at which loop
of their consumer, or materialized, and whether running-max pairs become one pass.

Fusion changes which top-level nests exist, so it is decided first, as one choice among variants:

    default     the default scheduler's fusion (kcomp/autofuse.py), with its per-nest steps
    none        every intermediate materialized (its own nest and buffer)
    no inline   the same rules, computing elementwise intermediates at a loop instead of inlining
    deepest     the same rules at the innermost loop where each rule holds (smaller regions)
    one pass    the same rules, with `online M S` for every running-max pair whatever the row size
    without X   the default's fusion with one of its steps left out (X materialized)

Each variant's per-nest units and default steps come from the target's default scheduler run on
the fused nest with fusion turned off, so every variant starts from a good schedule of its nests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kcomp.autofuse import fusion_steps
from kcomp.errors import ScheduleError
from kcomp.fold_inits import unfold_inits
from kcomp.loops import LoopNest
from kcomp.passes import apply
from kcomp.printer import canonical
from kcomp.program import Program
from kcomp.schedule import ComputeAt, Inline, Materialize, Online, Schedule, Step, Welford, format_step
from kcomp.search.rules import Units

FUSION_STEPS = (ComputeAt, Inline, Materialize, Online, Welford)


@dataclass(eq=False)
class Variant:
    label: str
    steps: tuple[Step, ...]  # the fusion steps, applied to the naive nest first
    prior: float
    rest: tuple[Step, ...] | None = None  # the per-nest default steps, when known already
    nest: LoopNest | None = None  # filled on first use (Space.variant)
    units: Units | None = None


def split_fusion(schedule: Schedule) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The leading fusion steps of `schedule`, and the rest."""
    k = 0
    while k < len(schedule.steps) and isinstance(schedule.steps[k], FUSION_STEPS):
        k += 1
    return schedule.steps[:k], schedule.steps[k:]


def per_nest_default(target: Any, program: Program, nest: LoopNest) -> tuple[Step, ...]:
    """The target's default steps for an already fused `nest`, fusing nothing more."""
    try:
        return unfold_inits(nest, target.default_schedule(program, nest, fuse=False)).steps
    except TypeError:  # a target whose default_schedule takes no `fuse` (it does not fuse)
        return unfold_inits(nest, target.default_schedule(program, nest)).steps


def fusion_variants(
    program: Program, target: Any, naive: LoopNest, default: Schedule, fused_default: bool
) -> list[Variant]:
    """The variants (module docstring); variant 0 is the baseline: the default's fusion, or none
    when `fused_default` is False."""
    fused, rest = split_fusion(default)
    steps = getattr(getattr(target, "capabilities", None), "steps", None)
    if steps is not None and ComputeAt not in steps:
        return [Variant("fusion: none", fused, 1.0, rest)]
    text = "; ".join(map(format_step, fused)) or "no steps"
    found = [Variant(f"fusion: default ({text})", fused, 0.4, rest), Variant("fusion: none", (), 0.15)]
    if not fused_default:
        found.reverse()
        found[1].rest = None  # the default's per-nest steps belong to the fused nest
        found[0].rest = per_nest_default(target, program, naive)
    options = {"no inline": {"inline": False}, "deepest": {"outermost": False}, "one pass": {"online": True}}
    for label, knobs in options.items():
        found.append(
            Variant(f"fusion: {label} ({_describe(_rules(naive, knobs))})", _rules(naive, knobs), 0.1)
        )
    for k, step in enumerate(fused):
        found.append(Variant(f"fusion: without {format_step(step)}", fused[:k] + fused[k + 1 :], 0.05))
    return _distinct(naive, found)


def _rules(naive: LoopNest, knobs: dict) -> tuple[Step, ...]:
    return fusion_steps(naive, **knobs)


def _describe(steps: tuple[Step, ...]) -> str:
    return "; ".join(map(format_step, steps)) or "no steps"


def _distinct(naive: LoopNest, variants: list[Variant]) -> list[Variant]:
    """Variants whose steps apply and give different nests (the first of equals kept)."""
    seen: set[str] = set()
    out = []
    for v in variants:
        try:
            key = canonical(apply(naive, Schedule(v.steps)))
        except ScheduleError:
            continue
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out
