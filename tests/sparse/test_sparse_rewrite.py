"""Sparse weights compiled: every format and pattern against the dense reference on fresh random
inputs, with and without rearrangement, and the rewrite's refusals and errors."""

from __future__ import annotations

import numpy as np
import pytest

import kcomp
from kcomp.errors import SourceError, UsageError
from kcomp.sparse import parse_format, prune
from kcomp.sparse.plan import pack
from kcomp.sparse.rearrange import rearrange

SPMM = """dim M = {m}, K = {k}, N = {n}
kernel spmm(W: f32[M, K] sparse({fmt}), X: f32[K, N]) -> (Y: f32[M, N]) {{
    Y[m, n] += W[m, k] * X[k, n]
}}"""


def compiled(fmt, w, n=24, rearrange=True, **kw):
    src = SPMM.format(m=w.shape[0], k=w.shape[1], n=n, fmt=fmt)
    return kcomp.compile(src, weights={"W": w}, rearrange=rearrange, **kw)


def dense_check(k, w, rng, n):
    x = rng.uniform(-1, 1, (w.shape[1], n)).astype(np.float32)
    np.testing.assert_allclose(k(x), w.astype(np.float32) @ x, rtol=2e-5, atol=2e-5)
    assert k.check(seed=int(rng.integers(1 << 30))).ok


@pytest.mark.parametrize("fmt", ["csr", "bsr4x4", "bsr2x8", "group1x16", "group1x4", "nm2:4"])
@pytest.mark.parametrize("sparsity", [0.0, 0.7, 0.95, 1.0])
@pytest.mark.parametrize("rearranged", [True, False])
def test_every_format_matches_the_dense_reference(rng, fmt, sparsity, rearranged):
    w = prune(rng.standard_normal((37, 50)), parse_format(fmt), sparsity)  # edges: partial blocks
    k = compiled(fmt, w, 24, rearranged)
    dense_check(k, w, rng, 24)
    assert any(line.startswith(f"sparse W ({parse_format(fmt).name})") for line in k.built.notes)


def test_planted_then_permuted_weights_pack_into_the_planted_blocks(rng):
    mask = rng.random((16, 16)) < 0.15
    dense = np.kron(mask, np.ones((4, 4))) * rng.standard_normal((64, 64))
    shuffled = dense[rng.permutation(64)][:, rng.permutation(64)].astype(np.float32)
    k = compiled("bsr4x4", shuffled, 32)
    dense_check(k, shuffled, rng, 32)
    line = next(s for s in k.built.notes if s.startswith("sparse W"))
    assert f"in {int(mask.sum())} blocks" in line and "0 explicit zeros" in line
    plain = compiled("bsr4x4", shuffled, 32, rearrange=False)
    dense_check(plain, shuffled, rng, 32)


def test_empty_rows_and_columns_and_a_single_nonzero(rng):
    w = np.zeros((20, 30), np.float32)
    w[3, 7] = 2.5
    w[17, 29] = -1.0
    for fmt in ("csr", "bsr4x4", "group1x8"):
        dense_check(compiled(fmt, w, 16), w, rng, 16)


def test_pack_splits_long_rows_and_maps_them_back(rng):
    w = np.zeros((64, 256), np.float32)
    w[0] = rng.standard_normal(256)  # one dense row of 16 groups, the others one group
    w[1:, 16:32] = 1.0
    pk = pack(w, (1, 16))
    assert not pk.direct and pk.q > 1
    # the rows' partial sums add back up to the product
    x = rng.standard_normal((256, 5)).astype(np.float32)
    part = np.einsum("vpij,vpjn->vin", pk.values, x[pk.cols])
    y = part[pk.vrow, pk.vpos].sum(axis=1)
    np.testing.assert_allclose(y, w @ x, rtol=1e-5, atol=1e-5)


def test_pack_of_a_rearranged_weight_undoes_both_permutations(rng):
    w = prune(rng.standard_normal((32, 48)), parse_format("bsr4x4"), 0.8)
    w = w[rng.permutation(32)][:, rng.permutation(48)]
    pk = pack(w, (4, 4), rearrange(w, (4, 4)))
    x = rng.standard_normal((48, 3)).astype(np.float32)
    part = np.einsum("vpij,vpjn->vin", pk.values, x[pk.cols])
    np.testing.assert_allclose(part[pk.vrow, pk.vpos].sum(axis=1), w @ x, rtol=1e-5, atol=1e-5)


def test_a_convolution_weight_is_rows_by_flattened_columns(rng):
    src = """dim N = 1, C = 8, H = 10, W = 10, K = 16
kernel conv(X: f32[N, C, H, W], F: f32[K, C, 3, 3] sparse(group1x9)) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * F[k, c, r, s]
}"""
    f = prune(rng.standard_normal((16, 8, 3, 3)), parse_format("group1x9"), 0.75)
    k = kcomp.compile(src, weights={"F": f})
    assert k.check(seed=3).ok
    assert any("sparse F (group1x9)" in line for line in k.built.notes)
    # a group spans a filter's 3x3 taps whole: they stay loops (affine reads of X), only c is gathered
    ir = k.built.stage("ir")
    assert "F_col[v, p, 0] // 9" in ir and "% 3" not in ir and "r<3, s<3" in ir
    # the same weight in 1x3 groups spans s only; 1x4 spans no whole dimension and is gathered per tap
    for fmt in ("group1x3", "group1x4"):
        g = prune(rng.standard_normal((16, 8, 3, 3)), parse_format(fmt), 0.6)
        assert kcomp.compile(src.replace("group1x9", fmt), weights={"F": g}).check(seed=5).ok


