"""The part of a tensor a loop's body touches, as `base + offset` per dimension.

cache_write and cache_read/pack stage a tensor's region in a local buffer at a loop X.  Each index
dimension must be affine in the variables of the loops inside X; the rest of the expression (outer
variables, constants) is the same for every access, so it becomes the region's base:

    inside j_o:  C[i_o * 6 + i_i, j_o * 16 + j_i]   ->   base (i_o * 6, j_o * 16), extent (6, 16)
"""

from __future__ import annotations

from dataclasses import dataclass

from kcomp.affine import affine, const, from_affine, interval, simplify
from kcomp.expr import Binary, BinaryOp, Expr, Var
from kcomp.loops.common import Resolver
from kcomp.printer import format_expr


@dataclass(frozen=True)
class Region:
    base: tuple[Expr, ...]  # per dimension, in outer variables
    extent: tuple[int, ...]  # per dimension
    lo: tuple[int, ...]  # smallest inner offset per dimension (folded into base)

    def offset(self, index: tuple[Expr, ...], inner: dict[Var, int]) -> tuple[Expr, ...]:
        """The position of `index` inside the region (0-based), in inner variables."""
        out = []
        for e, lo in zip(index, self.lo, strict=True):
            a = affine(e)
            assert a is not None
            part = {v: c for v, c in a.items() if v in inner}
            part[None] = a.get(None, 0) - lo
            out.append(simplify(from_affine(part)))
        return tuple(out)


def region(r: Resolver, tensor: str, indices: list[tuple[Expr, ...]], inner: dict[Var, int]) -> Region:
    """The region `indices` (all accesses of `tensor` inside the loop) cover; ScheduleError if it is
    not a box with a common base."""
    rank = len(indices[0])
    base: list[Expr] = []
    extent: list[int] = []
    lows: list[int] = []
    for d in range(rank):
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
        assert lo_d is not None and hi_d is not None
        base.append(simplify(Binary(BinaryOp.ADD, outer_expr, const(lo_d))))
        extent.append(hi_d - lo_d + 1)
        lows.append(lo_d)
    return Region(tuple(base), tuple(extent), tuple(lows))
