"""cache_read and pack: copy the region of an input a loop reads into a contiguous local buffer.

    for k_o:                                 pack B at k_o block 1 16       for k_o:
      for i_o: for j_o: for k_i: for j_i:                                     alloc B_pack: f32[64, 256, 16]
        ... B[k_o * 256 + k_i, j_o * 16 + j_i]                                for B_pack_0, B_pack_1, B_pack_2:
                                                                                B_pack[..] = B[k_o * 256 + B_pack_1, B_pack_0 * 16 + B_pack_2]
                                                                              for i_o: ... B_pack[j_o, k_i, j_i]

`cache_read` keeps the region's dimension order; `pack ... block D F` blocks region dimension D by
F and makes the block number the outermost dimension and the position in the block the innermost,
so a micro-kernel walks the panel contiguously.  `cache_read ... stride D F` splits dimension D into
its F phases, [.., position % F, position / F, ..]: a window read at stride F (`X[2*w + s]`) then
reads one phase contiguously along w (`X_local[s % 2, w + s // 2]`).  Positions of the blocked dimension past the region
(the last, partial block) are filled with zeros, positions past the tensor's bounds with the pad
value of the loop's reads (`pad=-inf` of a max pool; 0 by default).  Legal when the
tensor is not written inside the loop (the copy would go stale).
"""

from __future__ import annotations

from kcomp.affine import affine, const, from_affine, interval, simplify
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Scope, Select, Var, loads
from kcomp.loops import Alloc, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import Resolver, body_exprs, extents, rename_buffer, replace_stmt
from kcomp.loops.dependence import accesses
from kcomp.passes.region import Region, region
from kcomp.schedule import CacheRead, Pack, format_step


def cache_read(nest: LoopNest, step: CacheRead | Pack) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.at)
    buf = r.buffer(step.tensor)
    written, read = accesses(loop.body)
    if buf in written:
        raise r.error(f"{step.tensor} is written inside {step.at}; only tensors read there can be staged")
    if buf not in read:
        raise r.error(f"{step.tensor} is not read inside loop {step.at}")
    inner = {s.var: s.extent for s in walk_stmts(loop.body) if isinstance(s, Loop)}
    in_bounds = all(ld.pad is None for e in body_exprs(loop.body) for ld in loads(e) if ld.buffer is buf)
    reg = region(r, step.tensor, read[buf], inner, gathers=in_bounds)
    block = phase = None
    if isinstance(step, Pack):
        if not 0 <= step.dim < len(reg.extent):
            raise r.error(f"{step.tensor} has {len(reg.extent)} dimensions; there is no dimension {step.dim}")
        block = (step.dim, min(step.factor, reg.extent[step.dim]))
    elif step.stride > 1:
        if not 0 <= step.dim < len(reg.extent):
            raise r.error(f"{step.tensor} has {len(reg.extent)} dimensions; there is no dimension {step.dim}")
        phase = (step.dim, step.stride)
    shape = _phased_shape(reg.extent, phase) if phase else _packed_shape(reg.extent, block)
    staged = Buffer(f"{r.name(buf)}_{'pack' if block else 'local'}", buf.dtype, shape, Scope.LOCAL)

    def remap(idx: tuple[Expr, ...]) -> tuple[Expr, ...]:
        off = reg.offset(idx, inner)
        return _phased_index(off, phase, inner) if phase else _packed_index(off, block, inner)

    body = rename_buffer(loop.body, buf, staged, remap, in_bounds=True)  # the region is the reads' hull
    outer = {v: n for v, n in extents(nest).items() if v not in inner}
    fill = _fill(reg, buf, staged, block, outer, _pad(r, buf, loop), phase)
    return replace_stmt(nest, loop, Loop(loop.var, loop.extent, loop.kind, (Alloc(staged, (fill, *body)),)))


def _pad(r: Resolver, buf: Buffer, loop: Loop) -> float | int:
    """The value the copy reads outside `buf`: the pad of the loop's reads of it (0 if none has one)."""
    pads = {
        ld.pad for e in body_exprs(loop.body) for ld in loads(e) if ld.buffer is buf and ld.pad is not None
    }
    if len(pads) > 1:
        shown = ", ".join(sorted(map(str, pads)))
        raise r.error(
            f"{r.name(buf)} is read with different pad values ({shown}); cannot stage one copy of it"
        )
    return pads.pop() if pads else (0 if buf.dtype.is_int else 0.0)


