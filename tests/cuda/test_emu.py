"""The CUDA emulation header (targets/cuda/emu.h): hand-written .cu sources built as the CUDA target's
emulated build does (g++, emu.h force-included), called through ctypes (entry points take device
pointers, as generated ones do: here numpy's buffers) and compared with numpy.  What matters is that a
wrong kernel is caught (races, bounds, divergence) and a right one is not."""

import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EMU_H = Path(__file__).resolve().parents[2] / "targets" / "cuda" / "emu.h"
GXX = ["g++", "-std=gnu++17", "-O1", "-g0", "-fPIC", "-shared", "-fwrapv", "-DKC_EMULATED", "-x", "c++"]
LAUNCH_FAILURE = 719  # cudaErrorLaunchFailure

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is missing")

# The shell of generated sources: never compiled by nvcc here, it keeps the test kernels honest CUDA.
PRELUDE = r"""
#ifndef KC_EMULATED
#include <cuda_runtime.h>
#define KC_LAUNCH(kernel, grid, block, ...) kernel<<<grid, block>>>(__VA_ARGS__)
#define KC_LDG(b, i, n) (b)[i]
#define KC_STG(b, i, n, v) ((b)[i] = (v))
#define KC_LDS(b, i, n) (b)[i]
#define KC_STS(b, i, n, v) ((b)[i] = (v))
#endif
#define FULL 0xffffffffu
"""


def build(tmp_path: Path, source: str, name: str = "kernels") -> Path:
    src, lib = tmp_path / f"{name}.cu", tmp_path / f"lib{name}.so"
    src.write_text(PRELUDE + source)
    cmd = [*GXX, "-include", str(EMU_H), str(src), "-o", str(lib)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return lib


def load(tmp_path: Path, source: str, name: str = "kernels") -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build(tmp_path, source, name)))
    lib.kc_emu_errors.restype = ctypes.c_char_p
    return lib


def run(lib: ctypes.CDLL, fn: str, *args) -> tuple[int, str]:
    """Calls `fn` on a clean slate: (its return value, the problems the emulator recorded)."""
    lib.kc_emu_reset()
    rc = getattr(lib, fn)(*(a.ctypes if isinstance(a, np.ndarray) else a for a in args))
    return rc, lib.kc_emu_errors().decode()


def small_ints(rng: np.random.Generator, n: int, dtype=np.float32) -> np.ndarray:
    """Nonzero integers: float sums of them are exact in any order."""
    return rng.integers(1, 10, n).astype(dtype)


REDUCE = r"""
__global__ void reduce(const float* x, float* out, int sync) {
    __shared__ float s[256];
    int t = threadIdx.x;
    KC_STS(s, t, 256, KC_LDG(x, blockIdx.x * 256 + t, 1024));
    __syncthreads();
    for (int h = 128; h > 0; h >>= 1) {
        if (t < h) KC_STS(s, t, 256, KC_LDS(s, t, 256) + KC_LDS(s, t + h, 256));
        if (sync) __syncthreads();
    }
    if (t == 0) KC_STG(out, blockIdx.x, 4, KC_LDS(s, 0, 256));
}
extern "C" int run(const float* x, float* out, int sync) {
    KC_LAUNCH(reduce, dim3(4), dim3(256), x, out, sync);
    return (int)cudaGetLastError();
}
"""


def test_shared_reduction_exact_and_missing_barrier_is_a_race(tmp_path, rng):
    lib = load(tmp_path, REDUCE)
    x, out = small_ints(rng, 1024), np.zeros(4, np.float32)
    assert run(lib, "run", x, out, 1) == (0, "")
    np.testing.assert_array_equal(out, x.reshape(4, 256).sum(axis=1))
    rc, errors = run(lib, "run", x, out, 0)
    assert "race on shared s[" in errors and "in reduce block (" in errors, errors
    assert rc == LAUNCH_FAILURE


MATMUL = r"""
enum { M = 48, K = 64, N = 32 };
__global__ void matmul(const float* A, const float* B, float* C, int second_sync) {
    __shared__ float As[256], Bs[256];
    int tx = threadIdx.x, ty = threadIdx.y, row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
    float acc = 0;
    for (int k0 = 0; k0 < K; k0 += 16) {
        KC_STS(As, ty * 16 + tx, 256, KC_LDG(A, row * K + k0 + tx, M * K));
        KC_STS(Bs, ty * 16 + tx, 256, KC_LDG(B, (k0 + ty) * N + col, K * N));
        __syncthreads();
        for (int k = 0; k < 16; k++) acc += KC_LDS(As, ty * 16 + k, 256) * KC_LDS(Bs, k * 16 + tx, 256);
        if (second_sync) __syncthreads();
    }
    KC_STG(C, row * N + col, M * N, acc);
}
extern "C" int run(const float* a, const float* b, float* c, int sync) {
    KC_LAUNCH(matmul, dim3(N / 16, M / 16), dim3(16, 16), a, b, c, sync);
    return (int)cudaGetLastError();
}
"""


