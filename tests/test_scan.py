"""Prefix scans (`Y[b, i] += X[b, i] scan i`): the reference against numpy's accumulations, the
lowered recurrence compiled on the CPU (default and naive schedules) and in the CUDA emulation
against the reference, the passes refusing to vectorize or parallelize the recurrence, the clause
printed back, and the accelerator running them (f32 and i32; an f64 one refused with the reason)."""

from __future__ import annotations

import numpy as np
import pytest

import kcomp
from kcomp.api import load_module
from kcomp.errors import ScheduleError
from kcomp.pipeline import front
from kcomp.printer import format_statement
from kcomp.reference import evaluate

SCANS = """
kernel scans(X: f32[6, 37], W: i32[5, 9]) -> (A: f32[6, 37], B: f32[6, 37], C: f32[37, 6], D: f32[6, 37], E: i32[5, 9], F: f32[6, 37]) {
    A[b, i] += X[b, i] scan i
    B[b, i] += X[b, i] * 0.5 scan reverse i
    C[i, b] max= X[b, i] scan exclusive i
    D[b, i] *= 1.0 + 0.01 * X[b, i] scan reverse exclusive i
    E[a, j] += W[a, j] scan j
    F[b, i] min= exp(X[b, i]) scan i where b < 6
}
"""


def _exclusive(acc: np.ndarray, first: float, axis: int) -> np.ndarray:
    lead = np.full_like(np.take(acc, [0], axis=axis), first)
    return np.concatenate([lead, np.take(acc, range(acc.shape[axis] - 1), axis=axis)], axis=axis)


def test_the_reference_is_numpy_s_accumulation(rng):
    module = load_module(SCANS)
    program = front(module, module.kernel(None), {})
    x = rng.standard_normal((6, 37)).astype(np.float32)
    w = rng.integers(-50, 50, (5, 9)).astype(np.int32)
    out = evaluate(program, {"X": x, "W": w})
    np.testing.assert_allclose(out["A"], np.cumsum(x, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        out["B"], np.flip(np.cumsum(np.flip(x * 0.5, 1), axis=1), 1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(out["C"], _exclusive(np.maximum.accumulate(x.T, axis=0), -np.inf, 0))
    rev = np.flip(np.cumprod(np.flip(1.0 + 0.01 * x, 1), axis=1, dtype=np.float32), 1)
    want_d = np.concatenate([rev[:, 1:], np.ones((6, 1), np.float32)], axis=1)
    np.testing.assert_allclose(out["D"], want_d, rtol=1e-5)
    np.testing.assert_array_equal(out["E"], np.cumsum(w, axis=1, dtype=np.int32))
    np.testing.assert_allclose(out["F"], np.minimum.accumulate(np.exp(x), axis=1), rtol=1e-6)


@pytest.mark.parametrize("schedule", [None, "none"])
@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_scans_compile_and_match_the_reference(schedule, target):
    assert kcomp.compile(SCANS, schedule=schedule, target=target).check(seed=3).ok


def test_the_recurrence_stays_serial():
    src = "kernel s(X: f32[16, 40]) -> (A: f32[16, 40]) { A[b, i] += X[b, i] scan i }"
    for step in ("vectorize i", "parallel i", "split i 8\nvectorize i_i"):
        with pytest.raises(ScheduleError, match="accessed at different indices"):
            assert kcomp.compile(src, schedule=step).built is not None


def test_the_clause_prints_back():
    module = load_module(SCANS)
    program = front(module, module.kernel(None), {})
    texts = [format_statement(st) for st in program.statements]
    assert texts[0].endswith("scan i") and texts[1].endswith("scan reverse i")
    assert texts[3].endswith("scan reverse exclusive i")


def test_the_accelerator_runs_scans_and_says_why_not_for_the_rest():
    source = "kernel s(X: f32[16, 40]) -> (A: f32[16, 40]) { A[b, i] += X[b, i] scan i }"
    assert kcomp.compile(source, target="accel").check(seed=3).ok
    integers = "kernel s(X: i32[16, 40]) -> (A: i32[16, 40]) { A[b, i] *= X[b, i] % 3 + 1 scan reverse i }"
    assert kcomp.compile(integers, target="accel").check(seed=4).ok  # viscan on the words
    wide = "kernel s(X: f64[16, 40]) -> (A: f64[16, 40]) { A[b, i] += X[b, i] scan i }"
    with pytest.raises(ScheduleError, match="f64"):
        assert kcomp.compile(wide, target="accel").built is not None
