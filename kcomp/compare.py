"""The comparison rule of the numeric policy: when a result counts as equal to the reference.

Every element must satisfy `|actual - ref| <= atol + rtol * |ref|` with

    rtol = RTOL[dtype]                       (f64 1e-9, f32 1e-4, f16 1e-2; integers and bool exact)
    atol = BASE_ATOL[dtype] * max(1, max|ref|) * sqrt(reduction_length)

`atol` scales with the output's magnitude because rounding errors of a sum are relative to the size of
its terms, not of the (possibly cancelled) result; it grows like sqrt(length) because independent
rounding errors of a K-term reduction accumulate like a random walk.  NaN must appear exactly where the
reference has NaN and infinities must match exactly (same sign, same place).  Integers and bools compare
exactly: integer arithmetic wraps identically in every order.

`compare_outputs` takes each output's reduction length from the program (see `reduction_length`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcomp.dtypes import DType
from kcomp.expr import Buffer
from kcomp.program import Program, Reduce

RTOL = {DType.F64: 1e-9, DType.F32: 1e-4, DType.F16: 1e-2, DType.BF16: 5e-2}
BASE_ATOL = {DType.F64: 1e-12, DType.F32: 1e-5, DType.F16: 1e-3, DType.BF16: 1e-2}


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict for one tensor, with the numbers a failure message needs."""

    ok: bool
    max_abs_err: float  # over elements finite in both; inf when NaN/inf positions differ
    max_rel_err: float  # max_abs_err / max|ref|
    atol: float
    rtol: float
    mismatches: int = 0  # elements outside the tolerance (NaN/inf placement included)
    reason: str = ""  # empty when ok

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"MISMATCH ({self.reason})"
        return (
            f"{verdict}: max abs err {self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g} "
            f"(atol {self.atol:.3g}, rtol {self.rtol:.3g})"
        )


def tolerances(dtype: DType, max_ref: float, reduction_length: int = 1) -> tuple[float, float]:
    """(atol, rtol) for an output of `dtype` whose largest reference magnitude is `max_ref`."""
    if dtype not in RTOL:
        return 0.0, 0.0
    atol = BASE_ATOL[dtype] * max(1.0, max_ref) * math.sqrt(max(1, reduction_length))
    return atol, RTOL[dtype]


def compare(actual: np.ndarray, expected: np.ndarray, dtype: DType, reduction_length: int = 1) -> Comparison:
    """Whether `actual` equals the reference `expected` (both of storage type `dtype`) under the policy."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return _fail(f"shape {actual.shape} != expected {expected.shape}")
    want = dtype.numpy
    if actual.dtype != want or expected.dtype != want:
        return _fail(f"dtype {actual.dtype} (expected {expected.dtype}), policy type {want}")
    if dtype not in RTOL:  # integers and bools: exact
        wrong = int(np.count_nonzero(actual != expected))
        err = float(np.max(np.abs(actual.astype(np.int64) - expected.astype(np.int64)), initial=0))
        ref = float(np.max(np.abs(expected.astype(np.int64)), initial=0))
        rel = err / ref if ref else (0.0 if err == 0 else math.inf)
        reason = f"{wrong} elements differ" if wrong else ""
        return Comparison(wrong == 0, err, rel, 0.0, 0.0, wrong, reason)
    a, r = actual.astype(np.float64), expected.astype(np.float64)
    finite_r = np.isfinite(r)
    max_ref = float(np.max(np.abs(r[finite_r]), initial=0.0))
    atol, rtol = tolerances(dtype, max_ref, reduction_length)
    nan_bad = np.isnan(a) != np.isnan(r)
    inf_bad = (np.isinf(a) | np.isinf(r)) & (a != r) & ~np.isnan(a) & ~np.isnan(r)
    both = np.isfinite(a) & finite_r
    diff = np.abs(a[both] - r[both])
    close_bad = int(np.count_nonzero(diff > atol + rtol * np.abs(r[both])))
    placement = int(np.count_nonzero(nan_bad | inf_bad))
    err = math.inf if placement else float(np.max(diff, initial=0.0))
    rel = err / max_ref if max_ref else (0.0 if err == 0 else math.inf)
    reasons = []
    if np.any(nan_bad):
        reasons.append(f"NaN at {int(np.count_nonzero(nan_bad))} positions where the other has none")
    if np.any(inf_bad):
        reasons.append(f"{int(np.count_nonzero(inf_bad))} infinities differ")
    if close_bad:
        reasons.append(f"{close_bad} elements outside tolerance")
    wrong = close_bad + placement
    return Comparison(wrong == 0, err, rel, atol, rtol, wrong, "; ".join(reasons))


def _fail(reason: str) -> Comparison:
    return Comparison(False, math.inf, math.inf, 0.0, 0.0, 0, reason)


def reduction_length(program: Program, tensor: Buffer) -> int:
    """How many rounding steps can stand behind one element of `tensor`, for its tolerance.

    A statement contributes the product of its reduced extents when it sums or multiplies (`+=`, `*=`),
    and 1 otherwise (max/min/argmax and elementwise ops round at most once).  Along a chain the
    contributions add (relative errors of a well-conditioned chain add up), and a tensor written by
    several statements takes the worst: length(T) = max over writers s of (own(s) + max length of the
    other tensors s reads); inputs have length 0.  So `Y = X@W` over K gives K, `Y = b; Y += X@W` gives
    K, and softmax over N gives N + 3.
    """
    memo: dict[Buffer, int] = {}

    def length(t: Buffer, busy: frozenset[Buffer]) -> int:
        if t in memo:
            return memo[t]
        best = 0
        for s in program.producers(t):
            own = math.prod(s.extent(v) for v in s.reduce) if s.op in (Reduce.ADD, Reduce.MUL) else 1
            ups = [length(u, busy | {t}) for u in s.reads if u is not t and u not in busy]
            best = max(best, max(1, own) + max(ups, default=0))
        memo[t] = best
        return best

    return max(1, length(tensor, frozenset()))


def compare_outputs(
    program: Program, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> dict[str, Comparison]:
    """Every output of `program` compared with the reference, by name (a missing output fails)."""
    result = {}
    for b in program.outputs:
        if b.name not in actual:
            result[b.name] = _fail("output missing")
            continue
        result[b.name] = compare(actual[b.name], expected[b.name], b.dtype, reduction_length(program, b))
    return result


@dataclass(frozen=True)
class CheckResult:
    """A run compared with the reference on the same inputs, by the numeric policy; `report` is what
    the target's `run` returned (a simulator's report, say), or None."""

    ok: bool
    max_abs_err: float
    max_rel_err: float
    outputs: dict[str, Comparison]
    report: Any = None

    @classmethod
    def of(cls, comparisons: dict[str, Comparison], report: Any = None) -> CheckResult:
        return cls(
            ok=all(c.ok for c in comparisons.values()),
            max_abs_err=max((c.max_abs_err for c in comparisons.values()), default=0.0),
            max_rel_err=max((c.max_rel_err for c in comparisons.values()), default=0.0),
            outputs=comparisons,
            report=report,
        )
