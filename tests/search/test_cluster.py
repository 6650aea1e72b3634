"""`--executor ray`: jobs on a local Ray cluster keep every outcome the local workers give (results,
raised errors, timeouts, crashes), a worker killed under a job loses no trial, and a tuning run on
Ray records the database a local run records."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kcomp.errors import UsageError
from kcomp.search import cluster
from kcomp.search.measure import TIMER_ENV, LocalExecutor, Measurer, WorkerCrashed, WorkerError, WorkerTimeout

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- jobs (pickled by value)


def _attempt(log: str) -> int:
    """Append one line to `log` and say how many attempts it now holds."""
    with open(log, "a") as f:
        f.write("x\n")
    return len(Path(log).read_text().splitlines())


def double(x: int) -> int:
    return 2 * x


def raises(log: str) -> None:
    _attempt(log)
    raise ValueError("the candidate's own error")


def dies_once(log: str) -> str:
    """Killed (as by `kill -9`) on its first attempt only."""
    if _attempt(log) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "second try"


def dies_always(log: str) -> None:
    _attempt(log)
    os.kill(os.getpid(), signal.SIGKILL)


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def env(name: str) -> str | None:
    return os.environ.get(name)


@pytest.fixture(scope="module")
def session():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with cluster.ray_session(cpus=2) as s:
        yield s


def test_results_errors_and_retries_keep_the_local_executors_outcomes(session, tmp_path):
    with cluster.RayExecutor(session) as ex:
        assert ex.map(double, [1, 2, 3]) == [2, 4, 6]
        error = ex.submit(raises, str(tmp_path / "raises")).exception()
        assert isinstance(error, WorkerError) and "the candidate's own error" in str(error)
        assert _attempts(tmp_path / "raises") == 1  # an exception is the job's outcome: never retried
        assert ex.submit(dies_once, str(tmp_path / "once")).result() == "second try"
        assert _attempts(tmp_path / "once") == 2  # the killed worker's job ran again
        crashed = ex.submit(dies_always, str(tmp_path / "always")).exception()
        assert isinstance(crashed, WorkerCrashed)
        assert _attempts(tmp_path / "always") == 1 + cluster.RETRIES
        late = ex.submit(sleeps, 30.0, timeout_s=1.0)
        assert isinstance(late.exception(), WorkerTimeout)
        assert ex.submit(sleeps, 0.0, timeout_s=30.0).result() == "woke"  # the executor goes on


def test_the_timer_runs_one_job_at_a_time_with_its_environment(session):
    with cluster.RayExecutor(session, timer=True, env=TIMER_ENV) as timer:
        assert timer.slots == 1
        assert timer.submit(env, "OPENBLAS_NUM_THREADS").result() == TIMER_ENV["OPENBLAS_NUM_THREADS"]


def test_a_measurer_on_ray_gives_the_trials_a_local_one_gives(session, matmul_file):
    schedules = ["", "split i 4\nsplit j 4\nvectorize j_i", "split q 2"]  # the last is illegal
    with (
        Measurer(
            matmul_file,
            builder=cluster.RayExecutor(session),
            timer=cluster.RayExecutor(session, timer=True, env=TIMER_ENV),
            budget_s=0.01,
        ) as on_ray,
        Measurer(matmul_file, budget_s=0.01) as local,
    ):
        parsed = [_schedule(text) for text in schedules]
        ray_trials = on_ray.measure(parsed)
        local_trials = local.measure(parsed)
    assert [t.status for t in ray_trials] == [t.status for t in local_trials]
    assert all(t.key is None for t in ray_trials)  # timed on this machine: the session's key applies


def test_a_trial_timed_elsewhere_is_keyed_by_that_hardware(matmul_file):
    with LocalExecutor(1) as timer, Measurer(matmul_file, timer=timer, time_fn=_timed_elsewhere) as m:
        (trial,) = m.measure([_schedule("")])
    assert trial.ok and trial.key is not None and trial.key.hardware == "another machine"
    assert trial.key.workload and trial.key.target == m.target.name


def test_usage_errors(monkeypatch, matmul_file, capsys):
    from kcomp.cli.app import main

    assert main(["tune", str(matmul_file), "--ray-address", "localhost:1", "--no-db"]) == 2
    assert "--executor ray" in capsys.readouterr().err

    real = cluster.importlib.import_module

    def no_ray(name: str, *a: object) -> object:
        if name == "ray":
            raise ImportError(name)
        return real(name, *a)

    monkeypatch.setattr(cluster.importlib, "import_module", no_ray)
    with pytest.raises(UsageError, match="needs Ray"), cluster.ray_session():
        pass


def test_tuning_on_ray_survives_a_killed_worker_and_records_what_a_local_run_records(tmp_path, matmul_file):
    """32 trials on a local two-CPU cluster while one timing worker is killed with SIGKILL: every
    trial is in the database (one row each, none lost to the kill), in the schema a local run writes."""
    ray_db, local_db = tmp_path / "ray.db", tmp_path / "local.db"
    killer = _Killer("ray::time_candidate")
    killer.start()
    try:
        on_ray = _tune(matmul_file, ray_db, "--executor", "ray", "--workers", "2", "--trials", "32")
    finally:
        killer.stop()
    assert killer.killed, "no timing worker was seen to kill"
    local = _tune(matmul_file, local_db, "--trials", "4")

    assert on_ray["trials"] == 32 and on_ray["measured"] == 33 and on_ray["executor"].startswith("ray")
    rows = _rows(ray_db)
    assert len(rows) == 33 == len({r["schedule_hash"] for r in rows})
    assert not [r for r in rows if r["status"] in ("crash", "timeout")], "a trial was lost to the kill"
    assert {r["hardware"] for r in rows} == {r["hardware"] for r in _rows(local_db)}
    assert _schema(ray_db) == _schema(local_db)
    assert len(_rows(local_db)) == local["measured"] == 5


# --------------------------------------------------------------------------------------------- helpers


def _attempts(path: Path) -> int:
    return len(path.read_text().splitlines())


def _schedule(text: str):
    from kcomp.schedule import parse_schedule

    return parse_schedule(text, "<test>")


def _timed_elsewhere(job):
    return {"status": "ok", "time_s": 1e-3, "counters": {}, "hardware": "another machine"}


def _tune(kc: Path, db: Path, *argv: str) -> dict:
    cmd = [sys.executable, "-c", "import sys; from kcomp.cli import main; sys.exit(main(sys.argv[1:]))"]
    cmd += ["tune", str(kc), "--db", str(db), "--json", "--no-confirm"]
    cmd += ["--repeat-budget", "0.01", "--seed", "3", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM trials")]


def _schema(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


class _Killer(threading.Thread):
    """Kills, once, the first process whose title starts with `title` (Ray names a busy worker after
    its task), as an operator's `kill -9` or the OOM killer would."""

    def __init__(self, title: str):
        super().__init__(daemon=True)
        self.title = title.encode()
        self.killed: int | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set() and self.killed is None:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if cmdline.startswith(self.title):
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed = int(pid)
                    return
            time.sleep(0.005)

    def stop(self) -> None:
        self._done.set()
        self.join(5)
