"""The numeric policy as numpy operations: one table used by the reference evaluator (on arrays) and the
loop-IR interpreter (on 0-d arrays), so the two cannot drift apart.

Policy highlights (docs/language.md has the whole text): arithmetic happens in `DType.compute`
(i8 in i32, f16 in f32) and is rounded to the stored type on store; integer `/` truncates toward zero,
`//` and `%` are floor division and floor modulo (Python's), integer overflow wraps; `max`/`min` return
the other operand when one is NaN (IEEE maxNum, C's fmax); `relu(x)` is `max(x, 0)`.
"""

from __future__ import annotations

import math

import numpy as np

from kcomp.dtypes import DType
from kcomp.expr import BinaryOp, UnaryOp

try:  # scipy is optional: its erf is vectorized; math.erf is exact but element by element
    from scipy.special import erf as _erf_vec
except ImportError:  # pragma: no cover - depends on the environment
    _erf_vec = None


def _erf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if _erf_vec is not None:
        return _erf_vec(x).astype(x.dtype, copy=False)
    return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


def _one(x: np.ndarray) -> np.generic:
    return np.asarray(x).dtype.type(1)


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division: the quotient truncated toward zero."""
    q = np.floor_divide(a, b)
    fix = (np.mod(a, b) != 0) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


UNARY = {
    UnaryOp.NEG: np.negative,
    UnaryOp.NOT: np.logical_not,
    UnaryOp.EXP: np.exp,
    UnaryOp.LOG: np.log,
    UnaryOp.SQRT: np.sqrt,
    UnaryOp.RSQRT: lambda x: _one(x) / np.sqrt(x),
    UnaryOp.TANH: np.tanh,
    UnaryOp.ERF: _erf,
    UnaryOp.SIGMOID: lambda x: _one(x) / (_one(x) + np.exp(-x)),
    UnaryOp.RELU: lambda x: np.fmax(x, np.asarray(x).dtype.type(0)),
    UnaryOp.ABS: np.abs,
}

BINARY = {
    BinaryOp.ADD: np.add,
    BinaryOp.SUB: np.subtract,
    BinaryOp.MUL: np.multiply,
    BinaryOp.FLOORDIV: np.floor_divide,
    BinaryOp.MOD: np.mod,
    BinaryOp.POW: np.power,
    BinaryOp.MAX: np.fmax,
    BinaryOp.MIN: np.fmin,
    BinaryOp.LT: np.less,
    BinaryOp.LE: np.less_equal,
    BinaryOp.GT: np.greater,
    BinaryOp.GE: np.greater_equal,
    BinaryOp.EQ: np.equal,
    BinaryOp.NE: np.not_equal,
    BinaryOp.AND: np.logical_and,
    BinaryOp.OR: np.logical_or,
}


def unary(op: UnaryOp, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return UNARY[op](x)


def binary(op: BinaryOp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op is BinaryOp.DIV:
            is_int = np.asarray(a).dtype.kind in "iu"
            return _trunc_div(a, b) if is_int else np.true_divide(a, b)
        return BINARY[op](a, b)


def as_compute(x: np.ndarray, dtype: DType) -> np.ndarray:
    """Values of `dtype` widened to the type arithmetic happens in."""
    return np.asarray(x).astype(dtype.compute.numpy, copy=False)


def cast(x: np.ndarray, dtype: DType) -> np.ndarray:
    """Conversion with C's rules: float to int truncates toward zero, ints wrap."""
    with np.errstate(all="ignore"):
        return np.asarray(x).astype(dtype.numpy)
