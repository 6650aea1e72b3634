"""cache_write: a tensor's tile is accumulated in a local buffer inside a loop and written back once.

    for j_o:                                   cache_write C at j_o      for j_o:
      for k: for i_i: for j_i:                                             alloc C_local: f32[6, 16] local
        C[b + i_i, c + j_i] = C[..] + A*B                                    for i_i, j_i: C_local[i_i, j_i] = C[b + i_i, c + j_i]
                                                                             for k: for i_i: for j_i: C_local[i_i, j_i] = C_local[..] + A*B
                                                                             for i_i, j_i: C[b + i_i, c + j_i] = C_local[i_i, j_i]

The tile is the region of the tensor the loop's body writes (`passes/region.py`); every access
inside must be at one index.  The copy loops take the kinds of the loops that span each tile
dimension (unrolled, vectorized), so a register tile stays in registers: schedule `unroll` and
`vectorize` before `cache_write`.  Copies are guarded where the tile may stick out of the tensor.
A small local tile whose accesses become constant after unrolling is kept in registers by the emitter.
Refused inside (or at) a vector loop or a parallel reduction whose iterations would then share the
tile's elements (`check_kinds`).
"""

from __future__ import annotations

from kcomp.affine import affine, const, interval
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Scope, Var, all_of, conjuncts, rewrite
from kcomp.expr import loads as loads_of
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.loops.common import Resolver, enclosing, extents, map_exprs, rename_buffer, replace_stmt
from kcomp.loops.dependence import accesses, carried, reduction_updates
from kcomp.passes.region import Region, region
from kcomp.printer import format_expr
from kcomp.schedule import CacheWrite, format_step


def cache_write(nest: LoopNest, step: CacheWrite) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.at)
    buf = r.buffer(step.tensor)
    written, read = accesses(loop.body)
    if buf not in written:
        raise r.error(f"{step.tensor} is not written inside loop {step.at}")
    indices = written[buf] + read.get(buf, [])
    keys = {tuple(format_expr(e, typed=True) for e in i) for i in indices}
    if len(keys) > 1:
        raise r.error(
            f"{step.tensor} is accessed at more than one index inside {step.at}; cannot keep one tile of it"
        )
    inner = {s.var: s.extent for s in walk_stmts(loop.body) if isinstance(s, Loop)}
    reg = region(r, step.tensor, indices, inner, strided=True)
    local = Buffer(f"{r.name(buf)}_local", buf.dtype, reg.extent, Scope.LOCAL)
    body = rename_buffer(loop.body, buf, local, lambda idx: reg.offset(idx, inner))
    kinds = _kinds(loop, indices[0], inner, reg)
    outer = {v: n for v, n in extents(nest).items() if v not in inner}
    body = drop_tile_guards(body, local, indices[0], buf.shape, {**outer, **inner})
    store = copy_loops(reg, buf, local, kinds, outer, to_local=False)
    init = _initialiser(r, nest, loop, buf, reg, outer) if step.init else None
    if init is not None:
        fill = Store(local, tuple(Var(f"{local.name}_{d}") for d in range(len(reg.extent))), init[1])
        load = _nest(list(fill.index), reg.extent, kinds, fill)  # type: ignore[arg-type]
        nest = replace_stmt(nest, init[0], ())
    else:
        load = copy_loops(reg, buf, local, kinds, outer, to_local=True)
    new = Loop(loop.var, loop.extent, loop.kind, (Alloc(local, (load, *body, store)),))
    out = replace_stmt(nest, loop, new)
    check_kinds(r, out, new)
    return out


