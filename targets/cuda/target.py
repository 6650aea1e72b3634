"""The CUDA target: `cuda` (sm_80), `cuda:sm_80`, `cuda:sm_90`.

emit      one .cu source (emit.py): kernels, launches, the host entry
build     nvcc: cubin + PTX for the spec's architecture and ptxas's resources per kernel; g++: the
          same source against emu.h, the library `run` uses when there is no GPU; nvcc again for a
          GPU library when torch sees a GPU
run       on the GPU where there is one ("mode": "gpu"), else emulated ("mode": "emulated"):
          every thread a fiber, barriers real, races and out-of-bounds accesses reported
profile   CUDA events on a GPU; without one, the proxy model of model.py, labelled as a model
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcomp.config import Config, config
from kcomp.errors import UsageError
from kcomp.loops import LoopNest
from kcomp.program import Program
from kcomp.schedule import NONE, Schedule
from kcomp.search.cost_model import Estimate
from kcomp.targets.base import Arg, Capabilities, Measurement, Target
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cuda import build as _build
from kcomp.targets.cuda import model, runtime
from kcomp.targets.cuda.emit import DTYPES, CudaEmitter, emit
from kcomp.targets.cuda.rules import CudaRules
from kcomp.targets.cuda.schedule import default_schedule

if TYPE_CHECKING:
    from kcomp.pipeline import Built

FAMILY = "cuda"
DEFAULT_ARCH = "sm_80"
_LAUNCH = re.compile(r"KC_LAUNCH\((\w+), dim3\((\d+), (\d+), (\d+)\), dim3\((\d+), (\d+), (\d+)\)")


@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


@dataclass(frozen=True)
class CudaArtifact:
    source: str
    signature: Signature
    device: _build.DeviceBuild
    emulated: Path
    launches: tuple[Launch, ...]
    gpu: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resources(self) -> list[dict[str, Any]]:
        """Per launch: its shape, ptxas's resources and the occupancy they allow."""
        out = []
        for launch in self.launches:
            res = self.device.resources.get(launch.kernel, _build.Resources())
            out.append(
                {
                    "kernel": launch.kernel,
                    "grid": list(launch.grid),
                    "block": list(launch.block),
                    "arch": self.device.arch,
                    **res.as_dict(),
                    **_build.occupancy(res, launch.threads, self.device.arch),
                }
            )
        return out


def launches(source: str) -> tuple[Launch, ...]:
    out = []
    for m in _LAUNCH.finditer(source):
        v = [int(x) for x in m.groups()[1:]]
        out.append(Launch(m.group(1), (v[0], v[1], v[2]), (v[3], v[4], v[5])))
    return tuple(out)


