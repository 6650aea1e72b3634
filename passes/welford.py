"""welford M V: a mean and the sum of squared deviations from it, computed in one pass.

    M[i] = 0;  for d: M[i] = M[i] + u / D                 welford M V
    V[i] = 0;  for d: V[i] = V[i] + (u - M[i]) * (u - M[i]) * c
                                                          for l: m[l] = 0; q[l] = 0
                                                          for d_o: for l:        (L lanes, d = d_o * L + l)
                                                              q[l] += (u - m[l]) * (u - m[l] - (u - m[l]) / (d_o + 1))
                                                              m[l] += (u - m[l]) / (d_o + 1)
                                                          M[i] = sum_l m[l] / L
                                                          V[i] = sum_l (q[l] + D/L * (m[l] - M[i])^2) * c

Welford's update (1962) keeps a running mean m and the running sum q of squared deviations from
it, so the row is read once and no cancellation occurs (the textbook one-pass E[u^2] - E[u]^2 loses
every digit when the mean is large against the spread).  The row is split over L lanes (16, or the
largest of 8, 4, 2, 1 dividing its length), each with its own running m and q, so the inner loop
over l is elementwise and vectorizes; the lanes saw equal counts, and Chan et al.'s merge of equal
halves gives the row's mean and sum of squares exactly as above.  Layernorm's variance after its
centring is the `V` here; an elementwise intermediate in between (`xc = X - M`) is looked through.

Legal when M is an average (`u / D` or `u * c` with c = 1/D, D the reduced extent), V's summand is
the square of `u - M[i]` (the same u) times a constant, both are one initialisation and one
reduction over the same loops, siblings of one statement list, and nothing between them writes u's
inputs or touches V.  The result differs from the two-pass form by rounding only.
"""

from __future__ import annotations

from kcomp.affine import const
from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Expr, Load, Scope, Var, loads, substitute
from kcomp.loops import Alloc, Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.loops.common import Resolver
from kcomp.passes.online import is_update, reductions, replace_body, resolve, text
from kcomp.passes.producers import reads, writes
from kcomp.printer import format_expr
from kcomp.schedule import Welford, format_step

LANES = (16, 8, 4, 2, 1)


def welford(nest: LoopNest, step: Welford) -> LoopNest:
    r = Resolver(nest, format_step(step))
    m, v = r.buffer(step.mean), r.buffer(step.var)
    body, m_upd, v_init, v_upd, (m_loops, m_store), (v_loops, v_store) = reductions(
        r, nest, m, v, step.mean, step.var
    )
    if not is_update(m_store, BinaryOp.ADD) or not is_update(v_store, BinaryOp.ADD):
        raise r.error(f"needs {step.mean}[..] += u / D and {step.var}[..] += (u - {step.mean}[..])^2 * c")
    if [lp.extent for lp in m_loops] != [lp.extent for lp in v_loops]:
        raise r.error(
            f"the loops reducing {step.mean} and {step.var} differ; one pass needs the same iterations"
        )
    reduced = [lp for lp in m_loops if not any(lp.var is e for e in m_store.index)]
    if len(reduced) != 1 or reduced[0] is not m_loops[-1]:
        raise r.error(f"{step.mean} must be reduced over one innermost loop")
    d_loop = reduced[0]
    to_m = {b.var: a.var for a, b in zip(m_loops, v_loops, strict=True)}
    if text(tuple(substitute(e, to_m) for e in v_store.index)) != text(m_store.index):
        raise r.error(f"{step.mean} and {step.var} are reduced at different indices")
    u = _average(m_store.value.rhs, d_loop.extent)
    if u is None:
        raise r.error(
            f"{step.mean}'s summand is not an average (u / {d_loop.extent}, or u times 1/{d_loop.extent})"
        )
    first, last = body.index(m_upd), body.index(v_upd)
    between = body[first + 1 : last]
    w = substitute(resolve(v_store.value.rhs, between, {m, v}), to_m)
    found = _squared_deviation(w, m, m_store.index)
    if found is None:
        raise r.error(f"{step.var}'s summand is not (u - {step.mean}[..])^2 times a constant")
    u2, scale = found
    if text((u2,)) != text((u,)):
        raise r.error(
            f"the deviation's u ({format_expr(u2)}) is not what {step.mean} averages ({format_expr(u)})"
        )
    needs = {ld.buffer for ld in loads(u)}
    if m in needs or v in needs:
        raise r.error(f"u must not read {step.mean} or {step.var}")
    for t in between:
        if t is not v_init and ((writes(t) & needs) or v in reads(t) or v in writes(t)):
            raise r.error(
                f"a statement between the two reductions writes what the one pass reads, or touches {step.var}"
            )
    combined = _one_pass(m_loops, m_store, v, u, scale)
    new_body: list[Stmt] = []
    for t in body:
        if t is m_upd:
            new_body.append(combined)
        elif t is not v_upd and t is not v_init:
            new_body.append(t)
    return replace_body(nest, body, tuple(new_body))


