"""Prefix scans on the accelerator's vector unit (vector_scan.py): along the lanes (vscan, chunk to
chunk through the carry) and down the rows (row by row, tile to tile), forward and reversed,
inclusive and exclusive, every operation, tails in both directions; each kernel against the numpy
reference on random inputs on the three packaged configurations."""

from __future__ import annotations

import pytest
from test_backend import CONFIGS, assert_round_trips, assert_tokens_balance, sim

# N = 37 and M = 21: tails on every configuration (dim 16 and 8), several chunks and row tiles
LANES = """
dim M = 21, N = 37
kernel k(X: f32[M, N], Z: f32[M, N]) -> (C: f32[M, N], R: f32[M, N], P: f32[M, N], Q: f32[M, N], E: f32[M, N], F: f32[M, N]) {
    C[b, i] += X[b, i] scan i
    R[b, i] += X[b, i] * 2.0 - Z[b, i] scan reverse i
    P[b, i] max= X[b, i] scan i
    Q[b, i] min= exp(X[b, i]) scan reverse i
    E[b, i] += X[b, i] scan exclusive i
    F[b, i] *= 1.0 + X[b, i] * 0.01 scan reverse exclusive i
}
"""
# the scan's index is not the contiguous one: the rows carry it
ROWS = """
dim M = 300, N = 19
kernel k(X: f32[M, N]) -> (C: f32[M, N], R: f32[M, N], E: f32[M, N], P: f32[M, N]) {
    C[i, b] += X[i, b] scan i
    R[i, b] max= X[i, b] + f32(b) scan reverse i
    E[i, b] += X[i, b] scan reverse exclusive i
    P[i, b] min= X[i, b] scan exclusive i
}
"""
# one dimension, three dimensions (outer tiles), a scan of a constant and of a broadcast row
OTHERS = """
dim N = 50
kernel k(x: f32[N], Y: f32[3, 5, N], w: f32[5]) -> (c: f32[N], r: f32[N], T: f32[3, 5, N], U: f32[3, 5, N], K: f32[N]) {
    c[i] += x[i] scan i
    r[i] += x[i] * x[i] scan reverse i
    T[a, b, i] += Y[a, b, i] * w[b] scan exclusive b
    U[a, b, i] max= Y[a, b, i] scan reverse a
    K[i] += 0.5 scan i
}
"""

# i32 scans: viscan along the lanes, the integer operations down the rows, an exclusive start
INTS = """
dim M = 21, N = 37
kernel k(A: i32[M, N]) -> (C: i32[M, N], R: i32[M, N], E: i32[M, N], P: i32[M, N]) {
    C[b, i] += A[b, i] * 3 scan i
    R[b, i] max= A[b, i] scan reverse i
    E[b, i] min= relu(A[b, i]) scan exclusive b
    P[b, i] *= A[b, i] % 3 + 1 scan reverse exclusive i
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("source", [LANES, ROWS, OTHERS, INTS], ids=["lanes", "rows", "others", "ints"])
def test_scans_match_the_reference(source, spec):
    c, run = sim(source, spec, seed=31)
    assert run.ok, run.max_rel_err
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


def test_a_scan_along_the_lanes_is_one_vscan_a_chunk():
    _, run = sim("kernel k(X: f32[4, 64]) -> (C: f32[4, 64]) {\n    C[b, i] += X[b, i] scan i\n}\n", "accel")
    assert run.ok
    assert run.report.counts["vscan"] == 64 // 16  # four rows at once, four chunks
