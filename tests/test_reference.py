"""The reference evaluator against numpy written by hand, on programs built directly in the tensor IR."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from kcomp import reference
from kcomp.compare import compare
from kcomp.dtypes import DType
from kcomp.errors import UsageError
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Load, Param, Select, Unary, UnaryOp, Var
from kcomp.program import Program, Reduce, Statement
from kcomp.reference import evaluate, evaluate_all

F32, I32 = DType.F32, DType.I32


def ld(b: Buffer, *index, pad=None) -> Load:
    return Load(b, tuple(index), pad)


def c(value, dtype: DType = F32) -> Const:
    return Const(value, dtype)


def op(o: BinaryOp, a, b) -> Binary:
    return Binary(o, a, b)


def mul(a, b) -> Binary:
    return Binary(BinaryOp.MUL, a, b)


def st(target, index, reduce_op, value, reduce=(), reduce_extents=(), accumulate=False) -> Statement:
    extents = tuple(target.shape) + tuple(reduce_extents)
    return Statement(target, tuple(index), reduce_op, value, tuple(reduce), extents, accumulate)


def prog(inputs, outputs, statements, temps=(), params=()) -> Program:
    return Program("test", tuple(inputs), tuple(outputs), tuple(params), tuple(temps), tuple(statements))


def rand(rng, *shape, dtype=np.float32):
    return (rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def matmul_program(m: int, n: int, k: int, dtype: DType = F32) -> Program:
    a, b, out = Buffer("A", dtype, (m, k)), Buffer("B", dtype, (k, n)), Buffer("C", dtype, (m, n))
    i, j, r = Var("i"), Var("j"), Var("k")
    return prog([a, b], [out], [st(out, (i, j), Reduce.ADD, mul(ld(a, i, r), ld(b, r, j)), (r,), (k,))])


def test_matmul_matches_numpy(rng):
    a, b = rand(rng, 33, 29), rand(rng, 29, 47)
    out = evaluate(matmul_program(33, 47, 29), {"A": a, "B": b}, {})["C"]
    assert out.dtype == np.float32 and out.shape == (33, 47)
    assert compare(out, a @ b, F32, 29).ok


def test_blas_is_single_threaded_while_evaluating(rng, monkeypatch):
    """Multi-threaded BLAS leaves worker threads spinning after the call, which stole a core from the
    kernel timed right after its check; the limit holds only for the evaluation."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    seen: list[list[int]] = []
    real = np.einsum
    monkeypatch.setattr(np, "einsum", lambda *a, **k: seen.append(blas_threads()) or real(*a, **k))
    a, b = rand(rng, 8, 8), rand(rng, 8, 8)
    evaluate(matmul_program(8, 8, 8), {"A": a, "B": b})
    assert seen and all(threads == [1] * len(threads) for threads in seen) and seen[0]
    assert blas_threads() == before


def test_matmul_1024_is_fast(rng):
    """The reference checks every tuning candidate, so a big matmul must go through BLAS."""
    a, b = rand(rng, 1024, 1024), rand(rng, 1024, 1024)
    program = matmul_program(1024, 1024, 1024)
    evaluate(program, {"A": a, "B": b})  # warm up BLAS threads
    start = time.perf_counter()
    out = evaluate(program, {"A": a, "B": b})["C"]
    assert time.perf_counter() - start < 3.0
    assert compare(out, a @ b, F32, 1024).ok


def test_bias_then_accumulate(rng):
    x, w, bias = Buffer("X", F32, (8, 16)), Buffer("W", F32, (16, 5)), Buffer("b", F32, (5,))
    y = Buffer("Y", F32, (8, 5))
    i, j, k = Var("i"), Var("j"), Var("k")
    program = prog(
        [x, w, bias],
        [y],
        [
            st(y, (i, j), Reduce.ASSIGN, ld(bias, j)),
            st(y, (i, j), Reduce.ADD, mul(ld(x, i, k), ld(w, k, j)), (k,), (16,), accumulate=True),
        ],
    )
    xv, wv, bv = rand(rng, 8, 16), rand(rng, 16, 5), rand(rng, 5)
    assert compare(evaluate(program, {"X": xv, "W": wv, "b": bv})["Y"], xv @ wv + bv, F32, 16).ok


