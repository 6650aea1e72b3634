"""Sparse weights: formats, pruning, rearrangement and the rewrite to packed dense code (docs/sparse.md)."""

from kcomp.sparse.format import Format, block_count, parse_format, validate
from kcomp.sparse.prune import prune
from kcomp.sparse.rearrange import Rearrangement, rearrange
from kcomp.sparse.rewrite import SparseReport, sparsify

__all__ = [
    "Format",
    "Rearrangement",
    "SparseReport",
    "block_count",
    "parse_format",
    "prune",
    "rearrange",
    "sparsify",
    "validate",
]
