"""The accelerator backend (targets/accel: match, mapping, codegen, target): every mapped kernel
against the numpy reference on random non-zero inputs on both packaged configurations, under the
default mapping and under hand-written schedules (tiles with remainders, every tile order, partial
double buffering); every generated program round-trips through the assembler and the binary
format and leaves no token unconsumed; every mapping error says which memory and by how much."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import kcomp
from kcomp.api import load_module
from kcomp.data import random_inputs, random_params
from kcomp.errors import ScheduleError
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.pipeline import build, front
from kcomp.schedule import parse_schedule
from kcomp.targets.accel.compiler.mapping import check_fits, default_mapping
from kcomp.targets.accel.compiler.match import match
from kcomp.targets.accel.compiler.tuning import search_space
from kcomp.targets.accel.machine import assemble, decode, encode, format_program
from kcomp.targets.accel.target import AccelTarget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIGS = ("accel", "accel:small", "accel:os")

# Every example the backend maps, at small shapes (remainders against both configs' dim 16 and 8).
MAPPED = {
    "matmul": {"M": 70, "N": 50, "K": 40},
    "batched_matmul": {"BATCH": 3, "M": 20, "N": 24, "K": 36},
    "gemm_bias_relu": {"M": 37, "N": 40, "K": 33},
    "matvec": {"M": 50, "K": 70},
    # padded reads: the halo zero-filled by dma.load.pad (rows and columns leave the image)
    "conv2d": {"N": 2, "C": 5, "K": 20, "H": 9, "W": 21},
}
# Examples that run on the vector unit alone (vector_match.py): rows with remainders against dim;
# a row reduction whose terms are not bare reads needs whole rows of dim (D a multiple of 16).
VECTOR_MAPPED = {
    "softmax": {"N": 37, "D": 40},
    "row_reduce": {"N": 21, "D": 45},
    "rmsnorm": {"N": 19, "D": 48},
    "layernorm": {"N": 23, "D": 32},
    "gelu_chain": {"N": 29, "D": 50},
    "maxpool2d": {"N": 2, "C": 3, "H": 13, "W": 22},  # a -inf halo; three lanes, the rest -inf
    "transpose": {"M": 37, "N": 21},  # dma.load.acc.t
    # a product with no i role and a 3-deep reduction: faster on the vector unit (match's _vector_faster)
    "depthwise_conv2d": {"N": 2, "C": 3, "H": 7, "W": 19},
    "groupnorm": {"N": 2, "C": 12, "G": 3, "HW": 32},  # mean[n, c // 4]: a stride-0 DMA per group of rows
    "causal_softmax": {"B": 3, "S": 37},  # the mask from viota, vcmp and vsel (test_vector_masks.py)
    "argmax_rows": {"N": 21, "D": 45},  # per-lane best values and positions (vcmp, vsel), then the lanes
    "embedding_lookup": {"T": 40, "V": 50, "D": 37},  # dma.load.idx, then dma.load.acc.g through it
    "cumsum": {"B": 5, "N": 37},  # vscan chunk by chunk, carried; a reversed exclusive scan's tail masked
}

# Kernels the examples do not cover: an implicit-GEMM convolution (NHWC, no padding: each (r, s) is
# a K-slice), epilogues on the vector unit, an initial value from a matrix, two contractions.
CONV_NHWC = """
dim N = 2, H = 6, W = 21, C = 20, K = 24, R = 3, S = 2
kernel conv(X: f32[N, H, W, C], F: f32[R, S, C, K]) -> (Y: f32[N, H - R + 1, W - S + 1, K]) {
    Y[n, h, w, k] += X[n, h + r, w + s, c] * F[r, s, c, k]
}
"""
EPILOGUE = """
dim M = 30, N = 36, K = 20
kernel epi(A: f32[M, K], B: f32[K, N], v: f32[N], alpha: f32) -> (C: f32[M, N]) {
    C[i, j] = 0.5
    C[i, j] += A[i, k] * B[k, j]
    C[i, j] = max(2.0 - C[i, j] * alpha, v[j]) / 4.0
    C[i, j] = C[i, j] * v[j] + 1.5
}
"""
EPILOGUE_SIMPLE = """
dim M = 30, N = 36, K = 20
kernel epi(A: f32[M, K], B: f32[K, N], v: f32[N], alpha: f32) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
    C[i, j] = relu((C[i, j] - v[j]) * alpha - 0.25)
    C[i, j] = exp(C[i, j] * 0.125) + 1.0
}
"""
# B transposed: j is not contiguous in B, so each row i of C is a matrix-vector product (j on the
# accumulator's rows, N = 1, i a batch axis): slow, but it maps.
B_TRANSPOSED = """
dim M = 5, N = 40, K = 24
kernel bt(A: f32[M, K], B: f32[N, K]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[j, k] }
"""
TWO_GROUPS = """
dim M = 24, N = 40, K = 20, P = 18
kernel two(A: f32[M, K], B: f32[K, N], D: f32[M, N], E: f32[N, P], G: f32[K, P]) -> (C: f32[M, P]) {
    T[i, j] = D[i, j]
    T[i, j] += A[i, k] * B[k, j]
    C[i, p] += T[i, j] * E[j, p]
    C[i, p] += A[i, k] * G[k, p]
}
"""


ACCEL_DEFAULT, ACCEL_NAIVE = AccelTarget.default_label, AccelTarget.naive_label


def sim(source: str, spec: str = "accel", shapes: dict | None = None, schedule=None, seed: int = 0):
    """Compile through kcomp's one pipeline, simulate on random inputs, compare with numpy: the
    pipeline's `Built` and the check (its `report` is the simulator's)."""
    k = kcomp.compile(source, target=spec, shapes=shapes or {}, schedule=schedule)
    return k.built, k.check(seed)


def assert_round_trips(program) -> None:
    assert decode(encode(program)) == program
    assert assemble(format_program(program)) == program


def assert_tokens_balance(program) -> None:
    """Every signal has exactly one consumer: a program leaves no token set (sections chain)."""
    waits = Counter(t for ins in program.instrs for t in ins.wait)
    signals = Counter(t for ins in program.instrs for t in ins.signal)
    assert waits == signals


def _arguments(c):
    """Random arguments (ABI order) for a built kernel: inputs, fresh outputs, parameter defaults."""
    rng = np.random.default_rng(0)
    inputs = random_inputs(c.program, rng)
    outputs = {b.name: np.empty(b.shape, b.dtype.numpy) for b in c.program.outputs}
    return c.arguments(inputs, outputs, random_params(c.program, rng, {}))


# -- every mapped kernel, both configurations -----------------------------------------------------
@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("name", sorted(MAPPED))
def test_mapped_examples_match_the_reference(name, spec):
    c, run = sim(str(EXAMPLES / f"{name}.kc"), spec, MAPPED[name], seed=7)
    assert run.ok, (name, spec, run.max_rel_err)
    assert c.schedule_source.startswith(ACCEL_DEFAULT)  # gemm_bias_relu: its block is for other shapes
    assert 0 < run.report.utilization["matrix"] <= 1
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize("name", sorted(VECTOR_MAPPED))
def test_vector_examples_match_the_reference(name, spec):
    c, run = sim(str(EXAMPLES / f"{name}.kc"), spec, VECTOR_MAPPED[name], seed=7)
    assert run.ok, (name, spec, run.max_rel_err)
    assert run.report.utilization["vector"] > 0 and run.report.macs == 0
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize(
    ("name", "shapes"), [("softmax", {"N": 37, "D": 48}), ("layernorm", {"N": 23, "D": 32})]
)
def test_fused_vector_statements_keep_their_temporaries_on_chip(name, shapes, spec):
    c, run = sim(str(EXAMPLES / f"{name}.kc"), spec, shapes, seed=4)
    assert run.ok, run.max_rel_err
    program = c.artifact.program
    stored = {program.buffers[ins.args[1]].name for ins in program.instrs if ins.op == "dma.store"}
    assert stored == {"Y"}  # mx, e, s (mean, xc, var) never reach DRAM: one fused section
    assert_tokens_balance(program)


# Statements the vector unit runs after a contraction or alone: epilogues the contraction's vector
# ops cannot take (C read twice, min, a per-row u[i]), a column sum (a serial reduction), a min over
# rows with a tail window, broadcasts of a row vector, a scalar and a parameter.
VECTOR_KERNELS = """
dim M = 20, N = 24, K = 12, D = 37
kernel v(A: f32[M, K], B: f32[K, N], u: f32[M], X: f32[M, D], c: f32[1], alpha: f32)
    -> (C: f32[M, N], colsum: f32[D], lo: f32[M], Y: f32[M, D]) {
    C[i, j] += A[i, k] * B[k, j]
    C[i, j] = min(C[i, j] * C[i, j], 3.0) * u[i]
    colsum[d] += X[m, d] * 2.0
    lo[m] min= X[m, d]
    Y[m, d] = (alpha - X[m, d]) / (u[m] + c[0] * 4.0) + max(X[m, d], 0.25)
}
"""
# padded reads on the vector unit: a halo on the rows and on the lanes, a padded per-row value
SHIFTED = """
dim M = 21, D = 37
kernel shift(X: f32[M, D], u: f32[M], Xt: f32[D, M]) -> (Y: f32[M, D], s: f32[M]) {
    Y[i, j] = X[i - 1, j + 2, pad=0.0] * 2.0 + X[i, j] - u[i + 3, pad=0.0] + Xt[j, i]
    s[i] += X[i + 1, j - 1, pad=0.0] where j < D
}
"""
# no loop can be the lanes (a divided index, reads strided both ways, a scalar): one column per row
ONE_LANE = """
kernel k(X: f32[8, 4], A: f32[8, 8, 8], v: f32[5], B: f32[8, 40]) -> (Y: f32[8, 8], C: f32[8, 8], t: f32[], e: f32[8]) {
    e[i] += exp(B[i, k])  # exp(0) is not 0: the 40-long rows do not fill whole lanes, one column per row
    Y[i, j] = X[i, j // 2] * 3.0
    C[i, j] = A[j, 1, i] + A[i, j, 2]
    t[] += v[i] * (2.0 + f32(3))
}
"""
# products off the plain layouts: Aᵀ·B on the matrix unit (A's tiles by transposing loads), a column
# sum of squares (one tensor twice: no i or j role) and its transposed normalisation on the vector unit
OFF_ROLES = """
dim N = 70, D = 40
kernel k(A: f32[12, 20], B: f32[12, 24], X: f32[N, D], eps: f32) -> (C: f32[20, 24], Y: f32[D, N]) {
    C[i, j] += A[k, i] * B[k, j]
    ss[d] += X[n, d] * X[n, d]
    Y[d, n] = X[n, d] * rsqrt(ss[d] + eps)
}
"""
# rows read through dividing indices: whole lane rows repeated (X[c // 2, p]), per-row values
DIVIDED_ROWS = """
dim C = 12, P = 40
kernel k(X: f32[6, 40], g: f32[3]) -> (Y: f32[C, P], s: f32[C]) {
    Y[c, p] = X[c // 2, p] * g[c // 4] + X[c // 3, p]
    s[c] += X[c // 2, p] where p < P
}
"""
# not a product of exactly two reads, so not the matrix unit's: a serial reduction over k on the vector unit
SCALED_PRODUCT = """
kernel k(A: f32[8, 4], B: f32[4, 8]) -> (C: f32[8, 8]) { C[i, j] += A[i, k] * B[k, j] * 2.0 }
"""


@pytest.mark.parametrize("spec", CONFIGS)
def test_vector_statements_beyond_the_examples(spec):
    c, run = sim(VECTOR_KERNELS, spec, seed=5)
    assert run.ok, run.max_rel_err
    assert run.report.macs > 0 and run.report.utilization["vector"] > 0
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)
    c, run = sim(SCALED_PRODUCT, spec, seed=6)
    assert run.ok and run.report.macs == 0
    c, run = sim(ONE_LANE, spec, seed=9)
    assert run.ok, run.max_rel_err
    c, run = sim(OFF_ROLES, spec, seed=10)
    assert run.ok, run.max_rel_err
    assert run.report.macs > 0 and run.report.counts["dma.load.t"] > 0
    # a dividing index in a product: the matrix unit refuses it, the vector unit takes it
    divided = "kernel k(A: f32[4, 4], B: f32[4, 8]) -> (C: f32[8, 8]) { C[i, j] += A[i // 2, k] * B[k, j] }"
    assert sim(divided, spec, seed=11)[1].ok
    assert sim(DIVIDED_ROWS, spec, seed=12)[1].ok
    # no i role but a deep reduction: the matrix unit keeps it (a 3-deep one goes to the vector unit)
    gemv = "kernel k(x: f32[64], A: f32[64, 40]) -> (y: f32[40]) { y[j] += x[k] * A[k, j] }"
    c, run = sim(gemv, spec, seed=13)
    assert run.ok and run.report.macs > 0
    c, run = sim(SHIFTED, spec, seed=8)
    assert run.ok, run.max_rel_err
    assert {ins.op for ins in c.artifact.program.instrs} >= {"dma.load.acc.pad"}
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


@pytest.mark.parametrize("spec", CONFIGS)
@pytest.mark.parametrize(
    "source",
    [CONV_NHWC, EPILOGUE, EPILOGUE_SIMPLE, B_TRANSPOSED, TWO_GROUPS],
    ids=["conv", "epi", "epi2", "bt", "two"],
)
def test_kernels_beyond_the_examples(source, spec):
    c, run = sim(source, spec, seed=3)
    assert run.ok, run.max_rel_err
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)


def test_the_epilogue_runs_on_the_vector_unit_and_relu_in_the_store():
    _, run = sim(EPILOGUE_SIMPLE)
    counts = run.report.counts
    assert counts["vsub"] and counts["vmul"] and counts["vexp"] and counts["vadds"] and counts["vmuls"]
    bias, _ = sim(str(EXAMPLES / "gemm_bias_relu.kc"), shapes=MAPPED["gemm_bias_relu"])
    program = bias.artifact.program
    assert {ins.operand("act") for ins in program.instrs if ins.op == "dma.store"} == {"relu"}
    inits = [ins for ins in program.instrs if ins.op == "dma.load.acc"]
    assert inits and {ins.operand("stride") for ins in inits} == {0}  # the bias row, broadcast


def test_every_example_maps():
    listed = set(MAPPED) | set(VECTOR_MAPPED)
    assert listed == {p.stem for p in EXAMPLES.glob("*.kc")}


def test_unmappable_statements():
    cases = {
        "kernel k(A: f32[8, 4], B: f32[4, 8]) -> (C: f32[8, 8]) { C[i, j] += A[7 - i, k] * B[k, j] }":
            "an index runs backwards",
        "kernel k(A: f32[8, 8], B: f32[8, 8]) -> (C: f32[8, 8]) { C[i, j] = pow(A[i, j], B[i, j]) }":
            "has no vector-unit instruction",
        "kernel k(A: f32[8, 8], ids: i32[8]) -> (C: f32[8]) { C[i] = A[ids[i], ids[i]] }":
            "more than one computed index",
    }  # fmt: skip
    for source, why in cases.items():
        module = load_module(source)
        with pytest.raises(ScheduleError, match="cannot map") as info:
            build(module, module.kernel(None), {}, AccelTarget())
        assert why in str(info.value), (source, str(info.value))


# -- schedules: tiles, orders, buffering ----------------------------------------------------------
ORDERS = list(itertools.permutations(("i_o", "j_o", "k_o")))


@pytest.mark.parametrize(
    ("order", "buffering"),
    list(
        zip(
            ORDERS,
            [
                "",
                "double_buffer",
                "double_buffer A",
                "double_buffer B C",
                "double_buffer C",
                "double_buffer A B",
            ],
            strict=True,
        )
    ),
)
def test_every_tile_order_and_buffering_matches_the_reference(order, buffering):
    shapes = {"M": 45, "N": 40, "K": 50}
    schedule = f"tile i j k 16 16 32\nreorder {' '.join(order)}\n{buffering}"
    c, run = sim(str(EXAMPLES / "matmul.kc"), "accel:small", shapes, schedule, seed=1)
    assert run.ok and c.schedule_source == "given by the caller"
    assert_round_trips(c.artifact.program)
    assert_tokens_balance(c.artifact.program)
    doubled = {ins.operand("sp") for ins in c.artifact.program.instrs if ins.op == "dma.load"}
    assert len(doubled) > 1


def test_resident_operands_are_loaded_once():
    shapes = {"M": 64, "N": 64, "K": 32}
    loads = {}
    for order in ("i_o j_o k_o", "j_o i_o k_o"):
        _, run = sim(
            str(EXAMPLES / "matmul.kc"), "accel", shapes, f"tile i j k 16 16 32\nreorder {order}", seed=2
        )
        assert run.ok
        loads[order] = run.report.dma_bytes["load"]
    a_bytes = 64 * 32 * 4  # i outer: A stays while j moves (and the other way round)
    assert loads["i_o j_o k_o"] == a_bytes + 4 * 64 * 32 * 4 == loads["j_o i_o k_o"]


def test_double_buffering_pays():
    shapes = {"M": 128, "N": 128, "K": 128}
    single, _ = sim(str(EXAMPLES / "matmul.kc"), "accel", shapes, "tile i j k 64 32 32")
    double, _ = sim(str(EXAMPLES / "matmul.kc"), "accel", shapes, "tile i j k 64 32 32\ndouble_buffer")
    cycles = {}
    for name, c in (("single", single), ("double", double)):
        cycles[name] = c.target.run(c.artifact, _arguments(c)).cycles
    assert cycles["double"] < 0.8 * cycles["single"]


def test_mapping_errors_name_the_memory_and_the_overflow():
    module = load_module(str(EXAMPLES / "matmul.kc"))
    target = AccelTarget()
    cases = {
        "tile i j k 256 256 256": r"tile i j k 256 256 256 needs 512 KiB of scratchpad \(A 256 KiB \+ B 256 KiB\);"
        r" this accelerator has 256 KiB \(256 KiB too much\): use smaller tiles",
        "tile i j k 256 256 256\ndouble_buffer": r"needs 1024 KiB of scratchpad \(A 256 KiB \+ B 256 KiB, x2 for"
        r" double buffering\); this accelerator has 256 KiB \(768 KiB too much\)",
        "tile i j k 256 256 16": r"needs 256 KiB of accumulator \(C 256 KiB\); this accelerator has 64 KiB"
        r" \(192 KiB too much\)",
        "tile i j k 64 64 64\nreorder k_o i_o j_o": r"needs 256 KiB of accumulator \(C 16 KiB x16 tiles live"
        r" across the reduction \(order k i j\)\).*put the reduction innermost",
        "tile i j k 64 40 64": r"the j tile 40 must be a multiple of 16 \(the matrix unit's width\) or the whole"
        r" extent 256",
    }
    for schedule, message in cases.items():
        with pytest.raises(ScheduleError, match=message):
            build(module, module.kernel(None), {"M": 256, "N": 256, "K": 256}, target, schedule)


def test_double_buffer_pass_checks_and_changes_nothing():
    module = load_module(str(EXAMPLES / "matmul.kc"))
    nest = lower(front(module, module.kernel(None), {"M": 32, "N": 32, "K": 32}))
    tiled = apply(nest, parse_schedule("tile i j k 16 16 16"))
    assert apply(tiled, parse_schedule("double_buffer A C")) is tiled
    with pytest.raises(ScheduleError, match="double_buffer: there is no tiled loop to pipeline"):
        apply(nest, parse_schedule("double_buffer"))
    with pytest.raises(ScheduleError, match=r"double_buffer Q: no tensor named 'Q' \(tensors are A, B, C\)"):
        apply(tiled, parse_schedule("double_buffer Q"))
    with pytest.raises(
        ScheduleError, match="loop b_o is split, but only the contraction's i, j, k loops are tiled"
    ):
        sim(str(EXAMPLES / "batched_matmul.kc"), shapes=MAPPED["batched_matmul"], schedule="split b 2")


def test_a_block_that_does_not_fit_falls_back(tmp_path):
    """A block is written for the file's shapes and some accelerator: other shapes, or tiles too big
    for this configuration's memories, fall back to the default mapping (and say why); a step that
    does not apply at the file's own shapes is an error."""
    kernel = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }\n"
    path = tmp_path / "mm.kc"
    path.write_text(
        f"dim M = 128, N = 128, K = 128\n{kernel}schedule matmul for accel {{ tile i j k 64 64 128; double_buffer }}\n"
    )
    c, run = sim(str(path))
    assert c.schedule_source.startswith("schedule block at") and run.ok
    c, run = sim(str(path), shapes={"M": 32})
    assert c.schedule_source.startswith(ACCEL_DEFAULT) and "does not fit these shapes" in c.schedule_source
    assert run.ok
    c, run = sim(str(path), "accel:small")
    assert c.schedule_source.startswith(f"{ACCEL_DEFAULT}; the schedule block at")
    assert (
        "does not fit target accel:small (tile i j k 64 64 128 needs 128 KiB of scratchpad"
        in c.schedule_source
    )
    assert run.ok
    c, _ = sim(str(path), schedule="none")
    assert c.schedule_source == ACCEL_NAIVE and str(c.schedule) == "tile i j k 16 16 16\n"
    path.write_text(
        f"dim M = 128, N = 128, K = 128\n{kernel}schedule matmul for accel {{ tile i j q 64 64 128 }}\n"
    )
    with pytest.raises(ScheduleError, match=r"no loop named 'q'.*\[schedule: schedule block at"):
        sim(str(path), "accel:small")


# -- the default mapping and the done-when figures ------------------------------------------------
def test_gemm_512_default_mapping_meets_the_targets():
    """Cycles are deterministic: 512^3 on the default configuration is within 1.25x of the ideal
    bound (>= 80% matrix-unit utilization) and >= 1.5x fewer cycles than the naive mapping."""
    shapes = {"M": 512, "N": 512, "K": 512}
    _, run = sim(str(EXAMPLES / "matmul.kc"), "accel", shapes)
    assert run.ok
    r = run.report
    assert r.ideal_cycles == 512**3 // 256
    assert r.cycles <= 1.25 * r.ideal_cycles and r.utilization["matrix"] >= 0.8, r.report()
    _, naive_run = sim(str(EXAMPLES / "matmul.kc"), "accel", shapes, "none")
    assert naive_run.ok and naive_run.report.cycles >= 1.5 * r.cycles


def test_the_small_config_moves_cycles_the_way_it_should():
    """DIM 8 (a quarter of the MACs per cycle) and half the bandwidth: the ideal bound of a
    compute-bound GEMM grows 4x and the simulated cycles grow with it; both stay correct."""
    shapes = {"M": 128, "N": 128, "K": 128}
    results = {spec: sim(str(EXAMPLES / "matmul.kc"), spec, shapes)[1] for spec in CONFIGS}
    assert all(r.ok for r in results.values())
    big, small = results["accel"].report, results["accel:small"].report
    assert small.ideal_cycles == 4 * big.ideal_cycles
    assert 2.5 * big.cycles < small.cycles < 6 * big.cycles


def test_default_mapping_fits_and_prefers_full_width_tiles():
    module = load_module(str(EXAMPLES / "matmul.kc"))
    for spec in CONFIGS:
        cfg = AccelTarget.from_spec(spec).cfg
        g = match(lower(front(module, module.kernel(None), {"M": 1024, "N": 1024, "K": 1024}))).groups[0]
        m = default_mapping(g, cfg)
        check_fits(g, m, cfg)
        assert m.tn % cfg.dim == 0 and m.tk % cfg.dim == 0 and m.order[-1] == "k"
        assert {"A", "B"} <= m.double_buffer


def test_search_space_is_plain_data_and_its_choices_replay():
    module = load_module(str(EXAMPLES / "gemm_bias_relu.kc"))
    program = front(module, module.kernel(None), {"M": 64, "N": 48, "K": 32})
    space = search_space(lower(program), AccelTarget().cfg)
    assert json.loads(json.dumps(space)) == space
    (group,) = space
    assert group["loops"] == ["i1", "j1", "k"] and group["extents"] == [64, 48, 32]
    assert len(group["orders"]) == 6 and group["double_buffer"] == [True, False]
    assert 48 in group["tiles"]["j1"] and 16 in group["tiles"]["k"]
    tiles = " ".join(map(str, group["default"]["tiles"]))
    _, run = sim(
        str(EXAMPLES / "gemm_bias_relu.kc"),
        shapes={"M": 64, "N": 48, "K": 32},
        schedule=f"tile i1 j1 k {tiles}",
    )
    assert run.ok


# -- the target interface ---------------------------------------------------------------------------
def test_the_target_through_the_api_and_its_profile():
    k = kcomp.compile(
        str(EXAMPLES / "gemm_bias_relu.kc"), target="accel:small", shapes={"M": 20, "N": 24, "K": 12}
    )
    assert k.check(seed=5).ok
    assert k.source.startswith("# kcomp-abi: ") and ".buffer X f32 20x12" in k.source
    program = k.target.build(k.source).program
    assert_round_trips(program)
    m = k.benchmark(seed=5)
    assert m.time_s == m.counters["cycles"] / 1e9
    assert {"cycles", "ideal_cycles", "utilization", "stalls", "dma_bytes"} <= set(m.counters)
    assert 0 < m.counters["utilization"] <= 1


def test_emit_follows_the_schedule_s_buffering():
    """The nest cannot show double buffering; `emit` reads it from the schedule: a tiled nest without
    `double_buffer` steps gets one buffer per operand, and with them two (every command and tuning
    trial goes through this one call)."""
    module = load_module(str(EXAMPLES / "matmul.kc"))
    nest = lower(front(module, module.kernel(None), {"M": 64, "N": 64, "K": 64}))
    single_schedule = parse_schedule("tile i j k 32 32 32")
    double_schedule = parse_schedule("tile i j k 32 32 32\ndouble_buffer")
    tiled = apply(nest, single_schedule)
    target = AccelTarget()
    single = target.build(target.emit(tiled, single_schedule)).program
    double = target.build(target.emit(apply(nest, double_schedule), double_schedule)).program
    slots = [{ins.operand("sp") for ins in p.instrs if ins.op == "dma.load"} for p in (single, double)]
    assert len(slots[1]) == 2 * len(slots[0])
    assert target.build(target.emit(tiled)).program == single  # no schedule: nothing double-buffered


def test_parameters_are_rows_of_copies_in_dram():
    c, run = sim(EPILOGUE_SIMPLE)
    buffers = {b.name: b for b in c.artifact.program.buffers}
    assert buffers["alpha"].shape == (16,) and run.ok
    assert [b.name for b in c.artifact.program.buffers] == ["A", "B", "v", "C", "alpha"]
    assert np.isfinite(run.max_rel_err)


def test_int8_kernels_on_an_int8_accelerator(tmp_path):
    """i8 inputs widened to i32 (`i32(A[i, k])`) multiply into i32 accumulators: exact results."""
    config = tmp_path / "int8.toml"
    config.write_text('name = "int8"\ndtype = "i8"\ndim = 8\n')
    source = """
dim M = 40, N = 24, K = 36
kernel qgemm(A: i8[M, K], B: i8[K, N]) -> (C: i32[M, N]) { C[i, j] += i32(A[i, k]) * i32(B[k, j]) }
"""
    c, run = sim(source, f"accel:{config}", schedule="tile i j k 16 16 16\ndouble_buffer")
    assert run.ok and run.max_abs_err == 0
    assert {b.dtype for b in c.artifact.program.buffers} == {"i8", "i32"}
    with pytest.raises(ScheduleError, match="A is i8, and the default accelerator multiplies f32 inputs"):
        sim(source)
