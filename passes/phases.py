"""phases: a nest whose statement takes input only at every s-th output (the gather form of a
transposed convolution) becomes one nest per residue of the output loop modulo s, and each keeps
only the taps its residue uses.

    for h in 0..8: for r in 0..3:                                phases h
      Y[h] += select((h + 1 - r) % 2 == 0, X[(h + 1 - r) // 2], 0.0) * F[r]
  ->
    for h in 0..4: for r in 0..2:  Y[2*h] += X[h - r] * F[2*r + 1]        (h even: taps 1 and 3-)
    for h in 0..4: for r in 0..1:  Y[2*h + 1] += X[h + 1 - r] * F[2*r]   (h odd: taps 0 and 2)

With h = s*h' + p the condition `(a*h + b*r + c) % s == 0` no longer depends on h', so it fixes r
to one residue class modulo s / gcd(b, s): r = r0 + q*r'.  Over that class the condition holds
everywhere (it folds to true, the select to its value, `(..) // s` to an affine index); outside it
the update adds `0.0 * ...`, which is why skipping those iterations is the point and is legal: the
statement is an accumulation `Y[i] = Y[i] + E` and E has the select as a factor (a tap weight that
is inf or NaN would have made those skipped terms NaN: the rewrite drops them, as the dense
convolution it becomes would).  A residue with no matching tap loses its nest.  The nests are
siblings in place of the one nest, legal because h alone picks the written element (an index of Y
is `h + k`), so they write disjoint elements.  Loops keep their names; the printer tells the copies
apart (`w`, `w_1`, ...).
"""

from __future__ import annotations

import math
from dataclasses import replace

from kcomp.affine import affine, from_affine, simplify_within
from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Const, Expr, Load, Select, Var, conjuncts, free_vars, loads, rewrite
from kcomp.loops import Loop, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.loops.common import Resolver, clone, enclosing, map_exprs, replace_stmt, substitute_body
from kcomp.printer import format_expr
from kcomp.schedule import Phases, format_step


def phases(nest: LoopNest, step: Phases) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loop = r.loop(step.loop)
    around = enclosing(nest, loop)
    top = around[0] if around else loop
    if not isinstance(top, Loop) or any(not isinstance(s, Loop) for s in around):
        raise r.error(f"loop {step.loop} is not in a nest of loops")
    store = _accumulation(r, top)
    if not any(loop.var in (lin := affine(e) or {}) and set(lin) <= {loop.var, None} for e in store.index):
        raise r.error(
            f"no index of {r.name(store.buffer)} is {step.loop} alone, so its residues could write"
            " the same elements"
        )
    cond, s = _modular(r, store, loop)
    a = affine(cond.lhs.lhs)  # type: ignore[union-attr]
    assert a is not None
    taps = [v for v, c in a.items() if v is not None and v is not loop.var and c % s]
    inner = {x.var: x for x in walk_stmts(loop.body) if isinstance(x, Loop)}
    if len(taps) > 1 or any(v not in inner for v in taps):
        names = ", ".join(r.name(v) for v in taps)
        raise r.error(
            f"the condition {format_expr(cond)} depends on {names}: only one loop inside"
            f" {step.loop} may pick the taps of a residue"
        )
    tap = inner[taps[0]] if taps else None
    out: list[Stmt] = []
    for p in range(s):
        phase = _phase(top, loop, tap, a, s, p)
        if phase is not None:
            out.append(phase)
    return replace_stmt(nest, top, tuple(out))


def _accumulation(r: Resolver, top: Loop) -> Store:
    """The nest's one statement, which must add to the element it reads."""
    found = [x for x in walk_stmts((top,)) if isinstance(x, Store)]
    if len(found) != 1:
        raise r.error("the nest must hold exactly one statement to split it into phases")
    store = found[0]
    v = store.value
    same = (
        [x for x in (v.lhs, v.rhs) if _reads(x, store)]
        if isinstance(v, Binary) and v.op is BinaryOp.ADD
        else []
    )
    if not same:
        raise r.error(
            f"{r.name(store.buffer)} is not accumulated (`+=`): its skipped taps would not be zeros"
        )
    if any(ld.buffer is store.buffer and ld.index != store.index for ld in loads(v)):
        raise r.error(f"{r.name(store.buffer)} is read at another element than it writes")
    return store