def test_tiled_matmul_and_missing_second_barrier(tmp_path, rng):
    lib = load(tmp_path, MATMUL)
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((48, 64), (64, 32)))
    c = np.zeros((48, 32), np.float32)
    assert run(lib, "run", a, b, c, 1) == (0, "")
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    _, errors = run(lib, "run", a, b, c, 0)
    assert "race on shared" in errors and "in the same barrier interval" in errors, errors
    lines = errors.splitlines()  # one report per address: far more than are kept
    assert len(lines) == 21 and lines[-1].startswith("... and ") and lines[-1].endswith(" more")


GLOBAL = r"""
__global__ void same_element(float* out) { KC_STG(out, 0, 8, (float)blockIdx.x); }
__global__ void same_block(float* out) { KC_STG(out, 1, 8, (float)threadIdx.x); }
__global__ void handoff(float* out) {  // a barrier orders the two threads: no race
    int i = 2 * blockIdx.x;
    if (threadIdx.x == 0) KC_STG(out, i, 8, 5.0f);
    __syncthreads();
    if (threadIdx.x == 1) KC_STG(out, i + 1, 8, KC_LDG(out, i, 8));
}
__global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) KC_STG(y, i, 1000, 2.0f * KC_LDG(x, i, 1000));
}
extern "C" int racy(float* out, int which) {
    if (which == 0) KC_LAUNCH(same_element, 2, 1, out);
    if (which == 1) KC_LAUNCH(same_block, 1, 2, out);
    if (which == 2) KC_LAUNCH(handoff, 3, 2, out);
    return 0;
}
extern "C" int run_scale(const float* x, float* y) {
    KC_LAUNCH(scale, dim3(8), dim3(128), x, y, 1000);
    return (int)cudaGetLastError();
}
"""


def test_global_races(tmp_path, rng):
    lib, out = load(tmp_path, GLOBAL), np.zeros(8, np.float32)
    _, errors = run(lib, "racy", out, 0)
    assert errors.startswith("race on global out[0] in same_element: block (") and "wrote" in errors, errors
    _, errors = run(lib, "racy", out, 1)
    assert "race on global out[1] in same_block block (0,0,0): thread (" in errors, errors
    assert run(lib, "racy", out, 2) == (0, "")
    np.testing.assert_array_equal(out[:6], 5)
    x, y = rng.standard_normal(1000).astype(np.float32), np.zeros(1000, np.float32)
    assert run(lib, "run_scale", x, y) == (0, "")
    np.testing.assert_array_equal(y, 2 * x)
    # g++ would make emu.h's inline variables process-wide (STB_GNU_UNIQUE) were they not hidden.
    other = load(tmp_path, GLOBAL, "other")
    run(lib, "racy", out, 0)
    assert run(other, "racy", out, 2) == (0, "") and "race" in lib.kc_emu_errors().decode()


WARP_ORDER = r"""
// mode 0: read a lane of the same warp after __syncwarp; 1: no __syncwarp; 2: a lane of the other warp
__global__ void swap(const float* x, float* y, int mode) {
    __shared__ float s[64];
    int t = threadIdx.x;
    KC_STS(s, t, 64, KC_LDG(x, t, 64));
    if (mode != 1) __syncwarp();
    KC_STG(y, t, 64, KC_LDS(s, mode == 2 ? 63 - t : t ^ 1, 64));
}
extern "C" int run(const float* x, float* y, int mode) {
    KC_LAUNCH(swap, 1, 64, x, y, mode);
    return (int)cudaGetLastError();
}
"""


def test_syncwarp_orders_only_its_own_warp(tmp_path, rng):
    lib = load(tmp_path, WARP_ORDER)
    x, y = small_ints(rng, 64), np.zeros(64, np.float32)
    assert run(lib, "run", x, y, 0) == (0, "")
    np.testing.assert_array_equal(y, x[np.arange(64) ^ 1])
    for mode in (1, 2):
        assert "race on shared s[" in run(lib, "run", x, y, mode)[1]


BOUNDS = r"""
__global__ void shift(const float* x, float* y) {
    int i = threadIdx.x;
    KC_STG(y, i + 1, 8, KC_LDG(x, i - 1, 8));
}
extern "C" int run(const float* hx, float* hy) {  // host pointers: through cudaMalloc and cudaMemcpy
    float *x, *y;
    cudaMalloc(&x, 8 * sizeof(float));
    cudaMalloc((void**)&y, 8 * sizeof(float));
    cudaMemcpy(x, hx, 8 * sizeof(float), cudaMemcpyHostToDevice);
    KC_LAUNCH(shift, 1, 8, x, y);
    cudaMemcpy(hy, y, 8 * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(x), cudaFree(y);
    return (int)cudaGetLastError();
}
"""


