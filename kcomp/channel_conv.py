"""Default-scheduler rule for a direct convolution vectorized along its output channels, the other
form of kcomp.autoschedule's convolution rule (which vectorizes the output row, w).

    Y[n, k, h, w] += X[n, c, h*S + r - P, w*S + s - P] * F[k, c, r, s]

The row form wastes lanes when the output row is not a multiple of the vector (56 columns fill 3.5
16-lane vectors: an eighth of its multiply-adds are masked off) and reads a strided window (S > 1)
through a phase-split copy.  Here the register tile is a vector of output channels times a few
output columns that divide the row, so no tile has a remainder and the stride costs nothing:

  - per reduction step (c, r, s) one vector of F (16 channels, packed contiguous first:
    `pack F at P block D 16`, once per thread) and one broadcast of X per column of the tile, each
    a multiply-add into its own accumulator (the tile's columns times one vector);
  - X's rows for an output row are copied first with their halo (`cache_read`), so the broadcasts
    need no bounds test; the tile lives in registers (`cache_write`, its local buffer laid out
    channels last so each accumulator is one vector) and starts from zero (`fold_inits`);
  - threads share the (image, row) pairs; the copy-out transposes the tile back to the row layout.

Measured on a Zen 4 session, 64 -> 64 channels 3x3 on 56x56, 2 threads, interleaved medians: 1.17 ms
against 1.29 ms for the row form (4 images: 4.47 against 5.56 ms).  `prefer` picks the form.
"""

from __future__ import annotations

from typing import Any

from kcomp.affine import affine
from kcomp.expr import Load, free_vars, loads
from kcomp.loops import Loop, Store
from kcomp.printer import symbol_names
from kcomp.schedule import (
    CacheRead,
    CacheWrite,
    Fuse,
    Layout,
    Pack,
    Parallel,
    Reorder,
    Split,
    Unroll,
    Vectorize,
)

MIN_COLUMNS = 4  # a tile narrower than this reloads the F vector too often for its multiply-adds
ROW_FORM_EDGE = 1.03  # the channel form must fill this much more of its lanes to be preferred


