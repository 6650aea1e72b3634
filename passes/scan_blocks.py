"""scan_blocks L P: a scan's recurrence over loop L computed in P blocks, in two passes whose blocks
are independent (so `parallel` and `unroll` can take them), with a short serial scan between.

    for i in 0..n:  Y[i] = Y[i - 1, pad=0] + v(i)                 scan_blocks i 4   (n = 4 * m)
  ->
    for i_b in 0..4:                                  pass 1: each block's total
      Y_blocks[i_b] = v(i_b * m)
      for i_t in 0..m-1:  Y_blocks[i_b] = Y_blocks[i_b] + v(i_b * m + i_t + 1)
    Y_offsets[0] = Y[0 - 1, pad=0]                    what the first element combines (the pad here)
    for i_c in 0..3:  Y_offsets[i_c + 1] = Y_offsets[i_c] + Y_blocks[i_c]
    for i_b in 0..4:                                  pass 2: each block's scan from its offset
      alloc Y_carry: [1] local                          (a register)
        Y_carry[0] = Y_offsets[i_b]
        for i_t in 0..m:  Y_carry[0] = Y_carry[0] + v(i_b * m + i_t);  Y[i_b * m + i_t] = Y_carry[0]

The blocks are m = ceil(n / P) iterations long (the last one shorter, behind a guard; P shrinks so
none is empty).  The statement must be a scan's recurrence, `Y[..] = prev op v` with op one of
+ * max min, `prev` the element the previous iteration of L stored and `v` not reading Y: the blocks
regroup the combination, which is exact for max and min and rounds differently for + and *, as a
parallel reduction does.  The totals and offsets are two local arrays of P values allocated where L
was, so the lines of a scan (the loops around L) stay independent, and a block's running value is a
one-element local of its own, which the C compilers keep in a register.  A reversed or
exclusive scan is the same recurrence over its iteration space (docs/language.md "Scans").
"""

from __future__ import annotations

from kcomp.affine import const
from kcomp.expr import Binary, BinaryOp, Buffer, Expr, Load, Scope, Var, loads, substitute
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.loops.carry import recurrence
from kcomp.loops.common import Resolver, replace_stmt
from kcomp.schedule import ScanBlocks, format_step

OPS = frozenset({BinaryOp.ADD, BinaryOp.MUL, BinaryOp.MAX, BinaryOp.MIN})


def scan_blocks(nest: LoopNest, step: ScanBlocks) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    found = recurrence(loop)
    if found is None:
        raise r.error(
            f"loop {step.loop} is not a scan: a serial loop around one statement that reads the element"
            " its previous iteration stored"
        )
    store, prev = found
    v = store.value
    if len(prev) != 1 or not isinstance(v, Binary) or v.op not in OPS or prev[0] not in (v.lhs, v.rhs):
        raise r.error(
            f"{r.name(store.buffer)}'s previous element is combined other than as `prev op value` with op"
            " one of + * max min, so the blocks cannot be regrouped"
        )
    value = v.rhs if v.lhs is prev[0] else v.lhs
    if any(ld.buffer is store.buffer for ld in loads(value)):
        raise r.error(f"the value it combines reads {r.name(store.buffer)} itself")
    n = loop.extent
    if not 2 <= step.blocks <= n:
        raise r.error(f"the blocks must number 2 to {n} (the loop's extent), not {step.blocks}")
    size = -(-n // step.blocks)
    count = -(-n // size)  # NOTE: no empty block
    name = r.name(loop.var)
    y = store.buffer

    def local(what: str) -> Buffer:
        return Buffer(f"{r.name(y)}_{what}", y.dtype, (count,), Scope.LOCAL)

    totals, offsets = local("blocks"), local("offsets")

    def at(e: Expr, pos: Expr) -> Expr:
        return substitute(e, {loop.var: pos})

    def inside(pos: Expr, body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        if count * size == n:
            return body
        return (Guard(Binary(BinaryOp.LT, pos, const(n)), body),)

    def combine(acc: Load, e: Expr) -> Expr:
        return Binary(v.op, acc, e)

    # pass 1: each block's total
    b1, t1 = Var(f"{name}_b"), Var(f"{name}_t")
    total = Load(totals, (b1,))
    start = Binary(BinaryOp.MUL, b1, const(size))
    pos1 = Binary(BinaryOp.ADD, start, Binary(BinaryOp.ADD, t1, const(1)))
    first_block: list[Stmt] = [Store(totals, (b1,), at(value, start))]
    if size > 1:
        update = Store(totals, (b1,), combine(total, at(value, pos1)))
        first_block.append(Loop(t1, size - 1, LoopKind.SERIAL, inside(pos1, (update,))))
    pass1 = Loop(b1, count, LoopKind.SERIAL, tuple(first_block))
    # the offsets: what each block's first element combines
    c = Var(f"{name}_c")
    seed = Store(offsets, (const(0),), at(prev[0], const(0)))
    running = Store(
        offsets,
        (Binary(BinaryOp.ADD, c, const(1)),),
        combine(Load(offsets, (c,)), Load(totals, (c,))),
    )
    scan = Loop(c, count - 1, LoopKind.SERIAL, (running,))
    # pass 2: each block's scan from its offset
    b2, t2 = Var(f"{name}_b"), Var(f"{name}_t")
    register = Buffer(f"{r.name(y)}_carry", y.dtype, (1,), Scope.LOCAL)
    carry = Load(register, (const(0),))
    pos2 = Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, b2, const(size)), t2)
    element = (
        Store(register, (const(0),), combine(carry, at(value, pos2))),
        Store(y, tuple(at(e, pos2) for e in store.index), carry),
    )
    block = (
        Store(register, (const(0),), Load(offsets, (b2,))),
        Loop(t2, size, LoopKind.SERIAL, inside(pos2, element)),
    )
    pass2 = Loop(b2, count, LoopKind.SERIAL, (Alloc(register, block),))
    body: tuple[Stmt, ...] = (pass1, seed, scan, pass2)
    for buf in (offsets, totals):
        body = (Alloc(buf, body),)
    return replace_stmt(nest, loop, body)


__all__ = ["scan_blocks"]