def _average(e: Expr, n: int) -> Expr | None:
    """u when `e` is `u / n`, `u * c` or `c * u` with c = 1/n (to f32 rounding)."""
    if isinstance(e, Binary) and e.op is BinaryOp.DIV and _constant(e.rhs) == n:
        return e.lhs
    if isinstance(e, Binary) and e.op is BinaryOp.MUL:
        for a, b in ((e.lhs, e.rhs), (e.rhs, e.lhs)):
            c = _constant(b)
            if c is not None and abs(c * n - 1.0) < 1e-6:
                return a
    return None


def _squared_deviation(e: Expr, m: Buffer, index: tuple[Expr, ...]) -> tuple[Expr, Expr] | None:
    """(u, c) when `e` is `(u - M[i]) * (u - M[i])` times or divided by a constant (c its factor)."""
    scale: Expr = Const(1.0, DType.F32)
    if isinstance(e, Binary) and e.op in (BinaryOp.MUL, BinaryOp.DIV) and _constant(e.rhs) is not None:
        k = _constant(e.rhs)
        scale = Const(k if e.op is BinaryOp.MUL else 1.0 / k, DType.F32)
        e = e.lhs
    elif isinstance(e, Binary) and e.op is BinaryOp.MUL and _constant(e.lhs) is not None:
        scale, e = Const(_constant(e.lhs), DType.F32), e.rhs
    if not (isinstance(e, Binary) and e.op is BinaryOp.MUL and text((e.lhs,)) == text((e.rhs,))):
        return None
    d = e.lhs
    if not (isinstance(d, Binary) and d.op is BinaryOp.SUB and isinstance(d.rhs, Load)):
        return None
    if d.rhs.buffer is not m or text(d.rhs.index) != text(index):
        return None
    return d.lhs, scale


def _constant(e: Expr) -> float | None:
    return float(e.value) if isinstance(e, Const) and float(e.value) != 0.0 else None


def _one_pass(m_loops: list[Loop], m_store: Store, v: Buffer, u: Expr, scale: Expr) -> Stmt:
    """The rows' loops around: lane accumulators, the lane-split Welford update, the merge."""
    d_loop = m_loops[-1]
    n = d_loop.extent
    lanes = next(k for k in LANES if n % k == 0)
    mean_l = Buffer(f"{m_store.buffer.name}_lane", DType.F32, (lanes,), Scope.LOCAL)
    sq_l = Buffer(f"{v.name}_lane", DType.F32, (lanes,), Scope.LOCAL)
    l0, do, l1, l2, l3 = (Var(x) for x in ("w_l", "w_o", "w_i", "w_m", "w_q"))
    f32 = lambda x: Const(float(x), DType.F32)  # noqa: E731
    init = Loop(l0, lanes, LoopKind.SERIAL, (Store(mean_l, (l0,), f32(0)), Store(sq_l, (l0,), f32(0))))
    x = substitute(u, {d_loop.var: Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, do, const(lanes)), l1)})
    ml = Load(mean_l, (l1,))
    delta = Binary(BinaryOp.SUB, x, ml)
    count = Binary(BinaryOp.ADD, _as_f32(do), f32(1))
    step = Binary(BinaryOp.DIV, delta, count)
    q_new = Binary(
        BinaryOp.ADD, Load(sq_l, (l1,)), Binary(BinaryOp.MUL, delta, Binary(BinaryOp.SUB, delta, step))
    )
    update = Loop(
        do,
        n // lanes,
        LoopKind.SERIAL,
        (
            Loop(
                l1,
                lanes,
                LoopKind.SERIAL,
                (Store(sq_l, (l1,), q_new), Store(mean_l, (l1,), Binary(BinaryOp.ADD, ml, step))),
            ),
        ),
    )
    mbuf, idx = m_store.buffer, m_store.index
    mean_sum = Store(
        mbuf,
        idx,
        Binary(BinaryOp.ADD, Load(mbuf, idx), Binary(BinaryOp.DIV, Load(mean_l, (l2,)), f32(lanes))),
    )
    dev = Binary(BinaryOp.SUB, Load(mean_l, (l3,)), Load(mbuf, idx))
    term = Binary(
        BinaryOp.ADD, Load(sq_l, (l3,)), Binary(BinaryOp.MUL, f32(n // lanes), Binary(BinaryOp.MUL, dev, dev))
    )
    v_sum = Store(v, idx, Binary(BinaryOp.ADD, Load(v, idx), Binary(BinaryOp.MUL, term, scale)))
    merge = (
        Store(mbuf, idx, f32(0)),
        Loop(l2, lanes, LoopKind.SERIAL, (mean_sum,)),
        Store(v, idx, f32(0)),
        Loop(l3, lanes, LoopKind.SERIAL, (v_sum,)),
    )
    inner: Stmt = Alloc(mean_l, (Alloc(sq_l, (init, update, *merge)),))
    for lp in reversed(m_loops[:-1]):
        inner = Loop(lp.var, lp.extent, lp.kind, (inner,))
    return inner


def _as_f32(e: Expr) -> Expr:
    return Cast(DType.F32, e)
