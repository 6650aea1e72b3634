"""The default scheduler's fusion rules (kcomp/autofuse.py): which steps fire on which programs, and
that the fused default still matches the reference."""

from __future__ import annotations

import pytest

from kcomp import compile
from kcomp.schedule import ComputeAt, Inline, Online

SOFTMAX = """kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    e[n, d] = exp(X[n, d] - mx[n])
    s[n] += e[n, d]
    Y[n, d] = e[n, d] / s[n]
}"""
LAYERNORM = """kernel ln(X: f32[N, D], g: f32[D]) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    xc[n, d] = X[n, d] - mean[n]
    var[n] += xc[n, d] * xc[n, d] / D
    Y[n, d] = xc[n, d] * rsqrt(var[n] + 0.00001) * g[d]
}"""
# the same shape as LAYERNORM, but the shared elementwise value is costly to recompute
COSTLY = LAYERNORM.replace("xc[n, d] = X[n, d] - mean[n]", "xc[n, d] = exp(X[n, d] - mean[n])")
MATMUL_RELU = """kernel mr(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    t[i, j] += A[i, k] * B[k, j]
    C[i, j] = relu(t[i, j])
}"""


def steps_of(text, **shapes):
    k = compile(text, shapes=shapes)
    assert k.check(seed=3).ok
    return k.built.schedule.steps


def test_softmax_rows_fuse_into_one_nest():
    steps = steps_of(SOFTMAX, N=64, D=96)
    assert {s.tensor for s in steps if isinstance(s, ComputeAt)} == {"mx", "e", "s"}


def test_a_single_operation_shared_by_two_readers_is_recomputed_in_each():
    steps = steps_of(LAYERNORM, N=32, D=80)
    assert Inline("xc") in steps
    assert {s.tensor for s in steps if isinstance(s, ComputeAt)} == {"mean", "var"}


def test_a_costly_value_shared_by_two_readers_keeps_its_row_buffer():
    steps = steps_of(COSTLY, N=32, D=80)
    assert Inline("xc") not in steps
    assert "xc" in {s.tensor for s in steps if isinstance(s, ComputeAt)}


def test_a_contraction_keeps_its_own_nest():
    steps = steps_of(MATMUL_RELU, M=32, N=48, K=24)
    assert not any(isinstance(s, ComputeAt) and s.tensor == "t" for s in steps)


@pytest.mark.parametrize("d, online", [(512, False), (64 << 10, True)])
def test_running_max_goes_one_pass_only_when_a_row_outgrows_the_cache(d, online):
    k = compile(SOFTMAX, shapes={"N": 2, "D": d})
    assert any(isinstance(s, Online) for s in k.built.schedule.steps) is online
    assert k.check(seed=1).ok


def test_nests_fused_two_levels_deep_still_get_vector_loops():
    """Causal attention's row chain at a long row: the masked row max ends up inside a per-row loop
    inside the per-batch loop; its reduction and the exponentials must still be vector loops."""
    from kcomp.bench.fusion import CASES
    from kcomp.loops import Loop, LoopKind, Store, walk_stmts

    c = CASES["attention_causal"]
    k = compile(c.source, shapes={"B": 2, "S": 512, "E": 16})
    assert k.check(seed=0).ok
    innermost = [
        s
        for s in walk_stmts(k.built.nest.body)
        if isinstance(s, Loop) and any(isinstance(x, Store) and x.buffer.name in ("mx", "p") for x in s.body)
    ]
    assert innermost and all(lp.kind is LoopKind.VECTOR for lp in innermost)


LOG_SOFTMAX = """kernel lsm(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    s[n] += exp(X[n, d] - mx[n])
    Y[n, d] = X[n, d] - mx[n] - log(s[n])
}"""
COSINE = """kernel cos(A: f32[N, D], B: f32[N, D]) -> (Y: f32[N]) {
    dot[n] += A[n, d] * B[n, d]
    na[n] += A[n, d] * A[n, d]
    Y[n] = dot[n] / sqrt(na[n])
}"""


@pytest.mark.parametrize("text, fused", [(LOG_SOFTMAX, {"mx", "s"}), (COSINE, {"dot", "na"})])
def test_row_reductions_without_reuse_fuse_even_when_they_multiply_two_tensors(text, fused):
    steps = steps_of(text, N=64, D=300)
    assert {s.tensor for s in steps if isinstance(s, ComputeAt)} == fused


def test_a_row_reduction_vectorizes_along_its_big_input_not_its_small_output():
    from kcomp.schedule import Vectorize

    text = "kernel r(X: f32[N, D], m: f32[N]) -> (S: f32[N]) { S[n] += exp(X[n, d] - m[n]) }"
    steps = steps_of(text, N=512, D=256)
    assert Vectorize("d", reduce=True) in steps


def test_a_loss_over_rows_runs_in_threads_with_private_sums():
    from kcomp.schedule import Parallel

    text = "kernel mse(A: f32[N, D], B: f32[N, D]) -> (L: f32[]) { L[] += (A[n, d] - B[n, d]) * (A[n, d] - B[n, d]) / (N * D) }"
    steps = steps_of(text, N=512, D=256)
    assert any(isinstance(s, Parallel) and s.reduce for s in steps)
