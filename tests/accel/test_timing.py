"""The timing model: hand-computed cycle counts for the ideal cases, the configs moving cycles the way
they should, the report, the trace and the plot, and a 512³ GEMM run for speed (printed, not asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gemm_programs import gemm_program
from test_sim import gemm_arrays

from kcomp.targets.accel.machine import AccelConfig, assemble, ideal_cycles, plot, simulate, write_trace

DEFAULT = AccelConfig()
SMALL = AccelConfig.load("small")


def run(body: str, cfg: AccelConfig = DEFAULT, **shapes: tuple[int, ...]):
    """Simulate `body` with f32 DRAM buffers A (64x16) and C (64x16) plus `shapes`."""
    shapes = {"A": (64, 16), "C": (64, 16), **shapes}
    decl = "".join(f".buffer {name} f32 {'x'.join(map(str, shape))}\n" for name, shape in shapes.items())
    arrays = {name: np.ones(shape, np.float32) for name, shape in shapes.items()}
    return simulate(assemble(decl + body), arrays, cfg)


def test_one_dma_is_latency_plus_bytes_over_bandwidth():
    assert run("dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16").cycles == 100 + 16 * 16 * 4 // 32
    assert run("dma.load sp=0 buf=A off=0 rows=3 cols=5 stride=16").cycles == 100 + 2  # 60 bytes: 2 cycles
    assert run("dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none").cycles == 132
    assert run("dma.load sp=0 buf=A off=0 rows=16 cols=8 stride=16", SMALL).cycles == 100 + 16 * 8 * 4 // 16


def test_one_mma_is_preload_stream_and_drain():
    assert run("mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite").cycles == 16 + 16 + 16
    assert run("mma acc=0 a=0 b=512 m=40 k=16 mode=overwrite").cycles == 16 + 40 + 16
    assert run("mma acc=0 a=0 b=512 m=40 k=5 mode=overwrite", SMALL).cycles == 8 + 40 + 8


def test_back_to_back_mma_pipeline_and_reuse_weights():
    same = run("mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite\nmma acc=16 a=16 b=512 m=16 k=16 mode=overwrite")
    assert same.cycles == 16 + 16 + 16 + 16  # one preload, two streams, one drain
    assert same.busy["preload"] == 16 and same.utilization["matrix"] == pytest.approx(32 / 64)
    other = run(
        "mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite\nmma acc=16 a=16 b=528 m=16 k=16 mode=overwrite"
    )
    assert other.cycles == 16 + 16 + 16 + 16 + 16  # new weights: a second preload
    # a DMA into the held weights' rows forces a preload even for the same b
    reload = run(
        "mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite signal=t0\n"
        "dma.load sp=512 buf=A off=0 rows=16 cols=16 stride=16 wait=t0 signal=t1\n"
        "mma acc=16 a=16 b=512 m=16 k=16 mode=overwrite wait=t1"
    )
    assert reload.busy["preload"] == 32
    assert reload.cycles == 48 + 132 + 48


OS = AccelConfig.load("os")


def test_output_stationary_holds_a_block_and_streams_k():
    # nothing held, overwrite: k cycles of streaming, then the drain as latency
    assert run("mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite", OS).cycles == 16 + 16
    assert run("mma acc=0 a=0 b=512 m=16 k=5 mode=overwrite", OS).cycles == 5 + 16  # k < dim: still full rate
    # the same block again, accumulating: it stays in the array (5 + 5 streaming, one drain)
    same = run(
        "mma acc=0 a=0 b=512 m=16 k=5 mode=overwrite\nmma acc=0 a=0 b=528 m=16 k=5 mode=accumulate", OS
    )
    assert same.cycles == 5 + 5 + 16 and same.busy["preload"] == 0
    # another block: drain the held one (16; the accumulator adds what drains into it), stream
    other = run(
        "mma acc=0 a=0 b=512 m=16 k=5 mode=overwrite\nmma acc=16 a=0 b=528 m=16 k=5 mode=accumulate", OS
    )
    assert other.cycles == 5 + 16 + 5 + 16 and other.busy["preload"] == 16
    # 40 rows are three blocks: two drained inline, the last held
    assert run("mma acc=0 a=0 b=512 m=40 k=16 mode=overwrite", OS).cycles == 3 * 16 + 2 * 16 + 16
    # a vector op on the accumulator ends the hold (its drain is the mma's latency): nothing to drain
    vec = run("mma acc=0 a=0 b=512 m=16 k=5 mode=overwrite\nvadds dst=0 src=0 rows=16 imm=1.0\n"
              "mma acc=0 a=0 b=512 m=16 k=5 mode=accumulate", OS)  # fmt: skip
    assert vec.busy["preload"] == 0


def test_token_chain_load_mma_store():
    result = run(
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16 signal=t0\n"
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite wait=t0 signal=t1\n"
        "dma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none wait=t1\n"
        "halt"
    )
    assert result.cycles == 132 + 48 + 132
    tl = result.timeline
    assert (tl.issue[1], tl.done[1], tl.issue[2], tl.done[3]) == (132, 180, 180, 312)
    assert result.stalls["token_wait.compute"] == 132 and result.stalls["token_wait.store"] == 180
    assert result.counts == {"dma.load": 1, "mma": 1, "dma.store": 1, "halt": 1}


def test_loads_and_stores_share_one_dram_channel():
    two_loads = run(
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16\ndma.load sp=16 buf=A off=0 rows=16 cols=16 stride=16"
    )
    assert two_loads.cycles == 32 + 32 + 100  # the second transfer follows the first; latencies overlap
    both = run(
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16\ndma.store acc=0 buf=C off=0 rows=16 cols=16 stride=16 act=none"
    )
    assert both.cycles == 32 + 32 + 100
    assert both.stalls["dma_bandwidth"] == 32 and both.busy["dma"] == 64
    assert both.dma_bytes == {"load": 1024, "store": 1024}


def test_counting_semaphore_and_fence():
    result = run(
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16 signal=t3\n"
        "dma.load sp=16 buf=A off=0 rows=16 cols=16 stride=16 signal=t3\n"
        "fence q=compute wait=t3\n"  # the first signal (cycle 132) lets it pass ...
        "fence q=compute wait=t3\n"  # ... the second (cycle 164) this one
        "fence q=load signal=t4\n"
        "fence q=store wait=t4"
    )
    tl = result.timeline
    assert (tl.issue[2], tl.issue[3], tl.issue[4], tl.issue[5]) == (132, 164, 164, 164)


def test_vector_costs_and_the_matrix_vector_interlock():
    assert run("vmuls dst=0 src=0 rows=16 imm=2.0").cycles == 16 + 4
    assert run("vexp dst=0 src=0 rows=4").cycles == 4 * 4 + 4
    assert run("vredsum dst=0 src=0 rows=2").cycles == 2 + 4 + 4  # + log2(16) for the reduction tree
    wide = AccelConfig.from_dict({"dim": 64, "scratchpad_kib": 256, "accumulator_kib": 256})
    assert run("vadds dst=0 src=0 rows=3 imm=1.0", wide).cycles == 3 * 4 + 4  # 64 elements on 16 lanes
    after = run("mma acc=0 a=0 b=512 m=16 k=16 mode=overwrite\nvmaxs dst=0 src=0 rows=16 imm=0.0")
    assert after.cycles == 48 + 16 + 4 and after.stalls["matrix_vector_switch"] == 47


def test_issue_per_queue():
    body = "fence q=load\nfence q=load\nfence q=load\nfence q=load"
    assert run(body).cycles == 3
    assert run(body, AccelConfig.from_dict({"issue_per_queue": 2})).cycles == 1


def test_bank_conflicts_stall_the_later_access():
    # a DMA lands in bank 0 while the mma streams 256 rows of bank 0: the DMA waits for the port
    body = (
        "dma.load sp=0 buf=A off=0 rows=256 cols=16 stride=16 signal=t0\n"
        "mma acc=0 a=0 b=0 m=256 k=16 mode=overwrite wait=t0\n"
        "fence q=load\n"
        "dma.load sp={row} buf=A off=0 rows=16 cols=16 stride=16"
    )
    same = run(body.format(row=512), A=(256, 16))
    other = run(body.format(row=1024), A=(256, 16))
    assert other.stalls["bank_conflict"] == 0 and other.timeline.done[3] == 613 + 32 + 100
    assert same.stalls["bank_conflict"] == 32 and same.timeline.done[3] == 613 + 32 + 100 + 32
    # an mma whose bank is being written by an earlier DMA stretches by the overlap
    stretched = run(
        "dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=16 signal=t0\n"
        "dma.load sp=512 buf=A off=0 rows=256 cols=16 stride=16\n"
        "mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite wait=t0",
        A=(256, 16),
    )
    tl = stretched.timeline
    assert tl.end[2] - tl.start[2] == 16 + 16 + 32 and stretched.stalls["bank_conflict"] == 32


def test_ideal_bound():
    assert ideal_cycles(16**3, 3 * 1024, DEFAULT) == 96
    assert ideal_cycles(512**3, 3 * 512 * 512 * 4, DEFAULT) == 512**3 // 256
    result = run(
        "dma.load sp=0 buf=A off=0 rows=64 cols=16 stride=16 signal=t0\n"
        "mma acc=0 a=0 b=0 m=64 k=16 mode=overwrite wait=t0"
    )
    assert result.compulsory_bytes == 64 * 16 * 4 and result.ideal_cycles == 128


def test_configs_move_cycles_the_way_they_say(rng):
    arrays = gemm_arrays(rng, 64, 64, 64, DEFAULT)
    results = {}
    for name, cfg in (("default", DEFAULT), ("small", SMALL)):
        results[name] = simulate(gemm_program(64, 64, 64, cfg, tm=32, tn=32, tk=32), dict(arrays), cfg)
    default, small = results["default"], results["small"]
    assert small.counts["mma"] == 4 * default.counts["mma"]  # (16/8)² more dim x dim products
    assert small.macs == default.macs and small.compulsory_bytes == default.compulsory_bytes
    # half the width is a quarter of the MACs per cycle, half the bandwidth doubles the DMA bound
    assert (default.ideal_cycles, small.ideal_cycles) == (
        max(64**3 // 256, 49152 // 32),
        max(64**3 // 64, 49152 // 16),
    )
    assert small.cycles > 2 * default.cycles
    slow = AccelConfig.from_dict({"dma_bytes_per_cycle": 8, "dma_latency": 400})
    dma_only = "dma.load sp=0 buf=A off=0 rows=64 cols=16 stride=16"
    assert run(dma_only, slow).cycles == 400 + 64 * 16 * 4 // 8 > run(dma_only).cycles


def test_double_buffering_beats_naive_and_the_report(rng, capsys):
    arrays = gemm_arrays(rng, 128, 128, 128, DEFAULT)
    tiles = {"tm": 64, "tn": 64, "tk": 64}
    fast = simulate(gemm_program(128, 128, 128, DEFAULT, **tiles), dict(arrays))
    naive = simulate(gemm_program(128, 128, 128, DEFAULT, double_buffer=False, **tiles), dict(arrays))
    assert fast.cycles < naive.cycles
    assert fast.stalls["token_wait.compute"] < naive.stalls["token_wait.compute"]
    report = fast.report()
    assert "ideal" in report and "instructions/s" in report
    summary = json.loads(json.dumps(fast.to_dict()))
    assert summary["cycles"] == fast.cycles and 0 < summary["utilization"]["matrix"] <= 1


def test_trace_and_plot(rng, tmp_path):
    arrays = gemm_arrays(rng, 64, 64, 64, DEFAULT)
    result = simulate(gemm_program(64, 64, 64, DEFAULT, tm=32, tn=32, tk=32), arrays)
    write_trace(result, tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {
        "DRAM channel",
        "matrix unit",
        "vector unit",
        "load queue",
        "compute queue",
        "store queue",
    } == names
    slices = [
        e for e in events if e["ph"] == "X" and e["name"] != "preload" and not e["name"].startswith("wait")
    ]
    assert len(slices) == result.instructions - 1  # every instruction but halt occupies a unit
    plot(result, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_gemm_512_simulates_quickly(rng):
    """The speed case: 512³ in mma instructions of 16 rows (a 1024³ GEMM is 8x this).  Printed, not
    asserted; the model must let a good hand schedule reach 80% of the matrix unit."""
    arrays = gemm_arrays(rng, 512, 512, 512, DEFAULT)
    program = gemm_program(512, 512, 512, DEFAULT, tm=128, tn=64, tk=128, mma_rows=16)
    result = simulate(program, arrays)
    print(
        f"\n512^3: {result.instructions} instructions in {result.wall_s:.2f} s = {result.instr_per_s:,.0f}/s"
    )
    assert result.counts["mma"] == 32768
    assert result.utilization["matrix"] >= 0.8 and result.cycles <= 1.25 * result.ideal_cycles
    np.testing.assert_allclose(
        arrays["C"], arrays["A"].astype(np.float64) @ arrays["B"], rtol=1e-4, atol=1e-3
    )
