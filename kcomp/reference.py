"""Reference semantics: every Program evaluated with numpy, the ground truth for tests, targets and search.

Statements run in order.  A statement `T[index] op= value` ranges its variables over a grid whose axes
are `stmt.vars` (index vars first, then reduced vars); each subexpression is evaluated as an array with
one axis per grid variable, of size 1 on the axes it does not depend on, so numpy broadcasting does the
work of the loops without materialising what an expression does not use.  Values are computed in
`DType.compute` and cast to the target's type on store (`kcomp.semantics` is the one op table).

Speed matters (every test and every search candidate is checked against this): a `+=` of a product is a
single `np.einsum` over the factors (BLAS for matmuls), a load whose indices are distinct plain
variables is a view of the tensor, and statements whose grid would exceed `CHUNK_ELEMENTS` are evaluated
box by box, splitting index axes first and reduced axes after (partial reductions are combined).

Reads see the tensors as they were before the statement (a statement never observes its own writes), and
a temp read before any statement writes it is an error.

numpy's BLAS runs single-threaded here.  The reference is computed in the processes that then time
kernels (`kcomp run --check --bench`, `kcomp bench`), and OpenBLAS's worker threads keep spinning for
a while after a multi-threaded call: a conv2d timed right after its check ran at 40% of its speed,
its OpenMP threads sharing the two cores with idle BLAS threads.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from kcomp import semantics
from kcomp.errors import UsageError
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Expr, Load, Param, Select, Unary, Var, free_vars
from kcomp.program import Program, Reduce, Statement

CHUNK_ELEMENTS = 2**24  # the most elements one evaluated subexpression of a statement may span
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_COMBINE = {Reduce.ADD: np.add, Reduce.MUL: np.multiply, Reduce.MAX: np.fmax, Reduce.MIN: np.fmin}


def evaluate(
    program: Program, inputs: Mapping[str, np.ndarray], params: Mapping[str, float | int] | None = None
) -> dict[str, np.ndarray]:
    """Every output tensor of `program`, by name."""
    tensors = evaluate_all(program, inputs, params)
    missing = [b.name for b in program.outputs if b.name not in tensors]
    if missing:
        raise ValueError(f"program {program.name}: outputs never written: {', '.join(missing)}")
    return {b.name: tensors[b.name] for b in program.outputs}


def evaluate_all(
    program: Program, inputs: Mapping[str, np.ndarray], params: Mapping[str, float | int] | None = None
) -> dict[str, np.ndarray]:
    """Every tensor the program holds after running (inputs, outputs and written temps), by name."""
    params = dict(params or {})
    state: dict[Buffer, np.ndarray] = {}
    for b in program.inputs:
        if b.name not in inputs and b.name not in program.bound:
            raise UsageError(f"program {program.name}: missing input '{b.name}'")
        x = np.asarray(inputs[b.name] if b.name in inputs else program.bound[b.name])
        if x.shape != b.shape:
            raise UsageError(f"input '{b.name}' has shape {x.shape}, the program expects {b.shape}")
        state[b] = x if x.dtype == b.dtype.numpy else semantics.cast(x, b.dtype)
    values = {}
    for p in program.params:
        if p.name not in params:
            raise UsageError(f"program {program.name}: missing parameter '{p.name}'")
        values[p.name] = semantics.as_compute(semantics.cast(np.asarray(params[p.name]), p.dtype), p.dtype)
    with _blas().limit(limits=1, user_api="blas"):
        for stmt in program.statements:
            state[stmt.target] = run_statement(stmt, state, values)
    return {b.name: x for b, x in state.items()}


@functools.cache
def _blas() -> ThreadpoolController:
    """numpy's BLAS, found once (numpy is loaded by now; finding it costs about a millisecond)."""
    return ThreadpoolController()


@dataclass(frozen=True, slots=True)
class _Grid:
    """A box of a statement's iteration grid: one axis per variable, each over [start, stop)."""

    vars: tuple[Var, ...]
    ranges: tuple[tuple[int, int], ...]

    @property
    def ndim(self) -> int:
        return len(self.vars)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.ranges)

    def axis(self, v: Var) -> int:
        for n, u in enumerate(self.vars):
            if u is v:
                return n
        raise ValueError(f"variable {v.name} is not an index of this statement")

    def arange(self, v: Var) -> np.ndarray:
        ax = self.axis(v)
        start, stop = self.ranges[ax]
        shape = [1] * self.ndim
        shape[ax] = stop - start
        return np.arange(start, stop, dtype=np.int32).reshape(shape)

    def view(self, data: np.ndarray, index: tuple[Var, ...]) -> np.ndarray | None:
        """`data[v0, v1, ...]` for distinct plain variables as a strided view, or None if not in bounds."""
        axes = [self.axis(v) for v in index]
        if len(set(axes)) != len(axes) or any(
            self.ranges[a][1] > n for a, n in zip(axes, data.shape, strict=True)
        ):
            return None
        sub = data[tuple(slice(*self.ranges[a]) for a in axes)]
        order = sorted(range(len(axes)), key=lambda d: axes[d])
        sub = sub.transpose(order)
        missing = [a for a in range(self.ndim) if a not in axes]
        return np.expand_dims(sub, tuple(missing)) if missing else sub


