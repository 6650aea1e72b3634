"""The fuzzing driver (kcomp.fuzz.run): outcomes are classified from fake worker functions that
crash, hang, lie or raise; shrinking reduces a synthetic failure; reproducers are written."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from kcomp.fuzz.generate import generate
from kcomp.fuzz.run import Campaign, Case, Result, program_for, run_case
from kcomp.fuzz.shrink import save, shrink

# ------------------------------------------------------------------ fake worker functions (module level)


def fake_case(case: Case) -> dict:
    """Program 0 segfaults, 1 hangs, 2 mismatches, 3 raises inside kcomp, others run for real."""
    if case.program == 0:
        os.kill(os.getpid(), 11)
    if case.program == 1:
        time.sleep(60)
    if case.program == 2:
        return {"outcome": "mismatch", "error": "outputs t0 differ"}
    if case.program == 3:
        raise RuntimeError("boom")
    return run_case(case)


def fake_schedules(source: str, target: str, seed: int, count: int, index: int) -> dict:
    return {"schedules": [("none", "none")], "unsupported": "", "errors": []}


def test_classifier(tmp_path: Path):
    c = Campaign(
        programs=5,
        seed=0,
        targets=("cpu",),
        timeout_s=3.0,
        workers=1,
        out=tmp_path,
        shrink=False,
        case_fn=fake_case,
        schedules_fn=fake_schedules,
    )
    report = c.run()
    outcomes = [r.outcome for r in c.results]
    assert outcomes == ["crash", "timeout", "mismatch", "crash", "ok"]
    assert "SIGSEGV" in c.results[0].error and "boom" in c.results[3].error
    assert (report["ok"], report["crash"], report["timeout"], report["mismatch"]) == (1, 2, 1, 1)
    assert len(report["reproducers"]) == 4 and (tmp_path / "case_0.kc").exists()
    info = json.loads((tmp_path / "case_2.json").read_text())
    assert info["outcome"] == "mismatch" and info["program"] == 2


def test_real_cases_classified():
    ok = Case(program_for(0, 5).render(), "cpu", "default", "default", 1)
    assert run_case(ok)["outcome"] == "ok"
    bad = Case(program_for(0, 5).render(), "cpu", "split nosuchloop 4\n", "steps", 1)
    got = run_case(bad)
    assert got["outcome"] == "compile_error" and "ScheduleError" in got["error"]
    wide = "kernel f(A: f64[8]) -> (y: f64[]) { y[] += A[i] * 2.0 }"  # the machine's words are 32 bits
    assert run_case(Case(wide, "accel", "default", "default", 1))["outcome"] == "unsupported"


def test_shrink_reduces_a_synthetic_failure(tmp_path: Path):
    # a synthetic bug: any program that still contains a `max=` "fails"
    def attempt(case: Case) -> Result:
        return Result(case, "mismatch" if "max=" in case.source else "ok")

    prog = next(
        p
        for p in (generate(random.Random(s)) for s in range(500))
        if "max=" in p.render() and len(p.stmts) >= 3
    )
    failed = attempt(Case(prog.render(), "cpu", "split i 2\nvectorize i_i\n", "steps"))
    small = shrink(prog, failed, failed.case.schedule, attempt, budget=300)
    assert "max=" in small.program.render()
    assert len(small.program.stmts) < len(prog.stmts)
    assert len(small.program.render()) < len(prog.render())
    assert small.schedule == "none"
    path = save(tmp_path, 0, failed, small)
    assert path.read_text() == small.program.render()
    assert "case_0" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("programs", [3])
def test_deterministic_campaign(programs: int):
    a = Campaign(programs=programs, seed=4, targets=("cpu",), workers=1, out=None).run()
    b = Campaign(programs=programs, seed=4, targets=("cpu",), workers=1, out=None).run()
    drop = ("wall_s",)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
