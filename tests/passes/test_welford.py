"""welford: a mean and its variance in one pass, checked differentially (interpreter and compiled
C against the two-pass reference), on rows far from zero, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_schedule, scheduled

from kcomp import compile
from kcomp.errors import ScheduleError
from kcomp.loops import Loop, walk_stmts

LAYERNORM = """kernel ln(X: f32[N, D], g: f32[D]) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    xc[n, d] = X[n, d] - mean[n]
    var[n] += xc[n, d] * xc[n, d] / D
    Y[n, d] = xc[n, d] * rsqrt(var[n] + 0.00001) * g[d]
}"""
INLINED = """kernel v(X: f32[N, D]) -> (V: f32[N]) {
    mean[n] += X[n, d] * 0.03125
    var[n] += 2.0 * ((X[n, d] - mean[n]) * (X[n, d] - mean[n]))
    V[n] = var[n] + mean[n]
}"""


@pytest.mark.parametrize("d", [64, 24, 7])  # 16 lanes, 8 lanes, one lane (sequential Welford)
@pytest.mark.parametrize(
    "schedule",
    [
        "welford mean var",
        "welford mean var\ninline xc",
        "welford mean var\nvectorize w_i",
        "welford mean var\nparallel n\nvectorize w_i\nvectorize w_m reduce",
    ],
)
def test_welford_matches_the_two_pass_form(d, schedule):
    check_schedule(LAYERNORM, {"N": 5, "D": d}, schedule)


def test_a_scaled_square_and_a_multiplied_average():
    check_schedule(INLINED, {"N": 4, "D": 32}, "welford mean var")


def test_rows_far_from_zero_keep_their_variance():
    """Values 1e4 + N(0, 1): E[x^2] - E[x]^2 in f32 would lose every digit; Welford keeps them."""
    text = """dim N = 8, D = 4096
kernel v(X: f32[N, D]) -> (V: f32[N]) {
    mean[n] += X[n, d] / D
    var[n] += (X[n, d] - mean[n]) * (X[n, d] - mean[n]) / D
    V[n] = var[n]
}"""
    k = compile(text, schedule="welford mean var\nvectorize w_i")
    x = (1e4 + np.random.default_rng(3).standard_normal((8, 4096))).astype(np.float32)
    np.testing.assert_allclose(k(x), x.astype(np.float64).var(axis=1), rtol=1e-3)


def test_the_update_loop_is_lane_split():
    nest = scheduled(LAYERNORM, {"N": 2, "D": 64}, "welford mean var")
    extents = sorted(lp.extent for lp in walk_stmts(nest.body) if isinstance(lp, Loop))
    assert 16 in extents and 4 in extents  # 64 = 4 steps of 16 lanes


@pytest.mark.parametrize(
    "kernel, schedule, message",
    [
        (LAYERNORM.replace("X[n, d] / D", "X[n, d]"), "welford mean var", "not an average"),
        (
            LAYERNORM.replace("xc[n, d] * xc[n, d] / D", "X[n, d] * X[n, d] / D"),
            "welford mean var",
            "not \\(u - mean",
        ),
        (LAYERNORM, "welford mean mean", "two different tensors"),
        (LAYERNORM, "welford var mean", "must be reduced after"),
    ],
)
def test_refusals_name_the_step_and_the_reason(kernel, schedule, message):
    with pytest.raises((ScheduleError, Exception), match=message):
        scheduled(kernel, {"N": 3, "D": 16}, schedule)