def test_accumulating_onto_a_bias_and_a_fused_epilogue(rng):
    src = """dim M = 24, K = 40, N = 16
kernel lin(W: f32[M, K] sparse(bsr4x4), X: f32[K, N], b: f32[M]) -> (Y: f32[M, N]) {
    Y[m, n] = b[m]
    Y[m, n] += W[m, k] * X[k, n]
}"""
    w = prune(rng.standard_normal((24, 40)), parse_format("bsr4x4"), 0.8)
    k = kcomp.compile(src, weights={"W": w})
    x, b = rng.standard_normal((40, 16)).astype(np.float32), rng.standard_normal(24).astype(np.float32)
    np.testing.assert_allclose(k(x, b), w @ x + b[:, None], rtol=1e-5, atol=1e-5)
    assert k.check(seed=5).ok


def test_a_sparse_weight_read_elementwise_stays_dense(rng):
    src = """dim M = 8, K = 8
kernel scale(W: f32[M, K] sparse(csr), X: f32[M, K]) -> (Y: f32[M, K]) {
    Y[m, k] = W[m, k] + X[m, k]
}"""
    w = prune(rng.standard_normal((8, 8)), parse_format("csr"), 0.5)
    k = kcomp.compile(src, weights={"W": w})
    x = rng.standard_normal((8, 8)).astype(np.float32)
    np.testing.assert_allclose(k(x), w + x, rtol=1e-6)
    assert any("kept dense" in line for line in k.built.notes)


def test_bad_weights_and_declarations_are_clear_errors(rng):
    w = rng.standard_normal((8, 8)).astype(np.float32)
    with pytest.raises(UsageError, match="needs its values at compile time"):
        kcomp.compile(SPMM.format(m=8, k=8, n=4, fmt="csr"))
    with pytest.raises(UsageError, match="expected shape"):
        kcomp.compile(SPMM.format(m=8, k=8, n=4, fmt="csr"), weights={"W": w[:, :4]})
    nan = w.copy()
    nan[1, 1] = np.inf
    with pytest.raises(UsageError, match="must be finite"):
        compiled("csr", nan, 4)
    with pytest.raises(UsageError, match="nm2:4 allows 2"):
        compiled("nm2:4", w, 4)
    with pytest.raises(UsageError, match="does not declare sparse"):
        kcomp.compile(SPMM.format(m=8, k=8, n=4, fmt="csr"), weights={"W": w, "X": w})
    with pytest.raises(SourceError, match="unknown sparse format"):
        kcomp.compile(SPMM.format(m=8, k=8, n=4, fmt="coo"), weights={"W": w})
    with pytest.raises(SourceError, match="cannot be sparse"):
        kcomp.compile("kernel f(X: f32[4]) -> (Y: f32[4] sparse(csr)) {\n Y[i] = X[i]\n}")
    k = compiled("csr", w, 4)
    with pytest.raises(UsageError, match="is sparse"):
        k(W=w, X=np.ones((8, 4), np.float32))


def test_the_pattern_is_part_of_the_workload_key(rng):
    from kcomp.db.records import key_for

    w = prune(rng.standard_normal((16, 16)), parse_format("bsr4x4"), 0.75)
    v = w * 2.0  # same pattern, other values
    u = prune(rng.standard_normal((16, 16)), parse_format("bsr4x4"), 0.75)
    keys = []
    for weight in (w, v, u):
        k = compiled("bsr4x4", weight, 8)
        keys.append(key_for(k.built.lowered, k.target).workload)
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize("fmt", ["group1x8", "bsr4x4", "csr"])
def test_a_linear_layer_reads_its_input_transposed_and_keeps_rows_apart(rng, fmt):
    """`Y[b, o] += X[b, i] * W[o, i]` (torch's Linear): the weight's rows are the output's contiguous
    dimension, so the partial sums are laid out `[v, bi, b]` and X is read as X_t[i, b]."""
    src = f"""dim B = 20, I = 48, O = 36
kernel linear(X: f32[B, I], W: f32[O, I] sparse({fmt}), c: f32[O]) -> (Y: f32[B, O]) {{
    Y[b, o] = c[o]
    Y[b, o] += X[b, i] * W[o, i]
}}"""
    w = prune(rng.standard_normal((36, 48)), parse_format(fmt), 0.8)
    k = kcomp.compile(src, weights={"W": w})
    x, c = rng.standard_normal((20, 48)).astype(np.float32), rng.standard_normal(36).astype(np.float32)
    np.testing.assert_allclose(k(x, c), x @ w.T + c, rtol=2e-5, atol=2e-5)
    assert k.check(seed=6).ok
    ir = k.built.stage("ir")
    assert "X_t[i0, i1] = X[i1, i0]" in ir and "Y_part[v, bi, b] +=" in ir
    if fmt == "csr":  # the row map is a transposing gather: its store is tiled (whole cache lines)
        wide = np.concatenate([w, w])[:64]
        big = kcomp.compile(
            src.replace("B = 20, I = 48, O = 36", "B = 64, I = 48, O = 64"), weights={"W": wide}
        )
        assert "tile " in str(big.built.schedule) and big.check(seed=7).ok
