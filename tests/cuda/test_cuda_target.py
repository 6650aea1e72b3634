"""The CUDA target end to end without a GPU: every example built by nvcc for sm_80 and sm_90 and
checked against the reference in the emulation, under the default schedule and under a tiled
shared-memory schedule; a dropped barrier caught by the race checker; the CLI's reports."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from kcomp.api import compile as kc_compile
from kcomp.cli import main
from kcomp.config import Config
from kcomp.errors import ScheduleError, UsageError
from kcomp.interp import run as interpret
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.schedule import parse_schedule
from kcomp.targets import get_target
from kcomp.targets.cuda import build as cuda_build
from kcomp.targets.cuda.runtime import EmulationError
from kcomp.targets.cuda.target import CudaTarget

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_examples import EXAMPLES, IDS, random_shapes

pytestmark = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("g++") is None, reason="needs nvcc and g++"
)

TILED = """
split i 16
split j 16
split k 8
reorder i_o j_o k_o i_i j_i k_i
bind i_o blockIdx.y
bind j_o blockIdx.x
bind i_i threadIdx.y
bind j_i threadIdx.x
cache_read A at k_o
cache_read B at k_o
"""
MATMUL = """
kernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return Config(cache_dir=tmp_path_factory.mktemp("cuda-cache"), threads=1)


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_every_example_builds_for_both_archs_and_passes_emulated(path, cache):
    shapes = random_shapes(path, np.random.default_rng(7), cap=20)
    k = kc_compile(path, shapes=shapes, schedule="default", target="cuda")
    result = k.check(seed=3)
    assert result.ok and result.report["mode"] == "emulated", (shapes, result.outputs)
    assert result.report["launches"] >= 1
    for arch in cuda_build.ARCHS:
        device = cuda_build.device_build(k.built.source, arch, cache)
        assert device.cubin.stat().st_size > 0 and ".entry" in device.ptx.read_text()
        assert set(device.resources) >= {m for m in re.findall(r"KC_LAUNCH\((kc_\w+)", k.built.source)}


def test_default_schedule_binds_blocks_and_threads():
    k = kc_compile(MATMUL, shapes={"M": 40, "N": 300, "K": 9}, target="cuda", schedule="default")
    text = str(k.built.schedule)
    assert "blockIdx.x" in text and "threadIdx.x" in text and "cache_write C" in text
    assert k.check(seed=1).ok


def test_tiled_shared_memory_schedule_is_correct_and_uses_shared_memory(cache):
    k = kc_compile(MATMUL, shapes={"M": 48, "N": 64, "K": 40}, target="cuda", schedule=TILED)
    assert k.check(seed=2).ok
    src = k.built.source
    assert src.count("__shared__") == 2 and "__syncthreads();" in src
    res = {r["kernel"]: r for r in k.built.artifact.resources()}
    mm = res["kc_mm_k1"]
    assert mm["shared_bytes"] == 2 * 16 * 8 * 4 and mm["block"] == [16, 16, 1] and mm["grid"] == [4, 3, 1]


@pytest.mark.parametrize("which", ["end of k_o", "between copy and compute"])
def test_a_dropped_barrier_is_caught_by_the_race_checker(which, cache):
    k = kc_compile(MATMUL, shapes={"M": 32, "N": 32, "K": 24}, target="cuda", schedule=TILED)
    src = k.built.source
    lines = src.splitlines()
    barriers = [n for n, line in enumerate(lines) if line.strip() == "__syncthreads();"]
    drop = barriers[-1] if which == "end of k_o" else barriers[-2]
    broken = "\n".join(lines[:drop] + lines[drop + 1 :])
    target = CudaTarget(cfg=cache)
    artifact = target.build(broken)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((32, 24), np.float32), rng.standard_normal((24, 32), np.float32)
    c = np.empty((32, 32), np.float32)
    with pytest.raises(EmulationError, match="race on shared"):
        target.run(artifact, [a, b, c])
    target.run(target.build(src), [a, b, c])  # the emitted source, barriers in place: no report
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_binding_keeps_the_loop_ir_meaning():
    shapes = {"M": 32, "N": 48, "K": 24}
    program = kc_compile(MATMUL, shapes=shapes, target="cpu", schedule="none").built.program
    nest = apply(lower(program), parse_schedule(TILED))
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((32, 24), np.float32), rng.standard_normal((24, 48), np.float32)
    arrays = {"A": a, "B": b, "C": np.empty((32, 48), np.float32)}
    interpret(nest, arrays, {})
    np.testing.assert_allclose(arrays["C"], a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("bind k blockIdx.x", "iterations are independent"),
        ("bind j blockIdx.x", "a block loop must be outermost"),
        ("bind i threadIdx.x; bind j threadIdx.x", "bound to threadIdx.x already"),
        (
            "bind j threadIdx.x; bind i blockIdx.x; split k 2; bind k_o blockIdx.y",
            "iterations are independent",
        ),
        ("bind i threadIdx.x; bind j blockIdx.x", "a block loop must be outermost"),
        ("bind i threadIdx.z", "extent 100 exceeds CUDA's limit of 64"),
    ],
)
def test_bind_refuses_what_a_launch_cannot_run(steps, message):
    program = kc_compile(
        MATMUL, shapes={"M": 100, "N": 40, "K": 5}, target="cpu", schedule="none"
    ).built.program
    with pytest.raises(ScheduleError, match=message):
        apply(lower(program), parse_schedule(steps))


def test_too_many_threads_per_block_is_refused():
    with pytest.raises(ScheduleError, match="threads per block"):
        kc_compile(
            MATMUL,
            shapes={"M": 64, "N": 64, "K": 4},
            target="cuda",
            schedule="bind i threadIdx.y; bind j threadIdx.x",
        )


