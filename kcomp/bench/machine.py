"""The machine a benchmark ran on, and its roofs measured in the same run.

Figures from two machines never compare, so every suite result carries `machine`: the CPU model,
cores, ISA level, and two roofs measured now, so each row can be placed on a roofline:

    fma_peak_gflops  fp32 FMA throughput of all cores: a register-only loop of independent vector
                     FMAs (`acc = acc * x + y`, one FMA with -ffp-contract=fast), 2 flops per lane
    copy_gbps        memcpy of a large buffer on all cores, bytes read + bytes written per second

The two kernels are C (ROOFS_C below), compiled once per process with gcc into a private
temporary directory (mkdtemp is 0700) and loaded with ctypes; the vector width comes from the host
(512-bit with avx512f, else 256-bit with AVX, else 128-bit).
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kcomp.targets.base import bench
from kcomp.targets.cpu import host

GCC_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared", "-std=gnu11")
FMA_ACCUMULATORS = 12  # independent chains: more than FMA latency x FMA ports on current cores

ROOFS_C = r"""
#include <omp.h>
#include <stddef.h>
#include <string.h>

typedef float vf __attribute__((vector_size(KC_VBYTES)));
#define FMA(a) a = a * vx + vy

int kc_lanes(void) { return KC_VBYTES / 4; }

/* Each of `threads` threads runs `iters` rounds of 12 independent vector FMAs on registers;
   the lanes' sums go to sink[thread] so nothing is dead code.  Returns wall seconds. */
double kc_fma_loop(long iters, float x, float y, int threads, float *sink) {
    double t0 = omp_get_wtime();
    #pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num();
        vf vx = (vf){} + x, vy = (vf){} + y, base = (vf){} + (float)t;
        vf a0 = base + 0.0f, a1 = base + 1.0f, a2 = base + 2.0f, a3 = base + 3.0f;
        vf a4 = base + 4.0f, a5 = base + 5.0f, a6 = base + 6.0f, a7 = base + 7.0f;
        vf a8 = base + 8.0f, a9 = base + 9.0f, a10 = base + 10.0f, a11 = base + 11.0f;
        for (long i = 0; i < iters; i++) {
            FMA(a0); FMA(a1); FMA(a2); FMA(a3); FMA(a4); FMA(a5);
            FMA(a6); FMA(a7); FMA(a8); FMA(a9); FMA(a10); FMA(a11);
        }
        vf s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
        float total = 0.0f;
        for (int l = 0; l < KC_VBYTES / 4; l++) total += s[l];
        sink[t] = total;
    }
    return omp_get_wtime() - t0;
}

/* memcpy of n bytes, split into one contiguous slice per thread (4 KiB aligned). */
void kc_copy(char *dst, const char *src, size_t n, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t chunk = ((n / nt) + 4095) & ~(size_t)4095;
        size_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
        if (lo < hi) memcpy(dst + lo, src + lo, hi - lo);
    }
}
"""


def vector_bytes() -> int:
    """Bytes per vector of the FMA roof: the host's widest registers, at least 16."""
    return max(16, host.vector_bits() // 8)


@functools.cache
def _roofs_library() -> ctypes.CDLL:
    """ROOFS_C built for this host and loaded; the build directory is removed once loaded."""
    build_dir = Path(tempfile.mkdtemp(prefix="kcomp-roofs-"))
    try:
        src, lib = build_dir / "roofs.c", build_dir / "roofs.so"
        src.write_text(ROOFS_C)
        cmd = ["gcc", *GCC_FLAGS, f"-DKC_VBYTES={vector_bytes()}", "-o", str(lib), str(src)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"cannot build the roof kernels with gcc: {e}") from None
        if done.returncode != 0:
            raise RuntimeError(f"gcc rejected the roof kernels:\n{(done.stderr + done.stdout).strip()}")
        dll = ctypes.CDLL(str(lib))  # NOTE: the mapping outlives the file, so the directory can go
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    dll.kc_lanes.restype = ctypes.c_int
    dll.kc_fma_loop.restype = ctypes.c_double
    dll.kc_fma_loop.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_float, ctypes.c_int, ctypes.c_void_p]
    dll.kc_copy.restype = None
    dll.kc_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return dll


