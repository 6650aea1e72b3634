"""compute_at: an intermediate is computed inside a loop of its consumer, for the region it reads.

    for n: for d:  e[n, d] = exp(X[n, d] - m[n])          compute_at e at n1
    for n1:                                                for n1:
      for d1: s[n1] = s[n1] + e[n1, d1]                      alloc e: f32[1, 1024] local
                                                               for d: e[0, d] = exp(X[n1, d] - m[n1])
                                                               for d1: s[n1] = s[n1] + e[0, d1]

The region is what the loop's body reads of the tensor (`passes/region.py`: a box per iteration,
`base + 0 .. extent` per dimension, inferred from the reads' affine indices).  The producing nests
(the initialisation and the update of a reduction, or the one nest of an elementwise statement)
run over that region only: each loop over a dimension of the tensor becomes a loop over the
region's extent (dropped when the extent is 1), guarded where the region may stick out of the
tensor.  Neighbouring iterations whose regions overlap (a stencil's halo) recompute the overlap.
The tensor shrinks to a local buffer of the region's shape, allocated inside the loop, so each
thread of a parallel loop has its own.  Pad reads of the tensor (a padded stencil) read the pad
value, which the local buffer holds outside the tensor's bounds.

When the tensor is also read outside the loop (several consumers), the producers stay where they
are for those readers and a copy of them is computed inside the loop: recompute for this
consumer, materialize for the others.  When no reader is left outside, the producers move and the
global buffer disappears.  Moved producers' parallel loops become serial (threads do not nest).

Refused, with the reason: inputs and outputs, a tensor not read inside the loop, a producer whose
own loops were split or tiled already (fuse first, then tile), a producer that reads what the
statements it would move past write, a loop that is (or sits inside) a vector loop, and a region
whose accesses have no common base (non-affine or data-dependent reads).
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.affine import const, interval, simplify
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Scope, Unary, UnaryOp, Var, all_of
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.loops.common import (
    Resolver,
    clone,
    enclosing,
    extents,
    rename_buffer,
    replace_stmt,
    substitute_body,
)
from kcomp.passes.producers import (
    check_inputs_unchanged,
    drop,
    drop_alloc,
    in_bounds,
    intermediate,
    producers,
    reads_in,
    sequence,
    serial,
    store_dims,
    writes,
)
from kcomp.passes.region import Region, region
from kcomp.schedule import ComputeAt, format_step


def compute_at(nest: LoopNest, step: ComputeAt) -> LoopNest:
    r = Resolver(nest, format_step(step))
    buf = intermediate(r, nest, step.tensor)
    loop = r.loop(step.at)
    seq = sequence(nest.body)
    top = next((k for k, s in enumerate(seq) if any(t is loop for t in walk_stmts((s,)))), None)
    if top is None:
        raise r.error(f"loop {step.at} is not in a top-level nest")
    if buf in writes(seq[top]):
        raise r.error(
            f"the nest of loop {step.at} writes {step.tensor} too; only a tensor it reads can move into it"
        )
    inside = reads_in(loop.body, buf)
    if not inside:
        raise r.error(
            f"loop {step.at} does not read {step.tensor}; compute a tensor at a loop of its consumer"
        )
    prod = producers(r, seq, buf, top)
    if any(buf in writes(s) for s in seq[top + 1 :]):
        raise r.error(f"{step.tensor} is written again after loop {step.at}'s nest")
    for s in (*enclosing(nest, loop), loop):
        if isinstance(s, Loop) and s.kind is LoopKind.VECTOR:
            raise r.error(f"loop {r.name(s.var)} is vector; a nest cannot be computed inside SIMD lanes")
    between = [s for s in seq[prod.first : top] if all(s is not p for p in prod.stmts)]
    check_inputs_unchanged(r, prod, [*between, seq[top]], "the nests in between")
    # NOTE: readers outside the loop keep the producers where they are (materialized for them).
    outside = [
        s
        for s in (*seq[:top], *seq[top + 1 :])
        if all(s is not p for p in prod.stmts) and reads_in((s,), buf)
    ]
    outside_in_top = len(reads_in((seq[top],), buf)) > len(inside)
    copy = bool(outside) or outside_in_top

    inner = {s.var: s.extent for s in walk_stmts(loop.body) if isinstance(s, Loop)}
    reg = region(r, step.tensor, [ld.index for ld in inside], inner)
    ranges = extents(nest)
    spill = _may_spill(reg, buf, {v: n for v, n in ranges.items() if v not in inner})
    local = Buffer(buf.name, buf.dtype, reg.extent, Scope.LOCAL)
    moved: tuple[Stmt, ...] = ()
    for p in prod.stmts:
        src = clone((p,)) if copy else (p,)
        moved += _restrict(r, src, buf, reg, spill)
    moved = serial(moved)
    pads = {ld.pad for ld in inside if ld.pad is not None}
    fill: tuple[Stmt, ...] = ()
    if spill and pads:
        if len(pads) > 1:
            raise r.error(
                f"loop {step.at} reads {step.tensor} with different pad values; stage it once per pad"
            )
        fill = (_pad_fill(buf, local, reg, pads.pop()),)

    new_body = _insert(loop.body, buf, fill + moved)
    new_inner = {s.var: s.extent for s in walk_stmts(new_body) if isinstance(s, Loop)}
    new_body = rename_buffer(new_body, buf, local, lambda idx: reg.offset(idx, new_inner), in_bounds=True)
    out = replace_stmt(nest, loop, Loop(loop.var, loop.extent, loop.kind, (Alloc(local, new_body),)))
    if not copy:
        body = drop_alloc(drop(out.body, prod.stmts), buf)
        out = replace(out, body=body)
    return out


def _may_spill(reg: Region, buf: Buffer, outer: dict[Var, int]) -> bool:
    """Whether the region can reach outside the tensor in some iteration (over the outer loops)."""
    for base, n, size in zip(reg.base, reg.extent, buf.shape, strict=True):
        span = interval(base, outer)
        if span is None or span[0] < 0 or span[1] + n > size:
            return True
    return False


def _restrict(
    r: Resolver, stmts: tuple[Stmt, ...], buf: Buffer, reg: Region, spill: bool
) -> tuple[Stmt, ...]:
    """The producer `stmts` over the region only: each loop over a dimension of `buf` runs over the
    region's extent from its base (a loop of extent 1 is dropped)."""
    (stmt,) = stmts
    dims = store_dims(r, stmt, buf)

    def rewrite_loop(s: Stmt) -> Stmt | tuple[Stmt, ...] | None:
        if not isinstance(s, Loop) or s.var not in dims:
            return None
        d = dims[s.var]
        n = reg.extent[d]
        t = Var(s.var.name)
        at: Expr = simplify(Binary(BinaryOp.ADD, reg.base[d], t)) if n > 1 else reg.base[d]
        body = substitute_body(s.body, {s.var: at})
        if spill:
            body = (
                Guard(
                    all_of([Binary(BinaryOp.GE, at, const(0)), Binary(BinaryOp.LT, at, const(buf.shape[d]))]),
                    body,
                ),
            )
        if n == 1:
            return body
        return Loop(t, n, s.kind, body)

    return map_stmts(stmts, rewrite_loop)


