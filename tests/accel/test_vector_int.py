"""i32 computation on the accelerator's vector unit (vector_int.py): integer arithmetic with the
language's rules, comparisons, casts both ways, loop values, reductions (along the lanes with tails,
step by step, onto an initial value or what the tensor holds), a product the matrix unit cannot
take, gathers and integer pads; each kernel against the numpy reference on random inputs on the
three packaged configurations."""

from __future__ import annotations

import pytest
from test_backend import CONFIGS, assert_round_trips, assert_tokens_balance, sim

MAPS = """
dim M = 13, N = 37
kernel k(A: i32[M, N], B: i32[M, N], X: f32[M, N], p: i32) -> (C: i32[M, N], D: i32[M, N], F: f32[M, N], G: i32[M, N]) {
    C[i, j] = A[i, j] * 3 - B[i, j] // 4 + A[i, j] % 5 - abs(B[i, j]) + p
    D[i, j] = select(A[i, j] > B[i, j] or j == 3, -A[i, j], i32(X[i, j] * 8.0)) + i * 2 + (j - i) % 3
    F[i, j] = f32(A[i, j] / 3) * X[i, j] + f32(B[i, j] >= 0)
    G[i, j] = A[i - 1, j, pad=7] + B[i, j + 2, pad=0]
}
"""
REDUCTIONS = """
dim M = 11, N = 45, K = 6
kernel k(A: i32[M, N], B: i32[K, M], X: f32[M, N]) -> (s: i32[M], mx: i32[M], mn: i32[M], c: i32[M], t: i32[M], P: i32[M], Q: i32[M, M]) {
    s[i] += A[i, j]
    mx[i] max= A[i, j] - j
    mn[i] min= A[i, j]
    c[i] = 5
    c[i] += select(X[i, j] > 0.0, 1, 0)
    t[i] = s[i] * 2
    t[i] += B[k, i]
    P[i] *= B[k, i] % 3 + 1
    Q[i, m] += B[k, i] * B[k, m]
}
"""
ARGS = """
dim M = 11, N = 45, K = 6
kernel k(A: i32[M, N], B: i32[K, M]) -> (a: i32[M], b: i32[M], c: i32[M], d: i32[M]) {
    a[i] argmax= A[i, j]
    b[i] argmin= A[i, j] % 7
    c[i] argmax= B[k, i]
    d[i] argmin= A[i, j] where j < 9
}
"""
GATHER = """
dim T = 21, V = 30, D = 19
kernel k(E: i32[V, D], ids: i32[T]) -> (Y: i32[T, D]) {
    Y[t, d] = E[ids[t], d, pad=-3] * 2
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize(
    "source", [MAPS, REDUCTIONS, GATHER, ARGS], ids=["maps", "reductions", "gather", "arg-reductions"]
)
def test_integer_kernels_match_the_reference(source, spec):
    c, run = sim(source, spec, seed=41)
    assert run.ok, run.max_rel_err
    ops = {ins.op for ins in c.artifact.program.instrs}
    assert ops & {"viadd", "vimul", "viredsum", "vimax", "vicmp"}
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


# indices the DMA cannot stride through: a modulo (a run of rows per element, or a step's offset) and
# a padded dividing index (rows outside the tensor filled with the pad)
IRREGULAR = """
dim M = 13, N = 37
kernel k(A: f32[3, N], X: f32[M, N], F: f32[7], G: i32[5]) -> (C: f32[M, N], t: f32[], s: i32[M], u: f32[M]) {
    C[i, j] = A[(i + 1) % 3, j] * X[i, j] + F[(2 * i + 1) % 7]
    t[] max= F[(3 * i - 2) // 3, pad=-1.0] where i < 9
    s[i] += G[(i + k) % 5] where k < 4
    u[i] += F[(i - 5 + k) // 2, pad=0.5] * X[i, k] where k < 6
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
def test_modulo_and_padded_dividing_indices_match_the_reference(spec):
    c, run = sim(IRREGULAR, spec, seed=43)
    assert run.ok, run.max_rel_err
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


def test_a_constant_store_before_a_map_of_the_same_tensor_still_stores():
    # the constant is an init only for a reduction; before a map that reads the tensor it is a statement
    # (kcomp fuzz --targets accel --seed 25, program 17)
    source = "kernel k(C: i32[3]) -> (t: f32[3]) {\n    t[i] = 0.5\n    t[i] = t[i] - f32(C[i])\n}\n"
    _c, run = sim(source, "accel", seed=44)
    assert run.ok, run.max_rel_err
