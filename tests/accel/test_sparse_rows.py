"""The accelerator streams only the weight rows that hold a nonzero (compiler/sparse.py, codegen's
`_live_chunks`): every pattern still matches the dense reference, including rows first touched in a
later chunk, rows zero in a whole tile, a bias that opens the tile and a fused relu."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest

import kcomp
from kcomp.sparse import parse_format, prune
from kcomp.targets.accel.compiler import backend as mapping
from kcomp.targets.accel.compiler.backend import mappings

SPMM = """dim M = 96, K = 80, N = 40
kernel spmm(W: f32[M, K]{decl}, X: f32[K, N]) -> (Y: f32[M, N]) {{
    Y[m, n] += W[m, k] * X[k, n]
}}"""
BIAS_RELU = """dim M = 96, K = 80, N = 40
kernel lin(W: f32[M, K]{decl}, X: f32[K, N], b: f32[N]) -> (Y: f32[M, N]) {{
    Y[m, n] = b[n]
    Y[m, n] += W[m, k] * X[k, n]
    Y[m, n] = max(Y[m, n], 0.0)
}}"""


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    dense = rng.standard_normal((96, 80)).astype(np.float32)
    scattered = prune(dense, parse_format("group1x16"), 0.9)
    late = np.zeros_like(dense)
    late[::3, 64:] = dense[::3, 64:]  # rows first touched in the last chunk, others never
    late[1::7, :16] = dense[1::7, :16]
    one = np.zeros_like(dense)
    one[50, 33] = 2.5
    return {
        "group 90%": scattered,
        "group 70%": prune(dense, parse_format("group1x16"), 0.7),
        "late rows": late,
        "one value": one,
        "empty": np.zeros_like(dense),
        "dense": dense,
    }


# the default tiles; then every chunk of K in one step, so rows are touched again within a step
TILES = [None, "tile {m} {n} k 48 32 80", "tile {m} {n} k 96 16 48\nreorder {n}_o {m}_o k_o"]


@pytest.mark.parametrize("tiles", TILES, ids=["default", "whole k", "two k steps"])
@pytest.mark.parametrize(
    ("source", "loops"), [(SPMM, ("m", "n")), (BIAS_RELU, ("m1", "n1"))], ids=["zero start", "bias and relu"]
)
def test_sparse_rows_match_the_reference(source, loops, tiles, rng):
    schedule = tiles and tiles.format(m=loops[0], n=loops[1])
    dense_kernel = kcomp.compile(source.format(decl=""), target="accel", schedule=schedule)
    dense_macs = dense_kernel.check(seed=1).report.macs
    for name, w in _weights(rng).items():
        kernel = kcomp.compile(
            source.format(decl=" sparse(csr)"), target="accel", weights={"W": w}, schedule=schedule
        )
        check = kernel.check(seed=4)
        assert check.ok, name
        if name == "group 90%":
            # rows, not tiles: a 1x16 group pattern leaves few 16x16 tiles empty but most rows
            assert check.report.macs < 0.5 * dense_macs


def test_a_sparse_weight_gets_a_third_buffer_and_it_pays(rng):
    """Zero chunks skipped make the work per step uneven: the default mapping gives A and B three
    slots when they fit (`mapping.deepen`), which the cycle count must show; a dense product keeps two."""
    src = "dim M = 1024, K = 1024, N = 128\nkernel s(W: f32[M, K]{decl}, X: f32[K, N]) -> (Y: f32[M, N]) {{ Y[m, n] += W[m, k] * X[k, n] }}"
    w = prune(rng.standard_normal((1024, 1024)), parse_format("bsr16x16"), 0.9)
    sparse = kcomp.compile(src.format(decl=" sparse(bsr16x16)"), target="accel", weights={"W": w})
    dense = kcomp.compile(src.format(decl=""), target="accel")

    def depths(k):  # type: ignore[no-untyped-def]
        return [m.depth for _, m in mappings(k.built.nest, k.built.target.cfg, k.built.schedule)]

    assert depths(sparse) == [3] and depths(dense) == [2]
    deep = sparse.check(seed=4)
    assert deep.ok
    with patch.object(mapping, "deepen", lambda g, m, *args: m):
        two = kcomp.compile(src.format(decl=" sparse(bsr16x16)"), target="accel", weights={"W": w})
        assert depths(two) == [2]
        cycles_two = two.check(seed=4).report.cycles
    assert deep.report.cycles < cycles_two
