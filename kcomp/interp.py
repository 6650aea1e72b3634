"""Loop-IR interpreter: runs a `LoopNest` on numpy arrays, the executable meaning of the loop IR.

Every scheduled nest can be checked against the reference without a compiler.  The nest is compiled
once into nested Python closures (no per-element dispatch on node types); scalars are numpy values of
the compute type (`DType.compute`) and every operation goes through `kcomp.semantics`, so results
match the reference bit for bit where the order of operations is the same.  All loop kinds run
serially, in order.

An innermost loop whose iterations provably do not interact (`kcomp.interp_vector`) runs as numpy
array operations over all its iterations at once ("lanes"): each statement runs for all lanes
before the next one, a Guard or Select narrows the lanes, and a reduction store
`X[idx] = X[idx] op f(lane)` becomes a sequential `ufunc.accumulate`, the same left fold the loop
does.  Reads with `pad=None` are bounds-checked (an out-of-bounds read is a compiler bug);
allocated buffers start filled with NaN (or the integer maximum) so reads of unwritten memory show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kcomp import semantics
from kcomp.dtypes import DType, common
from kcomp.errors import UsageError
from kcomp.expr import LOGICAL, Binary, Buffer, Cast, Const, Expr, Load, Param, Select, Unary, Var, free_vars
from kcomp.interp_vector import REDUCE_UFUNC, vector_plan
from kcomp.loops import Alloc, Guard, Loop, LoopNest, Stmt, Store

Env = list[Any]
ExprFn = Callable[[Env], Any]
StmtFn = Callable[[Env], None]


def run(nest: LoopNest, arrays: dict[str, np.ndarray], params: dict[str, float | int] | None = None) -> None:
    """Execute `nest`, reading inputs from and writing outputs into `arrays` (keyed by buffer name)."""
    compiler = _Compiler(nest, arrays, params or {})
    body = compiler.stmts(nest.body, None)
    env: Env = [None] * len(compiler.slots)
    with np.errstate(all="ignore"):
        for f in body:
            f(env)


def _convert(f: ExprFn, src: DType, dst: DType) -> ExprFn:
    if src.compute is dst.compute:
        return f
    np_dst = dst.compute.numpy
    return lambda env: np.asarray(f(env)).astype(np_dst)


def _check_bounds(buf: Buffer, idx: tuple, shape: tuple[int, ...]) -> bool:
    """Whether every (scalar or lane-array) index lies inside `shape`."""
    for i, n in zip(idx, shape, strict=True):
        if isinstance(i, np.ndarray) and i.ndim:
            if i.size and (i.min() < 0 or i.max() >= n):
                return False
        elif not 0 <= i < n:
            return False
    return True


def _widen(dtype: DType) -> Callable[[Any], Any]:
    """`semantics.as_compute` for `dtype`, skipped where storage already is the compute type."""
    if dtype.compute is dtype:
        return lambda x: x
    return lambda x: semantics.as_compute(x, dtype)


def _bounds_error(buf: Buffer, idx: tuple) -> IndexError:
    return IndexError(f"read or write of {buf.name}{list(buf.shape)} out of bounds at {idx}")


class _Compiler:
    def __init__(self, nest: LoopNest, arrays: dict[str, np.ndarray], params: dict[str, float | int]):
        self.storage: dict[Buffer, np.ndarray] = {}
        for b in nest.inputs + nest.outputs:
            if b.name not in arrays:
                raise UsageError(f"{nest.name}: no array given for {b.name}")
            a = arrays[b.name]
            if a.shape != b.shape or a.dtype != b.dtype.numpy:
                raise UsageError(
                    f"{nest.name}: {b.name} must be {b.dtype}{list(b.shape)}, got {a.dtype}{list(a.shape)}"
                )
            self.storage[b] = a
        self.params: dict[Param, Any] = {}
        for p in nest.params:
            if p.name not in params:
                raise UsageError(f"{nest.name}: no value given for parameter {p.name}")
            self.params[p] = semantics.as_compute(
                semantics.cast(np.asarray(params[p.name]), p.dtype), p.dtype
            )
        self.slots: dict[Var, int] = {}
        self.reductions: set[Store] = set()  # of the innermost loop being compiled as lanes

    # ------------------------------------------------------------ statements

    def stmts(self, body: tuple[Stmt, ...], lane: Var | None) -> list[StmtFn]:
        return [self.stmt(s, lane) for s in body]

    def stmt(self, s: Stmt, lane: Var | None) -> StmtFn:
        match s:
            case Loop():
                return self.loop(s)
            case Alloc():
                return self.alloc(s, lane)
            case Guard():
                return self.guard(s, lane)
            case Store():
                return self.store(s, lane)
        raise TypeError(f"not a statement: {s!r}")

    def loop(self, s: Loop) -> StmtFn:
        slot = self.slots.setdefault(s.var, len(self.slots))
        plan = vector_plan(s)
        if plan is not None:
            self.reductions = plan
            body = self.stmts(s.body, s.var)
            lanes = np.arange(s.extent, dtype=np.int32)

            def vector_loop(env: Env) -> None:
                env[slot] = lanes
                for f in body:
                    f(env)

            return vector_loop
        body = self.stmts(s.body, None)
        values = [np.int32(i) for i in range(s.extent)]

        def loop(env: Env) -> None:
            for i in values:
                env[slot] = i
                for f in body:
                    f(env)

        return loop

    def alloc(self, s: Alloc, lane: Var | None) -> StmtFn:
        buf = s.buffer
        arr = np.empty(buf.shape, buf.dtype.numpy)
        self.storage[buf] = arr
        poison = (
            np.nan if buf.dtype.is_float else (True if buf.dtype is DType.BOOL else np.iinfo(arr.dtype).max)
        )
        body = self.stmts(s.body, lane)

        def alloc(env: Env) -> None:
            arr.fill(poison)
            for f in body:
                f(env)

        return alloc

    def guard(self, s: Guard, lane: Var | None) -> StmtFn:
        cond = self.expr(s.cond, lane)
        body = self.stmts(s.body, lane)
        if lane is None or lane not in free_vars(s.cond):

            def guard(env: Env) -> None:
                if cond(env):
                    for f in body:
                        f(env)

            return guard
        slot = self.slots[lane]

        def narrow(env: Env) -> None:
            lanes = env[slot]
            keep = lanes[np.broadcast_to(cond(env), lanes.shape)]
            if keep.size:
                env[slot] = keep
                for f in body:
                    f(env)
                env[slot] = lanes

        return narrow

    def store(self, s: Store, lane: Var | None) -> StmtFn:
        buf, arr, dtype = s.buffer, self.storage[s.buffer], s.buffer.dtype
        idx = [self.expr(i, lane) for i in s.index]
        if lane is not None and s in self.reductions:
            return self.reduction(s, lane, idx)
        value = self.expr(s.value, lane)
        shape, cast = buf.shape, semantics.cast

        def store(env: Env) -> None:
            i = tuple(f(env) for f in idx)
            if not _check_bounds(buf, i, shape):
                raise _bounds_error(buf, i)
            arr[i] = cast(value(env), dtype)

        return store

    def reduction(self, s: Store, lane: Var, idx: list[ExprFn]) -> StmtFn:
        """`X[idx] = X[idx] op rest(lane)` over all lanes: the loop's left fold, as `ufunc.accumulate`."""
        buf, arr, ctype = s.buffer, self.storage[s.buffer], s.buffer.dtype.compute.numpy
        assert isinstance(s.value, Binary)
        ufunc = REDUCE_UFUNC[s.value.op]
        rest = self.expr(s.value.rhs, lane)
        slot = self.slots[lane]

        def reduce(env: Env) -> None:
            i = tuple(f(env) for f in idx)
            if not _check_bounds(buf, i, buf.shape):
                raise _bounds_error(buf, i)
            lanes = env[slot]
            values = np.broadcast_to(np.asarray(rest(env), dtype=ctype), lanes.shape)
            seq = np.concatenate((np.asarray(arr[i], dtype=ctype).reshape(1), values))
            arr[i] = semantics.cast(ufunc.accumulate(seq, dtype=ctype)[-1], buf.dtype)

        return reduce

    # ------------------------------------------------------------ expressions

    def expr(self, e: Expr, lane: Var | None) -> ExprFn:
        if lane is not None and lane not in free_vars(e):
            lane = None  # NOTE: scalar code for lane-independent parts (cheaper, same values)
        match e:
            case Const(value=v, dtype=dt):
                c = semantics.as_compute(semantics.cast(np.asarray(v), dt), dt)
                return lambda env: c
            case Var():
                slot = self.slots[e]
                return lambda env: env[slot]
            case Param():
                p = self.params[e]
                return lambda env: p
            case Load():
                return self.load(e, lane)
            case Unary(op=op, x=x):
                fx, unary = self.expr(x, lane), semantics.unary
                return lambda env: unary(op, fx(env))
            case Cast(dtype=dt, x=x):
                fx, cast, widen = self.expr(x, lane), semantics.cast, semantics.as_compute
                return lambda env: widen(cast(fx(env), dt), dt)
            case Binary(op=op, lhs=a, rhs=b):
                fa, fb, binary = self.expr(a, lane), self.expr(b, lane), semantics.binary
                if op not in LOGICAL:
                    t = common(a.dtype, b.dtype)
                    fa, fb = _convert(fa, a.dtype, t), _convert(fb, b.dtype, t)
                return lambda env: binary(op, fa(env), fb(env))
            case Select():
                return self.select(e, lane)
        raise TypeError(f"not an expression: {e!r}")

    def load(self, e: Load, lane: Var | None) -> ExprFn:
        buf, arr, dtype, shape = e.buffer, self.storage[e.buffer], e.buffer.dtype, e.buffer.shape
        idx = [self.expr(i, lane) for i in e.index]
        widen = _widen(dtype)
        if e.pad is None:

            def load(env: Env) -> Any:
                i = tuple(f(env) for f in idx)
                if not _check_bounds(buf, i, shape):
                    raise _bounds_error(buf, i)
                return widen(arr[i])

            return load
        pad = semantics.as_compute(semantics.cast(np.asarray(e.pad), dtype), dtype)
        if lane is None:

            def padded(env: Env) -> Any:
                i = tuple(f(env) for f in idx)
                return widen(arr[i]) if _check_bounds(buf, i, shape) else pad

            return padded

        def padded_lanes(env: Env) -> Any:
            i = [f(env) for f in idx]
            ok = np.asarray(True)
            for k, n in zip(i, shape, strict=True):
                ok = ok & (k >= 0) & (k < n)
            clipped = tuple(np.clip(k, 0, n - 1) for k, n in zip(i, shape, strict=True))
            return np.where(ok, widen(arr[clipped]), pad)

        return padded_lanes

    def select(self, e: Select, lane: Var | None) -> ExprFn:
        t = common(e.then.dtype, e.other.dtype)
        cond = self.expr(e.cond, lane)
        then = _convert(self.expr(e.then, lane), e.then.dtype, t)
        other = _convert(self.expr(e.other, lane), e.other.dtype, t)
        if lane is None:
            return lambda env: then(env) if cond(env) else other(env)
        slot, np_t = self.slots[lane], t.numpy

        def select_lanes(env: Env) -> Any:
            c = cond(env)
            if np.ndim(c) == 0:
                return then(env) if c else other(env)
            lanes = env[slot]
            out = np.empty(lanes.shape, np_t)
            for mask, branch in ((c, then), (~c, other)):
                if mask.any():
                    env[slot] = lanes[mask]
                    out[mask] = branch(env)
            env[slot] = lanes
            return out

        return select_lanes
