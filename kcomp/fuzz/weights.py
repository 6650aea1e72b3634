"""Weights for a fuzz program's sparse inputs, derived from its text (so a failure replays and shrinks
with the program): magnitude-pruned at a drawn sparsity, sometimes fully dense or empty,
with empty rows and columns, or planted blocks whose rows and columns were permuted (what only the
rearrangement recovers)."""

from __future__ import annotations

import zlib

import numpy as np

from kcomp.api import load_module
from kcomp.check import check
from kcomp.sparse import Format, prune
from kcomp.sparse.format import as_matrix

FORMATS = ("csr", "bsr2x2", "bsr4x4", "bsr1x3", "bsr3x1", "group1x4", "group1x8", "nm2:4", "nm1:3")


def sparse_weights(source: str) -> dict[str, np.ndarray]:
    """A weight for every sparse input of the (only) kernel of `source`, seeded by its text: the
    schedules drawn for a program and its cases see the same packed shapes."""
    if "sparse(" not in source:
        return {}
    module = load_module(source)
    program = check(module, module.kernel(None), {})
    rng = np.random.default_rng(zlib.crc32(source.encode()))
    return {b.name: draw(rng, b.shape, program.sparse[b.name]) for b in program.inputs if b.name in program.sparse}


def draw(rng: np.random.Generator, shape: tuple[int, ...], fmt: Format) -> np.ndarray:
    dense = rng.uniform(0.1, 1.0, shape) * rng.choice((-1.0, 1.0), shape)
    kind = rng.choice(("pruned", "pruned", "pruned", "empty_lines", "planted", "dense", "empty"))
    if kind == "dense" and fmt.kind != "nm":
        return dense.astype(np.float32)
    if kind == "empty":
        return np.zeros(shape, np.float32)
    out = prune(dense, fmt, float(rng.choice((0.3, 0.6, 0.9))))
    mat = as_matrix(out)
    if kind == "empty_lines":
        mat[rng.integers(0, mat.shape[0], 2)] = 0.0
        mat[:, rng.integers(0, mat.shape[1], 2)] = 0.0
    elif kind == "planted" and fmt.kind != "nm":
        mat[:] = mat[rng.permutation(mat.shape[0])][:, rng.permutation(mat.shape[1])]
    return mat.reshape(shape).astype(np.float32)
