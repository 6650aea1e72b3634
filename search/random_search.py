"""Random search, the baseline every smarter strategy must beat at equal budgets.

Each candidate is a walk from `space.root()` choosing uniformly among the state's actions until a
terminal state; its schedule is kept unless one with the same hash was drawn or evaluated before.
Candidates are measured in batches of `batch_size` (built in parallel, timed one at a time).  The walk
depends only on the seed, so a resumed run (same seed) draws the same schedules and finds the
finished ones in the database.  A space that yields `max_misses` duplicates in a row is taken as
exhausted and the run ends early.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from kcomp.db.records import Trial
from kcomp.db.store import TuningDB
from kcomp.schedule import Schedule
from kcomp.search.measure import Measurer
from kcomp.search.strategy import Budget, Session, Space, State, TuneResult


def random_walk(state: State, rng: random.Random) -> Schedule:
    """The schedule at the end of a uniformly random walk from `state` (a dead end ends the walk).

    Each step draws among the legal actions uniformly.  Where the state offers the cheap way in
    (`candidates()` and `is_legal`), the draw is by rejection: a random candidate, dropped and
    redrawn while illegal, which is the same distribution as a draw from `actions()` without
    checking every candidate's legality (each check applies the passes)."""
    while not state.is_terminal():
        if hasattr(state, "candidates") and hasattr(state, "is_legal"):
            options = list(state.candidates())
            pick = None
            while options:
                a = options.pop(rng.randrange(len(options)))
                if state.is_legal(a):
                    pick = a
                    break
        else:
            actions = list(state.actions())
            pick = rng.choice(actions) if actions else None
        if pick is None:
            break
        state = state.apply(pick)
    return state.schedule()


class RandomSearch:
    name = "random"

    def __init__(self, batch_size: int = 8, max_misses: int = 500):
        self.batch_size, self.max_misses = batch_size, max_misses

    def run(
        self,
        space: Space,
        measurer: Measurer,
        budget: Budget,
        db: TuningDB | None,
        *,
        seed: int = 0,
        progress: Callable[[Session, Trial], None] | None = None,
        resume: bool = False,
    ) -> TuneResult:
        session = Session(
            measurer, db, budget, strategy=self.name, seed=seed, progress=progress, resume=resume
        )
        session.start()
        rng = random.Random(seed)
        misses = 0
        while not session.done and misses < self.max_misses:
            want = min(self.batch_size, session.remaining or self.batch_size)
            batch: dict[str, Schedule] = {}
            while len(batch) < want and misses < self.max_misses:
                schedule = random_walk(space.root(), rng)
                if schedule.hash in batch or session.has_seen(schedule):
                    misses += 1
                    continue
                misses = 0
                batch[schedule.hash] = schedule
            if batch:
                session.evaluate(list(batch.values()))
        return session.result()
