"""What a search strategy programs against: the space it walks, the budget, and a `Session` that turns
schedules into trials (measured, deduplicated, recorded, counted).

    class MyStrategy:                                  # satisfies `Strategy`
        name = "mine"
        def run(self, space, measurer, budget, db, *, seed=0, progress=None, resume=False) -> TuneResult:
            session = Session(measurer, db, budget, strategy=self.name, seed=seed,
                              progress=progress, resume=resume)
            session.start()                            # trial 0: the default schedule (the baseline)
            while not session.done:
                schedules = ...                        # walk `space` from `space.root()`
                trials = session.evaluate(schedules)   # Trial | None per schedule, in order
                ...                                    # learn from trials (reward: session.speedup(t))
            return session.result()

The space (search/space.py implements it): `space.root() -> State`; a State offers `actions()`,
`apply(action) -> State`, `is_terminal()` and `schedule()` (a terminal state's schedule, or the
partial schedule so far).  Actions are opaque to the session; `str(action)` is for people.

Counting: a trial is one evaluated distinct candidate, failures included.  A schedule evaluated
before in this session is answered from memory and costs nothing; with `resume`, one measured before
for this workload, target and hardware is read back from the database (a database hit, never
measured again) and counts against the budget as the trial it was, so a resumed run replays the
interrupted one (same seed) and continues where it stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from kcomp.db.records import Key, Trial, key_for
from kcomp.db.store import TuningDB
from kcomp.errors import UsageError
from kcomp.schedule import Schedule
from kcomp.search.measure import Measurer

CUTOFF = 5.0  # a first call this many times slower than the best so far is the candidate's figure


@runtime_checkable
class State(Protocol):
    def actions(self) -> Sequence[Any]: ...
    def apply(self, action: Any) -> State: ...
    def is_terminal(self) -> bool: ...
    def schedule(self) -> Schedule: ...


@runtime_checkable
class Space(Protocol):
    def root(self) -> State: ...


@dataclass(frozen=True, slots=True)
class Budget:
    trials: int | None = None  # distinct candidates to evaluate, the default baseline not counted
    time_s: float | None = None  # wall-clock seconds from the start of the session

    def __post_init__(self) -> None:
        if self.trials is not None and self.trials < 0:
            raise UsageError(f"--trials {self.trials}: expected 0 or more")
        if self.time_s is not None and not self.time_s > 0:
            raise UsageError(f"--time-limit {self.time_s}: expected a positive number of seconds")


@dataclass(frozen=True)
class TuneResult:
    strategy: str
    key: Key
    default: Trial | None  # trial 0, the default schedule
    best: Trial | None  # the fastest ok trial of the session (the default included)
    trials: tuple[Trial, ...]  # evaluated by the strategy, in order (database hits included)
    measured: int  # trials measured in this run (not database hits), the default included
    db_hits: int
    failures: int  # trials whose status is not ok
    wall_s: float
    history: tuple[float | None, ...]  # best time so far after each trial (index 0: the default)
    run_id: str

    @property
    def speedup_vs_default(self) -> float | None:
        d, b = self.default, self.best
        if d is None or b is None or not d.ok or not d.time_s or not b.time_s:
            return None
        return d.time_s / b.time_s


class Strategy(Protocol):
    name: str

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
    ) -> TuneResult: ...


class Session:
    """Evaluates schedules for one strategy run; the only writer of the database in this run."""

    def __init__(
        self,
        measurer: Measurer,
        db: TuningDB | None,
        budget: Budget,
        *,
        strategy: str,
        seed: int = 0,
        progress: Callable[[Session, Trial], None] | None = None,
        resume: bool = False,
        run_id: str | None = None,
    ):
        if resume and db is None:
            raise UsageError("--resume needs the tuning database (drop --no-db)")
        self.measurer, self.db, self.budget = measurer, db, budget
        self.strategy, self.seed, self.progress, self.resume = strategy, seed, progress, resume
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.key = key_for(measurer.program, measurer.target)
        self.started = time.monotonic()
        self.default: Trial | None = None
        self.best: Trial | None = None
        self.trials: list[Trial] = []
        self.history: list[float | None] = []
        self.seen: dict[str, Trial] = {}
        self.measured = self.db_hits = self.failures = 0

    # ---------------------------------------------------------------- state

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def out_of_time(self) -> bool:
        return self.budget.time_s is not None and self.elapsed_s >= self.budget.time_s

    @property
    def remaining(self) -> int | None:
        """Trials left in the budget (None: no trial limit)."""
        return None if self.budget.trials is None else max(0, self.budget.trials - len(self.trials))

    @property
    def done(self) -> bool:
        return self.remaining == 0 or self.out_of_time

    def has_seen(self, schedule: Schedule) -> bool:
        return schedule.hash in self.seen

    def speedup(self, trial: Trial) -> float:
        """Default time over the trial's time; 0 for a failed trial (the reward's raw material)."""
        if not trial.ok or not trial.time_s:
            return 0.0
        if self.default is None or not self.default.ok or not self.default.time_s:
            return 1.0
        return self.default.time_s / trial.time_s

    # ---------------------------------------------------------------- evaluating

    def start(self) -> Trial:
        """Trial 0: the default schedule, the baseline every speedup is measured against."""
        schedule = self.measurer.default_schedule
        trial = self._lookup(schedule)
        if trial is None:
            self.measurer.measure([schedule], on_trial=self._store)
            trial = self.seen[schedule.hash]
        self.default = trial
        self._count(trial, baseline=True)
        return trial

    def evaluate(self, schedules: Sequence[Schedule]) -> list[Trial | None]:
        """A trial per schedule, in order; None where the budget or the time limit ran out first.

        Schedules seen in this session are answered from memory; with `resume`, schedules in the
        database are read back; the rest (at most `remaining`) are measured as one batch, each
        recorded in the database as soon as it is final."""
        out: list[Trial | None] = [None] * len(schedules)
        batch: list[Schedule] = []
        for n, schedule in enumerate(schedules):
            if schedule.hash in self.seen:
                out[n] = self.seen[schedule.hash]
                continue
            if self.done or (self.remaining is not None and len(batch) >= self.remaining):
                continue
            if any(s.hash == schedule.hash for s in batch):
                continue
            hit = self._lookup(schedule)
            if hit is not None:
                out[n] = hit
                self._count(hit)
                continue
            batch.append(schedule)
        if batch:
            self.measurer.measure(batch, on_trial=self._measured, stop=lambda: self.out_of_time)
        return [t if t is not None else self.seen.get(s.hash) for s, t in zip(schedules, out, strict=True)]

    def _lookup(self, schedule: Schedule) -> Trial | None:
        """With resume, the database's trial of `schedule` (a database hit), remembered."""
        if not self.resume or self.db is None:
            return None
        hit = self.db.known(self.key, schedule.hash)
        if hit is not None:
            self.seen[schedule.hash] = hit
            self.db_hits += 1
        return hit

    def _store(self, trial: Trial) -> None:
        trial = replace(trial, key=trial.key or self.key, strategy=self.strategy, run_id=self.run_id)
        if self.db is not None:
            trial = self.db.record(trial)
        self.seen[trial.schedule.hash] = trial
        self.measured += 1

    def _measured(self, trial: Trial) -> None:
        self._store(trial)
        self._count(self.seen[trial.schedule.hash])

    def _count(self, trial: Trial, baseline: bool = False) -> None:
        if not baseline:
            self.trials.append(trial)
        if not trial.ok:
            self.failures += 1
        elif self.best is None or (trial.time_s or 0) < (self.best.time_s or 0):
            self.best = trial
            # NOTE: a candidate whose first call takes CUTOFF times the best is timed by that call alone
            if trial.time_s and hasattr(self.measurer, "cutoff_s"):
                self.measurer.cutoff_s = CUTOFF * trial.time_s
        self.history.append(self.best.time_s if self.best is not None else None)
        if self.progress is not None:
            self.progress(self, trial)

    def result(self) -> TuneResult:
        return TuneResult(
            strategy=self.strategy,
            key=self.key,
            default=self.default,
            best=self.best,
            trials=tuple(self.trials),
            measured=self.measured,
            db_hits=self.db_hits,
            failures=self.failures,
            wall_s=self.elapsed_s,
            history=tuple(self.history),
            run_id=self.run_id,
        )
