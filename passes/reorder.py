"""reorder: permute loops of one perfectly nested band.

    for i: for j: for k: S        reorder k i        for k: for j: for i: S

The named loops must lie on one chain where each loop's body is a single loop (guards in between
are allowed: their conditions are pushed down to the innermost loop of the band, which is always
legal).  Loops of the chain that are not named keep their positions; the named ones take the
listed order in the positions the named ones held.  Legal when no buffer written in the band is
accessed at two different indices there (then every point's updates keep their order), and when
the loops a conditional update depends on keep their order: an arg-reduction's `if (v < best)`
keeps the first of equal values, so its reduced loops (split into k_o, k_i) must still visit k
in increasing order.
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.expr import Expr, Var, all_of, free_vars, loads
from kcomp.loops import Guard, Loop, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import Resolver, replace_stmt
from kcomp.loops.dependence import accesses
from kcomp.printer import format_expr
from kcomp.schedule import Reorder, format_step


def band(r: Resolver, names: tuple[str, ...]) -> tuple[list[Loop], list[Expr], tuple[Stmt, ...]]:
    """The chain of loops from the outermost to the innermost named loop, the guard conditions met
    on the way, and the body of the innermost loop."""
    wanted = [r.loop(n) for n in names]
    chain: list[Loop] = []
    conds: list[Expr] = []
    # the outermost named loop is the one whose subtree holds all others
    top = next(
        (w for w in wanted if all(o is w or _contains(w, o) for o in wanted)),
        None,
    )
    if top is None:
        raise r.error(f"loops {', '.join(names)} are not nested inside one another")
    cur: Stmt = top
    remaining = set(map(id, wanted))
    while True:
        assert isinstance(cur, Loop)
        chain.append(cur)
        remaining.discard(id(cur))
        if not remaining:
            return chain, conds, cur.body
        body = cur.body
        while len(body) == 1 and isinstance(body[0], Guard):
            conds.append(body[0].cond)
            body = body[0].body
        if len(body) != 1 or not isinstance(body[0], Loop):
            missing = [r.name(w.var) for w in wanted if id(w) in remaining]
            raise r.error(
                f"loop {r.name(cur.var)} is not perfectly nested around {', '.join(missing)}"
                f" (its body has {len(body)} statements); reorder works on one band of nested loops"
            )
        cur = body[0]


def _contains(outer: Loop, inner: Loop) -> bool:

    return any(s is inner for s in walk_stmts(outer.body))


def check_permutable(r: Resolver, body: tuple[Stmt, ...]) -> None:
    written, read = accesses(body)
    for buf, idx in written.items():
        keys = {tuple(format_expr(e, typed=True) for e in i) for i in idx + read.get(buf, [])}
        if len(keys) > 1:
            raise r.error(
                f"{buf.name} is accessed at different indices inside the band; reordering could change the result"
            )


def rebuild(chain: list[Loop], conds: list[Expr], body: tuple[Stmt, ...]) -> Loop:
    """Nest `chain` (outermost first) around `body`, the guard conditions just inside the innermost."""
    if conds:
        body = (Guard(all_of(conds), body),)
    for loop in reversed(chain):
        body = (replace(loop, body=body),)
    out = body[0]
    assert isinstance(out, Loop)
    return out


def reorder(nest: LoopNest, step: Reorder) -> LoopNest:
    r = Resolver(nest, format_step(step))
    chain, conds, body = band(r, step.loops)
    check_permutable(r, chain[0].body)
    named = {id(r.loop(n)) for n in step.loops}
    order = iter(r.loop(n) for n in step.loops)
    new_chain = [next(order) if id(loop) in named else loop for loop in chain]
    ordered = _visit_ordered(body)
    if [lp for lp in chain if lp.var in ordered] != [lp for lp in new_chain if lp.var in ordered]:
        loops = ", ".join(r.name(lp.var) for lp in chain if lp.var in ordered)
        raise r.error(
            f"loops {loops} feed a conditional update (an arg-reduction keeps the first of equal values):"
            " they must keep their order"
        )
    return replace_stmt(nest, chain[0], rebuild(new_chain, conds, body))


def _visit_ordered(body: tuple[Stmt, ...]) -> set[Var]:
    """Variables whose visiting order a conditional update depends on: a guard whose condition reads
    what its body writes (a running best), and the variables of the values it stores that do not
    index where they are stored (the position and the candidate, not the output element)."""
    out: set[Var] = set()
    for g in walk_stmts(body):
        if not isinstance(g, Guard):
            continue
        stores = [s for s in walk_stmts(g.body) if isinstance(s, Store)]
        if not {ld.buffer for ld in loads(g.cond)} & {s.buffer for s in stores}:
            continue
        for s in stores:
            placed = set().union(*(free_vars(e) for e in s.index)) if s.index else set()
            out |= free_vars(s.value) - placed
    return out
