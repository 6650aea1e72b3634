"""The CPU target: hand-built loop nests compiled by gcc and compared with numpy (the numeric policy of
kcomp/semantics.py), the library cache, and the errors a user can meet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cpu_nests import BOOL, F16, F32, F64, I8, I32, ROOT, N, b, binary_nest, c32, map1, run

from kcomp import semantics
from kcomp.config import Config
from kcomp.dtypes import DType
from kcomp.errors import UsageError
from kcomp.expr import (
    BinaryOp,
    Buffer,
    Cast,
    Const,
    Expr,
    Load,
    Param,
    Scope,
    Select,
    Unary,
    UnaryOp,
    Var,
)
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Store
from kcomp.targets.cpu.target import CpuTarget


# -- matmul: an init nest and a reduce nest ----------------------------------------------------------
def test_matmul_init_and_reduce_match_numpy(target: CpuTarget, rng: np.random.Generator) -> None:
    m = n = k = 64
    A, B, C = Buffer("A", F32, (m, k)), Buffer("B", F32, (k, n)), Buffer("C", F32, (m, n))
    i0, j0, i, j, r = Var("i"), Var("j"), Var("i"), Var("j"), Var("k")
    init = Loop(
        i0, m, LoopKind.PARALLEL, (Loop(j0, n, LoopKind.VECTOR, (Store(C, (i0, j0), Const(0.0, F32)),)),)
    )
    update = Store(
        C, (i, j), b(BinaryOp.ADD, Load(C, (i, j)), b(BinaryOp.MUL, Load(A, (i, r)), Load(B, (r, j))))
    )
    reduce = Loop(
        i, m, LoopKind.PARALLEL, (Loop(r, k, LoopKind.SERIAL, (Loop(j, n, LoopKind.VECTOR, (update,)),)),)
    )
    nest = LoopNest("matmul", (A, B), (C,), (), (init, reduce))
    a = rng.uniform(0.5, 1.5, (m, k)).astype(np.float32)
    bm = rng.uniform(-1.5, -0.5, (k, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    source = run(target, nest, a, bm, c)
    np.testing.assert_allclose(c, a @ bm, rtol=1e-5)
    assert "void kc_matmul(const float* restrict A, const float* restrict B, float* restrict C)" in source
    assert "#pragma omp parallel for" in source and "kc_load_f32(&B[" in source  # explicit SIMD


# -- loads with padding ---------------------------------------------------------------------------------
def test_padded_load_reads_minus_inf_out_of_bounds(target: CpuTarget, rng: np.random.Generator) -> None:
    x, out = Buffer("x", F32, (N,)), Buffer("out", F32, (N,))

    def window(i: Var) -> Expr:
        left = Load(x, (b(BinaryOp.SUB, i, c32(1)),), pad=float("-inf"))
        right = Load(x, (b(BinaryOp.ADD, i, c32(1)),), pad=float("-inf"))
        return b(BinaryOp.MAX, b(BinaryOp.MAX, left, Load(x, (i,))), right)

    xv = rng.uniform(-2, 2, N).astype(np.float32)
    got = np.empty(N, np.float32)
    run(target, map1("maxpool1d", (x,), out, window), xv, got)
    padded = np.concatenate([[-np.inf], xv, [-np.inf]]).astype(np.float32)
    np.testing.assert_array_equal(got, np.max(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0))

    lone, one = Buffer("lone", F32, (1,)), Buffer("one", F32, (1,))
    run(
        target,
        map1("edge", (lone,), one, lambda i: Load(lone, (b(BinaryOp.SUB, i, c32(1)),), pad=float("-inf"))),
        np.ones(1, np.float32),
        got[:1],
    )
    assert got[0] == -np.inf


def test_padded_2d_load_evaluates_each_index_once(target: CpuTarget, rng: np.random.Generator) -> None:
    h, w = 9, 13
    x, out = Buffer("x", F32, (h, w)), Buffer("out", F32, (h, w))
    i, j = Var("i"), Var("j")
    value = Load(x, (b(BinaryOp.SUB, i, c32(2)), b(BinaryOp.ADD, j, c32(3))), pad=7.5)
    nest = LoopNest(
        "shift",
        (x,),
        (out,),
        (),
        (Loop(i, h, LoopKind.SERIAL, (Loop(j, w, LoopKind.SERIAL, (Store(out, (i, j), value),)),)),),
    )
    xv = rng.uniform(-1, 1, (h, w)).astype(np.float32)
    got = np.empty((h, w), np.float32)
    source = run(target, nest, xv, got)
    want = np.full((h + 4, w + 6), 7.5, np.float32)
    want[2 : h + 2, 0:w] = xv
    np.testing.assert_array_equal(got, want[0:h, 3 : w + 3])
    assert source.count("int64_t kc_t") == 2


# -- integer division, modulo, overflow -----------------------------------------------------------------
INT_EDGES_A = [-7, 7, -7, 7, 0, -(2**31), -(2**31), 2**31 - 1, -1, 5, -5, 13]
INT_EDGES_B = [2, -2, -2, 2, 3, -1, 1, -1, 0, 0, -3, 5]


@pytest.mark.parametrize("op", [BinaryOp.DIV, BinaryOp.FLOORDIV, BinaryOp.MOD, BinaryOp.MAX, BinaryOp.MIN])
def test_int32_division_family_matches_policy(
    target: CpuTarget, rng: np.random.Generator, op: BinaryOp
) -> None:
    n = 200
    av = np.concatenate([INT_EDGES_A, rng.integers(-50, 50, n - len(INT_EDGES_A))]).astype(np.int32)
    bv = np.concatenate([INT_EDGES_B, rng.integers(-9, 10, n - len(INT_EDGES_B))]).astype(np.int32)
    nest, *_ = binary_nest(op, I32, n)
    got = np.empty(n, np.int32)
    run(target, nest, av, bv, got)
    np.testing.assert_array_equal(got, semantics.binary(op, av, bv))


def test_int_division_against_python_semantics(target: CpuTarget) -> None:
    pairs = [(a, d) for a in (-7, -6, -1, 0, 1, 6, 7) for d in (-3, -2, 2, 3)]
    av = np.array([p[0] for p in pairs], np.int32)
    bv = np.array([p[1] for p in pairs], np.int32)
    for op, want in [
        (BinaryOp.FLOORDIV, [a // d for a, d in pairs]),
        (BinaryOp.MOD, [a % d for a, d in pairs]),
        (BinaryOp.DIV, [int(a / d) for a, d in pairs]),  # truncation toward zero
    ]:
        nest, *_ = binary_nest(op, I32, len(pairs))
        got = np.empty(len(pairs), np.int32)
        run(target, nest, av, bv, got)
        assert got.tolist() == want, op


def test_floor_div_mod_in_fused_index(target: CpuTarget, rng: np.random.Generator) -> None:
    """A fused loop f -> (f // w, f % w) uses the int64 helpers inside indices."""
    h, w = 7, 11
    x, out = Buffer("x", F32, (h, w)), Buffer("out", F32, (h, w))
    f = Var("f")
    idx = (b(BinaryOp.FLOORDIV, f, c32(w)), b(BinaryOp.MOD, f, c32(w)))
    body = (
        Loop(f, h * w, LoopKind.SERIAL, (Store(out, idx, b(BinaryOp.MUL, Load(x, idx), Const(2.0, F32))),)),
    )
    xv = rng.uniform(-1, 1, (h, w)).astype(np.float32)
    got = np.empty((h, w), np.float32)
    source = run(target, LoopNest("fused", (x,), (out,), (), body), xv, got)
    np.testing.assert_array_equal(got, xv * 2)
    assert "kc_floordiv_i64" in source and "kc_mod_i64" in source


def test_int32_overflow_wraps(target: CpuTarget, rng: np.random.Generator) -> None:
    a, c, out = Buffer("a", I32, (N,)), Buffer("c", I32, (N,)), Buffer("out", I32, (N,))

    def value(i: Var) -> Expr:  # a * a * 3 + c + i * 2**30: overflows in several places
        sq = b(BinaryOp.MUL, b(BinaryOp.MUL, Load(a, (i,)), Load(a, (i,))), c32(3))
        return b(BinaryOp.ADD, b(BinaryOp.ADD, sq, Load(c, (i,))), b(BinaryOp.MUL, i, c32(2**30)))

    av = rng.integers(-(2**31), 2**31, N, dtype=np.int64).astype(np.int32)
    cv = rng.integers(-(2**31), 2**31, N, dtype=np.int64).astype(np.int32)
    got = np.empty(N, np.int32)
    run(target, map1("wrap", (a, c), out, value), av, cv, got)
    iv = np.arange(N, dtype=np.int32)
    with np.errstate(over="ignore"):
        want = av * av * np.int32(3) + cv + iv * np.int32(2**30)
    np.testing.assert_array_equal(got, want)


def test_int_pow_abs_neg_relu(target: CpuTarget) -> None:
    av = np.array([2, -3, 0, 1, -1, 5, 7, -(2**31)], np.int32)
    ev = np.array([10, 3, 0, 7, 5, 2, 20, 1], np.int32)
    nest, *_ = binary_nest(BinaryOp.POW, I32, len(av))
    got = np.empty(len(av), np.int32)
    run(target, nest, av, ev, got)
    np.testing.assert_array_equal(got, semantics.binary(BinaryOp.POW, av, ev))
    for op in (UnaryOp.ABS, UnaryOp.NEG, UnaryOp.RELU):
        a, out = Buffer("a", I32, (len(av),)), Buffer("out", I32, (len(av),))
        run(target, map1(f"u_{op.name}", (a,), out, lambda i, op=op, a=a: Unary(op, Load(a, (i,)))), av, got)
        np.testing.assert_array_equal(got, semantics.unary(op, av))


# -- floats -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("op", [BinaryOp.MAX, BinaryOp.MIN, BinaryOp.FLOORDIV, BinaryOp.MOD, BinaryOp.DIV])
def test_float_binary_with_nan_matches_policy(
    target: CpuTarget, rng: np.random.Generator, op: BinaryOp, dtype: DType
) -> None:
    np_t = dtype.numpy
    av = rng.uniform(-10, 10, N).astype(np_t)
    bv = rng.uniform(-3, 3, N).astype(np_t)
    av[:6] = [np.nan, 1.0, np.nan, -7.5, 7.5, -0.0]
    bv[:6] = [2.0, np.nan, np.nan, 2.5, -2.5, 3.0]
    nest, *_ = binary_nest(op, dtype, N)
    got = np.empty(N, np_t)
    run(target, nest, av, bv, got)
    np.testing.assert_array_equal(got, semantics.binary(op, av, bv))
    if op is BinaryOp.MAX:
        assert got[0] == 2.0 and got[1] == 1.0 and np.isnan(got[2])  # fmax: a NaN operand is ignored


UNARY_OPS = [
    UnaryOp.EXP,
    UnaryOp.LOG,
    UnaryOp.SQRT,
    UnaryOp.RSQRT,
    UnaryOp.TANH,
    UnaryOp.ERF,
    UnaryOp.SIGMOID,
    UnaryOp.RELU,
    UnaryOp.ABS,
    UnaryOp.NEG,
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("op", UNARY_OPS)
def test_float_unary_matches_policy(
    target: CpuTarget, rng: np.random.Generator, op: UnaryOp, dtype: DType
) -> None:
    positive = op in (UnaryOp.LOG, UnaryOp.SQRT, UnaryOp.RSQRT)
    xv = rng.uniform(0.1 if positive else -4, 4, N).astype(dtype.numpy)
    x, out = Buffer("x", dtype, (N,)), Buffer("out", dtype, (N,))
    got = np.empty(N, dtype.numpy)
    source = run(target, map1(f"u_{op.name}", (x,), out, lambda i: Unary(op, Load(x, (i,)))), xv, got)
    rtol = 2e-6 if dtype is F32 else 1e-14
    np.testing.assert_allclose(got, semantics.unary(op, xv), rtol=rtol, atol=rtol)
    if dtype is F32 and op is UnaryOp.EXP:
        assert "expf(" in source


def test_pow_float(target: CpuTarget, rng: np.random.Generator) -> None:
    av = rng.uniform(0.5, 2, N).astype(np.float32)
    ev = rng.uniform(-3, 3, N).astype(np.float32)
    nest, *_ = binary_nest(BinaryOp.POW, F32, N)
    got = np.empty(N, np.float32)
    run(target, nest, av, ev, got)
    np.testing.assert_allclose(got, np.power(av, ev), rtol=2e-6)


def test_constants_are_exact(target: CpuTarget) -> None:
    values = [
        0.1,
        -0.0,
        1e-45,
        3.4028234663852886e38,
        float("inf"),
        float("-inf"),
        float("nan"),
        1 / 3,
        -2.5e-8,
        1e300,
    ]
    for dtype in (F32, F64, F16):
        out = Buffer("out", dtype, (len(values),))
        body = tuple(Store(out, (c32(k),), Const(v, dtype)) for k, v in enumerate(values))
        got = np.empty(len(values), dtype.numpy)
        run(target, LoopNest(f"consts_{dtype}", (), (out,), (), body), got)
        with np.errstate(over="ignore"):
            want = np.array(values).astype(dtype.numpy)
        assert got.tobytes() == want.tobytes(), dtype
    ints = [-(2**31), 2**31 - 1, -5, 0, 200]
    for dtype in (I32, I8):
        out = Buffer("out", dtype, (len(ints),))
        body = tuple(Store(out, (c32(k),), Const(v, dtype)) for k, v in enumerate(ints))
        got = np.empty(len(ints), dtype.numpy)
        run(target, LoopNest(f"iconsts_{dtype}", (), (out,), (), body), got)
        assert got.tolist() == np.array(ints, np.int64).astype(dtype.numpy).tolist()


def test_mixed_int_float_operands_compute_in_float(target: CpuTarget, rng: np.random.Generator) -> None:
    x, out = Buffer("x", F32, (N,)), Buffer("out", F32, (N,))
    xv = rng.uniform(-300, 300, N).astype(np.float32)
    got = np.empty(N, np.float32)
    run(target, map1("mixed", (x,), out, lambda i: b(BinaryOp.MAX, i, Load(x, (i,)))), xv, got)
    np.testing.assert_array_equal(got, np.fmax(np.arange(N, dtype=np.float32), xv))


def test_int_buffer_padded_with_minus_inf_reads_int_min(target: CpuTarget) -> None:
    x, out = Buffer("x", I32, (4,)), Buffer("out", I32, (4,))
    got = np.empty(4, np.int32)
    run(
        target,
        map1("ipad", (x,), out, lambda i: Load(x, (b(BinaryOp.ADD, i, c32(2)),), pad=float("-inf"))),
        np.array([1, 2, 3, 4], np.int32),
        got,
    )
    assert got.tolist() == [3, 4, -(2**31), -(2**31)]


# -- narrow types -------------------------------------------------------------------------------------
def test_i8_computes_in_i32_and_wraps_on_store(target: CpuTarget, rng: np.random.Generator) -> None:
    a, c, out = Buffer("a", I8, (N,)), Buffer("c", I8, (N,)), Buffer("out", I8, (N,))
    wide = Buffer("wide", I32, (N,))
    av = rng.integers(-128, 128, N).astype(np.int8)
    cv = rng.integers(-128, 128, N).astype(np.int8)

    def value(i: Var) -> Expr:  # (a * c + 100) // 3: exceeds int8 before the division
        return b(
            BinaryOp.FLOORDIV,
            b(BinaryOp.ADD, b(BinaryOp.MUL, Load(a, (i,)), Load(c, (i,))), Const(100, I8)),
            Const(3, I8),
        )

    got = np.empty(N, np.int8)
    run(target, map1("i8", (a, c), out, value), av, cv, got)
    want32 = (av.astype(np.int32) * cv.astype(np.int32) + 100) // 3
    np.testing.assert_array_equal(got, want32.astype(np.int8))
    got32 = np.empty(N, np.int32)
    run(target, map1("i8wide", (a, c), wide, lambda i: Cast(I32, value(i))), av, cv, got32)
    np.testing.assert_array_equal(got32, want32)  # no rounding to i8 before the store


def test_f16_computes_in_f32_and_rounds_on_store(target: CpuTarget, rng: np.random.Generator) -> None:
    a, c, out = Buffer("a", F16, (N,)), Buffer("c", F16, (N,)), Buffer("out", F16, (N,))
    scale = Param("scale", F16)
    av = rng.uniform(-4, 4, N).astype(np.float16)
    cv = rng.uniform(-4, 4, N).astype(np.float16)
    got = np.empty(N, np.float16)
    nest = map1(
        "f16",
        (a, c),
        out,
        lambda i: b(BinaryOp.DIV, b(BinaryOp.MUL, Load(a, (i,)), Load(c, (i,))), scale),
        (scale,),
    )
    source = run(target, nest, av, cv, got, 0.3)
    want = (av.astype(np.float32) * cv.astype(np.float32) / np.float32(np.float16(0.3))).astype(np.float16)
    np.testing.assert_array_equal(got, want)
    assert "_Float16* restrict out" in source and "float scale" in source


def test_bool_select_cast_compare_logic(target: CpuTarget, rng: np.random.Generator) -> None:
    a, c = Buffer("a", F32, (N,)), Buffer("c", F32, (N,))
    out, mask = Buffer("out", I32, (N,)), Buffer("mask", BOOL, (N,))
    i = Var("i")
    la, lc = Load(a, (i,)), Load(c, (i,))
    cond = b(
        BinaryOp.OR,
        b(
            BinaryOp.AND,
            b(BinaryOp.GT, la, Const(0.0, F32)),
            Unary(UnaryOp.NOT, b(BinaryOp.LT, lc, Const(0.5, F32))),
        ),
        b(BinaryOp.EQ, i, c32(3)),
    )
    value = Select(cond, Cast(I32, b(BinaryOp.MUL, la, Const(10.0, F32))), b(BinaryOp.SUB, c32(-1), i))
    body = (Loop(i, N, LoopKind.SERIAL, (Store(out, (i,), value), Store(mask, (i,), cond))),)
    av = rng.uniform(-1, 1, N).astype(np.float32)
    cv = rng.uniform(0, 1, N).astype(np.float32)
    got, got_mask = np.empty(N, np.int32), np.empty(N, np.bool_)
    run(target, LoopNest("logic", (a, c), (out, mask), (), body), av, cv, got, got_mask)
    iv = np.arange(N, dtype=np.int32)
    want_mask = ((av > 0) & ~(cv < 0.5)) | (iv == 3)
    np.testing.assert_array_equal(got_mask, want_mask)
    np.testing.assert_array_equal(got, np.where(want_mask, (av * np.float32(10)).astype(np.int32), -1 - iv))


# -- statements: parallel, unroll, guard, params, allocations -------------------------------------------
def test_parallel_loop_any_thread_count(tmp_path: Path, rng: np.random.Generator) -> None:
    h, w = 96, 33
    x, out = Buffer("x", F32, (h, w)), Buffer("out", F32, (h, w))
    i, j = Var("i"), Var("j")
    # the inner parallel loop sits inside the outer one: it must run serially, not spawn teams
    store = Store(out, (i, j), b(BinaryOp.ADD, Load(x, (i, j)), Cast(F32, i)))
    body = (Loop(i, h, LoopKind.PARALLEL, (Loop(j, w, LoopKind.PARALLEL, (store,)),)),)
    xv = rng.uniform(-1, 1, (h, w)).astype(np.float32)
    want = xv + np.arange(h, dtype=np.float32)[:, None]
    for threads in (1, 2, 3):
        t = CpuTarget(threads=threads, cfg=Config(cache_dir=tmp_path / "c", threads=threads))
        got = np.empty((h, w), np.float32)
        source = run(t, LoopNest("par", (x,), (out,), (), body), xv, got)
        np.testing.assert_array_equal(got, want)
    assert source.count("#pragma omp parallel for") == 1 and "inside a parallel loop already" in source


def test_unrolled_guarded_and_reduction_vector_loop(target: CpuTarget, rng: np.random.Generator) -> None:
    m, k = 10, 8
    x, out = Buffer("x", F32, (m, k)), Buffer("out", F32, (m,))
    i, i2, r = Var("i"), Var("i"), Var("r")
    init = Loop(i, m, LoopKind.UNROLLED, (Store(out, (i,), Const(0.0, F32)),))
    # r is marked vector but every store goes to out[i2]: `omp simd` would be wrong, so it is dropped
    add = Store(out, (i2,), b(BinaryOp.ADD, Load(out, (i2,)), Load(x, (i2, r))))
    guarded = Guard(b(BinaryOp.LT, r, c32(5)), (add,))
    nest = LoopNest(
        "rowsum",
        (x,),
        (out,),
        (),
        (init, Loop(i2, m, LoopKind.SERIAL, (Loop(r, k, LoopKind.VECTOR, (guarded,)),))),
    )
    xv = rng.uniform(0.5, 1.5, (m, k)).astype(np.float32)
    got = np.empty(m, np.float32)
    source = run(target, nest, xv, got)
    np.testing.assert_allclose(got, xv[:, :5].sum(axis=1), rtol=1e-6)
    assert "#pragma omp simd" not in source  # every store goes to out[i2]: SIMD would be wrong


def test_scalar_params(target: CpuTarget, rng: np.random.Generator) -> None:
    x, out = Buffer("x", F64, (N,)), Buffer("out", F64, (N,))
    alpha, shift, flag = Param("alpha", F64), Param("shift", I32), Param("flag", BOOL)

    def value(i: Var) -> Expr:
        scaled = b(BinaryOp.ADD, b(BinaryOp.MUL, Load(x, (i,)), alpha), Cast(F64, shift))
        return Select(flag, scaled, Const(-1.0, F64))

    xv = rng.uniform(-1, 1, N)
    got = np.empty(N)
    nest = map1("params", (x,), out, value, (alpha, shift, flag))
    source = run(target, nest, xv, got, 0.75, np.int32(-3), True)
    np.testing.assert_allclose(got, xv * 0.75 - 3, rtol=1e-15)
    assert "double alpha, int32_t shift, bool flag)" in source
    lib = target.build(source)
    with pytest.raises(UsageError, match="parameter shift: 3000000000 does not fit in i32"):
        target.run(lib, [xv, got, 0.75, 3_000_000_000, True])
    with pytest.raises(UsageError, match="parameter shift: expected an integer"):
        target.run(lib, [xv, got, 0.75, 1.5, True])


def test_alloc_heap_and_stack_temporaries(target: CpuTarget, rng: np.random.Generator) -> None:
    x, out = Buffer("x", F32, (N,)), Buffer("out", F32, (N,))
    tmp = Buffer("tmp", F32, (N,), Scope.GLOBAL)
    acc = Buffer("acc", F32, (2,), Scope.LOCAL)
    i, j = Var("i"), Var("j")
    first = Loop(i, N, LoopKind.PARALLEL, (Store(tmp, (i,), Unary(UnaryOp.EXP, Load(x, (i,)))),))
    per_row = Alloc(
        acc,
        (
            Store(acc, (c32(0),), b(BinaryOp.MUL, Load(tmp, (j,)), Const(2.0, F32))),
            Store(acc, (c32(1),), Load(x, (j,))),
            Store(out, (j,), b(BinaryOp.SUB, Load(acc, (c32(0),)), Load(acc, (c32(1),)))),
        ),
    )
    nest = LoopNest(
        "temps", (x,), (out,), (), (Alloc(tmp, (first, Loop(j, N, LoopKind.PARALLEL, (per_row,)))),)
    )
    xv = rng.uniform(-1, 1, N).astype(np.float32)
    got = np.empty(N, np.float32)
    source = run(target, nest, xv, got)
    np.testing.assert_allclose(got, np.exp(xv) * 2 - xv, rtol=2e-6)
    assert (
        "kc_alloc(" in source and "free(tmp);" in source and "acc[2] __attribute__((aligned(64)))" in source
    )


def test_colliding_and_reserved_names(target: CpuTarget, rng: np.random.Generator) -> None:
    """Symbols are identities; equal or C-reserved names still get distinct, valid identifiers."""
    a_in, a_out = Buffer("A", F32, (N,)), Buffer("A", F32, (N,))
    odd = [Buffer(name, F32, (N,)) for name in ("int", "expf", "linux", "kc_t0", "1x", "INT32_MAX")]
    p = Param("i", F32)
    i = Var("A")
    value: Expr = b(BinaryOp.MUL, Load(a_in, (i,)), p)
    for buf in odd:
        value = b(BinaryOp.ADD, value, Unary(UnaryOp.EXP, Load(buf, (i,))))
    body = (Loop(i, N, LoopKind.SERIAL, (Store(a_out, (i,), value),)),)
    nest = LoopNest("set_threads", (a_in, *odd), (a_out,), (p,), body)
    arrays = [rng.uniform(-1, 1, N).astype(np.float32) for _ in range(1 + len(odd))]
    got = np.empty(N, np.float32)
    source = run(target, nest, *arrays, got, 2.0)
    want = arrays[0] * 2 + sum(np.exp(v) for v in arrays[1:])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert "void kc_set_threads_kernel(" in source


# -- end to end: .kc text -> Program -> lower -> emit -> build -> run, against the reference -------------
EXAMPLES = sorted((ROOT / "examples").glob("*.kc"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_kernels_match_reference(target: CpuTarget, path: Path) -> None:
    from kcomp.api import load_module
    from kcomp.check import param_defaults
    from kcomp.compare import compare_outputs
    from kcomp.data import random_inputs, random_params
    from kcomp.pipeline import build
    from kcomp.reference import evaluate

    module = load_module(path)
    for kernel in module.kernels:
        built = build(module, kernel, {}, target)
        rng = np.random.default_rng(7)
        inputs = random_inputs(built.program, rng)
        params = random_params(built.program, rng, param_defaults(kernel))
        outputs = {o.name: np.full(o.shape, 99, o.dtype.numpy) for o in built.program.outputs}
        target.run(built.artifact, built.arguments(inputs, outputs, params))
        result = compare_outputs(built.program, outputs, evaluate(built.program, inputs, params))
        assert all(c.ok for c in result.values()), result


def test_large_temporaries_are_reused_across_and_during_concurrent_calls() -> None:
    """A heap temporary over the keep threshold stays in a slot between calls: a second call with
    other inputs must not see the first one's values, and calls from several threads at once each
    get their own block."""
    import threading

    from kcomp import compile as kcompile

    text = """kernel k(X: f32[64, 2048]) -> (Y: f32[64]) {
        t[i, j] = X[i, j] * X[i, j] + 1.0
        u[i, j] = t[i, j] * 2.0
        Y[i] += t[i, j] * u[i, j]
    }"""
    k = kcompile(text, schedule="none")
    assert "kc_free(" in k.source
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((64, 2048)).astype(np.float32) for _ in range(6)]
    expected = [k.reference(x) for x in inputs]
    for x, want in zip(inputs[:2], expected[:2], strict=True):
        np.testing.assert_allclose(k(x), want, rtol=1e-5)
    results: dict[int, np.ndarray] = {}

    def call(n: int) -> None:
        for _ in range(5):
            results[n] = k(inputs[n])

    threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(6):
        np.testing.assert_allclose(results[n], expected[n], rtol=1e-5)
