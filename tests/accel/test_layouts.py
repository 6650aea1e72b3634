"""Operand layouts off the plain GEMM: transposed operands (moved by dma.load.t, dma.load.acc.t and
dma.store.t), stacked i tiles (whole i ranges of a second output axis, one B preload for all of them)
and B tiles holding every K-slice (a convolution's weights loaded once).  Every kernel is checked
against the numpy reference on random inputs, on the three packaged configurations."""

from __future__ import annotations

import numpy as np
import pytest
from test_backend import CONFIGS, assert_round_trips, assert_tokens_balance, sim

import kcomp
from kcomp.api import load_module
from kcomp.errors import ScheduleError
from kcomp.lower import lower
from kcomp.pipeline import front
from kcomp.targets.accel.compiler.mapping import Mapping, check_fits, default_mapping
from kcomp.targets.accel.compiler.match import match
from kcomp.targets.accel.compiler.tuning import search_space
from kcomp.targets.accel.machine.config import AccelConfig

GEMMS = {
    "tn": "C[i, j] += A[k, i] * B[k, j]",
    "nt": "C[i, j] += A[i, k] * B[j, k]",
    "tt": "C[i, j] += A[k, i] * B[j, k]",
}
SHAPES = {"A": {"tn": "K, M", "nt": "M, K", "tt": "K, M"}, "B": {"tn": "K, N", "nt": "N, K", "tt": "N, K"}}


def gemm(kind: str, m: int = 37, n: int = 45, k: int = 29) -> str:
    return (
        f"dim M = {m}, N = {n}, K = {k}\n"
        f"kernel g(A: f32[{SHAPES['A'][kind]}], B: f32[{SHAPES['B'][kind]}]) -> (C: f32[M, N]) {{\n"
        f"    {GEMMS[kind]}\n}}\n"
    )


# C stored transposed, its initial value (a bias along i) and a relu on the way out
TRANSPOSED_C = """
dim M = 41, N = 23, K = 30
kernel ct(A: f32[M, K], B: f32[K, N], b: f32[M]) -> (C: f32[N, M]) {
    C[j, i] = b[i]
    C[j, i] += A[i, k] * B[k, j]
    C[j, i] = relu(C[j, i])
}
"""
# an NCHW convolution with padding: pixels as accumulator rows (X and Y transposed), image rows
# stacked, the OIHW weights gathered once for every (r, s)
NCHW = """
dim N = 2, C = 20, K = 24, H = 7, W = 9
kernel conv(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * F[k, c, r, s]
}
"""
# a linear layer over a batch of sequences: the batch axis stacks (A and C have it, W does not)
BATCHED_LINEAR = """
dim B = 5, S = 12, D = 40, E = 24
kernel lin(X: f32[B, S, D], W: f32[D, E]) -> (Y: f32[B, S, E]) {
    Y[b, s, e] += X[b, s, d] * W[d, e]
}
"""


def _counts(run) -> dict:
    return run.report.counts


def _nest(source: str, shapes: dict | None = None):
    module = load_module(source)
    return lower(front(module, module.kernel(None), shapes or {}))


def _cfg(spec: str) -> AccelConfig:
    return AccelConfig.load(spec.partition(":")[2] or "default")


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("kind", sorted(GEMMS))
def test_transposed_gemms_run_on_the_matrix_unit(kind, spec):
    c, run = sim(gemm(kind), spec, seed=3)
    assert run.ok, run.max_rel_err
    # Aᵀ or Bᵀ loaded transposed, or (tt) Cᵀ = B·A with plain operands and C stored transposed
    transposing = sum(n for op, n in _counts(run).items() if op.endswith(".t"))
    assert run.report.macs > 0 and transposing > 0
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
def test_a_transposed_result_keeps_its_bias_and_relu(spec):
    c, run = sim(TRANSPOSED_C, spec, seed=4)
    assert run.ok, run.max_rel_err
    assert _counts(run).get("dma.store.t", 0) > 0 and run.report.macs > 0
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
def test_an_nchw_convolution_stacks_rows_and_holds_its_weights(spec):
    c, run = sim(NCHW, spec, seed=5)
    assert run.ok, run.max_rel_err
    counts = _counts(run)
    assert counts.get("dma.load.t", 0) > 0 and counts.get("dma.store.t", 0) > 0
    nest = _nest(NCHW)
    cfg = _cfg(spec)
    g = match(nest, cfg).groups[0]
    assert (g.i.name, g.j.name, g.k.name, g.stack.name) == ("w", "k", "c", "h")
    m = default_mapping(g, cfg)
    assert m.th > 1 and m.hold_b
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize(
    "schedule",
    [
        "tile h w k c 3 9 16 16",  # stacked, remainders along h (7 = 3 + 3 + 1) and k
        "tile h w k c 2 9 16 20; reorder k_o w_o c_o",
        "tile h w k c 1 4 24 20",  # i split, nothing stacked: h runs as a batch axis
    ],
)
def test_hand_written_stacked_schedules_match_the_reference(schedule):
    _, run = sim(NCHW, "accel", schedule=schedule, seed=6)
    assert run.ok, run.max_rel_err


def test_stacking_a_split_i_range_is_refused_with_the_reason():
    with pytest.raises(ScheduleError, match="only whole w ranges stack"):
        sim(NCHW, "accel", schedule="tile h w k c 2 4 16 16")