def test_reduction_without_accumulate_starts_from_identity(rng):
    x, y = Buffer("X", F32, (4, 6)), Buffer("Y", F32, (4,))
    i, k = Var("i"), Var("k")
    for reduce_op, expect in [(Reduce.ADD, np.sum), (Reduce.MUL, np.prod), (Reduce.MIN, np.min)]:
        program = prog([x], [y], [st(y, (i,), reduce_op, ld(x, i, k), (k,), (6,))])
        xv = rand(rng, 4, 6)
        np.testing.assert_allclose(evaluate(program, {"X": xv})["Y"], expect(xv, axis=1), rtol=1e-6)


def test_softmax_with_temps(rng):
    x, y = Buffer("X", F32, (6, 10)), Buffer("Y", F32, (6, 10))
    m, e, s = Buffer("m", F32, (6,)), Buffer("e", F32, (6, 10)), Buffer("s", F32, (6,))
    i, j, k = Var("i"), Var("j"), Var("k")
    program = prog(
        [x],
        [y],
        [
            st(m, (i,), Reduce.MAX, ld(x, i, k), (k,), (10,)),
            st(e, (i, j), Reduce.ASSIGN, Unary(UnaryOp.EXP, op(BinaryOp.SUB, ld(x, i, j), ld(m, i)))),
            st(s, (i,), Reduce.ADD, ld(e, i, k), (k,), (10,)),
            st(y, (i, j), Reduce.ASSIGN, op(BinaryOp.DIV, ld(e, i, j), ld(s, i))),
        ],
        temps=[m, e, s],
    )
    xv = rand(rng, 6, 10) * 5
    ex = np.exp(xv - xv.max(axis=1, keepdims=True))
    out = evaluate_all(program, {"X": xv})
    assert compare(out["Y"], (ex / ex.sum(axis=1, keepdims=True)).astype(np.float32), F32, 13).ok
    assert set(out) == {"X", "Y", "m", "e", "s"}


def test_max_pool_with_padding(rng):
    """out[h, w] max= X[2h+r-1, 2w+q-1] over a 3x3 window, stride 2, padding 1 reading -inf."""
    x, out = Buffer("X", F32, (9, 8)), Buffer("P", F32, (5, 4))
    h, w, r, q = Var("h"), Var("w"), Var("r"), Var("q")
    row = op(BinaryOp.SUB, op(BinaryOp.ADD, mul(c(2, I32), h), r), c(1, I32))
    col = op(BinaryOp.SUB, op(BinaryOp.ADD, mul(c(2, I32), w), q), c(1, I32))
    value = ld(x, row, col, pad=float("-inf"))
    program = prog([x], [out], [st(out, (h, w), Reduce.MAX, value, (r, q), (3, 3))])
    xv = rand(rng, 9, 8)
    padded = np.pad(xv, 1, constant_values=-np.inf)
    want = np.array(
        [[padded[2 * a : 2 * a + 3, 2 * b : 2 * b + 3].max() for b in range(4)] for a in range(5)]
    )
    np.testing.assert_array_equal(evaluate(program, {"X": xv})["P"], want)


def test_shifted_read_pads_with_zero(rng):
    x, y = Buffer("X", F32, (7,)), Buffer("Y", F32, (7,))
    i = Var("i")
    program = prog([x], [y], [st(y, (i,), Reduce.ASSIGN, ld(x, op(BinaryOp.SUB, i, c(1, I32)), pad=0.0))])
    xv = rand(rng, 7)
    np.testing.assert_array_equal(evaluate(program, {"X": xv})["Y"], np.concatenate([[0.0], xv[:-1]]))


def test_load_out_of_bounds_without_pad_is_an_error(rng):
    x, y = Buffer("X", F32, (7,)), Buffer("Y", F32, (7,))
    i = Var("i")
    program = prog([x], [y], [st(y, (i,), Reduce.ASSIGN, ld(x, op(BinaryOp.ADD, i, c(1, I32))))])
    with pytest.raises(ValueError, match="out-of-bounds read of X"):
        evaluate(program, {"X": rand(rng, 7)})


def test_gather(rng):
    emb, ids, out = Buffer("E", F32, (11, 4)), Buffer("ids", I32, (6,)), Buffer("O", F32, (6, 4))
    t, d = Var("t"), Var("d")
    program = prog([emb, ids], [out], [st(out, (t, d), Reduce.ASSIGN, ld(emb, ld(ids, t), d))])
    ev, iv = rand(rng, 11, 4), rng.integers(0, 11, 6).astype(np.int32)
    np.testing.assert_array_equal(evaluate(program, {"E": ev, "ids": iv})["O"], ev[iv])


