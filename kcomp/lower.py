"""Default lowering: tensor IR (`Program`) to loop IR (`LoopNest`), one loop nest per statement.

This is the naive, unscheduled form every schedule starts from, so it mirrors the tensor-IR
semantics literally (before -> after):

    C[i, j] += A[i, k] * B[k, j]          for i, j:  C[i, j] = 0.0            (unless accumulate)
                                           for i, j, k:  C[i, j] = C[i, j] + A[i, k] * B[k, j]

    I[i] argmax= X[i, r]                   alloc I_best: f32[..] global
                                             for i:  I_best[i] = -inf;  I[i] = 0
                                             for i, r:  if X[i, r] > I_best[i]:  I_best[i] = X[i, r];  I[i] = r

Loops run in `index + reduce` order and are serial; initialisation loops are named `i_init`, ...  Every loop binds a fresh `Var` (keeping the
statement's variable name), so a Var object is bound by exactly one Loop in the nest; the printer
disambiguates equal names.  Temporaries are allocated (`Alloc`, global scope) around the whole body.
"""

from __future__ import annotations

from collections.abc import Callable

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Expr, Load, Scope, Var, substitute
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.program import Program, Reduce, Statement

_COMBINE = {
    Reduce.ADD: BinaryOp.ADD,
    Reduce.MUL: BinaryOp.MUL,
    Reduce.MAX: BinaryOp.MAX,
    Reduce.MIN: BinaryOp.MIN,
}
BodyFn = Callable[[dict[Var, Var]], tuple[Stmt, ...]]
# Loops of a reduction's initialisation nest are named `i_init`, ..., so the update nest, the one
# schedules work on, keeps the statement's own names (i, j, k).
INIT = "_init"


def lower(program: Program) -> LoopNest:
    """The default loop nest of `program`: statements in order, temporaries allocated around all."""
    body: tuple[Stmt, ...] = tuple(s for st in program.statements for s in lower_statement(st))
    for temp in reversed(program.temps):
        body = (Alloc(temp, body),)
    return LoopNest(program.name, program.inputs, program.outputs, program.params, body, dict(program.bound))


def lower_statement(st: Statement) -> tuple[Stmt, ...]:
    """The loop nests of one statement: an initialisation nest where needed, then the update nest."""
    if st.op is Reduce.ASSIGN:
        return _nest(st, st.vars, lambda m: (Store(st.target, _idx(st, m), _value(st, m)),))
    if st.op in (Reduce.ARGMAX, Reduce.ARGMIN):
        return _lower_arg(st)
    if st.scan is not None:
        return _lower_scan(st)
    combine = _COMBINE[st.op]
    update = _nest(
        st,
        st.vars,
        lambda m: (
            Store(st.target, _idx(st, m), Binary(combine, Load(st.target, _idx(st, m)), _value(st, m))),
        ),
    )
    if st.accumulate:
        return update
    start = identity(st.op, st.target.dtype)
    init = _nest(st, st.index, lambda m: (Store(st.target, _idx(st, m), start),), INIT)
    return init + update


def identity(op: Reduce, dtype: DType) -> Const:
    """`op`'s identity as a constant of `dtype` (integers use their bounds for -inf and +inf)."""
    value = op.identity
    if dtype.is_int:
        lo, hi = dtype.bounds
        value = lo if value == float("-inf") else hi if value == float("inf") else int(value)
    elif dtype is DType.BOOL:
        value = value > 0
    return Const(value, dtype)


