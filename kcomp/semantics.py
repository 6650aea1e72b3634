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

_RSQRT_PI = 1.0 / math.sqrt(math.pi)


def _erf_series_coefficients(count: int) -> tuple[float, ...]:
    """c_n = 2^n / (2n+1)!!, from erf(x) = 2/sqrt(pi) e^(-x^2) sum_n c_n x^(2n+1): every term
    positive, so no cancellation however large x is."""
    out = [1.0]
    for n in range(1, count):
        out.append(out[-1] * 2.0 / (2 * n + 1))
    return tuple(out)


_ERF_SERIES = _erf_series_coefficients(48)
_ERFC_FRACTION_TERMS = 90  # the continued fraction below, at x >= 1.5: converged to double precision


def _erf_series(s: np.ndarray) -> np.ndarray:
    """erf(s) for 0 <= s < 1.5 by the positive series (Horner in s^2), as many terms as the
    largest s needs to reach 1e-17."""
    s2 = s * s
    bound = 2.0 * float(s2.max(initial=0.0))
    n, term = 1, 1.0
    while n < len(_ERF_SERIES) and term > 1e-17:
        term *= bound / (2 * n + 1)
        n += 1
    acc = np.full_like(s, _ERF_SERIES[n - 1])
    for c in reversed(_ERF_SERIES[: n - 1]):
        acc *= s2
        acc += c
    return acc * s * np.exp(-s2) * (2.0 * _RSQRT_PI)


def _erf_tail(s: np.ndarray) -> np.ndarray:
    """erf(s) = 1 - erfc(s) for s >= 1.5, erfc by its continued fraction
    e^(-s^2)/sqrt(pi) / (s + (1/2) / (s + 1 / (s + (3/2) / (s + ...))))."""
    frac = np.zeros_like(s)
    for k in range(_ERFC_FRACTION_TERMS, 0, -1):
        frac = (k / 2.0) / (s + frac)
    return 1.0 - np.exp(-s * s) * _RSQRT_PI / (s + frac)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in numpy alone (no scipy: the reference must not depend on what else is installed),
    vectorized, within 1e-15 relative of `math.erf` in float64; an array of x's shape and dtype."""
    x = np.asarray(x)
    a = np.abs(x.astype(np.float64))
    out = np.ones_like(a)  # erf(s) rounds to 1 in float64 from s = 6 on
    for lo, hi, part in ((0.0, 0.5, _erf_series), (0.5, 1.5, _erf_series), (1.5, 6.0, _erf_tail)):
        band = (a >= lo) & (a < hi)
        if band.any():
            out[band] = part(a[band])
    out[np.isnan(a)] = np.nan
    return np.asarray(np.copysign(out, x), dtype=x.dtype if x.dtype.kind == "f" else np.float64)


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
    UnaryOp.LOG1P: np.log1p,
    UnaryOp.EXPM1: np.expm1,
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
