"""The simulator's functional half: programs against numpy on random data, and every SimError."""

from __future__ import annotations

import numpy as np
import pytest
from gemm_programs import gemm_program

from kcomp.errors import UsageError
from kcomp.targets.accel.machine import AccelConfig, Instr, Program, SimError, assemble, simulate

I8 = AccelConfig.from_dict({"dtype": "i8"})


def gemm_arrays(rng: np.random.Generator, M: int, N: int, K: int, cfg: AccelConfig) -> dict[str, np.ndarray]:
    if cfg.dtype == "i8":
        a = rng.integers(-128, 128, (M, K), dtype=np.int8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        return {"A": a, "B": b, "C": np.full((M, N), -7, np.int32)}
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    return {"A": a, "B": b, "C": np.full((M, N), np.nan, np.float32)}


@pytest.mark.parametrize(
    ("shape", "config", "tiles"),
    [
        ((64, 64, 64), "default", {"tm": 32, "tn": 32, "tk": 32}),
        ((40, 36, 50), "default", {"tm": 32, "tn": 32, "tk": 32}),  # edges: rows, cols < dim, k < dim
        ((96, 64, 128), "default", {"tm": 64, "tn": 64, "tk": 64, "mma_rows": 16, "double_buffer": False}),
        ((40, 36, 50), "small", {"tm": 16, "tn": 24, "tk": 40}),
        ((64, 48, 80), "i8", {"tm": 32, "tn": 32, "tk": 32}),
        ((33, 17, 70), "i8", {"tm": 16, "tn": 16, "tk": 48, "double_buffer": False}),
    ],
)
def test_tiled_gemm_matches_numpy(rng, shape, config, tiles):
    cfg = I8 if config == "i8" else AccelConfig.load(config)
    M, N, K = shape
    arrays = gemm_arrays(rng, M, N, K, cfg)
    result = simulate(gemm_program(M, N, K, cfg, **tiles), arrays, cfg)
    exact = arrays["A"].astype(np.int64) @ arrays["B"].astype(np.int64)
    if cfg.dtype == "i8":
        np.testing.assert_array_equal(arrays["C"], exact)  # i32 accumulation is exact
    else:
        np.testing.assert_allclose(
            arrays["C"], arrays["A"].astype(np.float64) @ arrays["B"], rtol=1e-5, atol=1e-4
        )
    assert result.macs == M * K * -(-N // cfg.dim) * cfg.dim  # every mma computes all dim columns
    assert result.dma_bytes["store"] == M * N * 4


def test_gemm_relu_store(rng):
    arrays = gemm_arrays(rng, 32, 32, 32, AccelConfig())
    simulate(gemm_program(32, 32, 32, AccelConfig(), tm=32, tn=32, tk=32, relu=True), arrays)
    np.testing.assert_allclose(arrays["C"], np.maximum(arrays["A"] @ arrays["B"], 0), rtol=1e-5, atol=1e-5)


EPILOGUE = """\
.buffer A f32 16x16
.buffer B f32 16x16
.buffer bias f32 16
.buffer C f32 16x16
.buffer S f32 16x16
dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16
dma.load sp=1024 buf=B off=0 rows=16 cols=16 stride=16
dma.load sp=2048 buf=bias off=0 rows=1 cols=16 stride=16 signal=t0
mma acc=0 a=0 b=1024 m=16 k=16 mode=overwrite wait=t0
vadd dst=0 src=0 rows=16 b=2048 bmem=sp bstep=0
vmuls dst=0 src=0 rows=16 imm=0.5
vmaxs dst=16 src=0 rows=16 imm=0.0 signal=t1
vredmax dst=32 src=0 rows=16
vsub dst=48 src=0 rows=16 b=32 bmem=acc bstep=1
vexp dst=48 src=48 rows=16
vredsum dst=64 src=48 rows=16
vrecip dst=64 src=64 rows=16
vmul dst=48 src=48 rows=16 b=64 bmem=acc bstep=1 signal=t2
dma.store acc=16 buf=C off=0 rows=16 cols=16 stride=16 act=none wait=t1
dma.store acc=48 buf=S off=0 rows=16 cols=16 stride=16 act=none wait=t2
halt
"""


def test_vector_epilogue_bias_scale_relu_softmax(rng):
    a, b, bias = (rng.standard_normal(s).astype(np.float32) for s in ((16, 16), (16, 16), (16,)))
    c, s = np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32)
    result = simulate(assemble(EPILOGUE), {"A": a, "B": b, "bias": bias, "C": c, "S": s})
    x = (a @ b + bias) * 0.5
    np.testing.assert_allclose(c, np.maximum(x, 0), rtol=1e-5, atol=1e-6)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(s, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert result.counts["vredsum"] == 1 and result.busy["vector"] > 0


def test_bias_broadcast_by_stride_zero_then_accumulate(rng):
    text = """\
.buffer A f32 16x8
.buffer B f32 8x16
.buffer bias f32 16
.buffer C f32 16x16
dma.load sp=0 buf=A off=0 rows=16 cols=8 stride=8
dma.load sp=16 buf=B off=0 rows=8 cols=16 stride=16
dma.load.acc acc=0 buf=bias off=0 rows=16 cols=16 stride=0 signal=t0
mma acc=0 a=0 b=16 m=16 k=8 mode=accumulate wait=t0 signal=t1
dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=relu wait=t1
"""
    a, b, bias = (rng.standard_normal(s).astype(np.float32) for s in ((16, 8), (8, 16), (16,)))
    c = np.zeros((16, 16), np.float32)
    result = simulate(assemble(text), {"A": a, "B": b, "bias": bias, "C": c})
    np.testing.assert_allclose(c, np.maximum(a @ b + bias, 0), rtol=1e-5, atol=1e-6)
    assert result.macs == 16 * 8 * 16


def test_padded_loads_zero_fill_around_the_region(rng):
    text = """\
.buffer X f32 6x10
.buffer C f32 8x16
dma.load.acc.pad acc=0 buf=X off=12 rows=4 cols=7 stride=10 lead=3 fill=zero
dma.load.acc.pad acc=4 buf=X off=0 rows=4 cols=0 stride=0 lead=0 fill=-inf signal=t0
dma.store acc=0 buf=C off=0 rows=8 cols=16 stride=16 act=none wait=t0
"""
    x = rng.standard_normal((6, 10)).astype(np.float32)
    c = np.full((8, 16), np.nan, np.float32)
    result = simulate(assemble(text), {"X": x, "C": c})
    want = np.zeros((8, 16), np.float32)
    want[:4, 3:10] = x[1:5, 2:9]
    want[4:] = -np.inf
    np.testing.assert_array_equal(c, want)
    assert result.dma_bytes["load"] == 4 * 7 * 4  # zero rows move nothing from DRAM


def test_a_transposing_load(rng):
    text = """\
.buffer X f32 9x12
.buffer C f32 20x16
dma.load.acc.t acc=0 buf=X off=14 rows=7 cols=5 stride=12 signal=t0
dma.store acc=0 buf=C off=0 rows=7 cols=16 stride=16 act=none wait=t0
"""
    x = rng.standard_normal((9, 12)).astype(np.float32)
    c = np.full((20, 16), np.nan, np.float32)
    result = simulate(assemble(text), {"X": x, "C": c})
    want = np.zeros((7, 16), np.float32)
    want[:, :5] = x[1:6, 2:9].T  # column c is DRAM row 1 + c, from element 2 on
    np.testing.assert_array_equal(c[:7], want)
    assert result.cycles == 5 * 1 + 100 + 7 * 16 * 4 // 32 + 100  # five bursts of 28 bytes; the store


def test_a_transposing_scratchpad_load_with_a_row_step_and_a_transposing_store(rng):
    # W is 9 x 12; scratchpad row r, column c = W[c, 2 + 3r] (stride 12 between columns, step 3
    # between rows), multiplied by the identity, then stored back transposed into Y (8 x 20)
    text = """\
.buffer W f32 9x12
.buffer I f32 16x16
.buffer Y f32 8x20
dma.load.t sp=0 buf=W off=2 rows=4 cols=5 stride=12 step=3
dma.load sp=16 buf=I off=0 rows=16 cols=16 stride=16 signal=t0
mma acc=0 a=0 b=16 m=4 k=16 mode=overwrite wait=t0 signal=t2
dma.store.t acc=0 buf=Y off=21 rows=4 cols=5 stride=20 act=relu wait=t2
"""
    w = rng.standard_normal((9, 12)).astype(np.float32)
    y = np.full((8, 20), np.nan, np.float32)
    result = simulate(assemble(text), {"W": w, "I": np.eye(16, dtype=np.float32), "Y": y})
    tile = w[:5, 2:12:3].T  # 4 rows (every third element) x 5 columns (consecutive rows of W)
    want = np.full((8, 20), np.nan, np.float32)
    want[1:6, 1:5] = np.maximum(tile, 0).T  # column c of the tile lands at row 1 + c, from element 1
    np.testing.assert_array_equal(y, want)
    # the strided load: 5 bursts over a span of 10 elements (40 bytes: 2 cycles each); the identity
    # 32 cycles; the store: 5 bursts of 16 bytes (1 cycle each); each + 100 latency
    loads = 5 * 2 + 32
    assert result.cycles == loads + 100 + 16 + 4 + 16 + 5 + 100


def test_i32_scalar_ops_round_half_to_even_and_saturate():
    text = """\
.buffer X i32 2x16
.buffer Y i32 2x16
dma.load.acc acc=0 buf=X off=0 rows=2 cols=16 stride=16 signal=t0
vmuls dst=0 src=0 rows=2 imm=0.5 wait=t0
vadds dst=0 src=0 rows=2 imm=-3.0
vmaxs dst=0 src=0 rows=2 imm=-5.0 signal=t1
dma.store acc=0 buf=Y off=0 rows=2 cols=16 stride=16 act=none wait=t1
"""
    x = np.arange(-16, 16, dtype=np.int32).reshape(2, 16) * 3
    x[1, 15] = 2**31 - 1
    y = np.zeros_like(x)
    simulate(assemble(text), {"X": x, "Y": y}, I8)
    want = np.maximum(np.clip(np.rint(x * 0.5) - 3, -(2**31), 2**31 - 1), -5)
    np.testing.assert_array_equal(y, want)


def test_unwritten_rows_read_as_poison(rng):
    text = """\
.buffer C f32 16x16
mma acc=0 a=0 b=16 m=16 k=16 mode=overwrite signal=t0
dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none wait=t0
"""
    c = np.zeros((16, 16), np.float32)
    simulate(assemble(text), {"C": c})
    assert np.isnan(c).all()


PROLOGUE = ".buffer A f32 64x16\n.buffer C f32 16x16\n.buffer I i32 16\n"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("dma.load sp=4090 buf=A off=0 rows=16 cols=16 stride=16",
         r"pc 0 `dma\.load sp=4090 buf=A .*`: scratchpad rows 4090\.\.4105 are out of range \(the scratchpad has 4096 rows\)"),
        ("mma acc=1020 a=0 b=0 m=16 k=16 mode=overwrite",
         r"pc 0 `mma acc=1020 .*`: accumulator rows 1020\.\.1035 are out of range \(the accumulator has 1024 rows\)"),
        ("vadd dst=0 src=0 rows=1 b=4096 bmem=sp bstep=0", r"scratchpad rows 4096\.\.4096 are out of range"),
        ("dma.load sp=0 buf=A off=16 rows=64 cols=16 stride=16",
         r"DMA reaches element 1039 of buffer A, which has 1024 elements"),
        ("dma.load sp=0 buf=I off=0 rows=1 cols=16 stride=16", r"buffer I is i32; dma\.load on a f32 machine moves f32"),
        ("dma.store acc=0 buf=A off=0 rows=16 cols=16 stride=16 act=none\n"
         "dma.store acc=0 buf=C off=0 rows=2 cols=16 stride=8 act=none",
         r"pc 1 `dma\.store .*`: stride=8 < cols=16: the stored rows would overlap in DRAM"),
        ("dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16\nhalt\nhalt",
         r"pc 2 `halt`: instruction after halt \(pc 1\) never runs"),
    ],
)  # fmt: skip
def test_static_errors_name_pc_and_instruction(body, match):
    a, c, i = np.ones((64, 16), np.float32), np.zeros((16, 16), np.float32), np.zeros(16, np.int32)
    with pytest.raises(SimError, match=match) as info:
        simulate(assemble(PROLOGUE + body), {"A": a, "C": c, "I": i})
    assert info.value.exit_code == 2


