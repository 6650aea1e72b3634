"""The interface every target implements, and the timing recipe they share.

A target owns its half of the pipeline (`kcomp.pipeline` walks it, never testing a family name):

    spec        `from_spec("cpu:avx2")`: parse and normalise its spec (`name` is the normalised one)
    schedule    `default_schedule(program, nest)`, `naive_schedule(nest)` (what `--schedule none` means)
    code        `emit(nest, schedule) -> source`, `build(source) -> artifact`, `artifacts(built, dir)`
    running     `run(artifact, args)`, `profile(artifact, args) -> Measurement`
    search      `search_rules()` (its decisions in the tuner's space), `estimate(nest, schedule)` (the
                analytical cost model), `fingerprint()` (the hardware a tuning record is valid for)
    reports     `describe()`, `notes(naive, nest, schedule)`, `capabilities`, `run_sanitized` (--sanitize)

Only `from_spec`, `emit`, `build` and `run` are abstract: the defaults are those of a loop-nest target
(the rule-based loop scheduler, the loop-transformation search rules, the roofline cost model of a
machine with `vector_bits` and `cores`, a fingerprint hashed from `describe()`, the source written
to a file), so a new target starts small.  It is registered in `kcomp.targets.TARGETS` (or, without
editing kcomp, by `KCOMP_TARGETS`), and nothing else names it.

`bench` is the one timing recipe (Triton's `do_bench` shape): warm up, estimate one call, choose the
repeat count from a time budget, time each call, report the median.  The median, not the mean or the
minimum, because one preempted call must not move the figure and the minimum is too optimistic.
"""

from __future__ import annotations

import abc
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kcomp.autoschedule import default_schedule
from kcomp.config import Config, config
from kcomp.dtypes import LOWERED, DType
from kcomp.errors import UsageError
from kcomp.loops import LoopNest
from kcomp.program import Program
from kcomp.schedule import NONE, Schedule, Step
from kcomp.search.cost_model import Estimate, Machine, estimate
from kcomp.search.loop_rules import LoopRules
from kcomp.search.rules import Rules

if TYPE_CHECKING:
    from kcomp.pipeline import Built

Arg = np.ndarray | float | int | bool