def test_gather_inside_contraction(rng):
    """y[t] += E[ids[t], d] * w[d]: a gathered factor of an einsum."""
    emb, ids, w, y = (
        Buffer("E", F32, (9, 5)),
        Buffer("ids", I32, (4,)),
        Buffer("w", F32, (5,)),
        Buffer("y", F32, (4,)),
    )
    t, d = Var("t"), Var("d")
    program = prog(
        [emb, ids, w], [y], [st(y, (t,), Reduce.ADD, mul(ld(emb, ld(ids, t), d), ld(w, d)), (d,), (5,))]
    )
    ev, iv, wv = rand(rng, 9, 5), rng.integers(0, 9, 4).astype(np.int32), rand(rng, 5)
    assert compare(evaluate(program, {"E": ev, "ids": iv, "w": wv})["y"], ev[iv] @ wv, F32, 5).ok


def argmax_program(n: int, width: int, reduce_op: Reduce) -> Program:
    x, idx = Buffer("X", F32, (n, width)), Buffer("I", I32, (n,))
    i, k = Var("i"), Var("k")
    return prog([x], [idx], [st(idx, (i,), reduce_op, ld(x, i, k), (k,), (width,))])


def loop_argmax(row, sign: float) -> int:
    """The loop every target runs: `if (v > best) {best = v; idx = r}` from best = -inf, idx = 0."""
    best, idx = -np.inf, 0
    for r, v in enumerate(row):
        if sign * v > best:
            best, idx = sign * v, r
    return idx


@pytest.mark.parametrize(("reduce_op", "sign"), [(Reduce.ARGMAX, 1.0), (Reduce.ARGMIN, -1.0)])
def test_argmax_ties_and_nan(reduce_op, sign):
    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [1, 3, 3, 2],  # tie: the first wins
            [nan, 2, 5, nan],  # NaN ignored
            [nan, nan, nan, nan],  # nothing beats the identity: 0
            [-inf * sign, -inf * sign, -inf * sign, -inf * sign],
            [-1, -1, -1, -1],
            [nan, -4, -4, 7],
        ],
        dtype=np.float32,
    )
    x[4] *= sign
    got = evaluate(argmax_program(6, 4, reduce_op), {"X": x})["I"]
    assert got.dtype == np.int32
    assert got.tolist() == [loop_argmax(row, sign) for row in x]


def test_argmax_chunked_along_the_reduced_axis(rng, monkeypatch):
    x = rand(rng, 2, 1000)
    x[0, 10] = x[0, 900] = 5.0  # tie across chunks: the earlier wins
    x[1, :500] = np.nan
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 64)
    got = evaluate(argmax_program(2, 1000, Reduce.ARGMAX), {"X": x})["I"]
    assert got.tolist() == [loop_argmax(row, 1.0) for row in x]


def test_chunked_reductions_match_unchunked(rng, monkeypatch):
    a, b, out = Buffer("A", F32, (12, 40)), Buffer("B", F32, (40, 9)), Buffer("C", F32, (12, 9))
    total = Buffer("S", F32, ())
    i, j, k = Var("i"), Var("j"), Var("k")
    program = prog(
        [a, b],
        [out, total],
        [
            st(out, (i, j), Reduce.MAX, op(BinaryOp.ADD, ld(a, i, k), ld(b, k, j)), (k,), (40,)),
            st(total, (), Reduce.ADD, mul(ld(a, i, k), ld(a, i, k)), (i, k), (12, 40)),
        ],
    )
    inputs = {"A": rand(rng, 12, 40), "B": rand(rng, 40, 9)}
    whole = evaluate(program, inputs)
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 16)
    chunked = evaluate(program, inputs)
    np.testing.assert_array_equal(chunked["C"], whole["C"])
    np.testing.assert_allclose(chunked["S"], whole["S"], rtol=1e-5)
    np.testing.assert_allclose(whole["S"], (inputs["A"] ** 2).sum(), rtol=1e-5)


