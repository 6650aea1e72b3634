"""Magnitude pruning for users who start dense: keep the largest entries in the structure a format
stores, zero the rest.

Blocks and groups are scored by their L2 norm and the weakest whole blocks dropped until the target
sparsity is met (at block granularity, the fraction reached is the nearest one blocks allow); N:M
keeps the N largest of every run of M columns (its sparsity is 1 - N/M whatever is asked); csr drops
the smallest single entries.
"""

from __future__ import annotations

import numpy as np

from kcomp.errors import UsageError
from kcomp.sparse.format import Format, as_matrix


def prune(values: np.ndarray, fmt: Format, sparsity: float) -> np.ndarray:
    """A copy of `values` with about `sparsity` of its entries zeroed in `fmt`'s structure."""
    if not 0.0 <= sparsity <= 1.0:
        raise UsageError(f"sparsity must be in [0, 1], got {sparsity}")
    arr = np.array(values, dtype=np.float32)
    if arr.ndim < 2:
        raise UsageError("pruning needs a weight of at least 2 dimensions (rows x columns)")
    mat = as_matrix(arr)
    out = _prune_nm(mat, fmt.n, fmt.m) if fmt.kind == "nm" else _prune_blocks(mat, fmt.block, sparsity)
    return out.reshape(arr.shape)


def _prune_blocks(mat: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    h, w = block
    rows, cols = mat.shape
    grid = np.zeros((-(-rows // h) * h, -(-cols // w) * w), np.float32)
    grid[:rows, :cols] = mat
    blocks = grid.reshape(grid.shape[0] // h, h, grid.shape[1] // w, w)
    score = np.sqrt((blocks.astype(np.float64) ** 2).sum(axis=(1, 3)))
    drop = round(sparsity * score.size)
    keep = np.ones(score.shape, bool)
    if drop:
        # NOTE: a stable sort, so ties (equal norms) drop in a reproducible order
        order = np.argsort(score, axis=None, kind="stable")[:drop]
        keep.flat[order] = False
    kept = blocks * keep[:, None, :, None]
    return kept.reshape(grid.shape)[:rows, :cols].copy()


def _prune_nm(mat: np.ndarray, n: int, m: int) -> np.ndarray:
    rows, cols = mat.shape
    width = -(-cols // m) * m
    grid = np.zeros((rows, width), np.float32)
    grid[:, :cols] = mat
    runs = grid.reshape(rows, width // m, m)
    order = np.argsort(-np.abs(runs), axis=2, kind="stable")
    mask = np.zeros(runs.shape, bool)
    np.put_along_axis(mask, order[:, :, :n], True, axis=2)
    return (runs * mask).reshape(rows, width)[:, :cols].copy()
