"""The rule-based default scheduler: what it chooses, that its result replays, and that it is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcomp import compile
from kcomp.printer import canonical
from kcomp.schedule import CacheRead, CacheWrite, Pack, Parallel, Split, Unroll, Vectorize, parse_schedule
from kcomp.targets.base import Target

DEFAULT = Target.default_label  # the CPU's default-scheduler label

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.kc"))
MATMUL = "dim M = 64, N = 48, K = 40\nkernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"


def default_of(source, **shapes):
    k = compile(source, shapes=shapes or None)
    assert k.built.schedule_source == DEFAULT or "schedule block" in k.built.schedule_source
    return k


def test_gemm_gets_the_register_blocked_recipe():
    k = default_of(MATMUL)
    kinds = {type(s) for s in k.built.schedule.steps}
    assert {Unroll, Vectorize, Pack, CacheWrite} <= kinds
    assert "kept in registers" in k.source
    assert k.check().ok


def test_single_row_gemm_is_not_packed_and_still_parallel():
    k = default_of(MATMUL, M=1, N=4096, K=64)
    steps = k.built.schedule.steps
    assert not any(isinstance(s, Pack) for s in steps)
    assert any(isinstance(s, Parallel) for s in steps)
    assert k.check().ok


def test_row_reduction_uses_the_reduce_strategy():
    k = compile("kernel r(X: f32[300, 77]) -> (s: f32[300]) { s[i] += X[i, j] }")
    assert any(isinstance(s, Vectorize) and s.reduce for s in k.built.schedule.steps)
    assert k.check().ok


CONV = (
    "dim N = 2, C = 3, K = 12, H = 9, W = 21\n"
    "kernel conv(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {\n"
    "    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * F[k, c, r, s]\n}"
)


@pytest.mark.parametrize("shapes", [{}, {"K": 7, "W": 16, "H": 3}, {"N": 1, "K": 64, "W": 56, "H": 4}])
@pytest.mark.parametrize("target", ["cpu", "cpu:avx2"])
def test_convolution_gets_a_register_tile_over_a_staged_window(shapes, target):
    """Rows of output channels x one vector of columns, X's window staged with its halo so the
    compute loop has no bounds tests; right on widths that are not a multiple of the vector."""
    k = compile(CONV, shapes=shapes or None, target=target)
    steps = k.built.schedule.steps
    kinds = {type(s) for s in steps}
    assert {Split, Unroll, Vectorize, CacheRead, CacheWrite} <= kinds
    assert CacheRead("X", "h") in steps
    for seed in range(2):
        assert k.check(seed=seed).ok


def test_small_kernels_stay_single_threaded():
    k = compile("kernel f(X: f32[8, 8]) -> (Y: f32[8, 8]) { Y[i, j] = X[i, j] + 1.0 }")
    assert not any(isinstance(s, Parallel) for s in k.built.schedule.steps)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_default_schedule_replays_from_its_text(path):
    """The printed default schedule, parsed back and applied, gives the same loop nest."""
    k = compile(path, schedule=None)
    text = str(k.built.schedule)
    again = compile(path, schedule=parse_schedule(text) if text else "none")
    assert canonical(again.built.nest) == canonical(k.built.nest)


@pytest.mark.parametrize("target", ["cpu:scalar", "cpu"])
def test_default_schedule_is_correct_at_every_isa_level(target):
    k = compile(MATMUL, target=target, shapes={"M": 25, "N": 37, "K": 19})
    assert k.check().ok


@pytest.mark.parametrize("stride", [2, 4])
def test_a_strided_convolution_stages_its_window_by_phase(stride):
    text = (
        f"dim OH = (H + 2 - 3) // {stride} + 1, OW = (W + 2 - 3) // {stride} + 1\n"
        "kernel c(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, OH, OW]) {\n"
        f"    Y[n, k, h, w] += X[n, c, {stride} * h + r - 1, {stride} * w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3\n}}"
    )
    k = default_of(text, N=2, C=3, K=4, H=70, W=70)  # K < a vector: the row form
    assert CacheRead("X", "h", 3, stride) in k.built.schedule.steps
    assert k.check(seed=1).ok


def test_a_grouped_convolution_is_split_by_group_into_the_convolution_rule():
    text = (
        "dim G = 4\ndim CG = C // G, KG = K // G\n"
        "kernel g(X: f32[N, C, H, W], F: f32[K, CG, 3, 3]) -> (Y: f32[N, K, H, W]) {\n"
        "    Y[n, k, h, w] += X[n, (k // KG) * CG + c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3\n}"
    )
    k = default_of(text, N=1, C=16, K=32, H=20, W=40)
    steps = k.built.schedule.steps
    assert Split("k", 8) in steps and any(isinstance(s, CacheWrite) for s in steps)
    assert any(isinstance(s, Parallel) for s in steps)
    assert k.check(seed=2).ok


def test_a_convolution_row_shorter_than_a_vector_still_gets_the_register_tile():
    text = (
        "kernel c(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {\n"
        "    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3\n}"
    )
    k = default_of(text, N=1, C=4, K=16, H=12, W=12)
    if k.target.vector_bits >= 512:  # 12 of 16 lanes; on 8-lane targets the row is full vectors anyway
        assert any(isinstance(s, CacheWrite) for s in k.built.schedule.steps)
    assert k.check(seed=2).ok


def test_a_strided_pooling_window_is_staged_by_phase():
    text = (
        "dim OL = (L + 2 - 3) // 2 + 1\n"
        "kernel mp(X: f32[N, C, L]) -> (Y: f32[N, C, OL]) { Y[n, c, o] max= X[n, c, 2 * o + t - 1, pad=-inf] where t < 3 }"
    )
    k = default_of(text, N=2, C=8, L=1000)
    assert any(isinstance(s, CacheRead) and s.stride == 2 for s in k.built.schedule.steps)
    assert k.check(seed=0).ok


def test_a_rank_zero_operand_does_not_trip_the_convolution_rule():
    """Regression (`kcomp fuzz --programs 300 --seed 1`, program 293): a scalar tensor `t0[]` among a
    four-loop nest's operands made the rule index the last dimension of a load that has none."""
    text = """dim D0 = 1, D1 = 4, E0 = (D1 - 1) // 2 + 1
kernel fz(A: f32[D0, D1, D1], I1: i32[D1], B: f32[E0, D1, D0], C: f32[E0, E0], I4: i32[D1], F: f32[D1, D0]) -> (t1: i32[E0, D1], t2: f32[E0, D1]) {
    t0[] min= max(A[i, I1[j], j], B[j, j, i, pad=1.0]) where i < D0, j < D1
    t1[i, j] argmin= (-C[k, I4[j], pad=-1.0]) where i < E0, j < D1, k < E0
    t2[i, j] += (t0[] + F[k, l]) where i < E0, j < D1, k < D1
}"""
    assert default_of(text).check(seed=0).ok