def test_instructions_built_without_make_are_checked():
    program = Program((), (Instr("fence", (3,)), Instr("mma", (0, 0, 0, 0, 16, 0))))
    with pytest.raises(SimError, match=r"pc 0 `fence q=3`: q=3 is out of range 0\.\.2"):
        simulate(program, {})
    with pytest.raises(SimError, match=r"pc 0 `mma acc=0 a=0 b=0 m=0 .*`: m=0 is out of range 1\.\.65535"):
        simulate(Program((), program.instrs[1:]), {})
    with pytest.raises(SimError, match=r"pc 0 `fence q=load wait=t0,t0`: tokens must be distinct t0\.\.t7"):
        simulate(Program((), (Instr("fence", (0,), wait=(0, 0)),)), {})


def test_config_dependent_errors():
    small = AccelConfig.load("small")
    a = np.ones((64, 16), np.float32)
    text = ".buffer A f32 64x16\ndma.load sp=0 buf=A off=0 rows=4 cols=16 stride=16\n"
    with pytest.raises(SimError, match=r"cols=16 exceeds the row width dim=8"):
        simulate(assemble(text), {"A": a}, small)
    with pytest.raises(SimError, match=r"k=16 exceeds dim=8"):
        simulate(assemble("mma acc=0 a=0 b=0 m=4 k=16 mode=overwrite\n"), {}, small)
    with pytest.raises(SimError, match=r"vexp needs f32 accumulators; this machine accumulates in i32"):
        simulate(assemble("vexp dst=0 src=0 rows=1\n"), {}, I8)


