"""Random legal schedules for fuzzing (kcomp.fuzz.schedules): walks in the search space and random
steps, legal and replayable, deterministic per seed; the search space on rank-0 stores."""

from __future__ import annotations

import random

import pytest

from kcomp.errors import ScheduleError
from kcomp.fuzz.run import program_for
from kcomp.fuzz.schedules import draw_schedules, walk
from kcomp.lower import lower
from kcomp.parse import parse
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.schedule import Layout, Schedule, parse_schedule
from kcomp.search.space import Space
from kcomp.targets import get_target

RANK0 = "dim N = 7\nkernel f(A: f32[N]) -> (s: f32[], m: f32[]) {\n    s[] += A[i]\n    m[] max= A[i]\n}\n"


def program(source: str):
    module = parse(source, "<test>")
    return front(module, module.kernel(None), {})


@pytest.mark.parametrize("seed", range(5))
def test_walk_on_rank0_stores(seed: int):
    # found by kcomp fuzz: the split and order slots looked at the last index of a rank-0 store
    space = Space(program(RANK0), get_target("cpu"))
    schedule = walk(space, random.Random(seed))
    apply(lower(program(RANK0)), schedule)


@pytest.mark.parametrize("index", range(12))
def test_drawn_schedules_replay(index: int):
    source = program_for(7, index).render()
    drawn = draw_schedules(source, "cpu", seed=index, count=3, index=index)
    assert drawn["errors"] == [] and not drawn["unsupported"]
    assert len(drawn["schedules"]) >= 3
    naive = lower(program(source))
    for label, text in drawn["schedules"]:
        if text not in ("none", "default"):
            assert str(parse_schedule(text)) == text, label
            apply(naive, parse_schedule(text))  # legal by construction: replays without ScheduleError
    assert drawn == draw_schedules(source, "cpu", seed=index, count=3, index=index)  # deterministic


def test_accel_unsupported_and_walks():
    matmul = "kernel mm(A: f32[8, 4], B: f32[4, 8]) -> (C: f32[8, 8]) { C[i, j] += A[i, k] * B[k, j] }"
    drawn = draw_schedules(matmul, "accel", seed=1, count=2, index=2)
    assert [label for label, _ in drawn["schedules"]] == ["walk", "walk"]
    power = "kernel f(A: f32[8, 8]) -> (B: f32[8, 8]) { B[i, j] = pow(A[i, j], A[j, i]) }"
    assert draw_schedules(power, "accel", seed=1, count=2, index=2)["unsupported"].count("cannot map")
    # rank-0 reductions map on the vector unit (one column per row): walks are drawn for them
    assert draw_schedules(RANK0, "accel", seed=1, count=2, index=2)["unsupported"] == ""


def test_layout_of_rank0_temp_is_illegal():
    # found by kcomp fuzz: `layout` of a rank-0 temp applied, but its text `layout t` does not parse
    source = "kernel f(A: f32[4]) -> (y: f32[4]) {\n    t[] += A[i]\n    y[i] = A[i] / t[]\n}\n"
    with pytest.raises(ScheduleError, match="t has no dimensions to reorder"):
        apply(lower(program(source)), Schedule((Layout("t", ()),)))
