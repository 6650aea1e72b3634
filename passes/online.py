"""online M S: a maximum and a sum of exponentials relative to it, computed in one pass.

    M[i] = -inf;  for r: M[i] = max(M[i], u)               online M S
    S[i] = 0;     for r: S[i] = S[i] + exp(u - M[i]) * v     M[i] = -inf;  S[i] = 0
                                                              for r:
                                                                S[i] = S[i] * scale(M[i], m') + term(u, m', v)
                                                                M[i] = m'                where m' = max(M[i], u)
                                                              S[i] = S[i] * exp(M[i] - M[i])

The running-max rewrite of softmax's normaliser (Milakov & Gimelshein, 2018): when the maximum
grows from m to m', the partial sum is rescaled by exp(m - m'), so X is read once instead of twice.
`scale` is exactly 1 when the maximum did not change and `term` is exactly v when u is the new
maximum (`select(...)`), so no `exp(-inf - -inf)` NaN appears while a row starts with -inf; the
last line gives an all -inf (or +inf) row the NaN the two-pass form gives, and is a multiplication
by exactly 1 otherwise.  The result differs from the two-pass form by rounding only.

The summand may reach M through elementwise intermediates (`e = exp(X - M)`, `S += e`): their
values are substituted into the one-pass update (the intermediates stay for their other readers).
The four producing statements must be siblings of one statement list (top level, or inside a loop
after `compute_at`), the update loops of M and S must have the same extents, and M's value `u` must
be the exponent's `u`.  The rewritten update has two stores, so it runs in scalar code; it pays
where a row does not fit the cache (the default scheduler's rule) or on a memory-bound target.
"""

from __future__ import annotations

from dataclasses import replace

from kcomp.expr import (
    Binary,
    BinaryOp,
    Buffer,
    Const,
    Expr,
    Load,
    Select,
    Unary,
    UnaryOp,
    Var,
    loads,
    rewrite,
    substitute,
)
from kcomp.loops import Loop, LoopKind, LoopNest, Stmt, Store, map_stmts
from kcomp.loops.common import Resolver, clone
from kcomp.passes.producers import reads, store_chain, stored, writes
from kcomp.printer import format_expr
from kcomp.schedule import Online, format_step

_SUBSTITUTION_DEPTH = 8


def online(nest: LoopNest, step: Online) -> LoopNest:
    r = Resolver(nest, format_step(step))
    m, s = r.buffer(step.max), r.buffer(step.sum)
    body, m_upd, s_init, s_upd, (m_loops, m_store), (s_loops, s_store) = reductions(
        r, nest, m, s, step.max, step.sum
    )
    if not is_update(m_store, BinaryOp.MAX) or not is_update(s_store, BinaryOp.ADD):
        raise r.error(
            f"needs {step.max}[..] = max({step.max}[..], u) and {step.sum}[..] = {step.sum}[..] + exp(u - {step.max}[..]) * v"
        )
    if [lp.extent for lp in m_loops] != [lp.extent for lp in s_loops]:
        raise r.error(
            f"the loops reducing {step.max} and {step.sum} differ; one pass needs the same iterations"
        )
    to_s = {a.var: b.var for a, b in zip(m_loops, s_loops, strict=True)}
    m_index = tuple(substitute(e, to_s) for e in m_store.index)
    if text(m_index) != text(s_store.index):
        raise r.error(f"{step.max} and {step.sum} are reduced at different indices")
    u = substitute(m_store.value.rhs, to_s)
    first, last = body.index(m_upd), body.index(s_upd)
    between = body[first + 1 : last]
    w = resolve(s_store.value.rhs, between, {m, s})
    found = _split_term(w, m, m_index)
    if found is None:
        raise r.error(f"the summand of {step.sum} is not exp(u - {step.max}[..]) times a factor")
    a, v = found
    if text((a,)) != text((u,)):
        raise r.error(
            f"the exponent's u ({format_expr(a)}) is not the value {step.max} takes the maximum of ({format_expr(u)})"
        )
    if any(ld.buffer in (m, s) for e in (a, *([v] if v is not None else [])) for ld in loads(e)):
        raise r.error(f"u and v must not read {step.max} or {step.sum}")
    needs = {ld.buffer for e in (a, *([v] if v is not None else [])) for ld in loads(e)}
    for t in between:
        if t is s_init:
            continue
        if (writes(t) & needs) or (s in reads(t)) or (s in writes(t)):
            raise r.error(
                f"a statement between the two reductions writes what the one pass reads, or touches {step.sum}"
            )
    combined = _combined(s_loops, s_store, m, m_index, a, v)
    final = _finalize(s_init, s, m)
    late_init = body.index(s_init) > first  # S's initialisation moves up to the one pass
    new_body: list[Stmt] = []
    for t in body:
        if t is m_upd:
            new_body += [*([s_init] if late_init else []), combined, final]
        elif t is not s_upd and not (late_init and t is s_init):
            new_body.append(t)
    return replace_body(nest, body, tuple(new_body))