def _reads(e: Expr, store: Store) -> bool:
    return isinstance(e, Load) and e.buffer is store.buffer and e.index == store.index


def _modular(r: Resolver, store: Store, loop: Loop) -> tuple[Binary, int]:
    """The condition `A % s == 0` (A affine in the loop) that zeroes the update when it fails."""
    v = store.value
    assert isinstance(v, Binary)
    term = v.rhs if _reads(v.lhs, store) else v.lhs
    for c in _zero_unless(term):
        if (
            isinstance(c, Binary)
            and c.op is BinaryOp.EQ
            and isinstance(c.rhs, Const)
            and c.rhs.value == 0
            and isinstance(c.lhs, Binary)
            and c.lhs.op is BinaryOp.MOD
            and isinstance(c.lhs.rhs, Const)
            and int(c.lhs.rhs.value) > 1
            and loop.var in free_vars(c.lhs.lhs)
            and affine(c.lhs.lhs) is not None
        ):
            return c, int(c.lhs.rhs.value)
    raise r.error(
        f"no condition `(.. {r.name(loop.var)} ..) % s == 0` selects the added value of"
        f" {r.name(store.buffer)}; nothing to split into phases"
    )


def _zero_unless(e: Expr) -> list[Expr]:
    """Conditions under which `e` may be nonzero: the conjuncts of selects `select(c, x, 0.0)`
    that are factors of the product `e`."""
    if isinstance(e, Select) and isinstance(e.other, Const) and e.other.value == 0:
        return conjuncts(e.cond) + _zero_unless(e.then)
    if isinstance(e, Binary) and e.op is BinaryOp.MUL:
        return _zero_unless(e.lhs) + _zero_unless(e.rhs)
    return []


def _phase(top: Loop, loop: Loop, tap: Loop | None, a: dict, s: int, p: int) -> Loop | None:
    """The nest for h = s*h' + p, its tap loop restricted to the residues that meet the condition."""
    h = Var(loop.var.name)
    mapping: dict[Var, Expr] = {loop.var: from_affine({h: s, None: p})}
    extents = {loop.var: (h, -(-(loop.extent - p) // s))}
    rest = a.get(loop.var, 0) * p + a.get(None, 0)
    if tap is not None:
        b = a[tap.var]
        q = s // math.gcd(b, s)
        first = next((t for t in range(q) if (b * t + rest) % s == 0), None)
        if first is None or first >= tap.extent:
            return None  # no tap of this residue reaches the input
        t = Var(tap.var.name)
        mapping[tap.var] = from_affine({t: q, None: first})
        extents[tap.var] = (t, -(-(tap.extent - first) // q))
    elif rest % s:
        return None  # the condition fails for every h of this residue: the update adds zeros
    body = substitute_body((top,), mapping)

    def rename(x: Stmt) -> Stmt | None:
        if isinstance(x, Loop) and x.var in extents:
            var, n = extents[x.var]
            return replace(x, var=var, extent=n)
        return None

    ranges = {x.var: x.extent for x in walk_stmts(body) if isinstance(x, Loop)}
    ranges = {**ranges, **{var: n for var, n in extents.values()}}
    (new,) = clone(map_exprs(map_stmts(body, rename), lambda e: _fold(simplify_within(e, ranges))))
    assert isinstance(new, Loop)
    return new


def _fold(e: Expr) -> Expr:
    """Constant conditions after the substitution: `true and c -> c`, `select(true, x, y) -> x`."""

    def rule(n: Expr) -> Expr | None:
        if isinstance(n, Binary) and n.op is BinaryOp.AND:
            for x, y in ((n.lhs, n.rhs), (n.rhs, n.lhs)):
                if isinstance(x, Const) and x.dtype is DType.BOOL:
                    return y if x.value else x
        if isinstance(n, Select) and isinstance(n.cond, Const):
            return n.then if n.cond.value else n.other
        return None

    return rewrite(e, rule)


__all__ = ["phases"]