def test_deadlock_is_detected_not_hung():
    text = """\
.buffer A f32 16x16
dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16 signal=t0
mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite wait=t0,t3 signal=t1
dma.store acc=0 buf=A off=0 rows=16 cols=16 stride=16 act=none wait=t1
"""
    with pytest.raises(SimError, match=r"deadlock at cycle \d+: .*compute queue at pc 1 `mma .*` waits on t3; "
                       r"store queue at pc 2 `dma\.store .*` waits on t1"):  # fmt: skip
        simulate(assemble(text), {"A": np.ones((16, 16), np.float32)})


def test_queues_waiting_on_each_other_deadlock():
    text = "fence q=load wait=t1 signal=t0\nfence q=store wait=t0 signal=t1\n"
    with pytest.raises(
        SimError, match=r"deadlock at cycle 0: .*load queue at pc 0 .* waits on t1; store queue"
    ):
        simulate(assemble(text), {})


RACES = [
    (  # the mma forgets to wait for its data
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16\nmma acc=0 a=0 b=0 m=16 k=16 mode=overwrite",
        r"pc 1 `mma .*`: race on scratchpad rows 0\.\.15: at cycle 0 pc 0 `dma\.load .*` still writes them "
        r"\(until cycle 132\); order the two with a token",
    ),
    (  # the second load (after the first has landed) overwrites rows the mma still streams
        "dma.load sp=0 buf=A off=0 rows=64 cols=16 stride=16 signal=t0\n"
        "mma acc=0 a=0 b=0 m=64 k=16 mode=overwrite wait=t0\n"
        "fence q=load\n"
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16",
        r"pc 3 `dma\.load .*`: race on scratchpad rows 0\.\.15: at cycle 229 pc 1 `mma .*` still reads them "
        r"\(until cycle 308\)",
    ),
    (  # the store does not wait for the mma
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite\ndma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none",
        r"pc 1 `dma\.store .*`: race on accumulator rows 0\.\.15: at cycle 0 pc 0 `mma .*` still writes them",
    ),
    (  # the next mma overwrites accumulator rows before the store reads them
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite signal=t0\n"
        "dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none wait=t0\n"
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite",
        r"pc 1 `dma\.store .*`: race on accumulator rows 0\.\.15: at cycle 48 pc 2 `mma .*` still writes them",
    ),
    (  # an mma (held back by the vector unit) overwrites accumulator rows the store is still reading
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite signal=t0\n"
        "dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none wait=t0\n"
        "vmuls dst=16 src=16 rows=1 imm=1.0\n"
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite",
        r"pc 3 `mma .*`: race on accumulator rows 0\.\.15: at cycle 53 pc 1 `dma\.store .*` still reads them "
        r"\(until cycle 80\)",
    ),
]