def reductions(r: Resolver, nest: LoopNest, a: Buffer, b: Buffer, a_name: str, b_name: str) -> tuple:
    """What a one-pass rewrite of reductions `a` then `b` starts from: their common statement list,
    a's update, b's initialisation and update, and each update's (loops, store); ScheduleError
    naming the step when they are not shaped so."""
    body = siblings(nest.body, a, b)
    if body is None:
        raise r.error(f"{a_name} and {b_name} are not computed side by side in one statement list")
    _, a_upd = pair(r, body, a, a_name)
    b_init, b_upd = pair(r, body, b, b_name)
    if not body.index(a_upd) < body.index(b_upd):
        raise r.error(f"{b_name} must be reduced after {a_name}")
    return body, a_upd, b_init, b_upd, chain(r, a_upd, a_name), chain(r, b_upd, b_name)


def siblings(body: tuple[Stmt, ...], m: Buffer, s: Buffer) -> tuple[Stmt, ...] | None:
    """The innermost statement list in which both `m` and `s` are written by direct children."""
    direct = [t for t in body if m in stored(t)], [t for t in body if s in stored(t)]
    for t in body:
        if not isinstance(t, Store) and (m in stored(t) or s in stored(t)):
            inner = siblings(t.body, m, s)
            if inner is not None:
                return inner
    return body if all(direct) else None


def pair(r: Resolver, body: tuple[Stmt, ...], buf: Buffer, name: str) -> tuple[Stmt, Stmt]:
    found = [t for t in body if buf in stored(t)]
    if len(found) != 2 or buf in reads(found[0]) or buf not in reads(found[1]):
        raise r.error(
            f"{name} must be computed by an initialisation and one reduction (found {len(found)} nests)"
        )
    return found[0], found[1]


def chain(r: Resolver, t: Stmt, name: str) -> tuple[list[Loop], Store]:
    found = store_chain(t)
    if found is None or any(lp.kind is not LoopKind.SERIAL for lp in found[0]):
        raise r.error(
            f"{name}'s reduction must be one statement in serial loops (schedule it after `online`)"
        )
    return found


def is_update(st: Store, op: BinaryOp) -> bool:
    v = st.value
    return (
        isinstance(v, Binary)
        and v.op is op
        and isinstance(v.lhs, Load)
        and v.lhs.buffer is st.buffer
        and text(v.lhs.index) == text(st.index)
        and not any(ld.buffer is st.buffer for ld in loads(v.rhs))
    )


def text(index: tuple[Expr, ...]) -> tuple[str, ...]:
    return tuple(format_expr(e, typed=True) for e in index)


def resolve(w: Expr, between: tuple[Stmt, ...], keep: set[Buffer]) -> Expr:
    """`w` with loads of elementwise intermediates computed in `between` replaced by their values."""
    for _ in range(_SUBSTITUTION_DEPTH):
        before = w
        for t in between:
            x = _elementwise(t)
            if x is None or x.buffer in keep:
                continue

            def value_at(ld: Load, x: Store = x) -> Expr:
                pairs = {v: e for v, e in zip(x.index, ld.index, strict=True) if isinstance(v, Var)}
                return substitute(x.value, pairs)

            w = rewrite(
                w, lambda n, x=x, f=value_at: f(n) if isinstance(n, Load) and n.buffer is x.buffer else None
            )
        if w is before:
            break
    return w


