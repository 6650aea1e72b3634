"""The part of a tensor a loop's body touches, as `base + offset` per dimension.

cache_write and cache_read/pack stage a tensor's region in a local buffer at a loop X.  Each index
dimension must be affine in the variables of the loops inside X; the rest of the expression (outer
variables, constants) is the same for every access, so it becomes the region's base:

    inside j_o:  C[i_o * 6 + i_i, j_o * 16 + j_i]   ->   base (i_o * 6, j_o * 16), extent (6, 16)

With `strided`, a dimension every access walks in steps of s (a phase of a transposed convolution
writes `Y[.., 2 * w + 1]`) keeps one slot per element touched: stride s, and the local buffer is
dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kcomp.affine import affine, const, from_affine, interval, simplify
from kcomp.expr import Binary, BinaryOp, Expr, Var
from kcomp.loops.common import Resolver
from kcomp.printer import format_expr


@dataclass(frozen=True)
class Region:
    base: tuple[Expr, ...]  # per dimension, in outer variables
    extent: tuple[int, ...]  # per dimension
    lo: tuple[int, ...]  # smallest inner offset per dimension (folded into base)
    stride: tuple[int, ...] = field(default=())  # per dimension (empty: all 1)
    whole: tuple[bool, ...] = field(default=())  # per dimension: gathered, so the whole dimension

    def step(self, d: int) -> int:
        return self.stride[d] if self.stride else 1

    def offset(self, index: tuple[Expr, ...], inner: dict[Var, int]) -> tuple[Expr, ...]:
        """The position of `index` inside the region (0-based), in inner variables."""
        out = []
        for d, (e, lo) in enumerate(zip(index, self.lo, strict=True)):
            if self.whole and self.whole[d]:
                out.append(e)  # the region starts at 0: a gathered index is its own offset
                continue
            a = affine(e)
            assert a is not None
            g = self.step(d)
            part = {v: c // g for v, c in a.items() if v in inner}
            part[None] = (a.get(None, 0) - lo) // g
            out.append(simplify(from_affine(part)))
        return tuple(out)


def region(
    r: Resolver,
    tensor: str,
    indices: list[tuple[Expr, ...]],
    inner: dict[Var, int],
    strided: bool = False,
    gathers: bool = False,
) -> Region:
    """The region `indices` (all accesses of `tensor` inside the loop) cover; ScheduleError if it is
    not a box with a common base.  `gathers`: the accesses are known in bounds (no pad), so a
    dimension with a data-dependent index is staged whole."""
    rank = len(indices[0])
    base: list[Expr] = []
    extent: list[int] = []
    lows: list[int] = []
    strides: list[int] = []
    whole: list[bool] = []
    for d in range(rank):
        if gathers and any(affine(idx[d]) is None for idx in indices):
            # NOTE: a gathered dimension (`X[col[v, p], n]`): its reads may land anywhere in it
            base.append(const(0))
            extent.append(r.buffer(tensor).shape[d])
            lows.append(0)
            strides.append(1)
            whole.append(True)
            continue
        whole.append(False)
        g = 0
        outer_key = None
        lo_d, hi_d = None, None
        outer_expr: Expr = const(0)
        for idx in indices:
            a = affine(idx[d])
            if a is None:
                raise r.error(
                    f"index {format_expr(idx[d])} of {tensor} is not affine; cannot stage its region"
                )
            outer = {v: c for v, c in a.items() if v is not None and v not in inner}
            inner_part = {v: c for v, c in a.items() if v in inner}
            key = tuple(sorted((v.uid, c) for v, c in outer.items()))
            if outer_key is not None and key != outer_key:
                raise r.error(
                    f"accesses of {tensor} inside the loop do not share one base; cannot stage them"
                )
            outer_key = key
            outer_expr = from_affine({**outer, None: 0})
            span = interval(from_affine({**inner_part, None: a.get(None, 0)}), inner)
            assert span is not None
            lo_d = span[0] if lo_d is None else min(lo_d, span[0])
            hi_d = span[1] if hi_d is None else max(hi_d, span[1])
            for c in inner_part.values():
                g = math.gcd(g, c)
        assert lo_d is not None and hi_d is not None
        g = g if strided and g > 1 and _aligned(indices, d, inner, lo_d, g) else 1
        base.append(simplify(Binary(BinaryOp.ADD, outer_expr, const(lo_d))))
        extent.append((hi_d - lo_d) // g + 1)
        lows.append(lo_d)
        strides.append(g)
    return Region(
        tuple(base), tuple(extent), tuple(lows), tuple(strides) if strided else (), tuple(whole) if any(whole) else ()
    )


def _aligned(indices: list[tuple[Expr, ...]], d: int, inner: dict[Var, int], lo: int, g: int) -> bool:
    """Whether every access of dimension d lies on the lattice lo + g*n (inner coefficients and
    constant offsets all multiples of g)."""
    for idx in indices:
        a = affine(idx[d]) or {}
        if any(c % g for v, c in a.items() if v in inner) or (a.get(None, 0) - lo) % g:
            return False
    return True
