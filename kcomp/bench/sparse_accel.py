"""The accelerator's side of `kcomp bench sparse`: simulated cycles of the sparse product (zero tiles
of the weight skipped: targets/accel/compiler/sparse.py) against the dense one on the same shapes,
both checked against the reference.  The dense run is shared by the cases of one shape."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

import kcomp

SPMM = """dim M = {m}, K = {k}, N = {n}
kernel spmm(W: f32[M, K]{decl}, X: f32[K, N]) -> (Y: f32[M, N]) {{
    Y[m, n] += W[m, k] * X[k, n]
}}"""
TARGET = "accel"


@cache
def _dense_cycles(m: int, k: int, n: int) -> int:
    kernel = kcomp.compile(SPMM.format(m=m, k=k, n=n, decl=""), target=TARGET)
    check = kernel.check(seed=1)
    if not check.ok:
        raise RuntimeError("the dense product's result on the accelerator differs from the reference")
    return int(check.report.cycles)


def accel_cycles(case: Any, w: np.ndarray, fmt: str) -> dict[str, Any]:
    """`accel_cycles_sparse`, `accel_cycles_dense` (or `accel_error`: why not)."""
    try:
        dense = _dense_cycles(case.m, case.k, case.n)
        kernel = kcomp.compile(
            SPMM.format(m=case.m, k=case.k, n=case.n, decl=f" sparse({fmt})"), target=TARGET, weights={"W": w}
        )
        check = kernel.check(seed=1)
    except Exception as e:  # a failure is a recorded result
        return {"accel_error": f"{type(e).__name__}: {e}"}
    if not check.ok:
        return {"accel_error": "the sparse product's result on the accelerator differs from the reference"}
    return {"accel_cycles_sparse": int(check.report.cycles), "accel_cycles_dense": dense}