def test_contraction_with_scalar_factor_and_unread_reduced_var(rng):
    """y[i] += alpha * 2 * x[i] over k in [0, 3): the unread k multiplies by its extent."""
    x, y, alpha = Buffer("X", F32, (5,)), Buffer("Y", F32, (5,)), Param("alpha", F32)
    i, k = Var("i"), Var("k")
    program = prog(
        [x], [y], [st(y, (i,), Reduce.ADD, mul(mul(alpha, c(2.0)), ld(x, i)), (k,), (3,))], params=[alpha]
    )
    xv = rand(rng, 5)
    np.testing.assert_allclose(evaluate(program, {"X": xv}, {"alpha": 0.5})["Y"], 3 * xv, rtol=1e-6)


def test_transpose_and_elementwise_accumulate(rng):
    x, y = Buffer("X", F32, (3, 4)), Buffer("Y", F32, (4, 3))
    i, j = Var("i"), Var("j")
    program = prog(
        [x],
        [y],
        [
            st(y, (j, i), Reduce.ASSIGN, ld(x, i, j)),
            st(y, (j, i), Reduce.ADD, ld(x, i, j), accumulate=True),
            st(y, (j, i), Reduce.MAX, c(1.5), accumulate=True),
        ],
    )
    xv = rand(rng, 3, 4)
    np.testing.assert_array_equal(evaluate(program, {"X": xv})["Y"], np.maximum(2 * xv.T, 1.5))


def int_program(binop: BinaryOp, dtype: DType = I32) -> Program:
    a, b, y = Buffer("A", dtype, (8,)), Buffer("B", dtype, (8,)), Buffer("Y", dtype, (8,))
    i = Var("i")
    return prog([a, b], [y], [st(y, (i,), Reduce.ASSIGN, op(binop, ld(a, i), ld(b, i)))])


def test_int_division_truncates_floor_div_and_mod_floor():
    a = np.array([7, -7, 7, -7, 9, -9, 0, 5], dtype=np.int32)
    b = np.array([2, 2, -2, -2, 3, 4, 3, -3], dtype=np.int32)
    run = lambda o: evaluate(int_program(o), {"A": a, "B": b})["Y"].tolist()  # noqa: E731
    assert run(BinaryOp.DIV) == [3, -3, -3, 3, 3, -2, 0, -1]
    assert run(BinaryOp.FLOORDIV) == [3, -4, -4, 3, 3, -3, 0, -2]
    assert run(BinaryOp.MOD) == [1, 1, -1, -1, 0, 3, 0, -1]


def test_index_floordiv_and_mod():
    """Y[i] = X[i // 3, i % 3]: a reshape written with index arithmetic."""
    x, y = Buffer("X", F32, (4, 3)), Buffer("Y", F32, (12,))
    i = Var("i")
    value = ld(x, op(BinaryOp.FLOORDIV, i, c(3, I32)), op(BinaryOp.MOD, i, c(3, I32)))
    xv = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    got = evaluate(prog([x], [y], [st(y, (i,), Reduce.ASSIGN, value)]), {"X": xv})["Y"]
    np.testing.assert_array_equal(got, xv.ravel())


def test_i8_computes_in_i32_and_wraps_on_store():
    a = np.array([100, -100, 127, 5, -128, 1, 2, 3], dtype=np.int8)
    b = np.array([100, -100, 1, 5, -1, 1, 2, 3], dtype=np.int8)
    got = evaluate(int_program(BinaryOp.ADD, DType.I8), {"A": a, "B": b})["Y"]
    assert got.dtype == np.int8
    assert got.tolist() == [-56, 56, -128, 10, 127, 2, 4, 6]
    prod = evaluate(int_program(BinaryOp.MUL, DType.I8), {"A": a, "B": b})["Y"]
    assert prod.tolist() == [np.int8(np.int32(x) * np.int32(y)) for x, y in zip(a, b, strict=True)]


def test_f16_computes_in_f32_and_rounds_on_store(rng):
    a, b = rand(rng, 8, dtype=np.float16), rand(rng, 8, dtype=np.float16)
    got = evaluate(int_program(BinaryOp.MUL, DType.F16), {"A": a, "B": b})["Y"]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (a.astype(np.float32) * b.astype(np.float32)).astype(np.float16))


def test_f16_sum_accumulates_in_f32():
    """2048 + 1 + 1 in f16 steps stays 2048; in f32 then rounded once it is 2050."""
    x, y = Buffer("X", DType.F16, (3,)), Buffer("Y", DType.F16, ())
    k = Var("k")
    program = prog([x], [y], [st(y, (), Reduce.ADD, ld(x, k), (k,), (3,))])
    got = evaluate(program, {"X": np.array([2048, 1, 1], dtype=np.float16)})["Y"]
    assert float(got) == 2050.0