@pytest.mark.parametrize(("body", "match"), RACES)
def test_races_between_queues(body, match):
    a, c = np.ones((64, 16), np.float32), np.zeros((16, 16), np.float32)
    with pytest.raises(SimError, match=match):
        simulate(assemble(PROLOGUE + body), {"A": a, "C": c, "I": np.zeros(16, np.int32)})
    simulate(assemble(PROLOGUE + body), {"A": a, "C": c, "I": np.zeros(16, np.int32)}, check_races=False)


def test_dram_arrays_must_match_the_program():
    program = assemble(".buffer A f32 4x4\n")
    with pytest.raises(UsageError, match=r"no DRAM array for buffer 'A' \(f32 4x4\)"):
        simulate(program, {})
    with pytest.raises(UsageError, match=r"DRAM array 'A' is float64 \(4, 4\); the program declares float32"):
        simulate(program, {"A": np.zeros((4, 4))})
    with pytest.raises(UsageError, match=r"DRAM array 'A' must be C-contiguous"):
        simulate(program, {"A": np.zeros((4, 4), np.float32).T})
    store = assemble(".buffer A f32 4x4\ndma.store acc=0 buf=A off=0 rows=4 cols=4 stride=4 act=none\n")
    frozen = np.zeros((4, 4), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(UsageError, match=r"DRAM array 'A' is stored to but read-only"):
        simulate(store, {"A": frozen})
    simulate(program, {"A": frozen})  # inputs may be read-only
