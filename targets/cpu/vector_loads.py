"""Vector loads that are not one contiguous access: a bounds-checked (padded) load contiguous in the
lanes, and a stride-2 load (every other element: one phase of a pooling window).  Functions of the
`VectorLoop` emitting the chunk (`self`), kept apart from its module for size."""

from __future__ import annotations

import math

from kcomp.affine import affine, simplify
from kcomp.dtypes import DType
from kcomp.expr import Load, free_vars, substitute
from kcomp.targets.cfamily.cexpr import emit_const
from kcomp.targets.cpu.vector_parts import V, lane_coef


def padded_load(self, e: Load) -> V | None:  # type: ignore[no-untyped-def]
    """A bounds-checked load that is contiguous in the lanes: one masked load of the lanes inside
    the buffer, the pad value elsewhere (the lane-by-lane form only where the start is negative)."""
    buf = e.buffer
    if e.pad is None or buf.dtype not in (DType.F32, DType.I32) or not e.index:
        return None
    *rest, last = e.index
    if any(self.v in free_vars(i) for i in rest) or lane_coef(last, self.v) != 1:
        return None
    s = "f32" if buf.dtype is DType.F32 else "i32"
    x = self.em.expr
    start = x.index(simplify(substitute(last, {self.v: self.base})))
    at = x.flat(buf, (*rest, simplify(substitute(last, {self.v: self.base}))))
    first, nv = self.em.names.fresh("kc_s"), self.em.names.fresh("kc_nv")
    limit = f"if ({self.n} < {nv}) {nv} = {self.n}; " if self.n is not None else ""
    inside = " && ".join(
        [f"{first} >= 0", f"{nv} > 0"]
        + [f"({x.index(i)}) >= 0 && ({x.index(i)}) < {n}" for i, n in zip(rest, buf.shape, strict=False)]
    )
    pad = self.vec(V(emit_const(e.pad, buf.dtype), False, buf.dtype), buf.dtype).text
    start_form = affine(simplify(substitute(last, {self.v: self.base})))
    # NOTE: loop variables are never negative, so an affine start with no negative term is not
    # either: the lane-by-lane path for a start left of the buffer is then dead code.
    never_negative = start_form is not None and all(c >= 0 for c in start_form.values())
    left = "" if never_negative else f"({first} < 0) ? {self.lanewise(e).text} : "
    ptr = f"&{self.em.names(buf)}[{at}]"
    partial = f"kc_loadn_{s}({ptr}, {nv})"  # NOTE: fills the lanes past the buffer with zeros
    if e.pad != 0 or math.copysign(1.0, e.pad) < 0:  # ... so any other pad is blended in
        mask = f"kc_lanes_below({nv})"
        partial = f"(kc_v{s})(((kc_vi32){partial} & {mask}) | ((kc_vi32){pad} & ~{mask}))"
    text = (
        f"({{ int64_t {first} = {start}; int64_t {nv} = {buf.shape[-1]} - {first}; {limit}"
        f"{left}({inside}) ? ({nv} >= {self.w} ? kc_load_{s}({ptr}) : {partial})"
        f" : {pad}; }})"
    )
    return V(text, True, buf.dtype)


def stride2_load(self, e: Load) -> V | None:  # type: ignore[no-untyped-def]
    """A load whose lanes are every other element along the last dimension (a stride-2 window,
    padded or not): where the chunk's whole span lies inside the buffer, two contiguous loads
    and a shuffle (`kc_load2`); elsewhere, and in a partial chunk, lane by lane."""
    buf = e.buffer
    if self.n is not None or self.w < 2 or buf.dtype not in (DType.F32, DType.I32) or not e.index:
        return None
    *rest, last = e.index
    if any(self.v in free_vars(i) for i in rest) or lane_coef(last, self.v) != 2:
        return None
    x = self.em.expr
    start = simplify(substitute(last, {self.v: self.base}))
    first = self.em.names.fresh("kc_s")
    inside = [f"{first} >= 0", f"{first} + {2 * self.w - 1} < {buf.shape[-1]}"]
    inside += [f"({x.index(i)}) >= 0 && ({x.index(i)}) < {n}" for i, n in zip(rest, buf.shape, strict=False)]
    ptr = f"&{self.em.names(buf)}[{x.flat(buf, (*rest, start))}]"
    s = "f32" if buf.dtype is DType.F32 else "i32"
    text = (
        f"({{ int64_t {first} = {x.index(start)}; ({' && '.join(inside)}) ? kc_load2_{s}({ptr})"
        f" : {self.lanewise(e).text}; }})"
    )
    return V(text, True, buf.dtype.compute)
