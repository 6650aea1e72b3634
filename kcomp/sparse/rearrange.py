"""Sparsity rearrangement: permute a sparse weight's rows and columns so that its nonzeros cluster into
as few dense blocks of the stored shape as possible (docs/sparse.md has the algorithm and its cost).

Grouping rows into runs of H (and columns into runs of W) is a clustering with equal-size clusters:
a block row's blocks are the union of its rows' column supports, so a good group is a set of rows
whose supports overlap.  The greedy used here:

  1. similarity of every pair of rows: the number of columns both use, S = B @ B.T (one BLAS product
     of the 0/1 pattern, about a second for 4096 x 4096);
  2. seeds in order of decreasing support; a seed's group is filled from the 4*H rows most similar
     to it, each step taking the candidate that grows the group's union least (ties: most overlap);
  3. rows are grouped on their column support, then columns on their support over the row groups,
     then rows again on the column groups; a step that does not lower the block count is dropped.

Rows with no nonzero are grouped last, together.  A planted block pattern that was permuted has rows
(and columns) with identical supports inside each planted block, so step 2 recovers it exactly;
on random patterns it finds the overlap there is.  The permutations are folded into the code as
index maps (kcomp/sparse/rewrite.py), so results are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcomp.sparse.format import block_count


@dataclass(frozen=True)
class Rearrangement:
    rows: np.ndarray  # new row r is old row rows[r]
    cols: np.ndarray  # new column c is old column cols[c]
    blocks_before: int
    blocks_after: int

    @property
    def identity(self) -> bool:
        return bool((self.rows == np.arange(self.rows.size)).all() and (self.cols == np.arange(self.cols.size)).all())


def rearrange(mat: np.ndarray, block: tuple[int, int]) -> Rearrangement:
    """Row and column permutations of `mat` (2-D) that lower its count of nonzero `block`s."""
    h, w = block
    pattern = mat != 0
    rows = np.arange(pattern.shape[0])
    cols = np.arange(pattern.shape[1])
    before = block_count(pattern, block)
    best = before
    if h > 1:
        rows, best = _keep(rows, _group(pattern, h), lambda r: block_count(pattern[r][:, cols], block), best)
    if w > 1:
        # columns are grouped on their support over the row groups chosen so far
        by_rows = _fold(pattern[rows], h).T
        cols, best = _keep(cols, _group(by_rows, w), lambda c: block_count(pattern[rows][:, c], block), best)
    if h > 1 and w > 1:
        by_cols = _fold(pattern[:, cols].T, w).T
        rows, best = _keep(rows, _group(by_cols, h), lambda r: block_count(pattern[r][:, cols], block), best)
    return Rearrangement(rows, cols, before, best)


def _keep(old, new, count, best):
    """`new` where it lowers the block count (measured by `count`), else `old`."""
    after = count(new)
    return (new, after) if after < best else (old, best)


def _fold(pattern: np.ndarray, size: int) -> np.ndarray:
    """OR of consecutive runs of `size` rows (the support of each row group)."""
    n, d = pattern.shape
    padded = np.zeros((-(-n // size) * size, d), bool)
    padded[:n] = pattern
    return padded.reshape(-1, size, d).any(axis=1)


def _group(pattern: np.ndarray, size: int) -> np.ndarray:
    """An order of the rows of `pattern` in which consecutive runs of `size` share columns."""
    support = pattern.sum(axis=1)
    live = np.flatnonzero(support > 0)
    empty = np.flatnonzero(support == 0)
    if live.size <= size:
        return np.concatenate([live, empty])
    sub = pattern[live].astype(np.float32)
    sim = sub @ sub.T  # shared columns of every pair (exact: counts below 2^24)
    weight = support[live].astype(np.float32)
    free = np.ones(live.size, bool)
    order: list[int] = []
    for seed in np.argsort(-weight, kind="stable"):
        if not free[seed]:
            continue
        free[seed] = False
        group = [seed]
        union = sub[seed].copy()
        score = np.where(free, sim[seed], -1.0)
        take = min(4 * size, int(free.sum()))
        cands = np.argpartition(-score, take - 1)[:take] if take else np.empty(0, int)
        cands = [c for c in cands if free[c]]
        while len(group) < size and cands:
            block = sub[cands]
            overlap = block @ union
            growth = weight[cands] - overlap
            pick = int(np.lexsort((-overlap, growth))[0])
            c = cands.pop(pick)
            free[c] = False
            group.append(c)
            np.maximum(union, sub[c], out=union)
        order.extend(group)
    return np.concatenate([live[np.array(order, int)], empty])