def measure_fma_peak(*, threads: int | None = None, call_s: float = 0.08, budget_s: float = 0.4) -> float:
    """fp32 GFLOP/s of the register-only FMA loop on `threads` (default: all) cores.

    The iteration count grows until one call takes at least `call_s`, so the fixed cost of waking
    the threads (milliseconds when the cores are shared) stays small against the work.  The figure
    is the best call, not the median: a peak is the rate the hardware reached, and on a shared
    machine most calls may include another process's time slices.
    """
    dll = _roofs_library()
    threads = threads or host.cores()
    sink = np.zeros(threads, np.float32)
    lanes = dll.kc_lanes()

    def call(iters: int) -> float:
        return dll.kc_fma_loop(iters, 0.999999, 1e-6, threads, sink.ctypes.data)

    call(1000)  # OpenMP thread start-up
    iters = 10_000
    while call(iters) < call_s:
        iters *= 4
    m = bench(lambda: call(iters), budget_s=budget_s, warmup_s=0.0)
    flops = 2.0 * lanes * FMA_ACCUMULATORS * iters * threads
    return flops / m.counters["min_s"] / 1e9


def measure_copy_bandwidth(
    *, nbytes: int = 256 << 20, threads: int | None = None, budget_s: float = 0.4
) -> float:
    """GB/s of a parallel memcpy of `nbytes` (pages touched beforehand), read + write bytes counted."""
    dll = _roofs_library()
    threads = threads or host.cores()
    src = np.ones(nbytes, np.uint8)
    dst = np.zeros(nbytes, np.uint8)
    m = bench(lambda: dll.kc_copy(dst.ctypes.data, src.ctypes.data, nbytes, threads), budget_s=budget_s)
    return 2.0 * nbytes / m.time_s / 1e9


def measure_roofs(
    *, fma_call_s: float = 0.08, copy_bytes: int = 256 << 20, budget_s: float = 0.4
) -> dict[str, Any]:
    """{"fma_peak_gflops": x, "copy_gbps": y}; a roof that cannot be measured is left out and its
    reason given as "<roof>_error" (e.g. no gcc), so every number present is a real measurement."""
    out: dict[str, Any] = {}
    roofs = {
        "fma_peak_gflops": lambda: measure_fma_peak(call_s=fma_call_s, budget_s=budget_s),
        "copy_gbps": lambda: measure_copy_bandwidth(nbytes=copy_bytes, budget_s=budget_s),
    }
    for key, measure in roofs.items():
        try:
            out[key] = measure()
        except (RuntimeError, OSError) as e:
            out[f"{key.rsplit('_', 1)[0]}_error"] = str(e)
    return out


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): runnable processes competing for
    the cores, so a reader can tell a quiet run from one that shared the CPU."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class OtherCpu:
    """How many cores other processes kept busy while a benchmark ran, on average.

    The load average cannot tell: a benchmark's own threads raise it, so a quiet 2-thread run
    looked as loaded as one that shared the cores.  The machine's busy CPU time (/proc/stat)
    minus this process's and its waited-for children's (getrusage) is what everyone else used.
    A child still running at `stop()` is not yet in getrusage and would count as "other", so
    callers stop the watch after their workers have exited.
    """

    def __init__(self) -> None:
        self._start = _cpu_snapshot()

    def stop(self) -> float | None:
        """Average cores busy with other processes since construction (None off Linux)."""
        end = _cpu_snapshot()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        wall, busy, own = (b - a for a, b in zip(self._start, end, strict=True))
        return round(max(0.0, (busy - own) / wall), 3)


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(monotonic seconds, busy CPU seconds of the machine, CPU seconds of this process tree)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait; guest time is already inside user
    busy = (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
    own = sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return time.monotonic(), busy, own


def describe_host() -> dict[str, Any]:
    """What identifies this machine: CPU model, cores, ISA level, vector width."""
    return {
        "cpu": host.model_name(),
        "cores": host.cores(),
        "isa": host.isa_level(),
        "vector_bits": host.vector_bits(),
    }
