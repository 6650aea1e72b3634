"""Explicit SIMD on the CPU (targets/cpu/vector.py, simd.py): each vector path against the reference.

Kernels are compiled with small hand-written schedules so that every path runs: full chunks, masked
tails, lane-bound guards, vector reductions with tails, register-promoted tiles, gathers, vector math
over extreme inputs, and the scalar fallback for types without a vector form.
"""

from __future__ import annotations

import numpy as np
import pytest

from kcomp import compile
from kcomp.compare import compare
from kcomp.dtypes import DType

ISAS = ["cpu", "cpu:scalar"]


def check(text: str, schedule: str, target: str = "cpu", seed: int = 0) -> str:
    k = compile(text, schedule=schedule, target=target)
    for s in range(2):
        result = k.check(seed=seed + s)
        assert result.ok, (schedule, result)
    return k.source


@pytest.mark.parametrize("target", ISAS)
@pytest.mark.parametrize("n", [8, 13, 3, 40])
def test_elementwise_full_and_masked_chunks(target, n):
    text = f"kernel f(X: f32[5, {n}], b: f32[{n}]) -> (Y: f32[5, {n}]) {{ Y[i, j] = max(X[i, j] * 2.0 + b[j], 0.5) }}"
    src = check(text, "vectorize j", target)
    assert "kc_load_f32" in src or "kc_loadn_f32" in src


@pytest.mark.parametrize("target", ISAS)
def test_split_guard_becomes_lane_count(target):
    text = "kernel f(X: f32[37]) -> (Y: f32[37]) { Y[i] = X[i] - 1.0 }"
    src = check(text, "split i 16\nvectorize i_i", target)
    assert "kc_storen_f32" in src and "kc_n" in src


@pytest.mark.parametrize("target", ISAS)
@pytest.mark.parametrize("op", ["+=", "max=", "min=", "*="])
def test_vector_reduction_with_tail(target, op):
    text = f"kernel f(X: f32[6, 21]) -> (s: f32[6]) {{ s[i] {op} X[i, j] }}"
    src = check(text, "vectorize j reduce", target)
    assert "kc_acc" in src


def test_int32_vectors_and_casts():
    text = "kernel f(X: i32[4, 19], Y: f32[4, 19]) -> (Z: f32[4, 19], W: i32[4, 19]) {\n"
    text += " Z[i, j] = f32(X[i, j] * 3 - 7) + select(Y[i, j] > 0.5, Y[i, j], 2.0)\n"
    text += " W[i, j] = max(X[i, j], 3) + i32(Y[i, j] * 10.0)\n}"
    check(text, "vectorize j\nvectorize j1")


def test_register_tile_is_promoted_and_correct():
    text = "dim M = 13, N = 20, K = 9\nkernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
    sched = "split i 4\nsplit j 16\nreorder i_o j_o k i_i j_i\nunroll i_i\nvectorize j_i\npack B at i_o block 1 16\ncache_write C at j_o"
    src = check(text, sched)
    assert "kept in registers" in src


def test_gather_and_scatter_lane_by_lane():
    text = "kernel t(X: f32[9, 11]) -> (Y: f32[11, 9]) { Y[j, i] = X[i, j] }"
    check(text, "vectorize i")
    check(text, "reorder j i\nvectorize i")


def test_f64_falls_back_to_scalar_code():
    text = "kernel f(X: f64[10]) -> (Y: f64[10]) { Y[i] = X[i] * 2.0 }"
    src = check(text, "vectorize i")
    assert "scalar code" in src


