"""The CPU target: C emitted from the loop IR, built by gcc with OpenMP, called through ctypes.

Everything else a target offers is the loop-nest default (targets/base.py): the rule-based loop
scheduler, the loop-transformation search rules, the roofline cost model of this host's vector width
and cores.  Its own: the host's fingerprint, the C/header/library artifacts, and a sanitizer build.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kcomp.config import Config, config
from kcomp.loops import LoopNest
from kcomp.schedule import NONE, Schedule
from kcomp.targets.base import Arg, Capabilities, Measurement, Target, bench
from kcomp.targets.cpu import build as _build
from kcomp.targets.cpu import counters as _counters
from kcomp.targets.cpu import host, runtime, sanitize
from kcomp.targets.cpu import isa as _isa
from kcomp.targets.cpu.build import Library
from kcomp.targets.cpu.emit import emit, emit_header

if TYPE_CHECKING:
    from kcomp.pipeline import Built


class CpuTarget(Target):
    """`isa` is an ISA level of targets/cpu/isa.py ("avx512", "avx2", "scalar"); `arch` is gcc's -march
    value.  Neither: this host's level, tuned for this host (-march=native).  `isa` alone: the level's
    portable -march (e.g. x86-64-v3), which may be a level this host cannot run (then `build` works
    but `run` and `profile` refuse).  `threads` defaults to KCOMP_THREADS or os.cpu_count(); `cfg`
    (default: the environment's) names the cache directory."""

    family = _isa.FAMILY
    capabilities = Capabilities(source="c", suffix=".c")
    name = _isa.FAMILY

    def __init__(
        self,
        *,
        isa: str | None = None,
        arch: str | None = None,
        threads: int | None = None,
        cfg: Config | None = None,
    ):
        if isa is None:
            isa = _isa.isa_of_march(arch) if arch and arch != _isa.NATIVE else host.isa_level()
            arch = arch or _isa.NATIVE
        level = _isa.level(isa.strip().lower())
        self.isa = level.name
        self.arch = arch or level.march
        self.vector_bits = level.vector_bits
        # NOTE: the name is the spec get_target accepts back: reports must tell cpu:scalar from cpu.
        self.name = _isa.FAMILY if self.arch == _isa.NATIVE else f"{_isa.FAMILY}:{self.isa}"
        self.settings = cfg or config()
        self.threads = threads or self.settings.threads
        self.cores = host.cores()
        self.l2_bytes = host.l2_bytes()

    @classmethod
    def from_spec(cls, spec: str) -> CpuTarget:
        """The target of a spec "cpu" or "cpu:LEVEL" (see `isa.parse_cpu_spec`)."""
        level_name, arch = _isa.parse_cpu_spec(spec.lower())
        return cls(isa=level_name, arch=arch)

    def emit(self, nest: LoopNest, schedule: Schedule = NONE) -> str:
        return emit(nest, self.vector_bits)

    def build(self, source: str) -> Library:
        _isa.check_buildable(self.isa, self.arch)
        return _build.build(source, arch=self.arch, cfg=self.config())

    def artifacts(self, built: Built, out: Path) -> list[Path]:
        """The C source, a header declaring the entry point, and the shared library."""
        name = built.program.name
        files = [out / f"{name}.c", out / f"{name}.h", out / f"lib{name}.so"]
        files[0].write_text(built.source)
        files[1].write_text(emit_header(built.nest))
        shutil.copyfile(built.artifact.path, files[2])
        return files

    def fingerprint(self) -> str:
        """This CPU's model, family/model/stepping and flags (the machine that measured)."""
        return host.fingerprint()

    def run_sanitized(self, built: Built, args: Sequence[Arg]) -> None:
        """`run`, as a standalone executable built with AddressSanitizer and UBSan (sanitize.py);
        outputs written in place, `SanitizerError` when a sanitizer reports."""
        sanitize.run_sanitized(built.source, args, arch=self.arch, threads=2)

    def describe(self) -> str:
        """One line for reports: the ISA level, the CPU, threads, vector width and compiler."""
        return (
            f"{self.name} ({host.model_name()}, ISA level {self.isa}, {self.threads} threads, "
            f"{self.vector_bits}-bit vectors, gcc {_build.compiler_id().split(' | ')[0]}, -march={self.arch})"
        )

    def run(self, artifact: Library, args: Sequence[Arg]) -> None:
        _isa.check_runnable(self.isa, self.arch)  # NOTE: before loading: foreign code would SIGILL
        kernel = runtime.load(artifact)
        call = kernel.bind(args)
        kernel.set_threads(self.threads)
        call()

    def quick_call(
        self, artifact: Library, inputs: Sequence[str], params: dict[str, Arg]
    ) -> Callable[[tuple], list[np.ndarray] | None] | None:
        _isa.check_runnable(self.isa, self.arch)
        return runtime.load(artifact).fast(inputs, params, self.threads)

    def caller(self, artifact: Library, args: Sequence[Arg]) -> Callable[[], object]:
        """The bound call: arguments are checked once, outside the timed calls."""
        _isa.check_runnable(self.isa, self.arch)
        kernel = runtime.load(artifact)
        call = kernel.bind(args)
        kernel.set_threads(self.threads)
        return call

    def profile(
        self, artifact: Library, args: Sequence[Arg], *, budget_s: float = 0.1, cutoff_s: float | None = None
    ) -> Measurement:
        """Median seconds per call, and the counters of targets/cpu/counters.py: hardware counters of a
        few more calls where perf_event works, else counts read from the library's machine code
        (`counter_source` says which)."""
        call = self.caller(artifact, args)
        m = bench(call, budget_s=budget_s, cutoff_s=cutoff_s)
        extra = _counters.profile_counters(
            artifact, call, m.time_s, budget_s, cut_short="cut_short" in m.counters
        )
        return Measurement(m.time_s, {**m.counters, "threads": self.threads, **extra})