def test_out_of_bounds_reported_not_performed(tmp_path, rng):
    lib = load(tmp_path, BOUNDS)
    x, y = small_ints(rng, 8), np.zeros(8, np.float32)
    rc, errors = run(lib, "run", x, y)
    assert rc == LAUNCH_FAILURE
    assert set(errors.splitlines()) == {
        "out-of-bounds read of x[-1] (size 8) in shift block (0,0,0) thread (0,0,0)",
        "out-of-bounds write of y[8] (size 8) in shift block (0,0,0) thread (7,0,0)",
    }
    assert np.isnan(y[0]) and y[1] == 0  # y[0]: cudaMalloc's 0xFF fill; y[1]: the bad read's T()
    np.testing.assert_array_equal(y[2:], x[:6])


SHUFFLE = r"""
__global__ void warp_sum(const float* x, float* out) {
    float v = KC_LDG(x, threadIdx.x, 32);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL, v, o);
    if (threadIdx.x == 0) KC_STG(out, 0, 1, v);
}
__global__ void block_sum(const float* x, float* out) {
    __shared__ float partial[4];
    int t = threadIdx.x;
    float v = KC_LDG(x, blockIdx.x * 128 + t, 512);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    if (t % 32 == 0) KC_STS(partial, t / 32, 4, v);
    __syncthreads();
    float s = KC_LDS(partial, 0, 4) + KC_LDS(partial, 1, 4) + KC_LDS(partial, 2, 4) + KC_LDS(partial, 3, 4);
    if (t == 0) KC_STG(out, blockIdx.x, 4, s);
}
__global__ void segment_scan(const double* x, double* y) {  // inclusive scans of 8 lanes each
    double v = KC_LDG(x, threadIdx.x, 32);
    for (int d = 1; d < 8; d <<= 1) {
        double u = __shfl_up_sync(FULL, v, d, 8);
        if (threadIdx.x % 8 >= d) v += u;
    }
    KC_STG(y, threadIdx.x, 32, v);
}
__global__ void gather(const int* x, int* y) {  // 40 threads: the second warp has 8 lanes
    int t = threadIdx.x, v = KC_LDG(x, t, 40);
    KC_STG(y, t, 80, __shfl_sync(FULL, v, 2));
    KC_STG(y, 40 + t, 80, __shfl_sync(FULL, v, 9, 8));
}
extern "C" int run(const float* x, float* out, const double* d, double* scan, const int* i, int* g) {
    KC_LAUNCH(warp_sum, 1, 32, x, out);
    KC_LAUNCH(block_sum, 4, 128, x, out + 1);
    KC_LAUNCH(segment_scan, 1, 32, d, scan);
    KC_LAUNCH(gather, 1, 40, i, g);
    return (int)cudaGetLastError();
}
"""


def test_warp_shuffles(tmp_path, rng):
    lib = load(tmp_path, SHUFFLE)
    x, out = small_ints(rng, 512), np.zeros(5, np.float32)
    d, scan = rng.standard_normal(32), np.zeros(32)
    i, g = rng.integers(1, 1000, 40).astype(np.int32), np.zeros(80, np.int32)
    assert run(lib, "run", x, out, d, scan, i, g) == (0, "")
    assert out[0] == x[:32].sum()
    np.testing.assert_array_equal(out[1:], x.reshape(4, 128).sum(axis=1))
    np.testing.assert_allclose(scan, np.cumsum(d.reshape(4, 8), axis=1).ravel(), rtol=1e-12)
    t = np.arange(40)
    np.testing.assert_array_equal(g[:40], i[(t & ~31) + 2])
    np.testing.assert_array_equal(g[40:], i[(t & ~7) + 1])


DIVERGE = r"""
__global__ void early_exit(float* out) {
    if (threadIdx.x < 4) return;
    __syncthreads();
    KC_STG(out, threadIdx.x, 64, 1.0f);
}
__global__ void lane_exit(float* out) {
    if (threadIdx.x == 5) return;
    __syncwarp();
    KC_STG(out, threadIdx.x, 64, 1.0f);
}
__global__ void crossed(float* out) {  // half a warp at __syncwarp, the other half at __syncthreads
    if (threadIdx.x < 16) __syncwarp(); else __syncthreads();
    KC_STG(out, threadIdx.x, 64, 1.0f);
}
extern "C" int run(int which) {  // how many threads got past their barrier
    float out[64] = {0};
    if (which == 0) KC_LAUNCH(early_exit, 1, 64, out);
    if (which == 1) KC_LAUNCH(lane_exit, 1, 64, out);
    if (which == 2) KC_LAUNCH(crossed, 1, 32, out);
    int n = 0;
    for (float v : out) n += v == 1.0f;
    return n;
}
"""
CHILD = """import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.kc_emu_errors.restype = ctypes.c_char_p
print(json.dumps([[lib.kc_emu_reset() or lib.run(k), lib.kc_emu_errors().decode()] for k in range(3)]))
"""


