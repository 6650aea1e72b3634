"""Random legal schedules for a program, from the search space and from random steps.

    draw_schedules(source, "cpu", seed=3, count=3, index=0)   # {"schedules": [(label, text), ...]}

Kinds (labels), each legal by construction:
  none      the naive loops (`--schedule none`); on accel the naive mapping
  default   the rule-based scheduler's (`--schedule default`)
  walk      a random walk in `kcomp.search.space.Space`: at every slot a legal action drawn by its
            prior mixed with a uniform share (the tuner's decisions: tiles, orders, staging, ...)
  steps     random steps on the naive nest (`kcomp.fuzz.steps`: also fuse, tile, layout, peel, ...)
  walk+steps  a walk, then random steps on top of it
cpu takes `count` schedules cycling walk, steps, walk+steps; accel takes walks (its steps are the
mapping's tile, reorder and double_buffer).  Every fourth program also gets `none`, the next one
`default`.  A program the accelerator cannot map is `unsupported` there.
"""

from __future__ import annotations

import random
import traceback
from typing import Any

from kcomp.errors import Unsupported
from kcomp.fuzz.steps import RandomChooser, draw_steps
from kcomp.lower import lower
from kcomp.parse import parse
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.schedule import Schedule
from kcomp.search.space import Space
from kcomp.targets import get_target

UNIFORM = 0.3  # share of the uniform distribution mixed into the priors of a walk


def walk(space: Any, rng: random.Random) -> Schedule:
    """A random root-to-leaf path through `space`, legal at every slot."""
    state = space.root()
    while not state.is_terminal():
        candidates = list(state.candidates())
        weights = [(1 - UNIFORM) * a.prior + UNIFORM / len(candidates) for a in candidates]
        while candidates:
            k = rng.choices(range(len(candidates)), weights)[0]
            action = candidates.pop(k)
            weights.pop(k)
            if state.is_legal(action):
                state = state.apply(action)
                break
        else:  # nothing legal (the space promises "leave as is" always is): stop here
            break
    return state.schedule()


def draw_schedules(source: str, target_spec: str, seed: int, count: int, index: int) -> dict[str, Any]:
    """Schedules for the program `source` on `target_spec` (module docstring), as text.

    Returns {"schedules": [(label, text)], "unsupported": reason or "", "errors": [text]}: `errors`
    holds exceptions the search space raised while drawing (kcomp bugs), which end that schedule."""

    rng = random.Random(seed)
    module = parse(source, "<fuzz>")
    program = front(module, module.kernel(None), {})
    target = get_target(target_spec)
    # NOTE: random pass steps only for a target that takes every step; others (the accelerator, which
    # maps tiles) get walks of their own search space, which only holds steps they take
    walks_only = target.capabilities.steps is not None
    out: list[tuple[str, str]] = [("none", "none")] if index % 4 == 0 else []
    out += [("default", "default")] if index % 4 == 1 else []
    errors: list[str] = []
    try:
        space = Space(program, target)
    except Unsupported as e:
        return {"schedules": [], "unsupported": str(e), "errors": []}
    for n in range(count):
        kind = "walk" if walks_only else ("walk", "steps", "walk+steps")[(index + n) % 3]
        steps: list = []
        try:
            if kind.startswith("walk"):
                steps = list(walk(space, rng).steps)
            if kind.endswith("steps"):
                nest = apply(lower(program), Schedule(tuple(steps)))
                # NOTE: a pass that raised (not ScheduleError) ends the list with its step: the
                # case replays it, so the bug is classified (crash / compile_error) and shrunk there
                steps += draw_steps(RandomChooser(rng), nest, rng.randint(1, 8))[1]
        except Exception as e:
            errors.append(f"{kind}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}")
            continue
        out.append((kind, str(Schedule(tuple(steps)))))
    return {"schedules": out, "unsupported": "", "errors": errors}