def test_a_batch_of_sequences_stacks_into_one_tile():
    _, run = sim(BATCHED_LINEAR, "accel", seed=7)
    assert run.ok, run.max_rel_err
    cfg = _cfg("accel")
    g = match(_nest(BATCHED_LINEAR), cfg).groups[0]
    assert g.stack is not None and g.stack.name == "b"
    # 12 rows a sequence: stacking five of them streams 60 rows per preload instead of 12
    assert default_mapping(g, cfg).th > 1


def test_the_search_space_tiles_the_stack_axis_first():
    nest = _nest(NCHW)
    (entry,) = search_space(nest, _cfg("accel"))
    assert entry["stack"] and entry["loops"] == ["h", "w", "k", "c"]
    assert entry["tiles"]["h"][0] == 1 and 7 in entry["tiles"]["h"]


def test_holding_every_slice_must_fit():
    nest = _nest(NCHW, {"C": 200, "K": 200})
    cfg = _cfg("accel:small")
    g = match(nest, cfg).groups[0]
    held = Mapping(g.extent("i"), g.extent("j"), g.extent("k"), ("i", "j", "k"), frozenset(), hold_b=True)
    with pytest.raises(ScheduleError, match="scratchpad"):
        check_fits(g, held, cfg)


def test_a_one_row_product_keeps_its_i_role():
    # (kcomp fuzz --targets accel --seed 24, program 19) with i of extent 1 and none equally good,
    # the role of extent 1 must win: the default mapping then tiles a loop double_buffer can pipeline
    source = "dim M = 1, K = 8\nkernel k(A: f32[M, K], x: f32[K], c: f32[M]) -> (y: f32[M]) {\n"
    source += "    y[i] = c[i]\n    y[i] += A[i, k] * x[k]\n}\n"
    g = match(_nest(source), _cfg("accel")).groups[0]
    assert g.i is not None and g.i.extent == 1
    _, run = sim(source, "accel", seed=8)
    assert run.ok, run.max_rel_err


def test_a_sparse_weight_does_not_stack():
    # (kcomp fuzz --targets accel --seed 24, program 59) a stacked tile over a held weight, whose
    # zero tiles are skipped row range by row range, runs unstacked
    source = (
        "dim D0 = 2, D2 = 11, E0 = (D2 - 1) // 2 + 1, E1 = D0 + 2\n"
        "kernel fz(A: f32[E0, E1, E1] sparse(bsr3x1), B: f32[E1, E0, D0, D0]) -> (t0: f32[E1, D0, D0]) {\n"
        "    t0[i, j, n] += (A[k, j + l, n + m] * B[i, k, l, m]) where i < E1, j < D0, l < D0, n < D0\n}\n"
    )
    w = np.random.default_rng(1).standard_normal((6, 4, 4)).astype(np.float32)
    w[0:3, 1, :] = 0
    k = kcomp.compile(source, target="accel", weights={"A": w}, schedule="tile j n i k 2 2 4 6")
    result = k.check(842505910)
    assert result.ok, result.max_abs_err


def test_a_product_with_neither_i_nor_j_maps_without_a_tile_loop():
    # (kcomp fuzz --targets accel --seed 26, program 50) whole tiles leave double_buffer no tile
    # loop to pipeline: the default mapping goes without it instead of failing
    source = "dim D = 11\nkernel k(A: f32[D, D], B: f32[D]) -> (t: f32[D]) {\n"
    source += "    t[i] += A[j, j] * B[j] where i < D\n}\n"
    _, run = sim(source, "accel", seed=9)
    assert run.ok, run.max_rel_err


# stacked tiles with an initial value, a scaling by a parameter and relu on the way out
BATCHED_EPILOGUE = """
dim B = 6, S = 10, D = 24, E = 40
kernel lin(X: f32[B, S, D], W: f32[D, E], bias: f32[E], a: f32) -> (Y: f32[B, S, E]) {
    Y[b, s, e] = bias[e]
    Y[b, s, e] += X[b, s, d] * W[d, e]
    Y[b, s, e] = relu(Y[b, s, e] * a)
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("schedule", [None, "tile b1 s1 e1 d 4 10 16 24; double_buffer"])
def test_stacked_tiles_keep_their_initial_value_and_epilogue(spec, schedule):
    c, run = sim(BATCHED_EPILOGUE, spec, schedule=schedule, seed=10)
    assert run.ok, run.max_rel_err
    assert_tokens_balance(c.artifact.program)


# a strided convolution with bias and relu (its pixels' rows two apart: dma.load.t's step) and a
# dilated one (the halo two wide)
STRIDED = """
dim N = 2, C = 24, K = 40, H = 15, W = 17, OH = 8, OW = 9
kernel conv_s2(X: f32[N, C, H, W], F: f32[K, C, 3, 3], b: f32[K]) -> (Y: f32[N, K, OH, OW]) {
    Y[n, k, h, w] = b[k]
    Y[n, k, h, w] += X[n, c, 2 * h + r - 1, 2 * w + s - 1] * F[k, c, r, s]
    Y[n, k, h, w] = relu(Y[n, k, h, w])
}
"""
DILATED = """
dim N = 1, C = 16, K = 32, H = 20, W = 20
kernel conv_d2(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + 2 * r - 2, w + 2 * s - 2] * F[k, c, r, s]
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("source", [STRIDED, DILATED], ids=["stride2", "dilation2"])
def test_strided_and_dilated_nchw_convolutions(source, spec):
    c, run = sim(source, spec, seed=11)
    assert run.ok, run.max_rel_err
    assert run.report.macs > 0
    assert_tokens_balance(c.artifact.program)