def _pad_fill(buf: Buffer, local: Buffer, reg: Region, pad: float | int) -> Stmt:
    """Loops over the whole region storing the pad value where the region lies outside `buf`."""
    ts = [Var(f"{buf.name}_pad{d}") for d in range(len(reg.extent))]
    pos = tuple(simplify(Binary(BinaryOp.ADD, b, t)) for b, t in zip(reg.base, ts, strict=True))
    outside = Unary(UnaryOp.NOT, in_bounds(pos, buf.shape))
    body: tuple[Stmt, ...] = (Guard(outside, (Store(buf, pos, Const(pad, buf.dtype)),)),)
    for t, n in reversed(list(zip(ts, reg.extent, strict=True))):
        body = (Loop(t, n, LoopKind.SERIAL, body),)
    return body[0]


def _insert(body: tuple[Stmt, ...], buf: Buffer, new: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """`new` placed just before the first statement of `body` that reads `buf` (inside the
    allocations that wrap the whole body, so what they hold stays in scope)."""
    if len(body) == 1 and isinstance(body[0], Alloc):
        return (Alloc(body[0].buffer, _insert(body[0].body, buf, new)),)
    k = next(k for k, s in enumerate(body) if reads_in((s,), buf))
    return (*body[:k], *new, *body[k:])


__all__ = ["compute_at"]