def test_causal_mask_with_vars_as_values(rng):
    """S[i, j] = select(j <= i, X[i, j] + f32(i - j), -inf)."""
    x, s = Buffer("X", F32, (5, 5)), Buffer("S", F32, (5, 5))
    i, j = Var("i"), Var("j")
    dist = Cast(F32, op(BinaryOp.SUB, i, j))
    value = Select(op(BinaryOp.LE, j, i), op(BinaryOp.ADD, ld(x, i, j), dist), c(float("-inf")))
    xv = rand(rng, 5, 5)
    ii, jj = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    want = np.where(jj <= ii, xv + (ii - jj), -np.inf).astype(np.float32)
    np.testing.assert_array_equal(
        evaluate(prog([x], [s], [st(s, (i, j), Reduce.ASSIGN, value)]), {"X": xv})["S"], want
    )


def test_unary_functions_use_the_op_table(rng):
    x, y = Buffer("X", F32, (16,)), Buffer("Y", F32, (16,))
    i = Var("i")
    xv = rand(rng, 16)
    for uop, fn in [
        (UnaryOp.TANH, np.tanh),
        (UnaryOp.RELU, lambda v: np.maximum(v, 0)),
        (UnaryOp.ABS, np.abs),
    ]:
        program = prog([x], [y], [st(y, (i,), Reduce.ASSIGN, Unary(uop, ld(x, i)))])
        np.testing.assert_allclose(evaluate(program, {"X": xv})["Y"], fn(xv), rtol=1e-6)


def test_errors():
    x, t, y = Buffer("X", F32, (3,)), Buffer("T", F32, (3,)), Buffer("Y", F32, (3,))
    i = Var("i")
    reads_temp = prog([x], [y], [st(y, (i,), Reduce.ASSIGN, ld(t, i))], temps=[t])
    with pytest.raises(ValueError, match="'T' is read before any statement writes it"):
        evaluate(reads_temp, {"X": np.ones(3, np.float32)})
    with pytest.raises(UsageError, match="missing input 'X'"):
        evaluate(reads_temp, {})
    with pytest.raises(UsageError, match=r"input 'X' has shape \(4,\)"):
        evaluate(reads_temp, {"X": np.ones(4, np.float32)})
    needs_param = prog([x], [y], [st(y, (i,), Reduce.ASSIGN, Param("eps", F32))], params=[Param("eps", F32)])
    with pytest.raises(UsageError, match="missing parameter 'eps'"):
        evaluate(needs_param, {"X": np.ones(3, np.float32)})
    accumulates = prog([x], [y], [st(y, (i,), Reduce.ADD, ld(x, i), accumulate=True)])
    with pytest.raises(ValueError, match="accumulates onto contents no statement wrote"):
        evaluate(accumulates, {"X": np.ones(3, np.float32)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_needs_no_scipy_and_matches_math_erf(dtype):
    """The reference's erf is numpy alone: arrays (rank 0 included) in, arrays of the same dtype out,
    within a few ulps of `math.erf` from 0 to the range where erf rounds to 1, signs and NaN kept."""
    from kcomp.semantics import UNARY

    xs = np.concatenate([np.linspace(-7, 7, 40001), [0.0, -0.0, 1e-30, 0.5, 1.5, 6.0, np.inf, -np.inf]])
    xs = xs.astype(dtype)
    got = UNARY[UnaryOp.ERF](xs)
    want = np.array([math.erf(float(v)) for v in xs])
    assert got.dtype == dtype and got.shape == xs.shape
    tol = 2e-15 if dtype == np.float64 else 1.2e-7
    assert np.all(np.abs(got - want) <= tol * np.maximum(np.abs(want), 1e-30))
    assert np.signbit(got[xs == 0]).tolist() == np.signbit(xs[xs == 0]).tolist()
    assert np.isnan(UNARY[UnaryOp.ERF](np.array([np.nan], dtype))).all()
    rank0 = UNARY[UnaryOp.ERF](np.array(0.25, dtype))
    assert isinstance(rank0, np.ndarray) and rank0.shape == () and rank0.dtype == dtype
