"""Measurement isolation: a candidate that segfaults, hangs, fails to build, computes the wrong result
or is illegal is recorded with that status and the batch goes on; the executor reports dead and hung
workers as values and replaces them."""

from __future__ import annotations

import faults
import pytest

from kcomp.errors import UsageError
from kcomp.schedule import parse_schedule
from kcomp.search.measure import (
    Candidate,
    LocalExecutor,
    Measurer,
    Status,
    WorkerCrashed,
    WorkerError,
    WorkerTimeout,
    time_candidate,
)


def test_every_failure_is_a_trial_and_the_batch_goes_on(matmul_file):
    schedules = {
        "ok": "split i 1",
        "illegal": "split q 2",
        "segfault": faults.SEGFAULT,
        "hang": faults.HANG,
        "wrong": faults.WRONG,
        "build_error": faults.BUILD_ERROR,
        "ok after": "split j 1",
    }
    seen = []
    with Measurer(
        matmul_file,
        workers=2,
        timeout_s=4,
        budget_s=0.005,
        build_fn=faults.build,
        time_fn=faults.run,
    ) as m:
        trials = m.measure([Candidate(parse_schedule(s)) for s in schedules.values()], on_trial=seen.append)
    by_name = dict(zip(schedules, trials, strict=True))
    assert {name: t.status for name, t in by_name.items()} == {
        "ok": Status.OK,
        "illegal": Status.ILLEGAL,
        "segfault": Status.CRASH,
        "hang": Status.TIMEOUT,
        "wrong": Status.WRONG,
        "build_error": Status.BUILD_ERROR,
        "ok after": Status.OK,
    }
    assert "no loop named 'q'" in by_name["illegal"].error
    assert "SIGSEGV" in by_name["segfault"].error
    assert "4 s" in by_name["hang"].error
    assert "differs from the reference" in by_name["wrong"].error
    # gcc is replaced by `false`: it fails at the version probe (fresh process) or at the compile
    error = by_name["build_error"].error
    assert "gcc rejected" in error or "cannot run false" in error, error
    for name in ("ok", "ok after"):
        t = by_name[name]
        assert t.time_s > 0 and t.counters["repeats"] >= 5
    for name in ("illegal", "segfault", "hang", "wrong", "build_error"):
        assert by_name[name].time_s is None
    assert sorted(map(id, seen)) == sorted(map(id, trials))  # on_trial saw each one, once


def test_a_cpu_trial_says_which_counters_it_carries(matmul_file):
    m = Measurer(matmul_file, budget_s=0.005)
    outcome = time_candidate(m.job(m.default_schedule))
    c = outcome["counters"]
    assert outcome["status"] == "ok" and c["counter_source"] in ("hardware", "derived")
    if c["counter_source"] == "derived":  # no perf_event: the build's counts and the model's traffic
        assert c["asm.vector_fp"] + c["asm.scalar_fp"] > 0 and c["counter_note"]
        assert c["est.l1_bytes"] >= c["est.l2_bytes"] >= c["est.dram_bytes"] > 0
    else:
        assert c["hw.instructions"] > 0 and not any(k.startswith(("est.", "asm.")) for k in c)


def test_stop_skips_candidates_not_yet_timed(matmul_file):
    with Measurer(matmul_file, budget_s=0.005) as m:
        trials = m.measure([parse_schedule("split i 1"), parse_schedule("split q 1")], stop=lambda: True)
    assert trials[0] is None  # built, but not timed: skipped
    assert trials[1].status == Status.ILLEGAL  # failed to build: final before timing


def test_local_executor_failures_are_values_and_workers_are_replaced():
    with LocalExecutor(1, preload=()) as ex:
        results = ex.map(faults.boom, [0, 1, 2, 3, 4], timeout_s=2)
    assert results[0] == 0 and results[4] == 40
    assert isinstance(results[1], WorkerCrashed) and "SIGSEGV" in str(results[1])
    assert isinstance(results[2], WorkerTimeout)
    assert isinstance(results[3], WorkerError) and "ValueError: three" in str(results[3])


def test_measurer_refuses_unbound_dimensions_and_bad_settings(tmp_path):
    src = tmp_path / "free.kc"
    src.write_text("kernel f(A: f32[N]) -> (B: f32[N]) {\n    B[i] = A[i] * 2.0\n}\n")
    with pytest.raises(UsageError, match="unbound dimensions N: give them with --shape"):
        Measurer(src)
    with pytest.raises(UsageError, match="--workers 0: expected a positive number"):
        Measurer(src, shapes={"N": 8}, workers=0)
    assert Measurer(src, shapes={"N": 8}).default_schedule is not None


DRIVER = """
import sys, time
sys.path.insert(0, {here!r})
import faults
from kcomp.search.measure import LocalExecutor

if __name__ == "__main__":
    ex = LocalExecutor(1)
    ex.submit(faults.sleep_and_report, {pidfile!r}, 120.0)
    time.sleep(120)
"""


def test_a_worker_dies_with_its_killed_driver(tmp_path):
    """A driver killed with SIGKILL must not leave a worker running (it would skew later timings)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    pidfile = tmp_path / "worker.pid"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(here=str(Path(__file__).parent), pidfile=str(pidfile)))
    driver = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(pidfile.read_text())
        os.kill(worker, 0)  # alive while its driver is
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    for _ in range(100):
        try:
            state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state == "Z":  # dead, not yet reaped by init
            return
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its driver")
