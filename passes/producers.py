"""Who computes and who reads an intermediate: the questions every fusion step asks first.

A lowered kernel is a sequence of top-level nests (one or two per statement) inside the global
allocations of its temporaries.  Fusion moves or substitutes a tensor's producing nests, so each
step starts by finding them (`producers`), the nests that read the tensor (`readers`), and the
buffers the producers read, which nothing between the old and the new position may write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kcomp.affine import const
from kcomp.expr import Binary, BinaryOp, Buffer, Expr, Load, Var, all_of, loads, rewrite
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.loops.common import Resolver, body_exprs
from kcomp.loops.dependence import accesses


def sequence(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """The top-level statements: `body` below the chain of global allocations around all of it."""
    while len(body) == 1 and isinstance(body[0], Alloc):
        body = body[0].body
    return body


def writes(s: Stmt) -> set[Buffer]:
    """Buffers `s` stores to, its own allocations excluded."""
    return set(accesses((s,))[0])


def reads(s: Stmt) -> set[Buffer]:
    """Buffers `s` loads from, its own allocations excluded."""
    return set(accesses((s,))[1])


def reads_in(body: tuple[Stmt, ...], buf: Buffer) -> list[Load]:
    return [ld for e in body_exprs(body) for ld in loads(e) if ld.buffer is buf]


@dataclass(frozen=True)
class Producers:
    """The top-level statements that write `buffer`, and what they need."""

    buffer: Buffer
    stmts: tuple[Stmt, ...]
    first: int  # position of the first one in the sequence
    last: int

    @property
    def inputs(self) -> set[Buffer]:
        out: set[Buffer] = set()
        for s in self.stmts:
            out |= reads(s)
        return out - {self.buffer}


def intermediate(r: Resolver, nest: LoopNest, name: str) -> Buffer:
    """The temporary named `name`; inputs and outputs are refused with the reason."""
    buf = r.buffer(name)
    if buf in nest.inputs:
        raise r.error(f"{name} is an input of the kernel; only intermediates it computes can be fused")
    if buf in nest.outputs:
        raise r.error(f"{name} is an output of the kernel; its own nest must write all of it")
    return buf


def producers(r: Resolver, seq: tuple[Stmt, ...], buf: Buffer, before: int | None = None) -> Producers:
    """The statements of `seq` (up to position `before`) writing `buf`; a ScheduleError when `buf`
    is computed inside another nest already (a previous fusion step moved it there)."""
    end = len(seq) if before is None else before
    found = [(k, s) for k, s in enumerate(seq[:end]) if buf in writes(s)]
    if not found:
        inside = next((s for s in seq if buf in stored(s)), None)
        if inside is not None:
            raise r.error(
                f"{r.name(buf)} is computed inside another loop nest already (a fusion step put it there)"
            )
        raise r.error(f"{r.name(buf)} is not computed before the loop that reads it")
    for s in (s for _, s in found):
        other = writes(s) - {buf}
        if other:
            names = ", ".join(sorted(r.name(b) for b in other))
            raise r.error(f"the nest computing {r.name(buf)} also writes {names}; they cannot move apart")
    return Producers(buf, tuple(s for _, s in found), found[0][0], found[-1][0])


def stored(s: Stmt) -> set[Buffer]:
    """Every buffer `s` stores to, its own allocations included."""
    return {t.buffer for t in walk_stmts((s,)) if isinstance(t, Store)}


def store_chain(s: Stmt) -> tuple[list[Loop], Store] | None:
    """(loops, store) when `s` is perfectly nested loops around one store, else None."""
    loops: list[Loop] = []
    while isinstance(s, Loop) and len(s.body) == 1:
        loops.append(s)
        s = s.body[0]
    return (loops, s) if isinstance(s, Store) else None


def in_bounds(index: tuple[Expr, ...], shape: tuple[int, ...]) -> Expr:
    """`0 <= index[d] < shape[d]` for every dimension, as one condition."""
    conds: list[Expr] = []
    for e, n in zip(index, shape, strict=True):
        conds += [Binary(BinaryOp.GE, e, const(0)), Binary(BinaryOp.LT, e, const(n))]
    return all_of(conds)


def check_inputs_unchanged(r: Resolver, prod: Producers, between: list[Stmt], where: str) -> None:
    """Moving the producers past `between` is legal when none of those writes what they read."""
    needs = prod.inputs
    for s in between:
        clash = writes(s) & needs
        if clash:
            names = ", ".join(sorted(r.name(b) for b in clash))
            raise r.error(
                f"{r.name(prod.buffer)} reads {names}, which {where} writes; computed later it would see"
                " other values"
            )


def store_dims(r: Resolver, stmt: Stmt, buf: Buffer) -> dict[Var, int]:
    """Loop variable -> dimension of `buf` it indexes, for a producer whose stores are at plain loop
    variables (an untransformed nest); ScheduleError otherwise."""
    bound = {s.var for s in walk_stmts((stmt,)) if isinstance(s, Loop)}
    index: tuple[Expr, ...] | None = None
    for s in walk_stmts((stmt,)):
        if isinstance(s, Store) and s.buffer is buf:
            if index is not None and s.index != index:
                raise r.error(f"{r.name(buf)} is stored at more than one index in its nest")
            index = s.index
    assert index is not None
    for e in body_exprs((stmt,)):
        if any(ld.buffer is buf and ld.index != index for ld in loads(e)):
            raise r.error(f"{r.name(buf)}'s nest reads {r.name(buf)} at another index than it writes")
    dims: dict[Var, int] = {}
    for d, e in enumerate(index):
        if not isinstance(e, Var) or e not in bound or e in dims:
            raise r.error(
                f"{r.name(buf)}'s nest was transformed (it stores at an index that is not one loop"
                " per dimension); fuse it before splitting or tiling its loops"
            )
        dims[e] = d
    return dims


def serial(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """`stmts` with parallel loops made serial: moved inside a consumer's loop they would nest threads."""
    return map_stmts(
        stmts,
        lambda s: (
            replace(s, kind=LoopKind.SERIAL) if isinstance(s, Loop) and s.kind is LoopKind.PARALLEL else None
        ),
    )


def drop_alloc(body: tuple[Stmt, ...], buf: Buffer) -> tuple[Stmt, ...]:
    """`body` without the allocation of `buf` (its statements stay)."""
    return map_stmts(body, lambda s: s.body if isinstance(s, Alloc) and s.buffer is buf else None)


def drop(body: tuple[Stmt, ...], gone: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    ids = {id(s) for s in gone}
    return map_stmts(body, lambda s: () if id(s) in ids else None)


def substitute_loads(body: tuple[Stmt, ...], buf: Buffer, fn) -> tuple[Stmt, ...]:
    """Every load of `buf` in `body` replaced by `fn(load)`."""

    def on_expr(e: Expr) -> Expr:
        return rewrite(e, lambda n: fn(n) if isinstance(n, Load) and n.buffer is buf else None)

    def visit(s: Stmt) -> Stmt | None:
        if isinstance(s, Store):
            index, value = tuple(on_expr(i) for i in s.index), on_expr(s.value)
            same = value is s.value and all(a is b for a, b in zip(index, s.index, strict=True))
            return None if same else Store(s.buffer, index, value)
        if isinstance(s, Guard):
            cond = on_expr(s.cond)
            return None if cond is s.cond else Guard(cond, s.body)
        return None

    return map_stmts(body, visit)
