"""The CPU target: C emitted from the loop IR, built by gcc with OpenMP, called through ctypes."""

from __future__ import annotations

from collections.abc import Sequence

from kcomp.config import Config, config
from kcomp.loops import LoopNest
from kcomp.targets.base import Arg, Measurement, Target, bench
from kcomp.targets.cpu import build as _build
from kcomp.targets.cpu import host, runtime
from kcomp.targets.cpu.build import Library
from kcomp.targets.cpu.emit import emit


class CpuTarget(Target):
    """`arch` is gcc's -march value ("native": this host); `threads` defaults to KCOMP_THREADS or
    os.cpu_count(); `cfg` (default: the environment's) names the cache directory."""

    name = "cpu"

    def __init__(self, *, arch: str = "native", threads: int | None = None, cfg: Config | None = None):
        self.arch = arch
        self.cfg = cfg or config()
        self.threads = threads or self.cfg.threads
        self.vector_bits = host.vector_bits() if arch == "native" else 128
        self.cores = host.cores()

    def emit(self, nest: LoopNest) -> str:
        return emit(nest)

    def build(self, source: str) -> Library:
        return _build.build(source, arch=self.arch, cfg=self.cfg)

    def describe(self) -> str:
        """One line for reports: the CPU, threads, vector width and compiler."""
        return (
            f"cpu ({host.model_name()}, {self.threads} threads, {self.vector_bits}-bit vectors, "
            f"gcc {_build.compiler_id().split(' | ')[0]}, -march={self.arch})"
        )

    def run(self, artifact: Library, args: Sequence[Arg]) -> None:
        kernel = runtime.load(artifact)
        call = kernel.bind(args)
        kernel.set_threads(self.threads)
        call()

    def profile(self, artifact: Library, args: Sequence[Arg], *, budget_s: float = 0.1) -> Measurement:
        """Median seconds per call; arguments are checked once, outside the timed calls."""
        kernel = runtime.load(artifact)
        call = kernel.bind(args)
        kernel.set_threads(self.threads)
        m = bench(call, budget_s=budget_s)
        return Measurement(m.time_s, {**m.counters, "threads": self.threads})