def _elementwise(t: Stmt) -> Store | None:
    """The store of a nest `for v...: T[v...] = value` (one loop per dimension, no reduction)."""
    found = store_chain(t)
    if found is None:
        return None
    loops, t = found
    if any(not isinstance(e, Var | Const) for e in t.index):
        return None
    if {id(e) for e in t.index if isinstance(e, Var)} != {id(lp.var) for lp in loops} or len(loops) != len(
        {id(e) for e in t.index if isinstance(e, Var)}
    ):
        return None
    if any(ld.buffer is t.buffer for ld in loads(t.value)):
        return None
    return t


def _split_term(w: Expr, m: Buffer, m_index: tuple[Expr, ...]) -> tuple[Expr, Expr | None] | None:
    """(u, v) when `w` is `exp(u - M[i])`, `exp(u - M[i]) * v` or `v * exp(u - M[i])`."""

    def exp_of(e: Expr) -> Expr | None:
        if (
            isinstance(e, Unary)
            and e.op is UnaryOp.EXP
            and isinstance(e.x, Binary)
            and e.x.op is BinaryOp.SUB
        ):
            rhs = e.x.rhs
            if isinstance(rhs, Load) and rhs.buffer is m and text(rhs.index) == text(m_index):
                return e.x.lhs
        return None

    if (u := exp_of(w)) is not None:
        return u, None
    if isinstance(w, Binary) and w.op is BinaryOp.MUL:
        if (u := exp_of(w.lhs)) is not None:
            return u, w.rhs
        if (u := exp_of(w.rhs)) is not None:
            return u, w.lhs
    return None


def _combined(
    loops: list[Loop], st: Store, m: Buffer, m_index: tuple[Expr, ...], a: Expr, v: Expr | None
) -> Stmt:
    dtype = st.buffer.dtype
    one = Const(1.0, dtype)
    old = Load(m, m_index)
    new = Binary(BinaryOp.MAX, old, a)
    scale = Select(Binary(BinaryOp.EQ, old, new), one, Unary(UnaryOp.EXP, Binary(BinaryOp.SUB, old, new)))
    e = Unary(UnaryOp.EXP, Binary(BinaryOp.SUB, a, new))
    term = (
        Select(Binary(BinaryOp.EQ, a, new), one, e)
        if v is None
        else Select(Binary(BinaryOp.EQ, a, new), v, Binary(BinaryOp.MUL, e, v))
    )
    acc = Load(st.buffer, st.index)
    body: tuple[Stmt, ...] = (
        Store(st.buffer, st.index, Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, acc, scale), term)),
        Store(m, m_index, new),
    )
    for lp in reversed(loops):
        body = (Loop(lp.var, lp.extent, lp.kind, body),)
    return body[0]


def _finalize(init: Stmt, s: Buffer, m: Buffer) -> Stmt:
    """`S = S * exp(M - M)` over S's initialisation loops: NaN for a row whose maximum is infinite."""
    (copy,) = clone((init,))

    def visit(t: Stmt) -> Stmt | None:
        if isinstance(t, Store) and t.buffer is s:
            mm = Load(m, t.index)
            return Store(
                s,
                t.index,
                Binary(BinaryOp.MUL, Load(s, t.index), Unary(UnaryOp.EXP, Binary(BinaryOp.SUB, mm, mm))),
            )
        return None

    return map_stmts((copy,), visit)[0]


def replace_body(nest: LoopNest, old: tuple[Stmt, ...], new: tuple[Stmt, ...]) -> LoopNest:
    """`nest` with the statement list `old` (identity) replaced by `new`."""

    def swap(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        if body is old:
            return new
        out = []
        for t in body:
            inner = t.body if isinstance(t, Store) else swap(t.body)
            out.append(t if isinstance(t, Store) or inner is t.body else replace(t, body=inner))
        return tuple(out)

    return replace(nest, body=swap(nest.body))
