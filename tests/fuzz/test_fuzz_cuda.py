"""`kcomp fuzz` on the CUDA target (emulated): a short campaign with random launches (bind steps) and
no failure; an emulator report (a race) is a failure of its own, `race`, never `ok`; walks the
target's emitter refuses are cut to what it takes; launches are drawn for every target that takes
`bind`, and only legal ones are kept."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from kcomp.errors import ScheduleError
from kcomp.fuzz.case import FAILURES, Case, Result, run_case
from kcomp.fuzz.run import Campaign
from kcomp.fuzz.schedules import draw_schedules, taken_prefix
from kcomp.fuzz.steps import RandomChooser, draw_bind, draw_steps
from kcomp.lower import lower
from kcomp.parse import parse
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.schedule import Bind, Schedule, Split, parse_schedule
from kcomp.targets import get_target
from kcomp.targets.cuda import emit as cuda_emit

needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("g++") is None, reason="needs nvcc and g++"
)

# fuzz-found: the copy into I3_pack, bound to z, ran on all 12 threads along y (tests/cuda/
# test_cuda_fuzz_regressions.py); with the emitter's guard taken away, the emulation reports the race
GATHER = "dim D1 = 12\nkernel fz(C: f32[D1], I3: i32[D1]) -> (t1: f32[D1]) {\n    t1[i] = C[I3[i]] where i < D1\n}\n"
GATHER_SCHEDULE = "split i 12\npack I3 at i_o block 0 12\nbind i_i threadIdx.y\nbind I3_pack_1 threadIdx.z\n"
RACE = "EmulationError: kc_fz (emulated): race on shared I3_pack[1] in kc_fz_k0 block (0,0,0): ..."


def racy_case(case: Case) -> dict:
    """A worker that reports what the emulation reports for a race (module level: it pickles)."""
    return {"outcome": "race", "error": RACE, "schedule_used": case.schedule}


def one_schedule(source: str, target: str, seed: int, count: int, index: int) -> dict:
    return {"schedules": [("steps+bind", GATHER_SCHEDULE)], "unsupported": "", "errors": []}


@needs_nvcc
def test_short_cuda_campaign(tmp_path: Path):
    c = Campaign(programs=4, seed=3, targets=("cuda",), workers=2, out=tmp_path, shrink=False)
    report = c.run()
    assert all(report[k] == 0 for k in FAILURES), report["failures"]
    assert report["generator_errors"] == 0 and report["ok"] >= 8
    assert any("threadIdx" in r.case.schedule for r in c.results)  # launches were drawn and ran


@needs_nvcc
def test_an_emulated_race_is_classified_race(monkeypatch):
    case = Case(GATHER, "cuda", GATHER_SCHEDULE, "steps+bind", seed=1)
    assert run_case(case)["outcome"] == "ok"
    monkeypatch.setattr(cuda_emit, "_idle_axes", lambda kernel, chain: [])  # the bug, back
    got = run_case(case)
    assert got["outcome"] == "race" and "race on shared I3_pack" in got["error"], got


def test_race_is_a_failure_with_its_own_signature(tmp_path: Path):
    c = Campaign(
        programs=1,
        seed=0,
        targets=("cuda",),
        workers=1,
        out=tmp_path,
        shrink=False,
        case_fn=racy_case,
        schedules_fn=one_schedule,
    )
    report = c.run()
    assert "race" in FAILURES and report["race"] == 1 and report["ok"] == 0
    assert report["failures"][0]["outcome"] == "race" and (tmp_path / "case_0.kc").exists()
    assert c.results[0].signature() == "race:race on"  # shrinking keeps a race a race
    other = Result(c.results[0].case, "race", "EmulationError: ... out-of-bounds read of x[9] (size 9)")
    assert other.signature() == "race:out-of-bounds"


@pytest.mark.parametrize("target", ["cuda", "cpu"])
def test_launches_are_drawn_and_legal(target: str):
    t = get_target(target)
    module = parse(
        "kernel mm(A: f32[6, 5], B: f32[5, 7]) -> (C: f32[6, 7]) { C[i, j] += A[i, k] * B[k, j] }", "<t>"
    )
    naive = lower(front(module, module.kernel(None), {}))
    kinds: set[str] = set()
    for seed in range(6):
        _, steps, bug = draw_steps(
            RandomChooser(random.Random(seed)), naive, 6, draw=draw_bind, accept=t.emit
        )
        assert bug is None and steps
        assert all(isinstance(s, Bind | Split) for s in steps)
        kinds |= {s.binding for s in steps if isinstance(s, Bind)}
        t.emit(apply(naive, Schedule(tuple(steps))))  # replays, and the target takes it
    assert {"blockIdx.x", "threadIdx.x"} <= kinds


def test_drawn_cuda_schedules_replay_and_bind():
    source = "kernel rows(X: f32[9, 13]) -> (s: f32[9]) { s[i] += exp(tanh(X[i, j])) }"
    module = parse(source, "<t>")
    naive = lower(front(module, module.kernel(None), {}))
    labels = []
    for index in range(6):
        drawn = draw_schedules(source, "cuda", seed=index, count=3, index=index)
        assert drawn["errors"] == [] and not drawn["unsupported"]
        for label, text in drawn["schedules"]:
            labels.append(label)
            if text not in ("none", "default"):
                cuda_emit.emit(apply(naive, parse_schedule(text)))
    assert any(label.endswith("+bind") for label in labels)


def test_a_refused_walk_is_cut_to_the_prefix_the_target_takes():
    class TakesOneStep:
        def emit(self, nest, schedule) -> str:
            if len(schedule.steps) > 1:
                raise ScheduleError("too many threads")
            return ""

    steps = [Split("i", 2, "guard"), Split("j", 2, "guard"), Split("k", 2, "guard")]
    module = parse("kernel f(A: f32[4, 4, 4]) -> (y: f32[4, 4, 4]) { y[i, j, k] = A[i, j, k] }", "<t>")
    naive = lower(front(module, module.kernel(None), {}))
    assert taken_prefix(TakesOneStep(), naive, steps) == steps[:1]
    assert taken_prefix(get_target("cpu"), naive, steps) == steps