@dataclass(frozen=True, slots=True)
class Measurement:
    """One timing: the median seconds per call, plus whatever counters the target has."""

    time_s: float
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a target takes, for the parts of kcomp that must not guess from its name.

    `dtypes`: the element types of the tensors it lowers (the pipeline refuses others with
    `Unsupported`); `steps`: the schedule steps it honours (None: every step; the fuzzer draws random
    steps only then);
    `source`: the name of its source language (`--emit` accepts it beside `source`); `suffix`: the
    source file's suffix; `simulated`: times are simulated cycles at a nominal clock (deterministic:
    the tuner does not re-time them); `sparse`: how it takes sparse weights, "packed" (the rewrite
    to packed blocks, kcomp/sparse/rewrite.py) or "tiles" (kept dense, the values in
    `LoopNest.constants`, the target skipping zero tiles itself)."""

    dtypes: frozenset[DType] = LOWERED
    steps: frozenset[type[Step]] | None = None
    source: str = "source"
    suffix: str = ".txt"
    simulated: bool = False
    sparse: str = "packed"


class Target(abc.ABC):
    """A code generation target.  Subclasses set `family` and `capabilities` on the class, and `name`,
    `vector_bits`, `cores` and `settings` in `__init__` (see the module docstring)."""

    family: ClassVar[str] = ""  # the registry key: the part of a spec before ':'
    capabilities: ClassVar[Capabilities] = Capabilities()
    default_label: ClassVar[str] = "default (rule-based scheduler)"
    naive_label: ClassVar[str] = "none (naive loops)"
    name: str = ""  # the normalised spec: `get_target(name)` gives this target back
    vector_bits: int = 0  # widest native vector register, in bits
    cores: int = 1  # hardware threads kernels may use
    l2_bytes: int = 512 << 10  # one core's L2, for rules that keep a working set there
    settings: Config | None = None  # kcomp's caches and database for this target (None: the process's)

    @classmethod
    @abc.abstractmethod
    def from_spec(cls, spec: str) -> Target:
        """The target a normalised spec names (`family` or `family:variant`); `UsageError` if malformed."""

    # -- scheduling -------------------------------------------------------------------------------
    def default_schedule(self, program: Program, nest: LoopNest, fuse: bool = True) -> Schedule:
        """What the kernel gets when nobody wrote or tuned a schedule (`nest`: the naive loops;
        `fuse` False: no fusion steps, for a nest the search fused already)."""
        return default_schedule(program, nest, self, fuse)

    def naive_schedule(self, nest: LoopNest) -> Schedule:
        """What `--schedule none` means here: the naive loops, unless the target needs some steps."""
        return NONE

    # -- code -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def emit(self, nest: LoopNest, schedule: Schedule = NONE) -> str:
        """The source text of the scheduled `nest` (steps the nest does not show, such as
        `double_buffer`, are read from `schedule`); `ScheduleError` when it cannot be run here."""

    @abc.abstractmethod
    def build(self, source: str) -> Any:
        """An artifact that `run` accepts; raises `BuildError` when the toolchain rejects `source`."""

    def artifacts(self, built: Built, out: Path) -> list[Path]:
        """Write what `kcomp compile -o DIR` leaves for a user; the paths written."""
        path = out / f"{built.program.name}{self.capabilities.suffix}"
        path.write_text(built.source)
        return [path]

    # -- running ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def run(self, artifact: Any, args: Sequence[Arg]) -> Any:
        """Call the kernel with arguments in ABI order; outputs are written in place.  Returns the
        target's report of the run (a simulator's, say) or None."""

    def run_mode(self) -> str | None:
        """How `run` runs here, where a target has several ways (the CUDA target: "gpu" or
        "emulated"); None where there is one."""
        return None

    def check_extent(self) -> int | None:
        """The largest extent of a dimension a correctness check should run at, for a target whose
        runs cost far more per element than the hardware's (an emulation); None: the shapes given.
        The tuner then checks every candidate at dimensions cut down to the smallest of 16, 32, ..
        this limit where its schedule applies (search/measure.py), and times it at the real ones."""
        return None

    def quick_call(
        self, artifact: Any, inputs: Sequence[str], params: dict[str, Arg]
    ) -> Callable[[tuple], list[np.ndarray] | None] | None:
        """The Python API's per-call fast path (see `targets.cpu.runtime.Kernel.fast`), or None
        where the target has none: every call then takes `run` with its full checks."""
        return None

    def caller(self, artifact: Any, args: Sequence[Arg]) -> Callable[[], object]:
        """A call of the kernel on `args` with nothing left to check per call, for timing loops
        (targets with a cheaper call path than `run` override this)."""
        return lambda: self.run(artifact, args)

    def profile(
        self, artifact: Any, args: Sequence[Arg], *, budget_s: float = 0.1, cutoff_s: float | None = None
    ) -> Measurement:
        """Median time of `caller`'s call; `cutoff_s`: see `bench`."""
        return bench(self.caller(artifact, args), budget_s=budget_s, cutoff_s=cutoff_s)

    def run_sanitized(self, built: Built, args: Sequence[Arg]) -> Any:
        """`run` under the target's sanitizers (`kcomp run --sanitize`); a target without any says so."""
        raise UsageError(f"target {self.name} has no sanitizer build (--sanitize)")

    # -- search -----------------------------------------------------------------------------------
    def search_rules(self) -> Rules:
        """The decisions this target offers the tuner (kcomp.search.rules): loop transformations."""
        return LoopRules(max(1, self.vector_bits // 32), max(1, self.cores))

    def estimate(self, nest: LoopNest, schedule: Schedule = NONE) -> Estimate:
        """The analytical cost of a scheduled nest (MCTS ranks candidates by it): the roofline model."""
        return estimate(nest, Machine.of(self))

    def fingerprint(self) -> str:
        """The hardware a measurement on this target is valid for (the tuning database's key)."""
        return "sha256:" + hashlib.sha256(self.describe().encode()).hexdigest()

    # -- reports ----------------------------------------------------------------------------------
    def describe(self) -> str:
        """One line for reports naming the target and its hardware."""
        return self.name

    def notes(self, naive: LoopNest, nest: LoopNest, schedule: Schedule) -> tuple[str, ...]:
        """Lines a report adds about how the schedule landed on this target (none by default)."""
        return ()

    def config(self) -> Config:
        """kcomp's configuration for this target: its own `settings`, else the process's."""
        return self.settings or config()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vector_bits={self.vector_bits} cores={self.cores}>"


def bench(
    fn: Callable[[], object],
    *,
    budget_s: float = 0.1,
    warmup_s: float = 0.02,
    min_repeats: int = 5,
    max_repeats: int = 1000,
    cutoff_s: float | None = None,
) -> Measurement:
    """Time `fn`: warm up for about `warmup_s`, then repeat within about `budget_s`; the median call.

    At least one warm-up call and `min_repeats` timed calls always run, however slow `fn` is, unless
    the first call already takes over `cutoff_s`: then that call is the figure (`cut_short`).  A
    tuner passes a multiple of its best time, so a hopeless candidate costs one call, not five.
    """
    start = time.perf_counter()
    fn()  # first call: page faults, lazy binding, OpenMP thread start-up
    first = time.perf_counter() - start
    if cutoff_s is not None and first > cutoff_s:
        return Measurement(
            time_s=first, counters={"repeats": 1, "min_s": first, "max_s": first, "cut_short": 1}
        )
    warm_calls = 1
    while time.perf_counter() - start < warmup_s and warm_calls < max_repeats:
        fn()
        warm_calls += 1
    estimate_s = (time.perf_counter() - start) / warm_calls
    repeats = int(min(max_repeats, max(min_repeats, budget_s / max(estimate_s, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Measurement(
        time_s=statistics.median(times),
        counters={"repeats": repeats, "min_s": min(times), "max_s": max(times), "warmup_calls": warm_calls},
    )


def interleave(
    fns: dict[str, Callable[[], object]],
    *,
    budget_s: float = 0.1,
    rounds: int = 7,
    min_calls: int = 5,
    warmup_s: float = 0.1,
) -> tuple[dict[str, Measurement], dict[str, str]]:
    """Time several systems against each other: `rounds` rounds, each calling every system in turn
    for about `budget_s / rounds` seconds, and each system's median call over all rounds.

    A neighbour's burst of load on a shared machine then lands on every system alike instead of on
    whichever happened to run during it, so the ratios between the medians are what a comparison
    can use.  A system that raises is dropped (its message in the second dict); the others go on.
    """
    errors: dict[str, str] = {}
    per_call: dict[str, float] = {}
    for name, fn in fns.items():
        try:
            fn()  # first call: page faults, lazy binding, thread start-up
            start, warm = time.perf_counter(), 0
            while warm < 3 or time.perf_counter() - start < warmup_s:  # allocators settle, too
                fn()
                warm += 1
            per_call[name] = (time.perf_counter() - start) / warm
        except Exception as e:  # a failing system is a result, never a crashed comparison
            errors[name] = f"{type(e).__name__}: {e}"
    times: dict[str, list[float]] = {name: [] for name in per_call}
    calls = {name: max(1, int(budget_s / rounds / max(t, 1e-9))) for name, t in per_call.items()}
    calls = {name: max(c, -(-min_calls // rounds)) for name, c in calls.items()}
    for _ in range(rounds):
        for name in list(times):
            fn = fns[name]
            try:
                for _ in range(calls[name]):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            except Exception as e:
                errors[name] = f"{type(e).__name__}: {e}"
                del times[name]
    return {
        name: Measurement(
            time_s=statistics.median(ts),
            counters={"repeats": len(ts), "min_s": min(ts), "max_s": max(ts), "rounds": rounds},
        )
        for name, ts in times.items()
    }, errors
