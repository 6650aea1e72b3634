"""What every pass needs: finding loops by their printed names, replacing statements, cloning.

Loops are addressed by the names `kcomp compile --emit loops` prints (`kcomp.printer.symbol_names`),
which depend on the whole nest; a pass resolves a name to the `Loop` object once, then works with
objects (symbols are identity-compared, never matched by string).
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.errors import ScheduleError
from kcomp.expr import Buffer, Expr, Load, Var, rewrite, substitute
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.printer import symbol_names


class Resolver:
    """Printed names of one nest's loops and buffers, for lookups and for messages."""

    def __init__(self, nest: LoopNest, step: str):
        self.nest = nest
        self.step = step
        self.names = symbol_names(nest)
        self.loops = {self.names[s.var]: s for s in walk_stmts(nest.body) if isinstance(s, Loop)}

    def loop(self, name: str) -> Loop:
        if name not in self.loops:
            known = ", ".join(self.loops) or "none"
            raise ScheduleError(f"{self.step}: no loop named '{name}' (loops are {known})")
        return self.loops[name]

    def name(self, sym: object) -> str:
        return self.names.get(sym, getattr(sym, "name", "?"))

    def buffer(self, name: str) -> Buffer:
        for sym, shown in self.names.items():
            if shown == name and isinstance(sym, Buffer):
                return sym
        buffers = sorted(n for s, n in self.names.items() if isinstance(s, Buffer))
        raise ScheduleError(f"{self.step}: no tensor named '{name}' (tensors are {', '.join(buffers)})")

    def error(self, message: str) -> ScheduleError:
        return ScheduleError(f"{self.step}: {message}")


def replace_stmt(nest: LoopNest, old: Stmt, new: Stmt | tuple[Stmt, ...]) -> LoopNest:
    """`nest` with statement `old` (identity) replaced by `new`."""
    body = map_stmts(nest.body, lambda s: new if s is old else None)
    return replace(nest, body=body)


def enclosing(nest: LoopNest, target: Stmt) -> list[Stmt]:
    """The statements around `target`, outermost first (target excluded)."""

    def search(body: tuple[Stmt, ...], path: list[Stmt]) -> list[Stmt] | None:
        for s in body:
            if s is target:
                return path
            if not isinstance(s, Store):
                found = search(s.body, [*path, s])
                if found is not None:
                    return found
        return None

    path = search(nest.body, [])
    if path is None:
        raise ValueError("statement not in nest")
    return path


def loop_vars(stmts: list[Stmt]) -> list[Var]:
    return [s.var for s in stmts if isinstance(s, Loop)]


def extents(nest: LoopNest) -> dict[Var, int]:
    return {s.var: s.extent for s in walk_stmts(nest.body) if isinstance(s, Loop)}


def stores(body: tuple[Stmt, ...]) -> list[Store]:
    return [s for s in walk_stmts(body) if isinstance(s, Store)]


def body_exprs(body: tuple[Stmt, ...]) -> list[Expr]:
    """Every top-level expression in `body`: store indices and values, guard conditions."""
    out: list[Expr] = []
    for s in walk_stmts(body):
        if isinstance(s, Store):
            out += [*s.index, s.value]
        elif isinstance(s, Guard):
            out.append(s.cond)
    return out


def map_exprs(body: tuple[Stmt, ...], fn) -> tuple[Stmt, ...]:
    """Apply `fn` (Expr -> Expr) to every expression of `body`."""

    def visit(s: Stmt) -> Stmt | None:
        if isinstance(s, Store):
            return Store(s.buffer, tuple(fn(i) for i in s.index), fn(s.value))
        if isinstance(s, Guard):
            return Guard(fn(s.cond), s.body)
        return None

    return map_stmts(body, visit)


def substitute_body(body: tuple[Stmt, ...], mapping: dict[Var, Expr]) -> tuple[Stmt, ...]:
    return map_exprs(body, lambda e: substitute(e, mapping))


def rename_buffer(
    body: tuple[Stmt, ...], old: Buffer, new: Buffer, index=None, *, in_bounds: bool = False
) -> tuple[Stmt, ...]:
    """Accesses of `old` become accesses of `new`; `index` (tuple -> tuple) maps the indices.

    `in_bounds`: every renamed read lies inside `new` (a staged copy of the whole region read, its
    halo already filled with the pad value), so the reads lose their `pad=` and with it the bounds
    test the code generator would otherwise put on every load of the innermost loop."""
    remap = index or (lambda idx: idx)

    def on_expr(e: Expr) -> Expr:
        return rewrite(
            e,
            lambda n: (
                Load(new, remap(n.index), None if in_bounds else n.pad)
                if isinstance(n, Load) and n.buffer is old
                else None
            ),
        )

    def visit(s: Stmt) -> Stmt | None:
        if isinstance(s, Store) and s.buffer is old:
            return Store(new, remap(s.index), s.value)
        return None

    return map_stmts(map_exprs(body, on_expr), visit)


def clone(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """A copy of `body` whose loops bind fresh variables (and whose allocs fresh buffers), so it can
    sit in the same nest as the original (each Var bound by one loop, each buffer allocated once)."""
    mapping: dict[Var, Expr] = {}
    buffers: dict[Buffer, Buffer] = {}
    for s in walk_stmts(body):
        if isinstance(s, Loop):
            mapping[s.var] = Var(s.var.name)
        elif isinstance(s, Alloc):
            buffers[s.buffer] = replace(s.buffer)

    def visit(s: Stmt) -> Stmt | None:
        if isinstance(s, Loop):
            return replace(s, var=mapping[s.var])
        if isinstance(s, Alloc):
            return replace(s, buffer=buffers[s.buffer])
        return None

    out = map_stmts(substitute_body(body, mapping), visit)
    for old, new in buffers.items():
        out = rename_buffer(out, old, new)
    return out


def set_kind(nest: LoopNest, loop: Loop, kind: LoopKind) -> LoopNest:
    return replace_stmt(nest, loop, replace(loop, kind=kind))