def test_run_json_reports_the_mode(capsys):
    code = main(
        [
            "run",
            "examples/softmax.kc",
            "--target",
            "cuda",
            "--check",
            "--json",
            "--shape",
            "N=5",
            "--shape",
            "D=37",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"] is True and result["mode"] == "emulated"


def test_compile_writes_cubin_ptx_and_resources(tmp_path, capsys):
    code = main(["compile", "examples/matmul.kc", "--target", "cuda:sm_90", "--shape", "M=64", "--shape", "N=64",
                 "--shape", "K=64", "-o", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"matmul.cu", "matmul.sm_90.cubin", "matmul.sm_90.ptx", "matmul.resources.json"} <= names
    resources = json.loads((tmp_path / "matmul.resources.json").read_text())
    assert all(r["arch"] == "sm_90" and r["registers"] > 0 and 0 < r["occupancy"] <= 1 for r in resources)
    assert re.search(r"kc_matmul_k1: grid \d+x\d+x1 block \d+x\d+x1; sm_90: \d+ registers", out)


def test_missing_nvcc_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    with pytest.raises(UsageError, match="needs nvcc"):
        cuda_build.nvcc()
    assert main(["compile", "examples/matmul.kc", "--target", "cuda", "--shape", "M=8", "--shape", "N=8",
                 "--shape", "K=8", "--emit", "source"]) == 2  # fmt: skip
    assert "needs nvcc" in capsys.readouterr().err


def test_ptxas_report_and_occupancy_arithmetic():
    report = """ptxas info    : Compiling entry function 'kc_a_k0' for 'sm_80'
ptxas info    : Function properties for kc_a_k0
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 376 bytes cmem[0]
"""
    res = cuda_build.parse_ptxas(report)["kc_a_k0"]
    assert res == cuda_build.Resources(40, 2048, 16, 8, 4, 1)
    # 256 threads = 8 warps; 40 registers -> 1280 per warp, 10240 per block: 6 blocks by registers,
    # 8 by threads, 32 by blocks, 54 by shared memory (167936 // 3072): 6 blocks, 48 of 64 warps
    occ = cuda_build.occupancy(res, 256, "sm_80")
    assert occ == {"blocks_per_sm": 6, "warps_per_sm": 48, "occupancy": 0.75, "limited_by": "registers"}


def test_unsupported_architecture_and_dtype():
    with pytest.raises(UsageError, match="unknown architecture 'sm_70'"):
        get_target("cuda:sm_70")


@pytest.mark.parametrize(
    ("path", "shapes"),
    [
        ("examples/softmax.kc", {"N": 5, "D": 1000}),
        ("examples/layernorm.kc", {"N": 7, "D": 300}),
        ("examples/rmsnorm.kc", {"N": 3, "D": 129}),
        ("examples/row_reduce.kc", {"N": 5, "D": 500}),
        ("examples/matvec.kc", {"M": 9, "K": 70}),
    ],
)
def test_rows_reduce_across_a_blocks_threads(path, shapes):
    k = kc_compile(path, shapes=shapes, target="cuda", schedule="default")
    assert "reduce" in str(k.built.schedule) and "kc_block_reduce(" in k.built.source
    assert k.check(seed=4).ok


def test_reduce_across_threads_in_a_hand_written_schedule_with_warp_sized_rows():
    text = """
    kernel rs(X: f32[N, D]) -> (S: f32[N]) {
        S[n] += X[n, d]
    }
    """
    steps = "split d 8; reorder d_i d_o; bind n blockIdx.x; bind d_i threadIdx.x reduce"
    k = kc_compile(text, shapes={"N": 6, "D": 40}, target="cuda", schedule=steps)
    assert k.check(seed=2).ok


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("bind k threadIdx.y reduce", "only threadIdx.x combines"),
        ("bind i threadIdx.x reduce", "is indexed by a loop of the reduction"),
    ],
)
def test_bind_reduce_refuses_what_is_not_one_reduction(steps, message):
    program = kc_compile(MATMUL, shapes={"M": 8, "N": 8, "K": 8}, target="cpu", schedule="none").built.program
    with pytest.raises(ScheduleError, match=message):
        apply(lower(program), parse_schedule(steps))


def test_a_reduction_across_a_non_power_of_two_block_is_refused():
    text = "kernel rs(X: f32[N, D]) -> (S: f32[N]) {\n    S[n] += X[n, d]\n}\n"
    with pytest.raises(ScheduleError, match=r"power-of-two blockDim\.x"):
        kc_compile(
            text,
            shapes={"N": 2, "D": 24},
            target="cuda",
            schedule="bind n blockIdx.x; bind d threadIdx.x reduce",
        )


def test_f16_tensors_are_cuda_halves(cache):
    text = """
    kernel hx(X: f16[N, D], W: f16[D], s: f16) -> (Y: f16[N, D], T: f32[N]) {
        Y[n, d] = X[n, d] * W[d] + s
        T[n] += f32(X[n, d])
    }
    """
    k = kc_compile(text, shapes={"N": 5, "D": 300}, target="cuda")
    assert k.check(seed=6, params={"s": 0.5}).ok
    assert "typedef __half kc_half;" in k.built.source and "_Float16" not in k.built.source.split("__global__")[1]
    for arch in cuda_build.ARCHS:
        assert cuda_build.device_build(k.built.source, arch, cache).resources


def test_a_reduction_to_one_value_is_shared_by_one_blocks_threads():
    text = "kernel t(X: f32[N]) -> (Y: f32[]) {\n    Y[] += X[n] * X[n]\n}\n"
    k = kc_compile(text, shapes={"N": 1000}, target="cuda")
    assert "bind n_i threadIdx.x reduce" in str(k.built.schedule)
    assert k.check(seed=8).ok
