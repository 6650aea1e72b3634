"""The default scheduler's fusion rules: which intermediates stop making a round trip through memory.

Run before the per-nest rules of `kcomp.autoschedule`, consumer first (the intermediate produced
last is decided first, so its producers' own inputs are decided once they sit inside the consumer):

  1. An elementwise intermediate whose readers evaluate it about as often as it has elements
     (`t = X + b; Y = t * t`) is inlined: one nest, no buffer, the C compiler shares the repeated
     subexpression.  One whose value is a single cheap operation (`xc = X - mean`) is inlined into
     several readers too: recomputing it costs what loading it back would.
  2. Any other intermediate whose readers all sit in one later nest is computed at the outermost
     loop of that nest where its region is small (at most `budget` bytes, a whole row of softmax or
     layernorm) and the work it repeats is small (at most a quarter more than unfused, a stencil's
     halo): the chain runs row by row with the row in cache, reading the input once from memory.
  3. A running-max pair (`M max= u`, `S += exp(u - M) * v`) whose rows exceed `budget` becomes one
     pass (`online M S`), and so does a mean/variance pair (`welford M V`): the row is read once
     even though it does not fit the cache.

Every decision is an ordinary schedule step that is kept only if its pass accepts it, so the rules
need not prove legality themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from kcomp.errors import ScheduleError
from kcomp.expr import (
    FLOAT_FUNCTIONS,
    Binary,
    BinaryOp,
    Buffer,
    Expr,
    Load,
    Select,
    Unary,
    children,
    free_vars,
    loads,
    walk,
)
from kcomp.loops import Alloc, Loop, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import enclosing
from kcomp.passes import apply_step
from kcomp.passes.producers import reads_in, sequence, writes
from kcomp.printer import symbol_names
from kcomp.schedule import ComputeAt, Inline, Online, Step, Welford

FUSE_BUDGET = 128 << 10  # bytes of one intermediate's region: fits L2 on every x86 core we meet
RECOMPUTE_LIMIT = 1.25  # work of a fused producer relative to its unfused work
TRIVIAL_OPS = 1  # operations of an elementwise value cheap enough to recompute in every reader
COSTLY = FLOAT_FUNCTIONS  # NOTE: the math functions, each many instructions


class Builder:
    """Applies steps as they are chosen, keeping the legal ones (the default scheduler's too)."""

    def __init__(self, nest: LoopNest):
        self.nest = nest
        self.steps: list[Step] = []

    def names(self) -> dict[object, str]:
        return symbol_names(self.nest)

    def name(self, loop: Loop) -> str:
        return self.names()[loop.var]

    def try_step(self, step: Step) -> bool:
        try:
            nest = apply_step(self.nest, step)
        except ScheduleError:
            return False
        self.nest, self.steps = nest, [*self.steps, step]
        return True


def fusion_steps(nest: LoopNest, **knobs: object) -> tuple[Step, ...]:
    """The steps `fuse_by_rule` takes on `nest` (knobs as there)."""
    b = Builder(nest)
    fuse_by_rule(b, **knobs)  # type: ignore[arg-type]
    return tuple(b.steps)


def fuse_by_rule(
    b: Builder,
    budget: int = FUSE_BUDGET,
    *,
    inline: bool = True,
    outermost: bool = True,
    online: bool | None = None,
) -> None:
    """Apply rules 1-3 to `b` until none fires.  Knobs (the search's fusion variants): `inline`
    False computes elementwise intermediates at a loop instead; `outermost` False takes the
    innermost loop where rule 2 holds; `online` True applies rule 3 whatever the row size."""
    _online_pairs(b, 0 if online else budget)
    progress = True
    while progress:
        progress = False
        for buf in _intermediates(b.nest):
            if _fuse_one(b, buf, budget, inline, outermost):
                progress = True
                break


def _intermediates(nest: LoopNest) -> list[Buffer]:
    """Globally allocated temporaries still computed by top-level nests, the last produced first."""
    seq = sequence(nest.body)
    args = set(nest.arguments)
    order: list[Buffer] = []
    for s in seq:
        for buf in writes(s):
            if buf not in args and buf not in order and _global(nest, buf):
                order.append(buf)
    return list(reversed(order))


def _global(nest: LoopNest, buf: Buffer) -> bool:
    return (
        any(isinstance(s, Alloc) and s.buffer is buf for s in walk_stmts(nest.body))
        and buf.scope.value == "global"
    )


def _fuse_one(b: Builder, buf: Buffer, budget: int, inline: bool, outermost: bool) -> bool:
    seq = sequence(b.nest.body)
    producers = [k for k, s in enumerate(seq) if buf in writes(s)]
    readers = [k for k, s in enumerate(seq) if k not in producers and reads_in((s,), buf)]
    if not producers or not readers or min(readers) < producers[-1]:
        return False
    name = symbol_names(b.nest)[buf]
    if inline and len(producers) == 1:
        stores = [
            st
            for k in readers
            for st in walk_stmts((seq[k],))
            if isinstance(st, Store) and reads_in((st,), buf)
        ]
        limit = RECOMPUTE_LIMIT * (len(stores) if _trivial(seq[producers[0]], buf) else 1)
        evaluations = sum(_evaluations(b.nest, seq[k], buf) for k in readers)
        if evaluations <= limit * buf.size and b.try_step(Inline(name)):
            return True
    if len(readers) != 1 or any(_contraction(seq[k], buf) for k in producers):
        return False  # NOTE: a contraction keeps its own nest: row by row it would lose its register tile
    consumer = seq[readers[0]]
    if any(_contraction(consumer, out) for out in writes(consumer)):
        return False  # NOTE: so does a contraction reading it (a producer inside breaks its perfect nest)
    base = _work(b.nest, buf)
    for loop in _loops_outer_first(consumer):
        before = (b.nest, b.steps)
        if not b.try_step(ComputeAt(name, symbol_names(b.nest)[loop.var])):
            continue
        local = _local_of(b.nest, buf.name)
        if (
            local is not None
            and local.size * local.dtype.itemsize <= budget
            and _work(b.nest, local) <= RECOMPUTE_LIMIT * base
        ):
            return True
        b.nest, b.steps = before
    return False


def _contraction(stmt: Stmt, buf: Buffer) -> bool:
    """Whether `stmt` reduces into `buf` a product with reuse (a GEMM, a convolution): two factors
    reading different tensors along a reduced loop, each missing an index of `buf` the other has.
    Such a nest keeps its register tile only on its own; a row reduction (`s += exp(x - m)`, a dot
    product of two rows) has no reuse and fuses like any other."""
    loops = {lp.var for lp in walk_stmts((stmt,)) if isinstance(lp, Loop)}
    for s in walk_stmts((stmt,)):
        if not isinstance(s, Store) or s.buffer is not buf:
            continue
        indexed = {v for e in s.index for v in free_vars(e)}
        reduced = loops - indexed
        for product in walk(s.value):
            if not (isinstance(product, Binary) and product.op is BinaryOp.MUL):
                continue
            sides = [
                [ld for ld in loads(side) if ld.buffer is not buf] for side in (product.lhs, product.rhs)
            ]
            for a in sides[0]:
                for b in sides[1]:
                    va = {v for e in a.index for v in free_vars(e)}
                    vb = {v for e in b.index for v in free_vars(e)}
                    if a.buffer is b.buffer or not (va & vb & reduced):
                        continue
                    if (indexed & vb) - va and (indexed & va) - vb:
                        return True
    return False


def _loops_outer_first(top: Stmt) -> list[Loop]:
    """The loops of `top`, outermost first (pre-order)."""
    return [s for s in walk_stmts((top,)) if isinstance(s, Loop)]


def _local_of(nest: LoopNest, name: str) -> Buffer | None:
    """The most recently introduced local buffer named `name` (what compute_at made)."""
    found = [
        s.buffer
        for s in walk_stmts(nest.body)
        if isinstance(s, Alloc) and s.buffer.name == name and s.buffer.scope.value == "local"
    ]
    return found[-1] if found else None


def _work(nest: LoopNest, buf: Buffer) -> int:
    """How many times stores to `buf` execute (the work of computing it)."""
    return sum(_trips(nest, s) for s in walk_stmts(nest.body) if isinstance(s, Store) and s.buffer is buf)


def _trips(nest: LoopNest, stmt: Stmt) -> int:
    """How many times `stmt` executes: the product of the extents of the loops around it."""
    n = 1
    for outer in enclosing(nest, stmt):
        if isinstance(outer, Loop):
            n *= outer.extent
    return n


def _evaluations(nest: LoopNest, reader: Stmt, buf: Buffer) -> float:
    """How many times inlining `buf` into `reader` evaluates its value: the trips of the reader's
    stores that read it (infinite when a store reads it at two indices: a stencil recomputes)."""
    evaluations = 0.0
    for s in walk_stmts((reader,)):
        if not isinstance(s, Store):
            continue
        reads = [ld for e in (*s.index, s.value) for ld in loads(e) if ld.buffer is buf]
        if not reads:
            continue
        if len({str(ld.index) for ld in reads}) > 1:
            return math.inf
        evaluations += _trips(nest, s)
    return evaluations


def _trivial(producer: Stmt, buf: Buffer) -> bool:
    """Rule 1's second case: `buf`'s value is at most TRIVIAL_OPS cheap operations on loads
    (`X[n, d] - mean[n]`), so each reader recomputing it costs about what loading it back would,
    and a buffer written and read again by several readers saves nothing."""
    for s in walk_stmts((producer,)):
        if isinstance(s, Store) and s.buffer is buf:
            ops = list(_operations(s.value))
            return len(ops) <= TRIVIAL_OPS and not any(isinstance(o, Unary) and o.op in COSTLY for o in ops)
    return False


def _operations(e: Expr) -> Iterator[Expr]:
    """The arithmetic of `e` outside its loads' indices."""
    if isinstance(e, Load):
        return
    if isinstance(e, Binary | Unary | Select):
        yield e
    for c in children(e):
        yield from _operations(c)


def _online_pairs(b: Builder, budget: int) -> None:
    """Rule 3: `online M S` for max/sum pairs, `welford M V` for mean/variance pairs, whose
    reduction rows exceed the budget (each row is then read once)."""
    for one_pass in (Online, Welford):
        seq = sequence(b.nest.body)
        names = symbol_names(b.nest)
        temps = _intermediates(b.nest)
        for m in temps:
            ups = [s for s in seq if m in writes(s) and reads_in((s,), m)]
            if len(ups) != 1 or _row_bytes(ups[0], m) <= budget:
                continue
            if any(s is not m and b.try_step(one_pass(names[m], names[s])) for s in temps):
                break


def _row_bytes(update: Stmt, buf: Buffer) -> int:
    """Bytes of one reduction row: the extents of the update's loops that do not index `buf`."""
    store = next(s for s in walk_stmts((update,)) if isinstance(s, Store) and s.buffer is buf)
    indexed = {v for e in store.index for v in free_vars(e)}
    n = 1
    for s in walk_stmts((update,)):
        if isinstance(s, Loop) and s.var not in indexed:
            n *= s.extent
    return n * buf.dtype.itemsize