@dataclass(frozen=True, slots=True)
class _Ctx:
    tensors: Mapping[Buffer, np.ndarray]
    params: Mapping[str, np.ndarray]
    grid: _Grid

    def tensor(self, b: Buffer) -> np.ndarray:
        if b not in self.tensors:
            raise ValueError(f"tensor '{b.name}' is read before any statement writes it")
        return self.tensors[b]


def _common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Operands brought to one type: a float with an int stays in the float's type (C, not numpy)."""
    if a.dtype == b.dtype:
        return a, b
    fa, fb = a.dtype.kind == "f", b.dtype.kind == "f"
    dt = a.dtype if fa and not fb else b.dtype if fb and not fa else np.result_type(a.dtype, b.dtype)
    return a.astype(dt, copy=False), b.astype(dt, copy=False)


def _eval(e: Expr, ctx: _Ctx) -> np.ndarray:
    """`e` over the grid, in its compute type: full rank with size-1 axes where it does not vary, or 0-d."""
    match e:
        case Const(value=v, dtype=dt):
            return semantics.as_compute(semantics.cast(np.asarray(v), dt), dt)
        case Var():
            return ctx.grid.arange(e)
        case Param(name=name):
            return ctx.params[name]
        case Load():
            return _load(e, ctx)
        case Unary(op=op, x=x):
            return np.asarray(semantics.unary(op, _eval(x, ctx)))
        case Binary(op=op, lhs=lhs, rhs=rhs):
            a, b = _common(_eval(lhs, ctx), _eval(rhs, ctx))
            return np.asarray(semantics.binary(op, a, b))
        case Select(cond=c, then=t, other=o):
            a, b = _common(_eval(t, ctx), _eval(o, ctx))
            return np.asarray(np.where(_eval(c, ctx).astype(bool), a, b))
        case Cast(dtype=dt, x=x):
            return semantics.as_compute(semantics.cast(_eval(x, ctx), dt), dt)
    raise TypeError(f"not an expression: {e!r}")


def _load(ld: Load, ctx: _Ctx) -> np.ndarray:
    data = ctx.tensor(ld.buffer)
    dt = ld.buffer.dtype
    if len(ld.index) != data.ndim:
        raise ValueError(f"{ld.buffer.name} has {data.ndim} dimensions, indexed with {len(ld.index)}")
    if all(isinstance(i, Var) for i in ld.index):
        view = ctx.grid.view(data, ld.index)  # type: ignore[arg-type]
        if view is not None:
            return semantics.as_compute(view, dt)
    idx = [_eval(i, ctx).astype(np.intp) for i in ld.index]
    inside = np.asarray(True)
    for i, n in zip(idx, data.shape, strict=True):
        inside = inside & (i >= 0) & (i < n)
    if ld.pad is None:
        if not inside.all():
            raise ValueError(f"out-of-bounds read of {ld.buffer.name} (a load without padding)")
        return semantics.as_compute(data[tuple(idx)], dt)
    clipped = tuple(np.clip(i, 0, max(n - 1, 0)) for i, n in zip(idx, data.shape, strict=True))
    pad = semantics.cast(np.asarray(ld.pad), dt)
    return semantics.as_compute(np.where(inside, data[clipped], pad), dt)


def _factors(e: Expr) -> list[Expr]:
    """The operands of the multiplication tree at the top of `e` (`a*b*c` -> [a, b, c])."""
    if isinstance(e, Binary) and e.op is BinaryOp.MUL:
        return _factors(e.lhs) + _factors(e.rhs)
    return [e]