def _initialiser(
    r: Resolver, nest: LoopNest, at: Loop, buf: Buffer, reg: Region, outer: dict[Var, int]
) -> tuple[Stmt, Expr]:
    """`cache_write T at L init`: the nest that fills all of T with one constant just before the
    nest holding L, and that constant, when the tiles of L's iterations are disjoint and cover T
    with every access of T in that nest inside L.  Each tile then starts from the constant in
    registers, and the fill is dead: a reduction's initialisation costs no pass over memory."""
    path = enclosing(nest, at)
    loops_ = [s for s in path if isinstance(s, Loop)]
    if any(isinstance(s, Guard) for s in path):
        raise r.error("init: a guard encloses the loop, so its tiles may not cover the tensor")
    root = loops_[0] if loops_ else at
    depth = next((d for d, s in enumerate(path) if s is root), len(path))
    parent = path[depth - 1].body if depth > 0 else nest.body
    k = next(n for n, s in enumerate(parent) if s is root)
    fill = parent[k - 1] if k > 0 else None
    inner = list(walk_stmts((fill,))) if isinstance(fill, Loop) else []
    writes = [s for s in inner if isinstance(s, Store)]
    points = 1
    for s in inner:
        points *= s.extent if isinstance(s, Loop) else 1
    if (
        not writes
        or any(isinstance(s, Guard | Alloc) for s in inner)
        or any(w.buffer is not buf or not isinstance(w.value, Const) or w.value != writes[0].value for w in writes)
        or points != buf.size
    ):
        raise r.error(f"init: the nest before it does not fill all of {r.name(buf)} with one constant")
    inside = sum(1 for _ in _touches(at.body, buf))
    if inside != sum(1 for _ in _touches((root,), buf)):
        raise r.error(f"init: {r.name(buf)} is accessed outside the loop in its nest")
    tiles = 1
    for s in (*loops_, at):
        tiles *= s.extent
    size = 1
    for n in reg.extent:
        size *= n
    if (reg.stride and any(g != 1 for g in reg.stride)) or tiles * size != buf.size:
        raise r.error(f"init: the tiles of {r.name(at.var)} do not cover {r.name(buf)} once")
    ranges = {**outer, at.var: at.extent}
    for d, (b, n) in enumerate(zip(reg.base, reg.extent, strict=True)):
        span, a = interval(b, ranges), affine(b)
        if span is None or a is None or span[0] < 0 or span[1] + n > buf.shape[d]:
            raise r.error(f"init: a tile of {r.name(buf)} may leave the tensor")
        radix = n  # the tiles along d are disjoint: coefficients grow as a mixed radix
        for c, v in sorted(((abs(c), v) for v, c in a.items() if v is not None), key=lambda t: t[0]):
            if c < radix:
                raise r.error(f"init: the tiles of {r.name(buf)} overlap along dimension {d}")
            radix = c * ranges[v]
    return fill, writes[0].value


def _touches(body: tuple[Stmt, ...], buf: Buffer):
    for s in walk_stmts(body):
        if isinstance(s, Store) and s.buffer is buf:
            yield s
        for e in ((*s.index, s.value)) if isinstance(s, Store) else ((s.cond,) if isinstance(s, Guard) else ()):
            yield from (ld for ld in loads_of(e) if ld.buffer is buf)


def check_kinds(r: Resolver, nest: LoopNest, at: Loop) -> None:
    """The copies run in every iteration of `at` and of the loops around it; a parallel or vector
    loop among them must keep iterations that are independent (parallel: or updates `x = x + v`
    only, `parallel LOOP reduce`).  A reduction axis run in SIMD lanes or by threads is not, once
    each iteration copies the tile in and out."""
    for s in (*enclosing(nest, at), at):
        if not isinstance(s, Loop) or s.kind not in (LoopKind.PARALLEL, LoopKind.VECTOR):
            continue
        why = carried(s)
        if why is not None and not (s.kind is LoopKind.PARALLEL and reduction_updates(s)):
            raise r.error(
                f"loop {r.name(s.var)} is {s.kind.value}, and with the tile copied in and out in each"
                f" iteration {why}; stage the tile outside it"
            )


def drop_tile_guards(
    body: tuple[Stmt, ...],
    local: Buffer,
    index: tuple[Expr, ...],
    shape: tuple[int, ...],
    ranges: dict[Var, int],
) -> tuple[Stmt, ...]:
    """Remove guard conditions that only say "this tile point lies inside the tensor" from statements
    that write nothing but the local tile.

    Such a point's tile slot is never copied back (the write-back keeps its guard), so computing it
    is harmless once every read is in bounds: reads that could leave their buffer are clamped to its
    edge (a valid, unused value).  A condition goes only when every point inside the tensor meets it
    (`index[d] + k < n` with `n - k >= shape[d]`); others stay: a reduction's remainder, or a split
    guard of a loop shorter than the tensor's dimension (after a peel), whose extra points lie
    inside the tensor and belong to another tile.
    This keeps remainder tests out of the innermost loops of a register tile.
    """

    def visit(s: Stmt) -> Stmt | tuple[Stmt, ...] | None:
        if not isinstance(s, Guard) or any(
            w.buffer is not local for w in walk_stmts(s.body) if isinstance(w, Store)
        ):
            return None
        keep = [c for c in conjuncts(s.cond) if not _implied_by_bounds(c, index, shape)]
        if len(keep) == len(conjuncts(s.cond)):
            return None
        clamped = map_exprs(s.body, lambda e: clamp_loads(e, ranges))
        if not keep:
            return clamped
        return Guard(all_of(keep), clamped)

    return map_stmts(body, visit)


