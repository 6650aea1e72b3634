"""Tuning for CUDA without a GPU: the proxy model, the search rules' tilings, candidates checked in
the emulation at cut-down shapes, and `kcomp tune --target cuda` end to end."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from kcomp.api import compile as kc_compile
from kcomp.cli import main
from kcomp.config import Config
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Var
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.schedule import Schedule, parse_schedule
from kcomp.search.loop_rules import top_nests
from kcomp.search.measure import Job, _checked_kernel, _compile
from kcomp.targets import get_target
from kcomp.targets.cuda import build as cuda_build
from kcomp.targets.cuda import model
from kcomp.targets.cuda.rules import Variant, tiled_steps, variants

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_examples import EXAMPLES, IDS, random_shapes

pytestmark = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("g++") is None, reason="needs nvcc and g++"
)

MATMUL = """
kernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""


def _naive(shapes):
    return lower(kc_compile(MATMUL, shapes=shapes, target="cpu", schedule="none").built.program)


def test_bytes_per_lane_follow_the_warps_coalescing():
    from kcomp.dtypes import DType

    buf = Buffer("X", DType.F32, (64, 64))
    lane, other = Var("t"), Var("u")
    one = Const(1, DType.I32)
    assert model.bytes_per_lane(buf, (other, lane), lane) == 4  # contiguous: its element
    assert model.bytes_per_lane(buf, (other, other), lane) == 4 / 32  # shared by the warp
    assert model.bytes_per_lane(buf, (lane, other), lane) == 32  # a row apart: a sector each
    assert model.bytes_per_lane(buf, (other, Binary(BinaryOp.MUL, lane, Const(2, DType.I32))), lane) == 8
    assert (
        model.bytes_per_lane(buf, (one, Binary(BinaryOp.MUL, lane, lane)), lane) == 32
    )  # not affine: a sector each


def test_kernel_time_by_hand():
    figures = {"flops": 2e9, "global_bytes": 8e9, "shared_accesses": 0.0, "compulsory_bytes": 1.55e9}
    row = {"occupancy": 0.25, "warps_per_sm": 16, "spill_stores": 0, "spill_loads": 0}
    # sm_80: 108 SMs x 16 warps x 32 = 55296 resident threads; 1e6 threads fill them
    parts = model.kernel_time(figures, 1_000_000, row, "sm_80")
    # memory: max(8e9 / 4e12, 1.55e9 / 1.55e12) = 2 ms, over fill 1 x hiding 0.5 = 4 ms
    assert parts["memory_s"] == pytest.approx(4e-3)
    assert parts["compute_s"] == pytest.approx(2e9 / 19.5e12)
    assert parts["time_s"] == pytest.approx(4e-3 + model.LAUNCH_S)


def test_variants_cover_staging_and_register_tiles_and_all_apply():
    naive = _naive({"M": 64, "N": 128, "K": 32})
    vs = variants(naive, 1)
    assert any(v.kb and v.rx * v.ry > 1 for v in vs) and any(not v.kb for v in vs)
    assert all(128 % (v.tx * v.rx) == 0 and 64 % (v.ty * v.ry) == 0 for v in vs)
    for v in vs[:6]:
        steps = tiled_steps(naive, 1, v)
        assert steps is not None
        apply(naive, Schedule(steps))


@pytest.mark.parametrize(
    "variant", [Variant(16, 16, 2, 2, 8), Variant(32, 4, 4, 1, 0), Variant(64, 2, 1, 1, 16)]
)
def test_a_tiled_variant_is_correct_in_the_emulation(variant):
    shapes = {"M": 64, "N": 128, "K": 48}
    naive = _naive(shapes)
    init = tiled_steps(naive, 0, variants(naive, 0)[0])
    steps = tiled_steps(apply(naive, Schedule(init)), 1, variant)
    assert init and steps
    k = kc_compile(MATMUL, shapes=shapes, target="cuda", schedule=Schedule(init + steps))
    assert k.check(seed=5).ok
    if variant.kb:
        assert "__shared__" in k.built.source


def test_the_model_prefers_staged_register_tiles_to_one_point_per_thread():
    target = get_target("cuda")
    shapes = {"M": 1024, "N": 1024, "K": 1024}
    naive = _naive(shapes)
    init = tiled_steps(naive, 0, variants(naive, 0)[0])
    base = apply(naive, Schedule(init))
    one = tiled_steps(base, 1, Variant(256, 1, 1, 1, 0))
    tiled = tiled_steps(base, 1, Variant(32, 8, 2, 2, 16))
    assert (
        target.estimate(apply(base, Schedule(tiled))).time < target.estimate(apply(base, Schedule(one))).time
    )


