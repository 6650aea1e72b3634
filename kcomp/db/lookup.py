"""The tuning database as the compiler reads it: the best record for a workload, if any."""

from __future__ import annotations

from typing import Any

from kcomp.db.records import format_time, key_for
from kcomp.db.store import TuningDB, default_path
from kcomp.errors import ScheduleError, UsageError
from kcomp.loops import LoopNest
from kcomp.passes import apply
from kcomp.program import Program
from kcomp.schedule import Schedule


def tuned_schedule(program: Program, naive: LoopNest, target: Any) -> tuple[Schedule | None, str]:
    """For `pipeline.choose_schedule`: the best ok record for this workload, target and hardware and the
    report line naming it; (None, "") when there is none; (None, why) when the database cannot be used.

    Cheap when unused: no file (or `Config.no_db`) returns before anything is hashed or opened.  The
    configuration is the target's (`target.config()`: tests give targets a private cache).  Records
    from other hardware are never used here."""
    cfg = target.config()
    path = default_path(cfg)
    if cfg.no_db or not path.is_file():
        return None, ""
    try:
        with TuningDB.open(path, create=False) as db:
            trial = db.best(key_for(program, target))
    except UsageError as e:
        return None, f"the tuning database is not used: {str(e).splitlines()[0]}"
    if trial is None:
        return None, ""
    try:
        apply(naive, trial.schedule)
    except ScheduleError as e:
        return None, f"trial {trial.id} of the tuning database {path} no longer applies ({e})"
    return trial.schedule, f"tuning database ({path}, trial {trial.id}, {format_time(trial.time_s)})"
