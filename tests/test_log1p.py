"""log1p and expm1: exact where log(1 + x) and exp(x) - 1 lose every digit (|x| near 1e-7), in the
reference, the loop interpreter, compiled CPU code (scalar and inside a vector loop) and the CUDA
emulation; integer arguments are refused; the accelerator says why it cannot run them."""

from __future__ import annotations

import numpy as np
import pytest

import kcomp
from kcomp.errors import KcompError
from kcomp.interp import run
from kcomp.lower import lower
from kcomp.schedule import parse_schedule

SOURCE = """
dim N = 40
kernel tiny(X: f32[N]) -> (A: f32[N], B: f32[N], C: f32[N]) {
    A[i] = log1p(X[i])
    B[i] = expm1(X[i])
    C[i] = log(1.0 + X[i])
}
"""


def _tiny() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.uniform(1e-8, 1e-6, 40) * rng.choice([-1.0, 1.0], 40)).astype(np.float32)


@pytest.mark.parametrize("target, schedule", [("cpu", "none"), ("cpu", None), ("cuda", None)])
def test_tiny_arguments_keep_their_digits(target, schedule):
    kernel = kcomp.compile(SOURCE, target=target, schedule=schedule)
    assert kernel.check(seed=1).ok
    x = _tiny()
    a, b, c = kernel(x)
    np.testing.assert_allclose(a, np.log1p(x.astype(np.float64)), rtol=2e-7)
    np.testing.assert_allclose(b, np.expm1(x.astype(np.float64)), rtol=2e-7)
    assert np.max(np.abs(c / x - 1)) > 1e-2  # the naive form loses them: the test can tell


def test_the_reference_and_the_interpreter_agree():
    kernel = kcomp.compile(SOURCE, schedule="none")
    x = _tiny()
    program = kernel.built.program
    arrays = {"X": x, **{b.name: np.zeros(b.shape, np.float32) for b in program.outputs}}
    run(lower(program), arrays)
    np.testing.assert_array_equal(arrays["A"], np.log1p(x))
    np.testing.assert_array_equal(arrays["B"], np.expm1(x))


def test_a_vector_loop_takes_them_lane_by_lane():
    kernel = kcomp.compile(SOURCE, schedule=parse_schedule("vectorize i", "<t>"))
    assert "log1pf" in kernel.built.source and kernel.check(seed=2).ok


def test_integer_arguments_and_the_accelerator_are_refused():
    with pytest.raises(KcompError, match="log1p\\(\\) needs a float argument"):
        kcomp.compile("kernel k(X: i32[4]) -> (Y: f32[4]) { Y[i] = f32(log1p(X[i])) }")
    with pytest.raises(KcompError, match="log1p has no vector-unit instruction"):
        kcomp.compile(SOURCE, target="accel")
