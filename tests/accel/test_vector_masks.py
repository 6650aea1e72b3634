"""Masks on the accelerator's vector unit: `select` with conditions on loop values (viota) and on data
(vcmp / vcmps), picked by vsel, in maps, fused row groups and reductions; each kernel against the
numpy reference on random inputs on the three packaged configurations."""

from __future__ import annotations

import numpy as np
import pytest
from test_backend import CONFIGS, EXAMPLES, assert_round_trips, assert_tokens_balance, sim

import kcomp

MASKS = """
dim M = 21, D = 37
kernel k(X: f32[M, D], Z: f32[M, D], lo: f32) -> (Y: f32[M, D], W: f32[M, D], s: f32[M], c: f32[M]) {
    Y[i, j] = select(j <= i + 2, X[i, j] * 2.0, -inf)
    W[i, j] = select(X[i, j] > Z[i, j] and not (j == 3 or i >= 17), X[i, j], max(Z[i, j], lo)) + f32(j) * 0.5
    s[i] += select(j < i, X[i, j], 0.0)
    c[i] += select(X[i, j] >= 0.0, 1.0, 0.0)
}
"""
# a mask over a serial (non-lane) reduced axis and an outer axis: one value per step
SERIAL = """
kernel k(X: f32[5, 6, 40]) -> (Y: f32[6, 40], T: f32[5, 6, 40]) {
    Y[r, d] += select((b + 1) % 3 != 0, X[b, r, d], 0.0)
    T[b, r, d] = select(b >= 2, X[b, r, d], f32(r) - f32(b))
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("source", [MASKS, SERIAL], ids=["masks", "serial"])
def test_selects_match_the_reference(source, spec):
    c, run = sim(source, spec, seed=21)
    assert run.ok, run.max_rel_err
    ops = {ins.op for ins in c.artifact.program.instrs}
    assert {"vsel", "viota"} <= ops
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
def test_causal_softmax_runs_fused_on_the_vector_unit(spec):
    c, run = sim(str(EXAMPLES / "causal_softmax.kc"), spec, {"B": 2, "S": 48}, seed=22)
    assert run.ok, run.max_rel_err
    assert run.report.counts["vsel"] > 0 and run.report.macs == 0
    assert_tokens_balance(c.artifact.program)


# Arg-reductions: along the lanes (vredmax / vredargmax per chunk; a tail filled with -inf, an
# overlapping last chunk, one column per row for a computed value that does not fill whole rows),
# along a serial loop, into a rank-0 result; min(X, -0.5) makes ties: the first wins.
ARGS = """
dim M = 19, D = 45
kernel k(X: f32[M, D], Y: f32[M, D], v: f32[7]) -> (a: i32[M], b: i32[M], c: i32[D], d: i32[], e: i32[M], f: i32[D]) {
    a[i] argmax= X[i, j]
    b[i] argmin= X[i, j] * Y[i, j]
    c[j] argmax= min(X[i, j], -0.5)
    d[] argmin= v[k]
    e[i] argmax= min(X[i, j], -0.5)
    f[j] argmin= Y[i, j] + X[i, j]
}
"""
# the compared value the same in every row (a column of C, whatever i is): copied down the rows
SHARED = """
kernel k(C: f32[9, 5], X: f32[7, 20]) -> (t3: i32[6], t4: i32[7]) {
    t3[i] argmin= C[j, 4] where i < 6, j < 9
    t4[i] argmax= X[2, j] * 0.5 where i < 7, j < 20
}
"""
SHORT_ROWS = """
kernel k(X: f32[6, 7], Y: f32[6, 7]) -> (a: i32[6], b: i32[6]) {
    a[i] argmax= X[i, j]
    b[i] argmin= X[i, j] - Y[i, j]
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("source", [ARGS, SHORT_ROWS, SHARED], ids=["args", "short", "shared"])
def test_arg_reductions_match_the_reference(source, spec):
    c, run = sim(source, spec, seed=23)
    assert run.ok, run.max_rel_err
    assert run.report.counts["vsel"] > 0
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
def test_the_argmax_example_takes_each_row_s_first_maximum(spec):
    _, run = sim(str(EXAMPLES / "argmax_rows.kc"), spec, {"N": 37, "D": 45}, seed=24)
    assert run.ok and run.report.counts["vsel"] > 0
    _, run = sim(str(EXAMPLES / "argmax_rows.kc"), spec, {"N": 3, "D": 7}, seed=25)  # rows of one chunk
    assert run.ok and run.report.counts.get("vredargmax", 0) > 0 and "vsel" not in run.report.counts


# Gathers: rows through an index tensor (dma.load.idx + dma.load.acc.g), a gathered per-row value,
# indices strided along the rows (one pair per row), a gathered operand in a reduction the matrix
# unit refuses, and indices out of range reading the pad.
GATHERS = """
kernel k(ids: i32[2, 30], idt: i32[30, 2], E: f32[50, 37], w: f32[50], P: f32[30, 20])
    -> (Y: f32[30, 37], Z: f32[30, 37], S: f32[20, 37]) {
    Y[t, d] = E[ids[1, t], d] * w[ids[0, t]] + 1.0
    Z[t, d] = E[idt[t, 1], d, pad=-inf]
    S[p, d] += P[t, p] * E[ids[0, t], d]
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
def test_gathers_match_the_reference(spec):
    c, run = sim(GATHERS, spec, seed=26)
    assert run.ok, run.max_rel_err
    assert run.report.counts["dma.load.acc.g"] > 0 and run.report.macs == 0
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
def test_a_gather_out_of_range_reads_the_pad(spec):
    source = (
        "kernel k(ids: i32[9], E: f32[6, 20]) -> (Y: f32[9, 20]) { Y[t, d] = E[ids[t], d, pad=-inf] + 2.0 }"
    )
    k = kcomp.compile(source, target=spec)
    ids = np.array([0, 5, 6, -1, 3, 100, 2, -7, 1], np.int32)
    e = np.random.default_rng(27).standard_normal((6, 20)).astype(np.float32)
    run = k.check(inputs={"ids": ids, "E": e})
    assert run.ok
    (y,) = (k(ids, e),)
    want = np.where(((ids >= 0) & (ids < 6))[:, None], e[np.clip(ids, 0, 5)], -np.inf) + 2.0
    np.testing.assert_array_equal(y, want)


# Pads other than 0 and ±inf: the DMA engine's fill register (dma.fill, fill=reg) writes the halo, in
# lanes, in rows, in a gather and in a per-row value (whose halo rows then hold the pad in every
# column: column 0 alone is summed into its broadcast).
PADS = """
dim M = 21, D = 37
kernel pads(X: f32[M, D], ids: i32[M]) -> (Y: f32[M, D], Z: f32[M, D], s: f32[M]) {
    Y[i, j] = X[i - 2, j + 3, pad=0.5] * 2.0 + X[i + 1, j - 1, pad=-1.0]
    Z[i, j] = X[ids[i], j, pad=7.0] + X[i, j + 5, pad=nan]
    s[i] += X[i + 3, j - 2, pad=1.5] where j < D
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
def test_any_pad_fills_through_the_fill_register(spec):
    c, run = sim(PADS, spec, seed=28)
    assert run.ok, run.max_rel_err
    fills = {ins.operand("imm") for ins in c.artifact.program.instrs if ins.op == "dma.fill"}
    assert fills >= {0.5, -1.0, 7.0, 1.5}
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


# Reductions with no initialisation add onto what the tensor holds (loaded and combined last); fills
# of constants and loop values load nothing (the load queue still takes the section's turn), alone
# and fused with the statements that read them.
ONTO_OWN = """
kernel own(X: f32[21, 37], A: f32[21, 37], w: f32[37]) -> (t0: f32[21, 37], s: f32[21], c: f32[37], z: f32[]) {
    t0[i, j] = A[i, j] * 2.0
    t0[i, j] += X[i, j] * X[i, j]
    s[i] = A[i, 3]
    s[i] += X[i, j]
    s[i] max= A[i, j] * 0.5
    c[j] = w[j]
    c[j] += X[i, j]
    z[] = A[2, 2]
    z[] += X[i, j]
}
"""
FILLS = """
kernel f(X: f32[21, 37], P: f32[21, 32]) -> (Y: f32[21, 37], Z: f32[21, 37], c: f32[21], F: f32[21, 32], G: f32[21, 32]) {
    Y[i, j] = 4.5
    Z[i, j] = f32(i) * 2.0 - f32(j) + X[i, j]
    c[i] += f32(j) * 0.5 + 1.0 where j < 37
    F[i, j] = f32(i - j)
    G[i, j] = F[i, j] * P[i, j]
}
"""


# products (`*=`: no lane instruction multiplies, so step by step) and maps that read their target twice
PRODUCTS = """
kernel p(A: f32[3, 7], B: f32[30, 40]) -> (t0: f32[7], u: f32[30], v: f32[40], Y: f32[30, 40]) {
    t0[i] *= (1.0 + 0.5 * tanh(A[j, i])) where i < 7, j < 3
    u[i] = 2.0
    u[i] *= 1.0 + 0.01 * B[i, j]
    v[j] = 1.0
    v[j] *= 1.0 + 0.01 * B[i, j]
    Y[i, j] = B[i, j] + 1.0
    Y[i, j] = Y[i, j] * Y[i, j]
}
"""


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("source", [ONTO_OWN, FILLS, PRODUCTS], ids=["onto_own", "fills", "products"])
def test_accumulations_and_fills(source, spec):
    c, run = sim(source, spec, seed=29)
    assert run.ok, run.max_rel_err
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)
