"""inline and materialize: whether an elementwise intermediate keeps a buffer of its own.

    for n, d: t[n, d] = X[n, d] + b[d]                 inline t
    for n1, d1: Y[n1, d1] = t[n1, d1] * t[n1, d1]      for n1, d1: Y[n1, d1] = (X[n1, d1] + b[d1]) * (X[n1, d1] + b[d1])

`inline P` substitutes P's value, its loop variables replaced by each read's index, into every
reader, then removes P's nest and buffer.  A read that may fall outside P (a padded stencil read)
becomes `select(in bounds, value, pad)`.  Legal for an elementwise P (one nest, one store at one
loop variable per dimension, no reduction) whose inputs nothing writes between P's nest and its
last reader.  A reader that reads P at several indices recomputes P at each (the recompute side of
the trade-off the search sees); the C compiler shares identical subexpressions at one index.

`materialize P` is the default made explicit: P keeps its own nest and buffer.  It checks that P is
an intermediate computed by its own top-level nest, so a schedule that says so fails loudly when a
previous step fused P away.
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.expr import Cast, Const, Expr, Load, Select, loads, substitute
from kcomp.loops import LoopNest
from kcomp.loops.common import Resolver
from kcomp.passes.producers import (
    check_inputs_unchanged,
    drop,
    drop_alloc,
    in_bounds,
    intermediate,
    producers,
    reads_in,
    sequence,
    store_chain,
    store_dims,
    substitute_loads,
)
from kcomp.schedule import Inline, Materialize, format_step


def inline(nest: LoopNest, step: Inline) -> LoopNest:
    r = Resolver(nest, format_step(step))
    buf = intermediate(r, nest, step.tensor)
    seq = sequence(nest.body)
    prod = producers(r, seq, buf)
    if len(prod.stmts) != 1:
        raise r.error(
            f"{step.tensor} is computed by {len(prod.stmts)} nests (a reduction or an update); only an elementwise tensor inlines"
        )
    (stmt,) = prod.stmts
    chain = store_chain(stmt)
    if chain is None:
        raise r.error(
            f"{step.tensor}'s nest is not one store inside its loops; only an elementwise tensor inlines"
        )
    loops, store = chain
    dims = store_dims(r, stmt, buf)
    if len(dims) != len(loops):
        raise r.error(
            f"{step.tensor} is a reduction (a loop of its nest indexes no dimension of it); it cannot be inlined"
        )
    if any(ld.buffer is buf for ld in loads(store.value)):
        raise r.error(
            f"{step.tensor}'s value reads {step.tensor}; it is an update, not an elementwise tensor"
        )
    later = seq[prod.last + 1 :]
    readers = [k for k, s in enumerate(later) if reads_in((s,), buf)]
    if not readers:
        raise r.error(f"nothing reads {step.tensor}; there is nowhere to inline it")
    check_inputs_unchanged(r, prod, list(later[: readers[-1] + 1]), "a reader or a nest before it")
    order = [next(v for v, d in dims.items() if d == k) for k in range(len(dims))]

    def value_at(ld: Load) -> Expr:
        value = substitute(store.value, dict(zip(order, ld.index, strict=True)))
        if value.dtype is not buf.dtype:
            value = Cast(buf.dtype, value)  # what the store into the buffer converted
        if ld.pad is None:
            return value
        return Select(in_bounds(ld.index, buf.shape), value, Const(ld.pad, buf.dtype))

    body = substitute_loads(nest.body, buf, value_at)
    body = drop_alloc(drop(body, prod.stmts), buf)
    return replace(nest, body=body)


def materialize(nest: LoopNest, step: Materialize) -> LoopNest:
    r = Resolver(nest, format_step(step))
    buf = intermediate(r, nest, step.tensor)
    producers(r, sequence(nest.body), buf)
    return nest
