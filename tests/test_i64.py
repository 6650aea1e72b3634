"""i64 tensors end to end (torch's type for indices, labels and argmax results): values past the i32
range through arithmetic, reductions, casts, gathers and arg-reductions, in the reference, the loop
interpreter, the CPU (naive, default and vectorized schedules) and the CUDA emulation; parameters
range-checked; the accelerator's refusal."""

from __future__ import annotations

import numpy as np
import pytest

import kcomp
from kcomp.api import load_module
from kcomp.dtypes import DType, common
from kcomp.errors import KcompError, UsageError
from kcomp.interp import run
from kcomp.lower import lower
from kcomp.pipeline import front
from kcomp.reference import evaluate

WIDE = """
dim T = 37, V = 50, D = 19
kernel wide(ids: i64[T], E: f32[V, D], W: i64[T, D], scale: i64 = 5000000000)
        -> (Y: f32[T, D], S: i64[T], A: i64[T], M: i64[], Q: i64[T, D], C: i32[T]) {
    Y[t, d] = E[ids[t], d] * 2.0
    S[t] += W[t, d] * 3000000000
    A[t] argmax= E[ids[t], d]
    M[] max= abs(W[t, d] * scale)
    Q[t, d] = W[t, d] * scale // 7 - W[t, d] % 5 + i64(E[ids[t], d] * 100.0)
    C[t] = i32(S[t] // 1000000000)
}
"""


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "ids": rng.integers(0, 50, 37).astype(np.int64),
        "E": rng.standard_normal((50, 19)).astype(np.float32),
        "W": (rng.integers(-50, 51, (37, 19)) * (1 << 34)).astype(np.int64),  # far past i32
    }


def test_the_reference_keeps_64_bits(rng):
    module = load_module(WIDE)
    program = front(module, module.kernel(None), {})
    x = _inputs(rng)
    out = evaluate(program, x, {"scale": 5_000_000_000})
    w, e = x["W"], x["E"][x["ids"]]
    np.testing.assert_array_equal(out["S"], (w * 3_000_000_000).sum(axis=1))
    assert out["A"].dtype == np.int64
    np.testing.assert_array_equal(out["A"], e.argmax(axis=1))
    assert out["M"] == np.abs(w * 5_000_000_000).max()
    np.testing.assert_array_equal(
        out["C"], ((w * 3_000_000_000).sum(axis=1) // 1_000_000_000).astype(np.int32)
    )


def test_the_loop_interpreter_agrees_with_the_reference(rng):
    module = load_module(WIDE)
    program = front(module, module.kernel(None), {})
    x = _inputs(rng)
    want = evaluate(program, x, {"scale": 5_000_000_000})
    arrays = {**x, **{b.name: np.zeros(b.shape, b.dtype.numpy) for b in program.outputs}}
    run(lower(program), arrays, {"scale": 5_000_000_000})
    for name, value in want.items():
        np.testing.assert_allclose(arrays[name], value, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "target, schedule",
    [("cpu", None), ("cpu", "none"), ("cpu", "vectorize t"), ("cuda", None), ("cuda", "none")],
)
def test_compiled_kernels_match_the_reference(target, schedule):
    kernel = kcomp.compile(WIDE, schedule=schedule, target=target)
    assert kernel.check(seed=5).ok
    x = _inputs(np.random.default_rng(9))  # values the check's generator does not reach
    out = kernel(**x)
    want = evaluate(kernel.built.program, x, {"scale": 5_000_000_000})
    for name, value in zip(("Y", "S", "A", "M", "Q", "C"), out, strict=True):
        np.testing.assert_allclose(value, want[name], rtol=1e-6, err_msg=name)


def test_parameters_are_range_checked_by_their_type():
    kernel = kcomp.compile("kernel p(X: i64[4], s: i64) -> (Y: i64[4]) { Y[i] = X[i] * s }")
    x = np.arange(4, dtype=np.int64)
    np.testing.assert_array_equal(kernel(x, s=-(2**62)), x * -(2**62))
    with pytest.raises(UsageError, match="does not fit in i64"):
        kernel(x, s=2**63)
    small = kcomp.compile("kernel p(X: i32[4], s: i32) -> (Y: i32[4]) { Y[i] = X[i] * s }")
    with pytest.raises(UsageError, match="does not fit in i32"):
        small(np.arange(4, dtype=np.int32), s=2**31)


def test_mixed_integer_types_need_a_cast_and_compute_in_i64():
    with pytest.raises(KcompError, match="dtype mismatch: i64 \\+ i32"):
        kcomp.compile("kernel m(X: i64[4], Z: i32[4]) -> (Y: i64[4]) { Y[i] = X[i] + Z[i] }")
    kernel = kcomp.compile("kernel m(X: i64[4], Z: i32[4]) -> (Y: i64[4]) { Y[i] = X[i] + i64(Z[i]) }")
    assert kernel.check(seed=1).ok
    assert common(DType.I64, DType.I32) is DType.I64 and common(DType.I8, DType.I32) is DType.I32


def test_the_accelerator_refuses_i64_with_its_reason():
    with pytest.raises(KcompError, match="does not lower i64"):
        kcomp.compile(WIDE, target="accel")
