"""Random legal schedules for a program, from the search space and from random steps.

    draw_schedules(source, "cpu", seed=3, count=3, index=0)   # {"schedules": [(label, text), ...]}

Kinds (labels), each legal by construction:
  none      the naive loops (`--schedule none`); on accel the naive mapping
  default   the rule-based scheduler's (`--schedule default`)
  walk      a random walk in `kcomp.search.space.Space`: at every slot a legal action drawn by its
            prior mixed with a uniform share (the tuner's decisions: tiles, orders, staging, ...)
  steps     random steps on the naive nest (`kcomp.fuzz.steps`: also fuse, tile, layout, peel, ...)
  walk+steps  a walk, then random steps on top of it
  ...+bind  any of the three, then a launch (`kcomp.fuzz.steps.draw_bind`: loops bound to grid and
            block axes, splits before them) and, half the time, a few random steps more (a
            `cache_read` at a block loop is a shared-memory tile)
A target that takes every step (cpu, cuda) gets `count` schedules cycling walk, steps, walk+steps,
each with a launch half the time (on cpu bound loops run serially: the bind pass and the loop IR's
meaning are checked there too); accel takes walks (its steps are the mapping's tile, reorder and
double_buffer).  Each step is kept only when the pass and then the target's emitter accept it (the
CUDA emitter refuses more than 1024 threads per block, 48 KiB of shared memory, ...: a target's
limit, not a bug).  Every fourth program also gets `none`, the next one `default`.  A program the
accelerator cannot map is `unsupported` there.
"""

from __future__ import annotations

import random
import traceback
from typing import Any

from kcomp.errors import ScheduleError, Unsupported
from kcomp.fuzz.steps import RandomChooser, draw_bind, draw_steps
from kcomp.fuzz.weights import sparse_weights
from kcomp.lower import lower
from kcomp.parse import parse
from kcomp.passes import apply
from kcomp.pipeline import front, with_weights
from kcomp.schedule import Bind, Schedule
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

    Returns {"schedules": [(label, text)], "unsupported": reason or "", "errors": [text], "refused":
    [text]}: `errors` holds exceptions the search space raised while drawing (kcomp bugs), which end
    that schedule; `refused`, the walks the target's emitter refused (`ScheduleError`: the space's
    legality is the passes', a launch's limits are the emitter's), each cut to the longest prefix
    the target takes before random steps go on from there."""

    rng = random.Random(seed)
    module = parse(source, "<fuzz>")
    target = get_target(target_spec)
    # NOTE: the program the pipeline lowers: sparse weights (drawn from the text) packed
    _, program, _ = with_weights(front(module, module.kernel(None), {}), target, sparse_weights(source))
    # NOTE: random pass steps only for a target that takes every step; others (the accelerator, which
    # maps tiles) get walks of their own search space, which only holds steps they take
    walks_only = target.capabilities.steps is not None
    binds = target.capabilities.steps is None or Bind in target.capabilities.steps
    out: list[tuple[str, str]] = [("none", "none")] if index % 4 == 0 else []
    out += [("default", "default")] if index % 4 == 1 else []
    errors: list[str] = []
    refused: list[str] = []
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
                taken = taken_prefix(target, lower(program), steps)
                if len(taken) < len(steps):
                    refused.append(
                        f"{Schedule(tuple(steps))}-- the target takes the first {len(taken)} steps"
                    )
                    steps = taken
            launch = binds and rng.random() < 0.5
            if kind.endswith("steps") or launch:
                nest = apply(lower(program), Schedule(tuple(steps)))
            # NOTE: a pass that raised (not ScheduleError) ends the list with its step: the case
            # replays it, so the bug is classified (crash / compile_error) and shrunk there
            if kind.endswith("steps"):
                nest, more, bug = draw_steps(RandomChooser(rng), nest, rng.randint(1, 8), accept=target.emit)
                steps += more
                launch = launch and bug is None
            if launch:
                kind += "+bind"
                nest, more, bug = draw_steps(
                    RandomChooser(rng), nest, rng.randint(1, 6), draw=draw_bind, accept=target.emit
                )
                steps += more
                if bug is None and rng.random() < 0.5:
                    steps += draw_steps(RandomChooser(rng), nest, rng.randint(1, 3), accept=target.emit)[1]
        except Exception as e:
            errors.append(f"{kind}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}")
            continue
        out.append((kind, str(Schedule(tuple(steps)))))
    return {"schedules": out, "unsupported": "", "errors": errors, "refused": refused}


def taken_prefix(target: Any, naive: Any, steps: list) -> list:
    """The longest prefix of `steps` whose nest `target` emits (`steps` itself, mostly)."""
    for n in range(len(steps), -1, -1):
        try:
            schedule = Schedule(tuple(steps[:n]))
            target.emit(apply(naive, schedule), schedule)
            return steps[:n]
        except ScheduleError:
            continue
    return []