def _fill(extent: int, width: int) -> float:
    """The share of the lanes doing work when `extent` iterations run in vectors of `width`."""
    return extent / (-(-extent // width) * width)


def _columns(w: Loop, budget: int) -> int:
    """The tile's columns: the widest divisor of the row the accumulator budget holds."""
    return max(d for d in range(1, min(budget, w.extent) + 1) if w.extent % d == 0)


def _weight(store: Store, x: Load, m: Loop) -> tuple[Load, int] | None:
    """The weight read and its dimension indexed by the output-channel loop alone."""
    f = next((ld for ld in loads(store.value) if ld.buffer is not store.buffer and ld is not x), None)
    if f is None:
        return None
    dim = next(
        (d for d, e in enumerate(f.index) if free_vars(e) == {m.var} and affine(e) == {m.var: 1}), None
    )
    return None if dim is None else (f, dim)


def prefer(found: tuple[Any, ...], store: Store, width: int, budget: int) -> bool:
    """Whether the channel form beats the row form on this convolution (kcomp.autoschedule's
    `_conv_like` roles): it needs a channel loop at least a vector long, an output-row loop outside
    the tile, a row with a divisor of at least MIN_COLUMNS columns, and more of its lanes filled (or
    a strided window, which the row form reads through a slower phase-split copy)."""
    outer, m, w, reductions, x = found
    if width <= 1 or not outer or m.extent < width or _weight(store, x, m) is None:
        return False
    # NOTE: X is staged per output row (its window's rows): with no such loop (a 1-D convolution)
    # the copy would be all of X, ahead of every tile
    spatial, reduced = {lp.var for lp in outer}, {lp.var for lp in reductions}
    if not any(free_vars(e) & spatial and free_vars(e) & reduced for e in x.index):
        return False
    if _columns(w, budget) < MIN_COLUMNS:
        return False
    stride = abs((affine(x.index[-1]) or {}).get(w.var, 1))
    channel_fill, row_fill = _fill(m.extent, width), _fill(w.extent, width)
    return channel_fill >= ROW_FORM_EDGE * row_fill or (stride > 1 and channel_fill >= 0.9)


def schedule_channel_conv(
    b: Any, found: tuple[Any, ...], store: Store, names: dict, loop: Any, width: int, cores: int, budget: int
) -> bool:
    """The rule above on the builder `b` (kcomp.autofuse.Builder) where `prefer` says so; `loop(raw)`
    names a loop the steps created.  False, with nothing kept, when it does not apply."""
    if not prefer(found, store, width, budget):
        return False
    outer, m, w, reductions, x = found
    weight = _weight(store, x, m)
    assert weight is not None
    f, fdim = weight
    cols = _columns(w, budget)
    nm, nw = names[m.var], names[w.var]
    before = (b.nest, b.steps)
    ok = b.try_step(Split(nm, width)) and (cols == w.extent or b.try_step(Split(nw, cols)))
    w_o, w_i = (loop(f"{nw}_o"), loop(f"{nw}_i")) if cols < w.extent else (None, nw)
    order = (*(names[lp.var] for lp in outer), loop(f"{nm}_o"), *([w_o] if w_o else []))
    order += (*(names[lp.var] for lp in reductions), w_i, loop(f"{nm}_i"))
    ok = ok and b.try_step(Reorder(order)) and b.try_step(Vectorize(loop(f"{nm}_i")))
    if not ok:
        b.nest, b.steps = before
        return False
    b.try_step(Unroll(w_i))
    xname = symbol_names(b.nest)[x.buffer]
    if b.try_step(CacheRead(xname, names[outer[-1].var])):
        b.try_step(Vectorize(loop(f"{xname}_local_{len(x.index) - 1}")))
    yname = symbol_names(b.nest)[store.buffer]
    tile_at = w_o or loop(f"{nm}_o")
    if b.try_step(CacheWrite(yname, tile_at)):
        dm = next(d for d, e in enumerate(store.index) if m.var in free_vars(e))
        order_local = (*(d for d in range(len(store.index)) if d != dm), dm)
        b.try_step(Layout(f"{yname}_local", order_local))
    fname = symbol_names(b.nest)[f.buffer]
    spatial = [(names[lp.var], lp.extent) for lp in outer]
    tile = [(loop(f"{nm}_o"), -(-m.extent // width)), *([(w_o, w.extent // cols)] if w_o else [])]
    _share(b, spatial, tile, fname, fdim, loop, width, cores)
    return True


def _share(
    b: Any, spatial: list, tile: list, fname: str, fdim: int, loop: Any, width: int, cores: int
) -> None:
    """Threads and F's packed copy.  Best: the (image, row) loops fused, split into one part per
    core, F packed in each part (once per thread).  Where the fused loop cannot be shared (its
    indices hide its independence) one of those loops is split instead.  Otherwise F is packed once
    ahead of everything and the threads share the first loop with an iteration per core."""
    before = (b.nest, b.steps)
    if cores > 1:
        fused, extent = spatial[0]
        for name, n in spatial[1:]:
            if not b.try_step(Fuse(fused, name)):
                break
            fused, extent = loop(f"{fused}_{name}"), extent * n
        if _per_thread(b, fused, extent, cores, fname, fdim, width, loop):
            return
        b.nest, b.steps = before
        for name, n in spatial:
            if _per_thread(b, name, n, cores, fname, fdim, width, loop):
                return
            b.nest, b.steps = before
    first, n = spatial[0]
    at = first if n == 1 else loop(f"{first}_o") if b.try_step(Split(first, n)) else None
    if at is not None:
        b.try_step(Pack(fname, at, fdim, width))
    if cores > 1:
        rest = [(loop(f"{first}_i"), n)] if at is not None and n > 1 else [spatial[0]]
        candidates = [*rest, *spatial[1:], *tile]
        any(n >= cores and b.try_step(Parallel(name)) for name, n in candidates)


def _per_thread(
    b: Any, name: str, extent: int, cores: int, fname: str, fdim: int, width: int, loop: Any
) -> bool:
    """`name` split into one part per core, shared by the threads, F packed in each part."""
    if extent < cores or extent % cores:
        return False
    part = name
    if extent > cores:
        if not b.try_step(Split(name, extent // cores)):
            return False
        part = loop(f"{name}_o")
    return b.try_step(Parallel(part)) and b.try_step(Pack(fname, part, fdim, width))
