"""layout: an intermediate tensor stored with its dimensions permuted; differential check and errors."""

from __future__ import annotations

import pytest
from helpers import check_schedule, scheduled

from kcomp.errors import ScheduleError
from kcomp.printer import format_nest

TWO_STEP = (
    "kernel tr(X: f32[M, N]) -> (Y: f32[N, M]) {\n    t[i, j] = X[i, j] * 2.0\n    Y[j, i] = t[i, j] + 1.0\n}"
)
SOFTMAX = (
    "kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {\n    mx[n] max= X[n, d]\n    e[n, d] = exp(X[n, d] - mx[n])\n"
    "    s[n] += e[n, d]\n    Y[n, d] = e[n, d] / s[n]\n}"
)
SHAPES = {"M": 3, "N": 4}


def test_layout_permutes_the_temporary():
    text = format_nest(scheduled(TWO_STEP, SHAPES, "layout t 1 0"))
    assert "alloc t: f32[4, 3] global" in text
    assert "t[j, i] = X[i, j] * 2.0" in text
    assert "Y[j1, i1] = t[j1, i1] + 1.0" in text


def test_layout_of_a_staged_buffer():
    text = format_nest(scheduled(TWO_STEP, SHAPES, "cache_read X at i\nlayout X_local 1 0"))
    assert "alloc X_local: f32[4, 1] local" in text
    assert "X_local[X_local_1, X_local_0] = X[i + X_local_0, X_local_1]" in text
    assert "t[i, j] = X_local[j, 0] * 2.0" in text


@pytest.mark.parametrize(
    "schedule",
    [
        "layout t 1 0",
        "layout t 0 1",
        "layout t 1 0\nlayout t 1 0",
        "layout t 1 0\nsplit j 3\nparallel i",
        "cache_read X at i\nlayout X_local 1 0",
    ],
)
def test_layout_preserves_results(schedule):
    check_schedule(TWO_STEP, SHAPES, schedule)


@pytest.mark.parametrize(
    "schedule", ["layout e 1 0", "layout e 1 0\nlayout mx 0\nreorder d1 n1\nvectorize n1"]
)
def test_layout_in_softmax(schedule):
    check_schedule(SOFTMAX, {"N": 5, "D": 3}, schedule)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "layout X 1 0",
            r"layout X 1 0: X is an argument of the kernel; only intermediate tensors change layout",
        ),
        ("layout Y 1 0", r"layout Y 1 0: Y is an argument of the kernel"),
        ("layout u 1 0", r"layout u 1 0: no tensor named 'u' \(tensors are X, Y, t\)"),
        ("layout t 0", r"layout t 0: t has 2 dimensions, the order names 1"),
        ("layout t 2 1 0", r"layout t 2 1 0: t has 2 dimensions, the order names 3"),
    ],
)
def test_layout_errors(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(TWO_STEP, SHAPES, schedule)
