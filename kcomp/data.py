"""Random test inputs: fresh, non-zero, and legal for the program that reads them.

Zeros and constants hide bugs (a wrong index into a zero tensor reads a right answer), so every float is
`±[0.1, 1]` and every integer non-zero.  Two kinds of use need more:

- a tensor whose values index another tensor (`E[ids[t], d]`) gets integers in `[0, n)` for the smallest
  dimension `n` it indexes, so gathers stay in bounds;
- a tensor that reaches the argument of `log`, `sqrt`, `rsqrt` or the base of `pow` through operations
  that keep positive values positive (`+ * / max min`, casts, select branches, copies into temps) gets
  `[0.5, 2]`, so the reference is not full of NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Expr, Load, Select, Unary, UnaryOp, walk
from kcomp.program import Program

_DOMAIN = frozenset({UnaryOp.LOG, UnaryOp.LOG1P, UnaryOp.SQRT, UnaryOp.RSQRT})
_KEEPS_SIGN = frozenset({BinaryOp.ADD, BinaryOp.MUL, BinaryOp.DIV, BinaryOp.MAX, BinaryOp.MIN})
_INT_RANGE = {DType.I32: 50, DType.I64: 50, DType.I8: 100}


def random_inputs(program: Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One fresh array per program input, by name (see the module docstring for the ranges)."""
    bounds = index_bounds(program)
    positive = positive_inputs(program)
    out = {}
    for b in program.free_inputs:
        out[b.name] = _random(b, rng, bounds.get(b), b in positive)
    return out


def random_params(
    program: Program, rng: np.random.Generator, defaults: Mapping[str, float | int] | None = None
) -> dict[str, float | int]:
    """A value for every scalar parameter: floats in [0.5, 1.5], ints in [1, 4]; `defaults` win."""
    defaults = defaults or {}
    out: dict[str, float | int] = {}
    for p in program.params:
        if p.name in defaults:
            out[p.name] = defaults[p.name]
        elif p.dtype.is_float:
            out[p.name] = float(rng.uniform(0.5, 1.5))
        elif p.dtype is DType.BOOL:
            out[p.name] = True
        else:
            out[p.name] = int(rng.integers(1, 5))
    return out


def _random(b: Buffer, rng: np.random.Generator, bound: int | None, positive: bool) -> np.ndarray:
    # NOTE: numpy's generators return a scalar, not an array, for a rank-0 shape
    return np.asarray(_values(b, rng, bound, positive))


def _values(b: Buffer, rng: np.random.Generator, bound: int | None, positive: bool) -> Any:
    shape = b.shape
    if b.dtype is DType.BOOL:
        return rng.random(shape) < 0.5
    if b.dtype.is_int:
        if bound is not None:
            return rng.integers(0, max(bound, 1), shape).astype(b.dtype.numpy)
        hi = _INT_RANGE[b.dtype]
        sign = 1 if positive else rng.choice(np.array([-1, 1]), shape)
        return (rng.integers(1, hi + 1, shape) * sign).astype(b.dtype.numpy)
    if positive:
        return rng.uniform(0.5, 2.0, shape).astype(b.dtype.numpy)
    sign = rng.choice(np.array([-1.0, 1.0]), shape)
    return (rng.uniform(0.1, 1.0, shape) * sign).astype(b.dtype.numpy)


def _all_loads(program: Program) -> Iterator[Load]:
    for s in program.statements:
        for n in walk(s.value):
            if isinstance(n, Load):
                yield n


def index_bounds(program: Program) -> dict[Buffer, int]:
    """Integer tensors read inside another load's index -> the smallest dimension they index."""
    bounds: dict[Buffer, int] = {}
    for outer in _all_loads(program):
        for dim, idx in zip(outer.buffer.shape, outer.index, strict=True):
            for inner in walk(idx):
                if isinstance(inner, Load) and inner.buffer.dtype.is_int:
                    bounds[inner.buffer] = min(bounds.get(inner.buffer, dim), dim)
    return bounds


def _positive_roots(e: Expr) -> set[Buffer]:
    """Tensors whose positivity makes `e` positive (through sign-keeping operations)."""
    match e:
        case Load(buffer=b):
            return {b}
        case Binary(op=op, lhs=a, rhs=b) if op in _KEEPS_SIGN:
            return _positive_roots(a) | _positive_roots(b)
        case Cast(x=x):
            return _positive_roots(x)
        case Select(then=t, other=o):
            return _positive_roots(t) | _positive_roots(o)
    return set()


def positive_inputs(program: Program) -> set[Buffer]:
    """Inputs that reach a log/sqrt/rsqrt argument or a pow base through sign-keeping operations."""
    need: set[Buffer] = set()
    for s in program.statements:
        for n in walk(s.value):
            if isinstance(n, Unary) and n.op in _DOMAIN:
                need |= _positive_roots(n.x)
            elif isinstance(n, Binary) and n.op is BinaryOp.POW:
                need |= _positive_roots(n.lhs)
    frontier = set(need)
    while frontier:  # a temp that must be positive passes the need on to what it is computed from
        t = frontier.pop()
        for s in program.producers(t):
            new = _positive_roots(s.value) - need
            need |= new
            frontier |= new
    return need & set(program.inputs)