def _lower_arg(st: Statement) -> tuple[Stmt, ...]:
    """argmax/argmin: a running best value beside the index; strict comparison, so the first wins."""
    if len(st.reduce) != 1:
        raise ValueError(f"{st.op.value} on {st.target.name} needs exactly one reduced index")
    dtype = st.value.dtype
    best = Buffer(f"{st.target.name}_best", dtype, st.target.shape, Scope.GLOBAL)
    better = BinaryOp.GT if st.op is Reduce.ARGMAX else BinaryOp.LT

    def init(m: dict[Var, Var]) -> tuple[Stmt, ...]:
        idx = _idx(st, m)
        return (Store(best, idx, identity(st.op, dtype)), Store(st.target, idx, Const(0, st.target.dtype)))

    def update(m: dict[Var, Var]) -> tuple[Stmt, ...]:
        idx, value = _idx(st, m), _value(st, m)
        position: Expr = m[st.reduce[0]]
        if st.target.dtype is not DType.I32:
            position = Cast(st.target.dtype, position)
        cond = Binary(better, value, Load(best, idx))
        return (Guard(cond, (Store(best, idx, value), Store(st.target, idx, position))),)

    return (Alloc(best, _nest(st, st.index, init, INIT) + _nest(st, st.vars, update)),)


def _nest(
    st: Statement, over: tuple[Var, ...], make_body: BodyFn, suffix: str = "", extents: dict | None = None
) -> tuple[Stmt, ...]:
    """Serial loops over `over` (fresh Vars named like the statement's, plus `suffix`; extents the
    statement's unless `extents` gives one) around `make_body(old -> new var mapping)`."""
    fresh = {v: Var(v.name + suffix) for v in over}
    body = make_body(fresh)
    for v in reversed(over):
        body = (Loop(fresh[v], (extents or {}).get(v, st.extent(v)), LoopKind.SERIAL, body),)
    return body


def _lower_scan(st: Statement) -> tuple[Stmt, ...]:
    """A prefix scan as a recurrence over its index in order, the previous element read with the
    identity as its pad (so the first one needs no case of its own):

        Y[b, i] += X[b, i] scan i            for b, i:  Y[b, i] = Y[b, i - 1, pad=0] + X[b, i]
        ... scan reverse i                   for b, w:  Y[b, n-1-w] = Y[b, n-w, pad=0] + X[b, n-1-w]
        ... scan exclusive i                 for b:  Y[b, 0] = 0;  for b, w < n-1:  Y[b, w+1] = Y[b, w] + X[b, w]

    The loop after the recurrence stays serial: every element reads the one before it."""
    assert st.scan is not None
    v, reverse, exclusive = st.scan.var, st.scan.reverse, st.scan.exclusive
    n = st.extent(v)
    start = identity(st.op, st.target.dtype)
    combine = _COMBINE[st.op]

    def shifted(w: Expr, by: int) -> Expr:
        return (
            w if by == 0 else Binary(BinaryOp.ADD if by > 0 else BinaryOp.SUB, w, Const(abs(by), DType.I32))
        )

    def at(m: dict[Var, Var], pos: Expr) -> tuple[Expr, ...]:
        return tuple(pos if u is v else m[u] for u in st.index)

    def body(m: dict[Var, Var]) -> tuple[Stmt, ...]:
        w = m[v]
        step = 1 if not reverse else -1
        if not exclusive:
            pos = w if not reverse else Binary(BinaryOp.SUB, Const(n - 1, DType.I32), w)
            prev = Load(st.target, at(m, shifted(pos, -step)), start.value)
            value = substitute(st.value, {**m, v: pos})
        else:
            here = w if not reverse else Binary(BinaryOp.SUB, Const(n - 1, DType.I32), w)
            pos = shifted(here, step)
            prev = Load(st.target, at(m, here))
            value = substitute(st.value, {**m, v: here})
        return (Store(st.target, at(m, pos), Binary(combine, prev, value)),)

    if not exclusive:
        return _nest(st, st.index, body)
    first = Const(0 if not reverse else n - 1, DType.I32)
    others = tuple(u for u in st.index if u is not v)
    init = _nest(st, others, lambda m: (Store(st.target, at(m, first), start),), INIT)
    return init + (_nest(st, st.index, body, extents={v: n - 1}) if n > 1 else ())


def _idx(st: Statement, m: dict[Var, Var]) -> tuple[Expr, ...]:
    return tuple(m[v] for v in st.index)


def _value(st: Statement, m: dict[Var, Var]) -> Expr:
    return substitute(st.value, m)