def _identity(op: Reduce, dtype: np.dtype) -> np.generic:
    if dtype.kind == "f":
        return dtype.type(op.identity)
    if op in (Reduce.MAX, Reduce.ARGMAX):
        return dtype.type(np.iinfo(dtype).min) if dtype.kind in "iu" else dtype.type(False)
    if op in (Reduce.MIN, Reduce.ARGMIN):
        return dtype.type(np.iinfo(dtype).max) if dtype.kind in "iu" else dtype.type(True)
    return dtype.type(op.identity)


def _boxes(stmt: Statement, groups: list[set[int]]) -> Iterator[tuple[tuple[int, int], ...]]:
    """Boxes covering the grid such that no group of axes (one evaluated array) spans > CHUNK_ELEMENTS.

    Index axes are split first (their boxes are independent), the largest first; reduced axes only when
    that is not enough (their partial results are combined in increasing order, which argmax relies on).
    """
    chunk = list(stmt.extents)
    n_index = len(stmt.index)
    while True:
        cost, worst = max((math.prod(chunk[a] for a in g), sorted(g)) for g in groups)
        cands = [a for a in worst if chunk[a] > 1]
        if cost <= CHUNK_ELEMENTS or not cands:
            break
        a = min(cands, key=lambda a: (a >= n_index, -chunk[a]))
        chunk[a] = max(1, chunk[a] * CHUNK_ELEMENTS // cost)
    per_axis = [
        [(s, min(s + c, n)) for s in range(0, n, c)] for n, c in zip(stmt.extents, chunk, strict=True)
    ]
    return itertools.product(*per_axis)


def _full(x: np.ndarray, ndim: int) -> np.ndarray:
    return x.reshape((1,) * ndim) if x.ndim == 0 else x


def _contract(stmt: Statement, ctx: _Ctx, dtype: np.dtype) -> np.ndarray:
    """Sum over the reduced axes of a product of factors, as one einsum (BLAS for matmuls)."""
    grid, n_index = ctx.grid, len(stmt.index)
    operands, subscripts, used = [], [], set()
    scale = np.asarray(1, dtype)
    for f in _factors(stmt.value):
        x = _eval(f, ctx).astype(dtype, copy=False)
        if x.ndim == 0:
            scale = scale * x
            continue
        axes = [a for a in range(grid.ndim) if x.shape[a] != 1]
        operands.append(x.reshape([x.shape[a] for a in axes]))
        subscripts.append("".join(_LETTERS[a] for a in axes))
        used.update(axes)
    out = [a for a in range(n_index) if a in used]
    spec = ",".join(subscripts) + "->" + "".join(_LETTERS[a] for a in out)
    r = np.einsum(spec, *operands, optimize=True) if operands else np.asarray(1, dtype)
    unused = math.prod(grid.shape[a] for a in range(n_index, grid.ndim) if a not in used)
    r = (r * scale * dtype.type(unused)).astype(dtype, copy=False)  # a reduced var no factor reads
    return r.reshape([grid.shape[a] if a in used else 1 for a in range(n_index)])


def run_statement(
    stmt: Statement, tensors: Mapping[Buffer, np.ndarray], params: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The target's new contents after `stmt` (params already in their compute types)."""
    target, n_index = stmt.target, len(stmt.index)
    index_shape = tuple(stmt.extents[:n_index])
    if index_shape != target.shape:
        raise ValueError(f"{target.name} has shape {target.shape}, its index vars range over {index_shape}")
    if stmt.op is Reduce.ASSIGN and stmt.reduce:
        raise ValueError(f"assignment to {target.name} has reduced variables")
    is_arg = stmt.op in (Reduce.ARGMAX, Reduce.ARGMIN)
    if is_arg and (len(stmt.reduce) != 1 or stmt.accumulate):
        raise ValueError(f"{stmt.op.value} into {target.name} needs exactly one reduced var, no accumulate")
    dtype = target.dtype.compute.numpy
    if stmt.scan is not None:
        return semantics.cast(_scan(stmt, tensors, params, dtype), target.dtype)
    contraction = stmt.op is Reduce.ADD and len(_factors(stmt.value)) >= 2
    exprs = _factors(stmt.value) if contraction else [stmt.value]
    vars_ = stmt.vars
    grid = _Grid(vars_, tuple((0, n) for n in stmt.extents))
    groups = [set(range(n_index))] + [{grid.axis(v) for v in free_vars(e)} for e in exprs]

    if stmt.accumulate:
        if target not in tensors:
            raise ValueError(f"'{target.name}' accumulates onto contents no statement wrote")
        acc = semantics.as_compute(tensors[target], target.dtype).copy()
    elif stmt.op is Reduce.ASSIGN or is_arg:
        acc = np.zeros(index_shape, np.int32 if is_arg else dtype)
    else:
        acc = np.full(index_shape, _identity(stmt.op, dtype), dtype)
    with np.errstate(all="ignore"):  # C semantics: overflow wraps, float->int casts truncate silently
        _run_boxes(stmt, tensors, params, groups, acc, contraction)
    return semantics.cast(acc, target.dtype)


def _scan(
    stmt: Statement, tensors: Mapping[Buffer, np.ndarray], params: Mapping[str, np.ndarray], dtype: np.dtype
) -> np.ndarray:
    """A prefix scan: the value over the whole index space, accumulated along the scanned axis."""
    assert stmt.scan is not None
    shape = tuple(stmt.extents)
    ctx = _Ctx(tensors, params, _Grid(stmt.vars, tuple((0, n) for n in shape)))
    with np.errstate(all="ignore"):
        value = np.broadcast_to(_full(_eval(stmt.value, ctx), len(shape)).astype(dtype, copy=False), shape)
        axis = stmt.index.index(stmt.scan.var)
        if stmt.scan.reverse:
            value = np.flip(value, axis)
        out = _COMBINE[stmt.op].accumulate(value, axis=axis, dtype=dtype)
        if stmt.scan.exclusive:
            first = np.full_like(np.take(out, [0], axis=axis), _identity(stmt.op, dtype))
            out = np.concatenate([first, np.take(out, range(shape[axis] - 1), axis=axis)], axis=axis)
        return np.flip(out, axis) if stmt.scan.reverse else np.ascontiguousarray(out)


def _run_boxes(
    stmt: Statement,
    tensors: Mapping[Buffer, np.ndarray],
    params: Mapping[str, np.ndarray],
    groups: list[set[int]],
    acc: np.ndarray,
    contraction: bool,
) -> None:
    """Fold every box of the grid into `acc` (the target's contents in its compute type)."""
    vars_, n_index, dtype = stmt.vars, len(stmt.index), acc.dtype
    best: np.ndarray | None = None
    for box in _boxes(stmt, groups):
        ctx = _Ctx(tensors, params, _Grid(vars_, box))
        sl = tuple(slice(a, b) for a, b in box[:n_index])
        if contraction:
            acc[sl] = acc[sl] + _contract(stmt, ctx, dtype)
            continue
        value = _full(_eval(stmt.value, ctx), len(vars_))
        if stmt.op is Reduce.ASSIGN:
            acc[sl] = value
        elif stmt.op in (Reduce.ARGMAX, Reduce.ARGMIN):
            best = _arg_update(stmt, value, box, acc, best)
        else:
            shape = value.shape[:n_index] + ctx.grid.shape[n_index:]
            value = np.broadcast_to(value.astype(dtype, copy=False), shape)
            axes = tuple(range(n_index, len(vars_)))
            # NOTE: dtype= keeps integer reductions in the compute type, wrapping (numpy would
            # widen i32 sums and products to i64, which then overflow a rank-0 accumulator)
            part = _COMBINE[stmt.op].reduce(value, axis=axes, dtype=dtype) if axes else value
            acc[sl] = _COMBINE[stmt.op](acc[sl], part, dtype=dtype)


def _arg_update(
    stmt: Statement,
    value: np.ndarray,
    box: tuple[tuple[int, int], ...],
    idx: np.ndarray,
    best: np.ndarray | None,
) -> np.ndarray:
    """Fold one box of an argmax/argmin into (best, idx), like `if (v > best) {best = v; idx = r}`.

    NaN never wins (it compares false), the first of equal values wins, and an index stays 0 when no
    value beats the identity.
    """
    n_index = len(stmt.index)
    start, stop = box[n_index]
    sign = Reduce.ARGMAX if stmt.op is Reduce.ARGMAX else Reduce.ARGMIN
    if best is None:
        best = np.full(idx.shape, _identity(sign, value.dtype), value.dtype)
    v = np.broadcast_to(value, (*value.shape[:n_index], stop - start))
    if v.dtype.kind == "f":
        v = np.where(np.isnan(v), _identity(sign, v.dtype), v)
    pick = np.argmax if sign is Reduce.ARGMAX else np.argmin
    at = pick(v, axis=n_index)
    got = np.take_along_axis(v, at[..., None], axis=n_index)[..., 0]
    sl = tuple(slice(a, b) for a, b in box[:n_index])
    better = got > best[sl] if sign is Reduce.ARGMAX else got < best[sl]
    best[sl] = np.where(better, got, best[sl])
    idx[sl] = np.where(better, at + start, idx[sl])
    return best
