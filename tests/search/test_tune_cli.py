"""`kcomp tune` end to end on a tiny matmul and a fixed fake space (tests/search/fake_space.py): trial 0 is
the default, every trial lands in the database as it finishes, a run killed with SIGKILL resumes without
measuring anything twice, --no-db keeps nothing, and the usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_space
import pytest

from kcomp.cli import main
from kcomp.config import config
from kcomp.db.store import TuningDB

FAST = ["--strategy", "random", "--repeat-budget", "0.005", "--workers", "1"]
TUNE_FAKE = Path(__file__).with_name("tune_fake.py")


@pytest.fixture(autouse=True)
def fake_search_space(monkeypatch):
    monkeypatch.setitem(sys.modules, "kcomp.search.space", fake_space)


def tune_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["tune", *argv, "--json"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def test_tune_records_every_trial_and_compile_uses_the_best(matmul_file, tmp_path, capsys):
    plot = tmp_path / "best.png"
    code, result = tune_json(capsys, str(matmul_file), *FAST, "--trials", "4", "--plot", str(plot))
    assert code == 0
    assert result["trials"] == 4 and result["measured"] == 5 and result["db_hits"] == 0
    assert result["failures"] == 0 and result["failures_by_status"] == {}
    assert result["strategy"] == "random" and result["db"] == str(config().db_path)
    # which counters the CPU measured with: perf_event's, or (where it is not supported) the build's
    assert result["counter_source"] == result["best_counters"]["counter_source"] in ("hardware", "derived")
    assert result["counter_source"] == "hardware" or "perf_event" in result["counter_note"]
    # the speedup rests on the default and the best timed again at the end, each at its faster figure
    c = result.get("confirmed")
    if result["best_schedule"] == result["default_schedule"]:
        assert c is None and result["speedup_vs_default"] == 1.0
    else:
        assert c["default_time_s"] == min(result["default_time_s"], c["remeasured_s"][0])
        assert c["best_time_s"] == min(result["best_time_s"], c["remeasured_s"][1])
        assert result["speedup_vs_default"] == pytest.approx(c["default_time_s"] / c["best_time_s"])
    ceilings = result["ceilings"]
    assert ceilings["gflops"] == pytest.approx(result["best_gflops"])
    roofs = (ceilings["fma_peak_gflops"], ceilings["intensity"] * ceilings["copy_gbps"])
    assert ceilings["roof_gflops"] == pytest.approx(min(roofs))
    assert ceilings["bound"] == ("compute" if roofs[0] <= roofs[1] else "memory")
    assert ceilings["of_roof"] == pytest.approx(ceilings["gflops"] / ceilings["roof_gflops"])
    assert plot.stat().st_size > 0
    with TuningDB.open(config().db_path) as db:
        rows = db.trials()
    assert len(rows) == 5 and len({t.schedule.hash for t in rows}) == 5
    assert str(rows[0].schedule) == result["default_schedule"]  # trial 0: the default schedule
    assert {t.run_id for t in rows} == {result["run_id"]} and {t.strategy for t in rows} == {"random"}
    best = min(rows, key=lambda t: t.time_s)
    assert (best.id, best.time_s, str(best.schedule)) == (
        result["best_trial"],
        result["best_time_s"],
        result["best_schedule"],
    )
    assert main(["compile", str(matmul_file), "--emit", "schedule"]) == 0
    assert capsys.readouterr().out.startswith(
        f"# schedule: tuning database ({config().db_path}, trial {best.id},"
    )
    # the same run resumed: everything comes from the database, nothing is measured, the table is printed
    assert main(["tune", str(matmul_file), *FAST, "--trials", "4", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "top schedules for matmul on cpu" in out and "0 measured now, 5 read from the database" in out
    assert "counters: hardware (perf_event)" in out or "counters: derived from the build (perf_event" in out


def test_no_db_keeps_nothing(matmul_file, capsys):
    code, result = tune_json(capsys, str(matmul_file), *FAST, "--trials", "1", "--no-db")
    assert code == 0 and result["db"] is None and result["measured"] == 2
    assert not config().db_path.exists()


def db_rows(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    with TuningDB.open(path) as db:
        return [(t.id, t.schedule.hash, t.status, t.time_s) for t in db.trials()]


def test_a_run_killed_with_sigkill_resumes_keeping_every_finished_trial(matmul_file, tmp_path):
    db = tmp_path / "killed.db"
    argv = [sys.executable, str(TUNE_FAKE), "tune", str(matmul_file), *FAST, "--trials", "8", "--db", str(db)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while len(db_rows(db)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    before = db_rows(db)
    assert 3 <= len(before) < 9, "the run was not killed in the middle"
    resumed = subprocess.run([*argv, "--resume", "--json"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    after = db_rows(db)
    assert after[: len(before)] == before  # every finished trial kept as it was
    assert len(after) == 9 and len({h for _, h, _, _ in after}) == 9  # 8 trials + the default, none twice
    assert result["db_hits"] == len(before) and result["measured"] == 9 - len(before)
    assert result["trials"] == 8


def test_usage_errors(matmul_file, capsys, monkeypatch):
    def refused(argv: list[str], message: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err

    file = str(matmul_file)
    refused(["tune", file, "--resume", "--no-db"], "--resume reads the tuning database: drop --no-db")
    refused(["tune", file, "--trials", "-1"], "--trials -1: expected 0 or more")
    refused(["tune", file, "--workers", "0"], "--workers 0: expected 1 or more")
    refused(["db", "show", "1", "--db", "/nonexistent/t.db"], "no tuning database at /nonexistent/t.db")