def _packed_shape(ext: tuple[int, ...], block: tuple[int, int] | None) -> tuple[int, ...]:
    if block is None:
        return ext
    d, f = block
    rest = [n for k, n in enumerate(ext) if k != d]
    return (-(-ext[d] // f), *rest, f)


def _packed_index(
    off: tuple[Expr, ...], block: tuple[int, int] | None, inner: dict[Var, int]
) -> tuple[Expr, ...]:
    if block is None:
        return off
    d, f = block
    q, rem = _divmod(off[d], f, inner)
    rest = [e for k, e in enumerate(off) if k != d]
    return (q, *rest, rem)


def _phased_shape(ext: tuple[int, ...], phase: tuple[int, int]) -> tuple[int, ...]:
    d, f = phase
    return (*ext[:d], f, -(-ext[d] // f), *ext[d + 1 :])


def _phased_index(off: tuple[Expr, ...], phase: tuple[int, int], inner: dict[Var, int]) -> tuple[Expr, ...]:
    d, f = phase
    q, rem = _divmod(off[d], f, inner)
    return (*off[:d], rem, q, *off[d + 1 :])


def _divmod(e: Expr, f: int, inner: dict[Var, int]) -> tuple[Expr, Expr]:
    """(e // f, e % f), exact and simple when e = f*q + r with r known to lie in [0, f); otherwise
    the multiples of f still leave the division exactly (`(2*w + s) // 2 = w + s // 2`), so a
    loop variable with a coefficient divisible by f indexes the quotient alone."""
    a = affine(e)
    if a is not None:
        q = {v: c // f for v, c in a.items() if v is not None and c % f == 0}
        rem = {v: c for v, c in a.items() if v is not None and c % f != 0}
        rem[None] = a.get(None, 0)
        span = interval(from_affine(rem), inner)
        if span is not None and span[0] >= 0 and span[1] < f:
            return simplify(from_affine({**q, None: 0})), simplify(from_affine(rem))
        if q:
            rest = from_affine(rem)
            whole = Binary(
                BinaryOp.ADD, from_affine({**q, None: 0}), Binary(BinaryOp.FLOORDIV, rest, const(f))
            )
            return simplify(whole), simplify(Binary(BinaryOp.MOD, rest, const(f)))
    return (
        simplify(Binary(BinaryOp.FLOORDIV, e, const(f))),
        simplify(Binary(BinaryOp.MOD, e, const(f))),
    )


def _fill(
    reg: Region,
    buf: Buffer,
    staged: Buffer,
    block: tuple[int, int] | None,
    outer: dict[Var, int],
    pad: float | int,
    phase: tuple[int, int] | None = None,
) -> Stmt:
    """Loops over the staged buffer in its own order, each element read from `buf` (`pad` outside)."""
    vars_ = [Var(f"{staged.name}_{k}") for k in range(len(staged.shape))]
    if phase is not None:
        d, f = phase  # staged [.., p, q, ..] holds region position q * f + p
        position = Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, vars_[d + 1], const(f)), vars_[d])
        coords: list[Expr] = [*vars_[:d], position, *vars_[d + 2 :]]
    elif block is None:
        coords = list(vars_)
    else:
        d, f = block
        rest = iter(vars_[1:-1])
        coords = [
            Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, vars_[0], const(f)), vars_[-1])
            if k == d
            else next(rest)
            for k in range(len(reg.extent))
        ]
    src = tuple(simplify(Binary(BinaryOp.ADD, b, c)) for b, c in zip(reg.base, coords, strict=True))
    ranges = {**outer, **dict(zip(vars_, staged.shape, strict=True))}
    needs_pad = False
    for k, (e, n) in enumerate(zip(src, buf.shape, strict=True)):
        span = interval(e, ranges)
        beyond_region = (
            block is not None and k == block[0] and staged.shape[0] * block[1] > reg.extent[k]
        ) or (phase is not None and k == phase[0] and phase[1] * staged.shape[k + 1] > reg.extent[k])
        if span is None or span[0] < 0 or span[1] >= n or beyond_region:
            needs_pad = True
    value = Load(buf, src, pad) if needs_pad else Load(buf, src)
    if block is not None and staged.shape[0] * block[1] > reg.extent[block[0]]:
        # the last block's slots past the region hold zeros, not the neighbours' data
        inside = Binary(BinaryOp.LT, coords[block[0]], const(reg.extent[block[0]]))
        value = Select(inside, value, Const(0 if buf.dtype.is_int else 0.0, buf.dtype))
    stmt: Stmt = Store(staged, tuple(vars_), value)
    order = list(zip(vars_, staged.shape, strict=True))
    if phase is not None:  # NOTE: the phase innermost, so the copy reads the source in its own order
        d = phase[0]
        order[d], order[d + 1] = order[d + 1], order[d]
    for v, n in reversed(order):
        stmt = Loop(v, n, LoopKind.SERIAL, (stmt,))
    return stmt