class CudaTarget(Target):
    family = FAMILY
    capabilities = Capabilities(dtypes=DTYPES, source="cuda", suffix=".cu")
    default_label = "default (cuda rules: outer loops to blocks and threads)"

    def __init__(self, arch: str = DEFAULT_ARCH, cfg: Config | None = None):
        if arch not in _build.ARCH:
            raise UsageError(f"cuda target: unknown architecture {arch!r}; known: {', '.join(_build.ARCH)}")
        self.arch = arch
        self.name = f"{FAMILY}:{arch}"
        self.settings = cfg or config()
        self.vector_bits = 32  # one lane per thread: the loop search rules must not vectorize
        self.cores = 1

    @classmethod
    def from_spec(cls, spec: str) -> CudaTarget:
        _, _, variant = spec.partition(":")
        return cls(variant.strip().lower() or DEFAULT_ARCH)

    def default_schedule(self, program: Program, nest: LoopNest, fuse: bool = True) -> Schedule:
        return default_schedule(program, nest, fuse)

    def search_rules(self) -> CudaRules:
        """Per nest, a tiling onto blocks, threads, register tiles and shared-memory stages (rules.py)."""
        return CudaRules()

    def emit(self, nest: LoopNest, schedule: Schedule = NONE) -> str:
        return emit(nest)

    def build(self, source: str) -> CudaArtifact:
        signature = Signature.parse(source)
        if signature is None:
            raise UsageError("a CUDA source without its kcomp-signature line cannot be run")
        cfg = self.config()
        device = _build.device_build(source, self.arch, cfg)
        emulated = _build.emulated_library(source, cfg)
        gpu = _build.gpu_library(source, self.arch, cfg) if runtime.gpu_available() else None
        return CudaArtifact(source, signature, device, emulated, launches(source), gpu)

    def artifacts(self, built: Built, out: Path) -> list[Path]:
        """The .cu source, the cubin and PTX, and ptxas's resources with the occupancy (JSON)."""
        name, art = built.program.name, built.artifact
        files = [out / f"{name}.cu", out / f"{name}.{self.arch}.cubin", out / f"{name}.{self.arch}.ptx"]
        files.append(out / f"{name}.resources.json")
        files[0].write_text(built.source)
        shutil.copyfile(art.device.cubin, files[1])
        shutil.copyfile(art.device.ptx, files[2])
        files[3].write_text(json.dumps(art.resources(), indent=2) + "\n")
        return files

    def notes(self, naive: LoopNest, nest: LoopNest, schedule: Schedule) -> tuple[str, ...]:
        """One line per kernel: launch shape, ptxas's resources, occupancy (the build is cached)."""
        art = self.build(self.emit(nest, schedule))
        lines = []
        for r in art.resources():
            lines.append(
                f"{r['kernel']}: grid {'x'.join(map(str, r['grid']))} block {'x'.join(map(str, r['block']))};"
                f" {r['arch']}: {r['registers']} registers, {r['shared_bytes']} B shared,"
                f" {r['stack_bytes']} B stack, {r['spill_stores'] + r['spill_loads']} B spilled;"
                f" occupancy {r['occupancy']:.0%} (limited by {r['limited_by']})"
            )
        return tuple(lines)

    def run(self, artifact: CudaArtifact, args: Sequence[Arg]) -> dict:
        if artifact.gpu is not None:
            call, copy_back = runtime.on_gpu(artifact.gpu, artifact.signature).bind(args)
            call()
            copy_back()
            return {"mode": "gpu", "launches": len(artifact.launches)}
        return runtime.emulated(artifact.emulated, artifact.signature).bind(args)()

    def check_extent(self) -> int | None:
        """Without a GPU a check runs in the emulation (a fiber per thread): at most 256 per dimension."""
        return None if runtime.gpu_available() else 256

    def run_mode(self) -> str:
        return "gpu" if runtime.gpu_available() else "emulated"

    def caller(self, artifact: CudaArtifact, args: Sequence[Arg]) -> Callable[[], object]:
        if artifact.gpu is not None:
            return runtime.on_gpu(artifact.gpu, artifact.signature).bind(args)[0]
        return runtime.emulated(artifact.emulated, artifact.signature).bind(args)

    def profile(
        self,
        artifact: CudaArtifact,
        args: Sequence[Arg],
        *,
        budget_s: float = 0.1,
        cutoff_s: float | None = None,
    ) -> Measurement:
        """CUDA-event timing on a GPU; without one the proxy model's time (model.py), labelled
        `time_source: model` (the emulation's time says nothing about a GPU's)."""
        if artifact.gpu is None:
            return modelled(artifact)
        call = self.caller(artifact, args)
        return Measurement(runtime.time_gpu(call, budget_s), {"mode": "gpu", "time_source": "measured"})

    def estimate(self, nest: LoopNest, schedule: Schedule = NONE) -> Estimate:
        """The proxy model without ptxas (no build): full occupancy assumed, for ranking candidates."""
        emitter = CudaEmitter(nest)
        emitter.emit()
        est = Estimate()
        for k, _ in emitter.kernels:
            tally = emitter.tallies[k.name]
            rows = {"occupancy": 1.0, "warps_per_sm": 64}
            parts = model.kernel_time(tally.as_dict(), k.threads * _prod(k.grid), rows, self.arch)
            est.time += parts["time_s"]
            est.compute += parts["compute_s"]
            est.dram += parts["memory_s"]
            est.flops += tally.flops
            est.bytes += tally.global_bytes
        return est

    def describe(self) -> str:
        where = f"GPU {runtime.gpu_name()}" if runtime.gpu_available() else "no GPU: emulated on this CPU"
        return f"{self.name} (nvcc for {self.arch}; {where})"

    def fingerprint(self) -> str:
        """The GPU that measured, or the proxy model's name where there is none."""
        return f"{self.name}:{runtime.gpu_name() if runtime.gpu_available() else 'no-gpu-model'}"


def _prod(d: dict[str, int]) -> int:
    return d["x"] * d["y"] * d["z"]


def modelled(artifact: CudaArtifact) -> Measurement:
    """The proxy model's time of every launch of `artifact`, with its parts as counters."""
    figures = model.parse(artifact.source)
    total: dict[str, float] = {}
    worst_occupancy, registers, spills = 1.0, 0, 0
    for row, launch in zip(artifact.resources(), artifact.launches, strict=True):
        threads = launch.threads * launch.grid[0] * launch.grid[1] * launch.grid[2]
        parts = model.kernel_time(figures.get(launch.kernel, _IDLE), threads, row, artifact.device.arch)
        for key, value in parts.items():
            total[key] = total.get(key, 0.0) + value
        worst_occupancy = min(worst_occupancy, row["occupancy"])
        registers = max(registers, row["registers"])
        spills += row["spill_stores"] + row["spill_loads"]
    counters: dict[str, object] = {f"model.{k}": v for k, v in total.items() if k not in ("time_s", "fill")}
    counters.update(
        {
            "mode": "model",
            "time_source": "model",
            "counter_source": "model",
            "model.gpu": model.GPU[artifact.device.arch].name,
            "model.occupancy": worst_occupancy,
            "model.registers": registers,
            "model.spill_bytes": spills,
        }
    )
    return Measurement(total.get("time_s", 0.0), counters)


_IDLE = {"flops": 0.0, "global_bytes": 0.0, "shared_accesses": 0.0, "compulsory_bytes": 0.0}
