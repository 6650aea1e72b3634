"""A recurrence's previous element kept in a register instead of read back from memory.

A scan lowers to `Y[b, i] = Y[b, i - 1, pad=0] + X[b, i]`: every iteration loads what the one before
stored.  Written as it stands, each element waits on a store-to-load forwarding and the pad's bounds
test, about twice the add's latency.  When a serial loop's body is that one store, the C-family
emitters write it instead as

    carry[0] = Y[b, 0 - 1, pad=0]            (the first read, with its pad: before the loop)
    for i:  carry[0] = carry[0] + X[b, i];  Y[b, i] = carry[0]

with `carry` a one-element local the C compiler keeps in a register.  It is the same computation:
the read at iteration k > 0 is the element iteration k - 1 stored (the index, moved back one step,
is the read's index), and nothing else in the loop writes the tensor.
"""

from __future__ import annotations

from kcomp.affine import affine, const
from kcomp.expr import Binary, BinaryOp, Buffer, Expr, Load, Scope, rewrite, substitute, walk
from kcomp.loops import Alloc, Loop, LoopKind, Stmt, Store


def recurrence(loop: Loop) -> tuple[Store, list[Load]] | None:
    """(the store, its reads of the element the previous iteration stored) when `loop` is a serial
    loop around one store whose index moves with the loop and whose value reads that element."""
    if loop.kind is not LoopKind.SERIAL or len(loop.body) != 1 or not isinstance(loop.body[0], Store):
        return None
    store = loop.body[0]
    back = {loop.var: Binary(BinaryOp.SUB, loop.var, const(1))}
    wanted = [_form(substitute(e, back)) for e in store.index]
    if None in wanted or not any(loop.var in (affine(e) or {}) for e in store.index):
        return None
    prev = [
        n
        for n in walk(store.value)
        if isinstance(n, Load) and n.buffer is store.buffer and [_form(e) for e in n.index] == wanted
    ]
    return (store, prev) if prev else None


def _form(e: Expr) -> dict | None:
    """`e`'s affine form without zero terms (so `i - 1 + 1` and `i` compare equal)."""
    a = affine(e)
    return None if a is None else {v: c for v, c in a.items() if c}


def carried(loop: Loop) -> tuple[Stmt, ...] | None:
    """`loop` with its recurrence's previous element in a register (module docstring), or None
    when it is not one (`recurrence`)."""
    found = recurrence(loop)
    if found is None:
        return None
    store, prev = found
    carry = Buffer(f"{store.buffer.name}_carry", store.buffer.dtype, (1,), Scope.LOCAL)
    here = Load(carry, (const(0),))
    first = substitute(prev[0], {loop.var: const(0)})
    value = rewrite(store.value, lambda n: here if any(n is p for p in prev) else None)
    body = (Store(carry, (const(0),), value), Store(store.buffer, store.index, here))
    return (Alloc(carry, (Store(carry, (const(0),), first), Loop(loop.var, loop.extent, loop.kind, body))),)


__all__ = ["carried", "recurrence"]
