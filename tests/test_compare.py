"""The numeric policy's comparison rule and the reduction lengths it derives from programs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kcomp.compare import compare, compare_outputs, reduction_length, tolerances
from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Load, Unary, UnaryOp, Var
from kcomp.program import Program, Reduce, Statement

F32 = DType.F32


def ref_values(rng, n=100):
    return (rng.uniform(0.1, 1.0, n) * rng.choice([-1.0, 1.0], n)).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_tolerance_formula():
    atol, rtol = tolerances(F32, max_ref=4.0, reduction_length=100)
    assert rtol == 1e-4
    assert atol == pytest.approx(1e-5 * 4.0 * 10.0)
    assert tolerances(F32, max_ref=0.25)[0] == pytest.approx(1e-5)  # magnitude never below 1
    assert tolerances(DType.I32, max_ref=100.0, reduction_length=10**6) == (0.0, 0.0)


def test_within_tolerance_is_ok(rng):
    ref = ref_values(rng)
    got = (ref * (1 + 5e-5)).astype(np.float32)
    result = compare(got, ref, F32)
    assert result.ok and result.mismatches == 0 and result.reason == ""
    assert 0 < result.max_abs_err < 1e-4
    assert result.max_rel_err == pytest.approx(result.max_abs_err / np.abs(ref).max())


def test_outside_tolerance_fails(rng):
    ref = ref_values(rng)
    got = ref.copy()
    got[3] += 0.01
    result = compare(got, ref, F32)
    assert not result.ok
    assert result.mismatches == 1
    assert result.max_abs_err == pytest.approx(0.01, rel=1e-3)
    assert "1 elements outside tolerance" in result.reason
    assert "MISMATCH" in str(result)


def test_longer_reductions_allow_more_absolute_error(rng):
    ref = ref_values(rng)
    got = ref.copy()
    got[0] += 2e-4
    assert not compare(got, ref, F32, reduction_length=1).ok
    assert compare(got, ref, F32, reduction_length=10_000).ok


def test_nan_must_match_nan():
    ref = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    assert compare(ref.copy(), ref, F32).ok
    result = compare(np.array([1.0, 2.0, 3.0], dtype=np.float32), ref, F32)
    assert not result.ok and math.isinf(result.max_abs_err)
    assert "NaN at 1 positions" in result.reason
    assert not compare(np.array([np.nan, np.nan, 3.0], dtype=np.float32), ref, F32).ok


def test_inf_must_match_exactly():
    ref = np.array([np.inf, -np.inf, 1.0], dtype=np.float32)
    assert compare(ref.copy(), ref, F32).ok
    flipped = np.array([np.inf, np.inf, 1.0], dtype=np.float32)
    result = compare(flipped, ref, F32)
    assert not result.ok and "1 infinities differ" in result.reason
    finite = np.array([np.inf, -3e38, 1.0], dtype=np.float32)
    assert not compare(finite, ref, F32).ok


def test_integers_are_exact():
    ref = np.array([1, -5, 7], dtype=np.int32)
    assert compare(ref.copy(), ref, DType.I32, reduction_length=1000).ok
    result = compare(np.array([1, -5, 8], dtype=np.int32), ref, DType.I32)
    assert not result.ok and result.max_abs_err == 1.0 and result.reason == "1 elements differ"
    assert compare(np.array([True, False]), np.array([True, False]), DType.BOOL).ok


def test_f16_tolerance_admits_one_rounding_step(rng):
    ref = ref_values(rng).astype(np.float16)
    got = np.nextafter(ref, np.float16(np.inf))
    assert compare(got, ref, DType.F16).ok
    assert not compare((ref.astype(np.float32) * 1.05).astype(np.float16), ref, DType.F16).ok


def test_shape_and_dtype_mismatch_fail():
    ref = np.ones(4, dtype=np.float32)
    result = compare(np.ones(5, dtype=np.float32), ref, F32)
    assert not result.ok and "shape" in result.reason
    result = compare(np.ones(4, dtype=np.float64), ref, F32)
    assert not result.ok and "dtype" in result.reason
    assert not compare(ref.astype(np.float64), ref.astype(np.float64), F32).ok


def _st(target, index, op, value, reduce=(), extents=(), accumulate=False):
    return Statement(
        target, tuple(index), op, value, tuple(reduce), tuple(target.shape) + tuple(extents), accumulate
    )


def test_reduction_length_of_linear_and_softmax():
    x, w, b = Buffer("X", F32, (4, 64)), Buffer("W", F32, (64, 8)), Buffer("b", F32, (8,))
    y, m, e, s, p = (
        Buffer(n, F32, shape)
        for n, shape in [("Y", (4, 8)), ("m", (4,)), ("e", (4, 8)), ("s", (4,)), ("P", (4, 8))]
    )
    i, j, k = Var("i"), Var("j"), Var("k")
    statements = (
        _st(y, (i, j), Reduce.ASSIGN, Load(b, (j,))),
        _st(y, (i, j), Reduce.ADD, Binary(BinaryOp.MUL, Load(x, (i, k)), Load(w, (k, j))), (k,), (64,), True),
        _st(m, (i,), Reduce.MAX, Load(y, (i, k)), (k,), (8,)),
        _st(
            e, (i, j), Reduce.ASSIGN, Unary(UnaryOp.EXP, Binary(BinaryOp.SUB, Load(y, (i, j)), Load(m, (i,))))
        ),
        _st(s, (i,), Reduce.ADD, Load(e, (i, k)), (k,), (8,)),
        _st(p, (i, j), Reduce.ASSIGN, Binary(BinaryOp.DIV, Load(e, (i, j)), Load(s, (i,)))),
    )
    program = Program("lin_softmax", (x, w, b), (y, p), (), (m, e, s), statements)
    assert reduction_length(program, y) == 64
    assert reduction_length(program, m) == 65  # max adds one step to its input's 64
    assert reduction_length(program, e) == 66
    assert reduction_length(program, s) == 66 + 8
    assert reduction_length(program, p) == 75
    assert reduction_length(program, x) == 1  # an input

    rng = np.random.default_rng(0)
    yv = ref_values(rng, 32).reshape(4, 8)
    pv = ref_values(rng, 32).reshape(4, 8)
    result = compare_outputs(program, {"Y": yv, "P": pv + 1e-5}, {"Y": yv, "P": pv})
    assert result["Y"].ok and result["Y"].max_abs_err == 0
    assert result["P"].ok and result["P"].atol == pytest.approx(1e-5 * math.sqrt(75))
    missing = compare_outputs(program, {"Y": yv}, {"Y": yv, "P": pv})
    assert not missing["P"].ok and missing["P"].reason == "output missing"