def _implied_by_bounds(cond: Expr, index: tuple[Expr, ...], shape: tuple[int, ...]) -> bool:
    """Whether `cond` holds wherever `index` lies inside `shape`: it reads `index[d] + k < n`, n - k >= shape[d]."""
    if not (isinstance(cond, Binary) and cond.op is BinaryOp.LT):
        return False
    lhs, rhs = affine(cond.lhs), affine(cond.rhs)
    if lhs is None or rhs is None or any(v is not None for v in rhs):
        return False
    n = rhs.get(None, 0) - lhs.get(None, 0)  # the condition: L < n, L the variable part
    lin = {v: c for v, c in lhs.items() if v is not None}
    for e, size in zip(index, shape, strict=True):
        a = affine(e)
        if a is None or not lin:
            continue
        # NOTE: the index is g*L + k (g > 1 on a strided tile, a transposed convolution's phase);
        # inside the tensor g*L + k < size, so L < ceil((size - k) / g)
        v0 = next(iter(lin))
        g = a.get(v0, 0) // lin[v0] if lin[v0] else 0
        if g < 1 or {v: c for v, c in a.items() if v is not None} != {v: g * c for v, c in lin.items()}:
            continue
        if -(-(size - a.get(None, 0)) // g) <= n:
            return True
    return False


def clamp_loads(e: Expr, ranges: dict[Var, int]) -> Expr:
    """Loads whose indices may leave the buffer read its nearest edge element instead."""

    def fix(n: Expr) -> Expr | None:
        if not isinstance(n, Load) or n.pad is not None:
            return None
        idx = []
        for i, size in zip(n.index, n.buffer.shape, strict=True):
            span = interval(i, ranges)
            if span is None or span[1] >= size:
                i = Binary(BinaryOp.MIN, i, const(size - 1))
            if span is None or span[0] < 0:
                i = Binary(BinaryOp.MAX, i, const(0))
            idx.append(i)
        return Load(n.buffer, tuple(idx))

    return rewrite(e, fix)


def _kinds(loop: Loop, index: tuple[Expr, ...], inner: dict[Var, int], reg: Region) -> list[LoopKind]:
    """Per tile dimension, the kind of the inner loop spanning it alone (else serial)."""
    by_var = {s.var: s for s in walk_stmts(loop.body) if isinstance(s, Loop)}
    out = []
    for d, e in enumerate(index):
        a = affine(e) or {}
        vs = [v for v in a if v in inner]
        kind = LoopKind.SERIAL
        if (
            len(vs) == 1
            and a[vs[0]] == reg.step(d)
            and by_var[vs[0]].kind in (LoopKind.UNROLLED, LoopKind.VECTOR)
        ):
            kind = by_var[vs[0]].kind
        out.append(kind)
    return out


def copy_loops(
    reg: Region, buf: Buffer, local: Buffer, kinds: list[LoopKind], outer: dict[Var, int], *, to_local: bool
) -> Stmt:
    """Loops copying the region between `buf` and `local`, guarded where it may leave `buf`."""
    vars_ = [Var(f"{local.name}_{d}") for d in range(len(reg.extent))]
    src: tuple[Expr, ...] = tuple(
        Binary(BinaryOp.ADD, b, v if reg.step(d) == 1 else Binary(BinaryOp.MUL, v, const(reg.step(d))))
        for d, (b, v) in enumerate(zip(reg.base, vars_, strict=True))
    )
    conds: list[Expr] = []
    for d, (e, n) in enumerate(zip(src, buf.shape, strict=True)):
        span = interval(e, {**outer, **{v: reg.extent[k] for k, v in enumerate(vars_)}})
        if span is None or span[1] >= n:
            conds.append(Binary(BinaryOp.LT, e, const(n)))
        if span is None or span[0] < 0:
            conds.append(Binary(BinaryOp.GE, e, const(0)))
        del d
    inner_idx = tuple(vars_)
    if to_local:
        # slots outside the tensor get a harmless value instead of a test (see drop_tile_guards)
        pad = None if not conds else (0 if buf.dtype.is_int else 0.0)
        return _nest(vars_, reg.extent, kinds, Store(local, inner_idx, Load(buf, src, pad)))
    stmt: Stmt = Store(buf, src, Load(local, inner_idx))
    if conds:
        stmt = Guard(all_of(conds), (stmt,))
    return _nest(vars_, reg.extent, kinds, stmt)


def _nest(vars_: list[Var], extent: tuple[int, ...], kinds: list[LoopKind], stmt: Stmt) -> Stmt:
    for v, n, kind in reversed(list(zip(vars_, extent, kinds, strict=True))):
        stmt = Loop(v, n, kind, (stmt,))
    return stmt
