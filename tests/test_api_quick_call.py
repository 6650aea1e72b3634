"""The Python API's quick call: exact positional numpy arguments skip the checked path (the same
results), and every other call still gets the checks and their messages."""

from __future__ import annotations

import numpy as np
import pytest
from test_api import EXAMPLES, nonzero

from kcomp.api import CompiledKernel, compile
from kcomp.errors import UsageError


@pytest.fixture(scope="module")
def mm() -> CompiledKernel:
    return compile(EXAMPLES / "matmul.kc", shapes={"M": 24, "N": 20, "K": 16})


@pytest.fixture(scope="module")
def ln() -> CompiledKernel:
    return compile(str(EXAMPLES / "layernorm.kc"), shapes={"N": 6, "D": 32})


def test_exact_numpy_calls_take_the_quick_path_and_give_the_same_results(mm, ln, rng, monkeypatch):
    """Positional numpy arrays of the exact dtype and shape skip the checked path (`run` is never
    reached); scalars keep their defaults; read-only inputs and several outputs work."""
    a, b = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    a.flags.writeable = False
    x = nonzero(rng, *ln.program.inputs[0].shape)
    want_mm, want_ln = (
        mm(a, b, out=np.empty((24, 20), np.float32)),
        ln.reference(x, *_ln_rest(ln)),
    )
    assert mm._quick is not None and ln._quick is not None

    def refuse(*_args, **_kwargs):
        raise AssertionError("the checked path ran")

    monkeypatch.setattr(type(mm.target), "run", refuse)
    np.testing.assert_array_equal(mm(a, b), want_mm)
    np.testing.assert_allclose(ln(x, *_ln_rest(ln)), want_ln, rtol=1e-4, atol=1e-5)


def _ln_rest(k):
    return [np.ones(b.shape, np.float32) for b in k.program.inputs[1:]]


def test_calls_the_quick_path_refuses_still_get_their_checks_and_errors(mm, rng):
    a, b = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    with pytest.raises(UsageError, match="dtype"):
        mm(a.astype(np.float64), b)
    with pytest.raises(UsageError, match="contiguous"):
        mm(np.asfortranarray(a), b)
    np.testing.assert_allclose(mm(a, B=b), mm(a, b), rtol=1e-6)  # keywords: checked path


def test_no_quick_path_when_positions_would_not_line_up():
    k = compile("kernel f(s: f32 = 2.0, X: f32[4]) -> (Y: f32[4]) { Y[i] = X[i] * s }")
    assert k._quick is None
    assert (k(2.0, np.ones(4, np.float32)) == 2.0).all()
    k = compile("kernel f(X: f32[4], s: f32) -> (Y: f32[4]) { Y[i] = X[i] * s }")
    assert k._quick is None  # a scalar without a default must be passed