def test_candidates_are_checked_at_cut_down_shapes():
    job = Job(MATMUL, "<string>", "mm", (("K", 1024), ("M", 1024), ("N", 1024)), "cuda",
              "split i 64; split j 32; reorder i_o j_o i_i j_i; bind i_o blockIdx.y; bind j_o blockIdx.x; bind j_i threadIdx.x\n", 0, 0.1, None)  # fmt: skip
    kernel = _compile(job)
    small = _checked_kernel(job, kernel)
    assert dict(small.built.program.dims) == {"M": 64, "N": 64, "K": 64}
    assert small.check(seed=1).ok


def test_profile_without_a_gpu_is_the_labelled_model():
    k = kc_compile(MATMUL, shapes={"M": 256, "N": 256, "K": 256}, target="cuda")
    m = k.benchmark(seed=0)
    assert m.counters["time_source"] == "model" and m.counters["model.gpu"].startswith("A100")
    assert m.time_s > 2 * 256**3 / model.GPU["sm_80"].fp32_flops  # never faster than the peak allows


def test_tune_runs_end_to_end_on_the_model(capsys, tmp_path):
    code = main(["tune", "examples/matmul.kc", "--target", "cuda", "--trials", "5", "--no-db", "--json",
                 "--shape", "M=512", "--shape", "N=512", "--shape", "K=512", "--seed", "3"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["time_source"] == "model"
    assert summary["best_time_s"] > 0 and summary["measured"] == 6
    assert not {k for k in summary["failures_by_status"] if k not in ("illegal",)}
    best = parse_schedule(summary["best_schedule"])
    assert any(s.verb == "bind" for s in best.steps)


def _tiled(naive, prefer):
    """Per nest, the search rules' variant that applies first in the order `prefer` sorts them (a key),
    else the nest as is; the default schedule where no nest has one."""
    steps: tuple = ()
    nest = naive
    for pos in range(len(top_nests(naive.body))):
        for v in sorted(variants(nest, pos), key=prefer):
            found = tiled_steps(nest, pos, v)
            if found:
                steps += found
                nest = apply(nest, Schedule(found))
                break
    return Schedule(steps) if steps else "default"


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_every_example_under_a_tiled_shared_memory_vector_schedule(path, tmp_path):
    """The search rules' tilings (shared-memory k-blocks, float4 register-tile rows where a nest has
    them) on every example: nvcc builds them for both architectures, the emulation checks them."""
    shapes = random_shapes(path, np.random.default_rng(11), cap=20)
    shapes = {d: max(v, 8) * 4 for d, v in shapes.items()}  # divisible tiles: multiples of 4, at least 32
    module_kernel = kc_compile(path, shapes=shapes, target="cpu", schedule="none")
    naive = lower(module_kernel.built.program)
    schedule = _tiled(naive, lambda v: (not v.kb, v.rx != 4))
    k = kc_compile(path, shapes=shapes, target="cuda", schedule=schedule)
    if schedule != "default":  # the default is checked at small shapes beside (test_cuda_target.py)
        assert k.check(seed=2).ok, (shapes, str(schedule))
    cfg = Config(cache_dir=tmp_path, threads=1)
    for arch in cuda_build.ARCHS:
        assert cuda_build.device_build(k.built.source, arch, cfg).resources


def test_matmul_tiling_has_shared_tiles_and_float4():
    naive = _naive({"M": 64, "N": 128, "K": 32})
    schedule = _tiled(naive, lambda v: (not v.kb, v.rx != 4))
    k = kc_compile(MATMUL, shapes={"M": 64, "N": 128, "K": 32}, target="cuda", schedule=schedule)
    src = k.built.source
    assert "__shared__" in src and "KC_LDSV(" in src and "float4 */" in src
    assert k.check(seed=1).ok


def test_an_elementwise_row_as_float4_loads_and_stores():
    text = "kernel ax(X: f32[N, D]) -> (Y: f32[N, D]) {\n    Y[n, d] = X[n, d] * 2.0 + X[n, 0]\n}\n"
    steps = "split d 4; bind n blockIdx.x; bind d_o threadIdx.x; vectorize d_i"
    k = kc_compile(text, shapes={"N": 3, "D": 64}, target="cuda", schedule=steps)
    kernel = k.built.source.split("__global__")[1]
    assert kernel.count("KC_LDGV(") == 1 and "KC_STGV(" in kernel  # X[n, 0] stays a scalar read
    assert k.check(seed=3).ok
