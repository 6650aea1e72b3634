"""epilogue: an elementwise consumer computed where its producer's register tile is written back.

    for k_o: for i_o: for j_o:                          epilogue Z at j_o
      alloc C_local ... (the tile, in registers)
      for a: for b: C[..] = C_local[a, b]               for a: for b: C[..] = C_local[a, b]
    for i, j: Z[i, j] = relu(C[i, j] + bias[j])         if k_o == 2:
                                                          for a2: for b2: Z[..] = relu(C[..] + bias[..])

`epilogue Z at LOOP` takes the nest computing an elementwise Z (one store `Z[i, j, ..] = f(P[i, j, ..],
...)`, P read only at Z's own index) and runs it over the tile right after the copy-out loops that
`cache_write P at LOOP` made, a copy of those loops storing Z instead of P: bias, activation,
scaling, residual add and clamp are applied to the tile while it is in L1, and Z's own pass over P
disappears.  (Applying them inside the copy-out itself, on the registers, keeps two dozen
accumulators live through an erf: gcc spilled them and the GEMM ran 9% slower.)  Where a loop around the write-back does not
index P (the k-blocks of a GEMM, whose tile is written back once per block), the epilogue runs only
in that loop's last iteration, when the tile is final.

Legal when Z is computed by its own nest after P's, nothing between them writes P or anything f
reads, and the write-back stores P at the positions Z reads (each P element is stored by one
iteration of the loops that index it: split, fuse and tile keep stores injective).  P keeps its
buffer (other readers, and a k-blocked tile's next block, read it).
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.affine import const
from kcomp.expr import Binary, BinaryOp, Expr, Load, Var, free_vars, loads, rewrite, substitute
from kcomp.loops import Guard, Loop, LoopNest, Stmt, Store, map_stmts, walk_stmts
from kcomp.loops.common import Resolver, clone, enclosing
from kcomp.passes.producers import drop, reads, sequence, store_chain, writes
from kcomp.schedule import Epilogue, format_step


def epilogue(nest: LoopNest, step: Epilogue) -> LoopNest:
    r = Resolver(nest, format_step(step))
    z = r.buffer(step.tensor)
    loop = r.loop(step.at)
    seq = sequence(nest.body)
    top = next((s for s in seq if any(x is loop for x in walk_stmts((s,)))), None)
    zk = [k for k, s in enumerate(seq) if z in writes(s)]
    if len(zk) != 1:
        raise r.error(
            f"{step.tensor} is computed by {len(zk)} nests; only an elementwise tensor moves into a write-back"
        )
    chain = store_chain(seq[zk[0]])
    if chain is None:
        raise r.error(f"{step.tensor}'s nest is not one store inside its loops (was it scheduled already?)")
    zloops, zstore = chain
    if not all(isinstance(e, Var) for e in zstore.index) or len(set(zstore.index)) != len(zloops):
        raise r.error(f"{step.tensor} is not elementwise: its store is not one loop variable per dimension")
    if any(ld.buffer is z for ld in loads(zstore.value)):
        raise r.error(
            f"{step.tensor}'s value reads {step.tensor}; it is an update, not an elementwise tensor"
        )
    sources = [ld for ld in loads(zstore.value) if any(ld.buffer is b for b in _tiles(loop))]
    tiled = {ld.buffer for ld in sources}
    if len(tiled) != 1:
        raise r.error(
            f"{step.tensor} must read exactly one tensor written back inside loop {step.at} (found {len(tiled)})"
        )
    p = tiled.pop()
    if any(ld.index != zstore.index for ld in sources):
        raise r.error(f"{step.tensor} reads {r.name(p)} away from its own index; only the same element fuses")
    pk = next(k for k, s in enumerate(seq) if s is top)
    if zk[0] <= pk:
        raise r.error(f"{step.tensor} is computed before the nest of loop {step.at}")
    between = list(seq[pk + 1 : zk[0]])
    needs = reads(seq[zk[0]]) - {p}
    for s in between:
        clash = writes(s) & (needs | {p})
        if clash:
            names = ", ".join(sorted(r.name(b) for b in clash))
            raise r.error(
                f"{names} is written between the two nests; computed earlier, {step.tensor} would miss it"
            )
    if writes(top) & needs:
        raise r.error(f"the nest of loop {step.at} writes what {step.tensor} reads")

    found = [
        s for s in walk_stmts(loop.body) if isinstance(s, Store) and s.buffer is p and _is_write_back(s, loop)
    ]
    if not found:
        raise r.error(
            f"loop {step.at} writes no tile of {r.name(p)} back (cache_write {r.name(p)} at {step.at} first)"
        )
    roots = {id(_copy_out(nest, loop, st)): st for st in found}

    def attach(s: Stmt) -> Stmt | tuple[Stmt, ...] | None:
        if id(s) not in roots:
            return None
        st = roots[id(s)]
        (copy,) = clone((s,))

        def to_z(t: Stmt) -> Stmt | None:
            if isinstance(t, Store) and t.buffer is p:
                mapping = dict(zip(zstore.index, t.index, strict=True))
                value = rewrite(
                    zstore.value,
                    lambda n: Load(p, t.index) if isinstance(n, Load) and n.buffer is p else None,
                )
                return Store(z, t.index, substitute(value, mapping))
            return None

        new: Stmt = map_stmts((copy,), to_z)[0]
        last = [
            lp
            for lp in enclosing(nest, st)
            if isinstance(lp, Loop) and not any(lp.var in free_vars(e) for e in st.index)
        ]
        if last:
            cond = [Binary(BinaryOp.EQ, lp.var, const(lp.extent - 1)) for lp in last]
            whole = cond[0]
            for c in cond[1:]:
                whole = Binary(BinaryOp.AND, whole, c)
            new = Guard(whole, (new,))
        return (s, new)

    body = map_stmts(nest.body, attach)
    body = drop(body, (seq[zk[0]],))
    return replace(nest, body=body)


def _copy_out(nest: LoopNest, loop: Loop, store: Store) -> Stmt:
    """The outermost statement inside `loop` around the write-back `store` that does nothing but copy
    the tile out (its loops): the epilogue runs after it, reading the tile from memory, so the
    accumulators are dead by then and need no registers past the copy."""
    path = enclosing(nest, store)
    inner = path[path.index(loop) + 1 :]
    for s in inner:
        if isinstance(s, Loop) and all(
            t.buffer is store.buffer for t in walk_stmts((s,)) if isinstance(t, Store)
        ):
            return s
    return store


def _tiles(loop: Loop) -> set:
    """Buffers that `loop` writes back from a local tile."""
    return {s.buffer for s in walk_stmts(loop.body) if isinstance(s, Store) and _is_write_back(s, loop)}


def _is_write_back(s: Store, loop: Loop) -> bool:
    """A copy of a local tile element into its global tensor (what cache_write writes out)."""
    v = s.value
    return isinstance(v, Load) and v.buffer.scope.value == "local" and s.buffer.scope.value != "local"


def _with_tile(value: Expr, p, element: Expr) -> Expr:
    """Z's value with its reads of P replaced by the tile element being written back."""
    return rewrite(value, lambda n: element if isinstance(n, Load) and n.buffer is p else None)