def test_barrier_divergence_reported_without_hanging(tmp_path):
    lib = build(tmp_path, DIVERGE)
    # In a child process: a hang must fail this test, not stall the whole session.
    proc = subprocess.run([sys.executable, "-c", CHILD, str(lib)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (n0, e0), (n1, e1), (n2, e2) = json.loads(proc.stdout)
    assert n0 == 60 and e0 == (
        "barrier divergence in early_exit block (0,0,0): 4 of 64 threads exited while others wait at __syncthreads"
    )
    assert n1 == 63 and "1 of 32 lanes of warp 0 exited" in e1, e1
    assert n2 == 32 and "16 threads wait at __syncthreads and 16 at __syncwarp" in e2, e2


ATOMIC = r"""
__global__ void total(const float* x, float* sum, int* top) {
    float v = KC_LDG(x, blockIdx.x * blockDim.x + threadIdx.x, 16384);
    atomicAdd(sum, v);
    atomicMax(top, (int)v);
}
extern "C" int run(const float* x, float* sum, int* top) {
    KC_LAUNCH(total, dim3(64), dim3(256), x, sum, top);
    return (int)cudaGetLastError();
}
"""


def test_atomics_sum_without_races(tmp_path, rng):
    lib = load(tmp_path, ATOMIC)
    x, s, top = small_ints(rng, 16384), np.zeros(1, np.float32), np.zeros(1, np.int32)
    assert run(lib, "run", x, s, top) == (0, "")
    assert s[0] == x.sum() and top[0] == x.max()


ORDER = r"""
__global__ void arrive(int* counter, int* slots) {
    __syncthreads();  // the order after a barrier is drawn again
    int k = atomicAdd(counter, 1);
    KC_STG(slots, k, 256, (int)(blockIdx.x * 64 + threadIdx.x));
}
extern "C" int run(int* counter, int* slots) {
    KC_LAUNCH(arrive, 4, 64, counter, slots);
    return (int)cudaGetLastError();
}
"""


def test_thread_and_block_order_follow_the_seed(tmp_path):
    lib = load(tmp_path, ORDER)

    def order(seed: int) -> np.ndarray:
        counter, slots = np.zeros(1, np.int32), np.zeros(256, np.int32)
        lib.kc_emu_seed(ctypes.c_ulonglong(seed))
        assert run(lib, "run", counter, slots) == (0, "")
        return slots

    a, b, c = order(1), order(2), order(1)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)
    assert sorted(a) == list(range(256))
    blocks = a.reshape(4, 64) // 64  # blocks run one after another
    assert (blocks == blocks[:, :1]).all() and sorted(blocks[:, 0]) == [0, 1, 2, 3]
    assert not all((np.sort(r) == r).all() for r in a.reshape(4, 64))


LAUNCHES = r"""
__global__ void fill(float* y) { KC_STG(y, threadIdx.x, 64, 1.0f); }
extern "C" int run(float* y, int* codes) {
    cudaMemset(y, 0, 64 * sizeof(float));
    KC_LAUNCH(fill, 1, 64, y);
    codes[0] = cudaGetLastError();
    KC_LAUNCH(fill, 1, 2048, y);
    codes[1] = cudaPeekAtLastError();
    codes[2] = cudaGetLastError(), codes[3] = cudaGetLastError();
    KC_LAUNCH(fill, dim3(1, 0), 64, y);
    codes[4] = cudaDeviceSynchronize();
    return 0;
}
"""


def test_launch_count_and_failed_launches(tmp_path):
    lib = load(tmp_path, LAUNCHES)
    y, codes = np.full(64, 7, np.float32), np.full(5, -1, np.int32)
    _, errors = run(lib, "run", y, codes)
    assert codes.tolist() == [0, LAUNCH_FAILURE, LAUNCH_FAILURE, 0, LAUNCH_FAILURE]
    assert lib.kc_emu_launches() == 3 and (y == 1).all()
    lines = errors.splitlines()
    assert len(lines) == 2 and all(line.startswith("launch of fill skipped: grid (1,") for line in lines)
    lib.kc_emu_reset()
    assert lib.kc_emu_launches() == 0 and lib.kc_emu_errors() == b""
