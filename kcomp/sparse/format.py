"""Sparse formats: what a `sparse(...)` declaration promises about a weight, and the checks that hold
a weight given at compile time to that promise.

    csr           any pattern, stored element by element (blocks of 1x1)
    bsrHxW        any pattern, stored as dense HxW blocks aligned to multiples of H and W
                  (a block with one nonzero is stored whole: the other H*W-1 are explicit zeros)
    groupG, group1xG   1xG blocks: runs of G consecutive columns of one row (fine-grained groups)
    nmN:M         N:M structured: at most N nonzeros in every aligned run of M columns of a row

A weight's rows are its first dimension and its columns the rest, flattened (a convolution's filters
`F[k, c, r, s]` are a k x c*r*s matrix).  The format fixes the block shape code generation uses and
the structure a pruned weight is given; any pattern fits csr, bsr and groups (with explicit zeros),
only N:M constrains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kcomp.errors import UsageError

_BSR = re.compile(r"bsr(\d+)x(\d+)$")
_GROUP = re.compile(r"group(?:1x)?(\d+)$")
_NM = re.compile(r"nm(\d+):(\d+)$")
FORMS = "csr, bsrHxW (bsr4x4), groupG or group1xG (group1x16), nmN:M (nm2:4)"


@dataclass(frozen=True)
class Format:
    kind: str  # csr | bsr | group | nm
    block: tuple[int, int] = (1, 1)  # rows x columns of a stored block
    n: int = 0  # N of N:M
    m: int = 0  # M of N:M

    @property
    def name(self) -> str:
        if self.kind == "bsr":
            return f"bsr{self.block[0]}x{self.block[1]}"
        if self.kind == "group":
            return f"group1x{self.block[1]}"
        if self.kind == "nm":
            return f"nm{self.n}:{self.m}"
        return "csr"

    def __str__(self) -> str:
        return self.name


def parse_format(text: str) -> Format:
    """`csr`, `bsr4x4`, `group16`/`group1x16`, `nm2:4` (UsageError for anything else)."""
    t = text.strip().lower().replace(" ", "")
    if t == "csr":
        return Format("csr")
    if m := _BSR.match(t):
        h, w = int(m[1]), int(m[2])
        if not (1 <= h <= 64 and 1 <= w <= 64):
            raise UsageError(f"sparse format {text}: block sides must be in [1, 64]")
        return Format("bsr", (h, w))
    if m := _GROUP.match(t):
        g = int(m[1])
        if not 1 <= g <= 64:
            raise UsageError(f"sparse format {text}: a group holds 1 to 64 columns")
        return Format("group", (1, g))
    if m := _NM.match(t):
        n, mm = int(m[1]), int(m[2])
        if not 1 <= n < mm <= 64:
            raise UsageError(f"sparse format {text}: N:M needs 1 <= N < M <= 64")
        return Format("nm", (1, 1), n, mm)
    raise UsageError(f"unknown sparse format '{text}' (formats: {FORMS})")


def as_matrix(values: np.ndarray) -> np.ndarray:
    """The weight as rows x (the other dimensions flattened)."""
    return values.reshape(values.shape[0], -1) if values.ndim != 2 else values


def validate(name: str, fmt: Format, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`values` as a float array of `shape`, or a UsageError that says what is wrong with it."""
    arr = np.asarray(values)
    if tuple(arr.shape) != tuple(shape):
        raise UsageError(f"weight {name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")
    if len(shape) < 2:
        raise UsageError(f"weight {name}: a sparse tensor needs at least 2 dimensions (rows x columns)")
    if arr.dtype.kind not in "fiub":
        raise UsageError(f"weight {name}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UsageError(f"weight {name}: {arr[at]} at {at}; a weight must be finite")
    if fmt.kind == "nm":
        mat = as_matrix(arr)
        cols = mat.shape[1]
        padded = np.zeros((mat.shape[0], -(-cols // fmt.m) * fmt.m), np.float32)
        padded[:, :cols] = mat
        counts = (padded.reshape(mat.shape[0], -1, fmt.m) != 0).sum(axis=2)
        if (counts > fmt.n).any():
            row, run = (int(i) for i in np.argwhere(counts > fmt.n)[0])
            raise UsageError(
                f"weight {name}: row {row} has {int(counts[row, run])} nonzeros in columns"
                f" {run * fmt.m}..{run * fmt.m + fmt.m - 1}; {fmt.name} allows {fmt.n} in every {fmt.m}"
            )
    return np.ascontiguousarray(arr)


def block_mask(mat: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Which aligned blocks of `block` shape hold a nonzero (a bool block-row x block-column grid)."""
    h, w = block
    rows, cols = mat.shape
    grid = np.zeros((-(-rows // h) * h, -(-cols // w) * w), bool)
    grid[:rows, :cols] = mat != 0
    return grid.reshape(grid.shape[0] // h, h, grid.shape[1] // w, w).any(axis=(1, 3))


def block_count(mat: np.ndarray, block: tuple[int, int]) -> int:
    return int(block_mask(mat, block).sum())
