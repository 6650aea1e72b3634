"""Packing a sparse weight for code generation: its nonzero blocks as fixed-length rows ("virtual rows"
of P blocks each), the columns each block reads, and the map from the weight's rows to the virtual
rows that hold their partial sums.

A block row with c nonzero blocks becomes ceil(c / P) virtual rows; the last is padded with zero
blocks.  Splitting long block rows instead of padding every row to the longest keeps the padding
small on skewed patterns (random 90% sparse rows of 64 groups hold 6 +- 2.4 groups, the longest 15),
at the price of a second pass that adds each row's Q virtual rows (`Y[m] = sum_q Yv[map[m, q]]`).
P is chosen by the cost of both passes; where the rows are in order, one row per block row and no row
is split, the first pass writes the output directly and there is no second pass.  One extra virtual
row of zeros is what a row with fewer than Q virtual rows (or none) maps to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcomp.sparse.format import block_mask
from kcomp.sparse.rearrange import Rearrangement


@dataclass(frozen=True)
class Packed:
    values: np.ndarray  # f32 [V, P, H, W]: virtual row, block slot, row in block, column in block
    cols: np.ndarray  # i32 [V, P, W]: the weight column each value multiplies (original numbering)
    vrow: np.ndarray  # i32 [M, Q]: virtual rows holding row m's partial sums (V-1: the zero row)
    vpos: np.ndarray  # i32 [M, Q]: row m's place in them (0..H-1)
    direct: bool  # virtual row v is row v (H = 1, Q = 1, rows in order): no second pass
    blocks: int  # nonzero blocks stored
    slots: int  # block slots including padding
    explicit_zeros: int  # zeros stored inside nonzero blocks

    @property
    def block(self) -> tuple[int, int]:
        return self.values.shape[2], self.values.shape[3]

    @property
    def q(self) -> int:
        return self.vrow.shape[1]


def pack(
    mat: np.ndarray, block: tuple[int, int], order: Rearrangement | None = None, direct_ok: bool = True
) -> Packed:
    """`mat` (rows x columns, dense values) in blocks of `block`, its rows and columns taken in the
    order `order` gives (None: as they are).  `direct_ok` False: always map the rows back (the
    caller writes the partial sums in a layout of its own)."""
    h, w = block
    rows_n, cols_n = mat.shape
    rows = order.rows if order is not None else np.arange(rows_n)
    cols = order.cols if order is not None else np.arange(cols_n)
    pm = mat[rows][:, cols]
    mask = block_mask(pm, block)
    counts = mask.sum(axis=1)
    in_order = direct_ok and bool((rows == np.arange(rows_n)).all())
    p, direct = _choose_p(counts, h, w, rows_n, in_order)
    grid = np.zeros((mask.shape[0] * h, mask.shape[1] * w), np.float32)
    grid[:rows_n, :cols_n] = pm
    colmap = np.zeros(mask.shape[1] * w, np.int32)
    colmap[:cols_n] = cols
    per_row = np.maximum(-(-counts // p), 0 if not direct else 1)
    starts = np.concatenate([[0], np.cumsum(per_row)])
    nv = int(starts[-1]) + (0 if direct else 1)  # + the zero row
    values = np.zeros((nv, p, h, w), np.float32)
    colidx = np.zeros((nv, p, w), np.int32)
    for b in np.flatnonzero(counts):
        bc = np.flatnonzero(mask[b])
        tiles = grid[b * h : (b + 1) * h].reshape(h, -1, w)[:, bc].transpose(1, 0, 2)
        idx = colmap.reshape(-1, w)[bc]
        for k in range(int(per_row[b])):
            sl = slice(k * p, min((k + 1) * p, bc.size))
            n = sl.stop - sl.start
            values[starts[b] + k, :n] = tiles[sl]
            colidx[starts[b] + k, :n] = idx[sl]
    q = 1 if direct else max(1, int(per_row.max(initial=0)))
    vrow = np.full((rows_n, q), nv - 1, np.int32)
    vpos = np.zeros((rows_n, q), np.int32)
    where = np.empty(rows_n, np.int64)
    where[rows] = np.arange(rows_n)  # original row -> position in the rearranged order
    for m in range(rows_n):
        b, i = divmod(int(where[m]), h)
        k = int(per_row[b])
        vrow[m, :k] = starts[b] + np.arange(k)
        vpos[m, :] = i
    blocks = int(mask.sum())
    nonzero = int(np.count_nonzero(mat))
    return Packed(values, colidx, vrow, vpos, direct, blocks, nv * p, blocks * h * w - nonzero)


def _choose_p(counts: np.ndarray, h: int, w: int, rows: int, in_order: bool) -> tuple[int, bool]:
    """Blocks per virtual row, and whether the first pass can write the output directly, by the
    work of both passes per output column: padded block slots x H x W multiply-adds, H stores per
    virtual row, and in the second pass Q loads and adds per row plus its store (a scattered load
    and an add counted as two multiply-adds)."""
    top = max(1, int(counts.max(initial=0)))
    best = (float("inf"), top, False)
    if h == 1 and in_order:
        best = (counts.size * top * w, top, True)
    for p in sorted({int(c) for c in counts if c} | {top}):
        per_row = -(-counts // p)
        v = int(per_row.sum())
        cost = float(v * p * h * w + v * h + rows * (2 * max(1, int(per_row.max(initial=0))) + 1))
        if cost < best[0]:
            best = (cost, p, False)
    return best[1], best[2]
