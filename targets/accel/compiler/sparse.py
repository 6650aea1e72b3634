"""Sparse weights on the accelerator: a contraction operand whose values the compiler holds (a sparse
weight given at compile time, `LoopNest.constants`) has tiles that are all zero, and a step that
multiplies one is skipped with its DMA loads: only the nonzero weight tiles are moved and multiplied.

Within a live tile, the matrix unit streams only the rows of A that hold a nonzero (runs of rows:
`runs`), all of them under the one weight preload of their B chunk, and the DMA moves only those
rows, and B's rows only for chunks some A tile reading them multiplies; the chunk a C tile's first mma overwrites is loaded and streamed whole, so every accumulator
row starts from zero.  The first step of each C tile always runs (its overwriting mma zeroes the accumulator, or its DMA
brings the initial value), so an all-zero block row still stores its zeros or its bias.  The mapping
rules see the same thing through `live_fraction`: the share of (TM x TK) operand tiles that hold a
nonzero at given tile sizes, which scales the estimated work, so a sparse weight gets tiles the size
of its blocks instead of the dense optimum that would cover every block with some nonzero.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcomp.targets.accel.compiler.match import Contraction
from kcomp.targets.accel.compiler.nest import Access, Axis

MAX_VIEWS = 256  # batch x slice combinations the mapping estimate looks at (beyond: no discount)


def _flat(constants: Mapping[str, Any], access: Access) -> np.ndarray | None:
    values = constants.get(access.buffer.name)
    return None if values is None else np.asarray(values).reshape(-1)


def zero_tile(
    constants: Mapping[str, Any], access: Access, off: int, rows: tuple[int, int], cols: tuple[int, int]
) -> bool:
    """Whether `access`'s tile at flat offset `off` ((count, stride) of rows and of columns) is all
    zero in the held values (False when they are not held)."""
    live = live_rows(constants, access, off, rows, cols)
    return live is not None and not live.any()


def live_rows(
    constants: Mapping[str, Any], access: Access, off: int, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray | None:
    """Per row of `access`'s tile (as in `zero_tile`), whether it holds a nonzero (None: not held)."""
    flat = _flat(constants, access)
    if flat is None:
        return None
    idx = off + np.arange(rows[0])[:, None] * rows[1] + np.arange(cols[0])[None, :] * cols[1]
    inside = (idx >= 0) & (idx < flat.size)
    return (np.where(inside, flat[np.clip(idx, 0, flat.size - 1)], 0) != 0).any(axis=1)


def runs(live: np.ndarray, gap: int) -> tuple[tuple[int, int], ...]:
    """(first, count) of the runs of True in `live`, runs closer than `gap` rows merged: a matrix-unit
    pass streams the zero rows between them instead of starting another instruction."""
    out: list[list[int]] = []
    for r in np.flatnonzero(live).tolist():
        if out and r - (out[-1][0] + out[-1][1]) < gap:
            out[-1][1] = r - out[-1][0] + 1
        else:
            out.append([r, 1])
    return tuple((a, n) for a, n in out)


def operand_view(g: Contraction, constants: Mapping[str, Any], vals: dict[Axis, int]) -> np.ndarray | None:
    """The held values of A as its i x k matrix at batch and slice values `vals` (None: not held)."""
    flat = _flat(constants, g.A)
    if flat is None:
        return None
    m, k = g.extent("i"), g.extent("k")
    idx = g.A.at(vals) + np.arange(m)[:, None] * g.A.stride(g.i) + np.arange(k)[None, :] * g.A.stride(g.k)
    return np.where((idx >= 0) & (idx < flat.size), flat[np.clip(idx, 0, flat.size - 1)], 0.0)


@dataclass(frozen=True)
class Liveness:
    """Shares of A that are not all zero at the granularities codegen skips at: `steps` (TM x TK tiles:
    a step), `chunks` (TM x dim: a weight preload and its rows of B) and `rows` (1 x dim: a streamed
    row and its DMA) and `tiles` (dim x dim: what an output-stationary array streams).  DENSE when A's
    values are not held."""

    steps: float = 1.0
    chunks: float = 1.0
    rows: float = 1.0
    tiles: float = 1.0  # dim x dim: an output-stationary array's streamed block

    @classmethod
    def of(cls, g: Contraction, constants: Mapping[str, Any], tm: int, tk: int, dim: int) -> Liveness:
        if g.A.buffer.name not in constants:
            return DENSE
        share = functools.partial(live_fraction, g, constants)
        depth = min(dim, tk)
        return cls(share(tm, tk), share(tm, depth), share(1, depth), share(min(dim, tm), depth))


DENSE = Liveness()


def live_fraction(g: Contraction, constants: Mapping[str, Any], tm: int, tk: int) -> float:
    """The share of A's TM x TK tiles holding a nonzero (1.0 when A's values are not held)."""
    if g.A.buffer.name not in constants:
        return 1.0
    axes = (*g.batch, *g.slices)
    combos = math.prod(a.extent for a in axes)
    if combos > MAX_VIEWS:
        return 1.0
    live = total = 0
    for values in itertools.product(*(range(a.extent) for a in axes)):
        view = operand_view(g, constants, dict(zip(axes, values, strict=True)))
        assert view is not None
        m, k = view.shape
        grid = np.zeros((-(-m // tm) * tm, -(-k // tk) * tk), bool)
        grid[:m, :k] = view != 0
        tiles = grid.reshape(grid.shape[0] // tm, tm, grid.shape[1] // tk, tk).any(axis=(1, 3))
        live += int(tiles.sum())
        total += tiles.size
    return live / total if total else 1.0
