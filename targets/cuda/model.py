"""The proxy for a GPU where there is none: an analytical model of a launch, clearly a model.

Tuning without a GPU needs a time to rank candidates by.  The emulation's time says nothing (a
fiber per thread on one CPU core), so `profile` answers from this model instead, and every figure
it returns says so (`"time_source": "model"`).  With a GPU, real CUDA-event timings replace it.

Per kernel the emitter tallies, while it writes the code (`Tally`), what every thread of the launch
does: floating-point operations, and bytes moved to and from global memory with the warp's
coalescing (a lane-contiguous access costs its element, an access the lanes share costs a 32nd of
it, a strided one a 32-byte sector per lane), accesses to shared memory, and the compulsory bytes
(every global array the kernel touches, once).  The figures travel in the source as a comment line
(`/* kcomp-cuda-model: {...} */`), so `build(source)` stays a function of text.  With ptxas's
resources (registers, shared memory, spills) the model then takes

    fill       resident threads the launch fills: min(1, threads / (SMs x resident warps x 32))
    compute    flops / (peak FP32 x fill)
    memory     max(coalesced bytes / L2 bandwidth, compulsory bytes / DRAM bandwidth)
               / (fill x min(1, occupancy / 0.5))         (half the warps hide latency)
    shared     shared accesses x 4 B / shared bandwidth
    spills     spilled bytes x threads x 2 / L2 bandwidth
    time       max(compute, memory, shared) + spills + 3 us per launch

with the nominal figures of each architecture's data-center part (`GPU`).  It ranks schedules by
their parallelism, coalescing, reuse through shared memory and registers, and occupancy; it knows
nothing of instruction latencies, bank conflicts or caches beyond L2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kcomp.affine import affine
from kcomp.expr import Binary, Buffer, Expr, Load, Unary, Var, walk
from kcomp.loops import Store

_LINE = re.compile(r"^/\* kcomp-cuda-model: (\{.*\}) \*/$", re.MULTILINE)
LAUNCH_S = 3e-6
WARP = 32
SECTOR = 32  # bytes: the unit of a global memory transaction


@dataclass(frozen=True)
class Gpu:
    """Nominal figures of the architecture's data-center part (vendor data sheets)."""

    name: str
    sms: int
    fp32_flops: float
    dram_bps: float
    l2_bps: float
    shared_bps: float


GPU = {
    "sm_80": Gpu("A100 (nominal)", 108, 19.5e12, 1.55e12, 4.0e12, 19.0e12),
    "sm_90": Gpu("H100 SXM (nominal)", 132, 67.0e12, 3.35e12, 10.0e12, 33.0e12),
}


@dataclass
class Tally:
    """What one kernel's threads do in total (module docstring)."""

    flops: float = 0.0
    global_bytes: float = 0.0
    shared_accesses: float = 0.0
    touched: dict[str, int] = field(default_factory=dict)  # global array -> its bytes

    def store(self, s: Store, trips: int, lane: Var | None, space: dict[Buffer, str]) -> None:
        """`s` runs `trips` times in the launch; `lane` is the variable that differs between the
        lanes of a warp (None: one lane)."""
        self.flops += trips * _flops(s.value)
        accesses = [(s.buffer, s.index), *((ld.buffer, ld.index) for ld in _loads(s))]
        for buf, index in accesses:
            where = space.get(buf, "global")
            if where == "shared":
                self.shared_accesses += trips
            elif where == "global":
                self.global_bytes += trips * bytes_per_lane(buf, index, lane)
                self.touched[buf.name] = buf.size * buf.dtype.itemsize

    def vector(
        self, buf: Buffer, first: tuple[Expr, ...], trips: int, lane: Var | None, space: dict[Buffer, str]
    ) -> None:
        """A vector access (vector.py) of `buf` from `first`, `trips` times: one access per lane."""
        if space.get(buf, "global") == "shared":
            self.shared_accesses += trips
        elif space.get(buf, "global") == "global":
            self.global_bytes += trips * bytes_per_lane(buf, first, lane)
            self.touched[buf.name] = buf.size * buf.dtype.itemsize

    def as_dict(self) -> dict[str, float]:
        return {
            "flops": self.flops,
            "global_bytes": self.global_bytes,
            "shared_accesses": self.shared_accesses,
            "compulsory_bytes": float(sum(self.touched.values())),
        }


def _loads(s: Store) -> list[Load]:
    return [n for e in (*s.index, s.value) for n in walk(e) if isinstance(n, Load)]


def _flops(e: Expr) -> int:
    return sum(1 for n in walk(e) if isinstance(n, Binary | Unary) and n.dtype.is_float)


def bytes_per_lane(buf: Buffer, index: tuple[Expr, ...], lane: Var | None) -> float:
    size = buf.dtype.itemsize
    if lane is None:
        return float(size)
    stride, step = 0, 1
    for e, n in zip(reversed(index), reversed(buf.shape), strict=True):
        a = affine(e)
        if a is None:
            return float(SECTOR)  # data-dependent or non-affine: assume a sector per lane
        stride += a.get(lane, 0) * step
        step *= n
    if stride == 0:
        return size / WARP
    return float(min(SECTOR, size * abs(stride)))


def to_comment(kernels: dict[str, Tally]) -> str:
    text = json.dumps({k: t.as_dict() for k, t in kernels.items()}, separators=(",", ":"))
    return f"/* kcomp-cuda-model: {text} */"


def parse(source: str) -> dict[str, dict[str, float]]:
    m = _LINE.search(source)
    return {} if m is None else json.loads(m.group(1))


def kernel_time(
    figures: dict[str, float], threads: int, resources: dict[str, Any], arch: str
) -> dict[str, float]:
    """The model's seconds for one launch and its parts (module docstring); `resources` is a row of
    `CudaArtifact.resources()` (ptxas's figures and the occupancy)."""
    gpu = GPU[arch]
    resident = gpu.sms * max(resources.get("warps_per_sm", 64), 1) * WARP
    fill = min(1.0, threads / resident)
    hiding = min(1.0, resources.get("occupancy", 1.0) / 0.5)
    compute = figures["flops"] / (gpu.fp32_flops * fill)
    memory = max(figures["global_bytes"] / gpu.l2_bps, figures["compulsory_bytes"] / gpu.dram_bps)
    memory /= max(fill * hiding, 1e-3)
    shared = figures["shared_accesses"] * 4 / gpu.shared_bps
    spill_bytes = resources.get("spill_stores", 0) + resources.get("spill_loads", 0)
    spills = spill_bytes * threads * 2 / gpu.l2_bps
    return {
        "time_s": max(compute, memory, shared) + spills + LAUNCH_S,
        "compute_s": compute,
        "memory_s": memory,
        "shared_s": shared,
        "spill_s": spills,
        "fill": fill,
    }