@pytest.mark.parametrize("fn", ["exp", "sigmoid", "tanh", "erf", "log"])
def test_vector_math_over_extreme_inputs(fn):
    n = 4096
    text = f"kernel f(X: f32[{n}]) -> (Y: f32[{n}]) {{ Y[i] = {fn}(X[i]) }}"
    k = compile(text, schedule="vectorize i")
    assert f"kc_v{fn}_f32" in k.source
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.uniform(-100, 100, n // 4),
            rng.uniform(-5, 5, n // 4),
            rng.uniform(-0.1, 0.1, n // 4),
            np.array(
                [0.0, -0.0, 1e-30, -1e-30, 1e-40, 88.5, 89.0, -87.0, -88.0, -104.0, np.inf, -np.inf, np.nan]
                * 79
            )[: n // 4],
        ]
    ).astype(np.float32)
    y = k(x)
    ref = k.reference(x)
    result = compare(y, ref, DType.F32)
    assert result.ok, result


@pytest.mark.parametrize("spec", ["cpu:avx512", "cpu:avx2", "cpu:scalar"])
def test_every_isa_level_builds_the_default_schedules(spec):
    """Cross-compiling: the AVX-512 path (16 lanes, masked moves) must build even where it cannot run."""
    from kcomp.api import load_module
    from kcomp.lower import lower
    from kcomp.passes import apply
    from kcomp.pipeline import choose_schedule, front
    from kcomp.targets import get_target

    target = get_target(spec)
    text = "dim M = 40, N = 70, K = 33\nkernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
    for source in (
        text,
        "kernel s(X: f32[9, 37]) -> (Y: f32[9, 37]) { m[i] max= X[i, j]\n Y[i, j] = exp(X[i, j] - m[i]) }",
    ):
        module = load_module(source)
        kernel = module.kernel(None)
        program = front(module, kernel, {})
        schedule = choose_schedule(module, kernel, program, lower(program), target).schedule
        c = target.emit(apply(lower(program), schedule), schedule)
        assert "kc_vf32" in c
        target.build(c)


@pytest.mark.parametrize("op", ["max=", "min=", "+="])
@pytest.mark.parametrize("width", [149, 5 * 16, 64 * 16 + 3])
def test_long_vector_reductions_split_over_accumulators(op, width):
    """Rows long enough for several partial accumulators (and a masked tail), with NaN, inf and
    -inf among the values: max/min ignore NaN as numpy's fmax does, and each row matches."""
    text = f"kernel r(X: f32[7, {width}]) -> (Y: f32[7]) {{ Y[i] {op} X[i, j] }}"
    k = compile(text, schedule="vectorize j reduce")
    assert "kc_acc" in k.source
    rng = np.random.default_rng(width)
    x = rng.standard_normal((7, width)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, width - 1] = np.inf
    x[3, 0] = -np.inf
    x[4, :] = np.nan
    if op == "+=":
        x[1:5] = rng.standard_normal((4, width))
    y = k(x)
    assert compare(y, k.reference(x), DType.F32).ok


def test_division_by_a_loop_invariant_divisor_keeps_the_quotients_edge_cases():
    """`X[i, j] / s[i]` multiplies by a reciprocal per row; zero, infinite, NaN and subnormal
    divisors (whose reciprocal overflows) still give what the division gives."""
    text = "kernel d(X: f32[7, 40], s: f32[7]) -> (Y: f32[7, 40]) { Y[i, j] = X[i, j] / s[i] }"
    k = compile(text, schedule="vectorize j")
    assert "kc_divu_f32" in k.source
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 40)).astype(np.float32)
    x[5] *= np.float32(1e-38)
    x[0, :3] = [0.0, np.inf, np.nan]
    s = np.array([3.0, 0.0, -0.0, np.inf, np.nan, 1e-39, -7.5], dtype=np.float32)
    with np.errstate(all="ignore"):
        y = k(x, s)
        assert compare(y, k.reference(x, s), DType.F32).ok
        assert np.isfinite(y[5]).all()


@pytest.mark.parametrize("cols", [15, 12, 9])
def test_a_register_tile_with_rows_shorter_than_a_vector_stays_in_registers(cols):
    """Rows of `cols` lanes (masked vectors) at offsets that are multiples of `cols`: one register
    per row, no two overlapping; the result must match on every lane that is stored."""
    text = (
        f"kernel t(A: f32[8, 5], B: f32[5, {cols}]) -> (C: f32[8, {cols}]) {{ C[i, j] += A[i, k] * B[k, j] }}"
    )
    schedule = "reorder i k j\nsplit i 4\nreorder i_o k i_i j\nunroll i_i\nvectorize j\ncache_write C at i_o"
    k = compile(text, schedule=schedule)
    if cols < k.target.vector_bits // 32:  # one masked vector per row on this machine
        assert "kept in registers" in k.source
    for seed in (0, 1):
        assert k.check(seed=seed).ok


@pytest.mark.parametrize("n", [40, 33, 70])
def test_a_stride_two_load_deinterleaves_where_its_span_is_inside(n):
    # every other element, padded or not: two loads and a shuffle inside, lane by lane at the edges
    text = (
        f"dim O = ({n} + 1) // 2\nkernel f(X: f32[3, {n}], I: i32[{n}]) -> (Y: f32[3, O], Z: f32[3, O], J: i32[O]) {{\n"
        "    Y[i, o] = X[i, 2 * o] * 2.0\n    Z[i, o] = X[i, 2 * o + 1, pad=-5.0] + X[i, 2 * o - 1, pad=7.0]\n"
        "    J[o] = I[2 * o] - 3\n}"
    )
    src = check(text, "vectorize o\nvectorize o1\nvectorize o2")
    assert "kc_load2_f32" in src and "kc_load2_i32" in src
