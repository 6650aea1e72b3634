"""Default lowering + loop-IR interpreter against plain numpy and the reference evaluator.

Programs are built by hand (no parser).  Float reductions are compared with a tolerance (the
reference sums pairwise / through BLAS, the loops sum left to right); everything else is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

import kcomp.interp
from kcomp.dtypes import DType
from kcomp.errors import UsageError
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Load, Param, Select, Unary, UnaryOp, Var
from kcomp.interp import run
from kcomp.loops.verify import verify
from kcomp.lower import lower
from kcomp.program import Program, Reduce, Statement
from kcomp.reference import evaluate

F32, I32, I8 = DType.F32, DType.I32, DType.I8
RNG = np.random.default_rng(2024)


def add(a, b):
    return Binary(BinaryOp.ADD, a, b)


def sub(a, b):
    return Binary(BinaryOp.SUB, a, b)


def mul(a, b):
    return Binary(BinaryOp.MUL, a, b)


def c32(v):
    return Const(v, I32)


def stmt(target, index, op, value, reduce=(), extents=(), accumulate=False):
    return Statement(target, tuple(index), op, value, tuple(reduce), tuple(extents), accumulate)


def execute(program: Program, inputs: dict[str, np.ndarray], params=None) -> dict[str, np.ndarray]:
    """Lower, verify, interpret; outputs start as garbage so unwritten elements show."""
    nest = lower(program)
    verify(nest)
    arrays = {b.name: np.asarray(inputs[b.name]).copy() for b in program.inputs}
    for b in program.outputs:
        arrays[b.name] = np.full(b.shape, 77, b.dtype.numpy)
    run(nest, arrays, params or {})
    return {b.name: arrays[b.name] for b in program.outputs}


def randf(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- programs


def matmul(m=16, n=12, k=8) -> Program:
    a, b, c = Buffer("A", F32, (m, k)), Buffer("B", F32, (k, n)), Buffer("C", F32, (m, n))
    i, j, kk = Var("i"), Var("j"), Var("k")
    s = stmt(c, (i, j), Reduce.ADD, mul(Load(a, (i, kk)), Load(b, (kk, j))), (kk,), (m, n, k))
    return Program("matmul", (a, b), (c,), (), (), (s,))


def bias_matmul(m=8, n=6, k=5) -> Program:
    x, w, bias = Buffer("X", F32, (m, k)), Buffer("W", F32, (k, n)), Buffer("b", F32, (n,))
    y = Buffer("Y", F32, (m, n))
    i, j, i2, j2, kk = Var("i"), Var("j"), Var("i"), Var("j"), Var("k")
    first = stmt(y, (i, j), Reduce.ASSIGN, Load(bias, (j,)), (), (m, n))
    second = stmt(y, (i2, j2), Reduce.ADD, mul(Load(x, (i2, kk)), Load(w, (kk, j2))), (kk,), (m, n, k), True)
    return Program("linear", (x, w, bias), (y,), (), (), (first, second))


def softmax(m=6, n=10) -> Program:
    x, y = Buffer("X", F32, (m, n)), Buffer("Y", F32, (m, n))
    mx, e, s = Buffer("M", F32, (m,)), Buffer("E", F32, (m, n)), Buffer("S", F32, (m,))
    v = [Var(name) for name in "ijijijij"]
    return Program(
        "softmax",
        (x,),
        (y,),
        (),
        (mx, e, s),
        (
            stmt(mx, (v[0],), Reduce.MAX, Load(x, (v[0], v[1])), (v[1],), (m, n)),
            stmt(e, v[2:4], Reduce.ASSIGN, Unary(UnaryOp.EXP, sub(Load(x, (v[2], v[3])), Load(mx, (v[2],)))),
                 (), (m, n)),
            stmt(s, (v[4],), Reduce.ADD, Load(e, (v[4], v[5])), (v[5],), (m, n)),
            stmt(y, v[6:8], Reduce.ASSIGN, Binary(BinaryOp.DIV, Load(e, tuple(v[6:8])), Load(s, (v[6],))),
                 (), (m, n)),
        ),
    )  # fmt: skip


def maxpool(h=8, w=10) -> Program:
    """3x3 window, stride 2, padding 1: Y[a, b] max= X[2a + p - 1, 2b + q - 1, pad=-inf]."""
    x, y = Buffer("X", F32, (h, w)), Buffer("Y", F32, (h // 2, w // 2))
    a, b, p, q = Var("h"), Var("w"), Var("p"), Var("q")
    row = sub(add(mul(c32(2), a), p), c32(1))
    col = sub(add(mul(c32(2), b), q), c32(1))
    s = stmt(y, (a, b), Reduce.MAX, Load(x, (row, col), pad=float("-inf")), (p, q), (h // 2, w // 2, 3, 3))
    return Program("maxpool", (x,), (y,), (), (), (s,))


def gather(vocab=11, t=7, d=5) -> Program:
    emb, ids, y = Buffer("E", F32, (vocab, d)), Buffer("ids", I32, (t,)), Buffer("Y", F32, (t, d))
    tt, dd = Var("t"), Var("d")
    s = stmt(y, (tt, dd), Reduce.ASSIGN, Load(emb, (Load(ids, (tt,)), dd)), (), (t, d))
    return Program("gather", (emb, ids), (y,), (), (), (s,))


def argreduce(op: Reduce, m=5, n=9) -> Program:
    x, out = Buffer("X", F32, (m, n)), Buffer("I", I32, (m,))
    i, r = Var("i"), Var("r")
    return Program("arg", (x,), (out,), (), (), (stmt(out, (i,), op, Load(x, (i, r)), (r,), (m, n)),))


# ---------------------------------------------------------------- differential tests


def test_matmul_matches_numpy_and_reference():
    p = matmul()
    a, b = randf(16, 8), randf(8, 12)
    got = execute(p, {"A": a, "B": b})["C"]
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, evaluate(p, {"A": a, "B": b})["C"], rtol=1e-5, atol=1e-5)


def test_matmul_sums_left_to_right_exactly():
    a, b = randf(16, 8), randf(8, 12)
    expect = np.zeros((16, 12), np.float32)
    for k in range(8):
        expect = expect + a[:, k : k + 1] * b[k : k + 1, :]
    np.testing.assert_array_equal(execute(matmul(), {"A": a, "B": b})["C"], expect)


def test_bias_then_accumulate():
    p = bias_matmul()
    x, w, bias = randf(8, 5), randf(5, 6), randf(6)
    got = execute(p, {"X": x, "W": w, "b": bias})["Y"]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, evaluate(p, {"X": x, "W": w, "b": bias})["Y"], rtol=1e-6, atol=1e-6)


def test_softmax_with_temps():
    p = softmax()
    x = randf(6, 10) * 3
    got = execute(p, {"X": x})["Y"]
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(got, evaluate(p, {"X": x})["Y"], rtol=1e-6)


def test_maxpool_pads_with_minus_inf():
    p = maxpool()
    x = randf(8, 10)
    padded = np.pad(x, 1, constant_values=-np.inf)
    expect = np.array(
        [[padded[2 * a : 2 * a + 3, 2 * b : 2 * b + 3].max() for b in range(5)] for a in range(4)]
    )
    got = execute(p, {"X": x})["Y"]
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got, evaluate(p, {"X": x})["Y"])


def test_gather_rows():
    p = gather()
    emb, ids = randf(11, 5), RNG.integers(0, 11, size=7).astype(np.int32)
    got = execute(p, {"E": emb, "ids": ids})["Y"]
    np.testing.assert_array_equal(got, emb[ids])
    np.testing.assert_array_equal(got, evaluate(p, {"E": emb, "ids": ids})["Y"])


def test_gather_out_of_bounds_index_is_an_error():
    emb, ids = randf(11, 5), np.array([0, 1, 2, 11, 3, 4, 5], np.int32)
    with pytest.raises(IndexError, match=r"E\[11, 5\] out of bounds"):
        execute(gather(), {"E": emb, "ids": ids})


@pytest.mark.parametrize("op", [Reduce.ARGMAX, Reduce.ARGMIN])
def test_argmax_first_of_ties_wins_and_nan_never_wins(op):
    x = RNG.integers(-3, 4, size=(5, 9)).astype(np.float32)  # many ties
    x[1, 0] = np.nan
    x[2, :] = np.nan
    x[3, 4] = np.inf if op is Reduce.ARGMAX else -np.inf
    got = execute(argreduce(op), {"X": x})["I"]
    clean = np.where(np.isnan(x), -np.inf if op is Reduce.ARGMAX else np.inf, x)
    expect = (np.argmax if op is Reduce.ARGMAX else np.argmin)(clean, axis=1)
    np.testing.assert_array_equal(got, expect)
    assert got[2] == 0
    np.testing.assert_array_equal(got, evaluate(argreduce(op), {"X": x})["I"])


def test_int_division_truncates_and_floor_ops_floor():
    a, b, y = Buffer("A", I32, (12,)), Buffer("B", I32, (12,)), Buffer("Y", I32, (3, 12))
    r, i = Var("r"), Var("i")
    ops = (BinaryOp.DIV, BinaryOp.FLOORDIV, BinaryOp.MOD)
    value = Select(
        Binary(BinaryOp.EQ, r, c32(0)),
        Binary(ops[0], Load(a, (i,)), Load(b, (i,))),
        Select(Binary(BinaryOp.EQ, r, c32(1)), Binary(ops[1], Load(a, (i,)), Load(b, (i,))),
               Binary(ops[2], Load(a, (i,)), Load(b, (i,)))),
    )  # fmt: skip
    p = Program("intops", (a, b), (y,), (), (), (stmt(y, (r, i), Reduce.ASSIGN, value, (), (3, 12)),))
    av = RNG.integers(-50, 50, size=12).astype(np.int32)
    bv = RNG.choice([-7, -3, -1, 1, 2, 5], size=12).astype(np.int32)
    got = execute(p, {"A": av, "B": bv})["Y"]
    np.testing.assert_array_equal(got[0], np.trunc(av / bv).astype(np.int32))
    np.testing.assert_array_equal(got[1], av // bv)
    np.testing.assert_array_equal(got[2], av % bv)
    np.testing.assert_array_equal(got, evaluate(p, {"A": av, "B": bv})["Y"])


def test_i8_sum_computes_in_i32_and_wraps_on_store():
    x, y = Buffer("X", I8, (4, 16)), Buffer("Y", I8, (4,))
    i, k = Var("i"), Var("k")
    p = Program("isum", (x,), (y,), (), (), (stmt(y, (i,), Reduce.ADD, Load(x, (i, k)), (k,), (4, 16)),))
    xv = RNG.integers(-128, 128, size=(4, 16)).astype(np.int8)
    got = execute(p, {"X": xv})["Y"]
    np.testing.assert_array_equal(got, xv.astype(np.int32).sum(axis=1).astype(np.int8))
    np.testing.assert_array_equal(got, evaluate(p, {"X": xv})["Y"])


def test_i32_max_starts_from_int_minimum():
    x, y = Buffer("X", I32, (3, 5)), Buffer("Y", I32, (3,))
    i, k = Var("i"), Var("k")
    p = Program("imax", (x,), (y,), (), (), (stmt(y, (i,), Reduce.MAX, Load(x, (i, k)), (k,), (3, 5)),))
    xv = -RNG.integers(2**30, 2**31 - 1, size=(3, 5)).astype(np.int32)
    np.testing.assert_array_equal(execute(p, {"X": xv})["Y"], xv.max(axis=1))


def test_select_with_vars_as_values():
    y = Buffer("Y", I32, (7, 9))
    i, j = Var("i"), Var("j")
    value = Select(Binary(BinaryOp.LT, i, j), mul(i, c32(10)), sub(Const(0, I32), j))
    p = Program("sel", (), (y,), (), (), (stmt(y, (i, j), Reduce.ASSIGN, value, (), (7, 9)),))
    ii, jj = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    np.testing.assert_array_equal(execute(p, {})["Y"], np.where(ii < jj, ii * 10, -jj))
    np.testing.assert_array_equal(execute(p, {})["Y"], evaluate(p, {})["Y"])


def test_param_and_cast_to_float():
    x, y = Buffer("X", F32, (4, 6)), Buffer("Y", F32, (4, 6))
    eps = Param("eps", F32)
    i, j = Var("i"), Var("j")
    value = add(mul(Load(x, (i, j)), eps), Cast(F32, j))
    p = Program("scale", (x,), (y,), (eps,), (), (stmt(y, (i, j), Reduce.ASSIGN, value, (), (4, 6)),))
    xv = randf(4, 6)
    got = execute(p, {"X": xv}, {"eps": 0.5})
    np.testing.assert_array_equal(got["Y"], xv * np.float32(0.5) + np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(got["Y"], evaluate(p, {"X": xv}, {"eps": 0.5})["Y"])


def test_f16_arithmetic_rounds_on_store():
    x, y = Buffer("X", DType.F16, (8,)), Buffer("Y", DType.F16, (8,))
    i = Var("i")
    value = add(mul(Load(x, (i,)), Load(x, (i,))), Const(0.1, DType.F16))
    p = Program("half", (x,), (y,), (), (), (stmt(y, (i,), Reduce.ASSIGN, value, (), (8,)),))
    xv = randf(8).astype(np.float16)
    x32 = xv.astype(np.float32)
    expect = (x32 * x32 + np.float32(np.float16(0.1))).astype(np.float16)
    np.testing.assert_array_equal(execute(p, {"X": xv})["Y"], expect)


# ---------------------------------------------------------------- lanes vs element by element


@pytest.mark.parametrize(
    "build", [matmul, bias_matmul, softmax, maxpool, gather, lambda: argreduce(Reduce.ARGMAX)]
)
def test_vectorized_inner_loops_match_scalar_execution(build, monkeypatch):
    p = build()
    inputs = {}
    for b in p.inputs:
        if b.dtype is I32:
            inputs[b.name] = RNG.integers(0, 5, size=b.shape).astype(np.int32)
        else:
            inputs[b.name] = randf(*b.shape)
    fast = execute(p, inputs)
    monkeypatch.setattr(kcomp.interp, "vector_plan", lambda loop: None)
    slow = execute(p, inputs)
    for name in fast:
        np.testing.assert_array_equal(fast[name], slow[name])


# ---------------------------------------------------------------- errors


def test_missing_array_and_wrong_shape_are_usage_errors():
    nest = lower(matmul())
    a, b, c = randf(16, 8), randf(8, 12), np.zeros((16, 12), np.float32)
    with pytest.raises(UsageError, match="no array given for B"):
        run(nest, {"A": a, "C": c}, {})
    with pytest.raises(UsageError, match=r"A must be f32\[16, 8\], got float64\[16, 8\]"):
        run(nest, {"A": a.astype(np.float64), "B": b, "C": c}, {})


def test_missing_param_is_a_usage_error():
    x, y = Buffer("X", F32, (2,)), Buffer("Y", F32, (2,))
    eps, i = Param("eps", F32), Var("i")
    p = Program(
        "p", (x,), (y,), (eps,), (), (stmt(y, (i,), Reduce.ASSIGN, add(Load(x, (i,)), eps), (), (2,)),)
    )
    with pytest.raises(UsageError, match="no value given for parameter eps"):
        run(lower(p), {"X": randf(2), "Y": randf(2)}, {})
