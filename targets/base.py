"""The interface every target implements, and the timing recipe they share.

A target turns a `LoopNest` into something that runs: `emit` (source text), `build` (an artifact: a
shared library, a cubin, an accelerator program), `run` (arguments in ABI order, outputs written in
place) and `profile` (a `Measurement`).  Capability fields tell passes and the search what the
hardware offers (vector width, cores) without importing a target's internals.

`bench` is the one timing recipe (Triton's `do_bench` shape): warm up, estimate one call, choose the
repeat count from a time budget, time each call, report the median.  The median, not the mean or the
minimum, because one preempted call must not move the figure and the minimum is too optimistic.
"""

from __future__ import annotations

import abc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kcomp.loops import LoopNest

Arg = np.ndarray | float | int | bool


@dataclass(frozen=True, slots=True)
class Measurement:
    """One timing: the median seconds per call, plus whatever counters the target has."""

    time_s: float
    counters: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """A code generation target.  Subclasses set the capability fields in `__init__`."""

    name: str = ""
    vector_bits: int = 0  # widest native vector register, in bits
    cores: int = 1  # hardware threads kernels may use

    @abc.abstractmethod
    def emit(self, nest: LoopNest) -> str:
        """The source text of `nest` (one exported entry point, ABI in docs/abi.md)."""

    @abc.abstractmethod
    def build(self, source: str) -> Any:
        """An artifact that `run` accepts; raises `BuildError` when the toolchain rejects `source`."""

    @abc.abstractmethod
    def run(self, artifact: Any, args: Sequence[Arg]) -> None:
        """Call the kernel with arguments in ABI order; outputs are written in place."""

    def profile(
        self, artifact: Any, args: Sequence[Arg], *, budget_s: float = 0.1, cutoff_s: float | None = None
    ) -> Measurement:
        """Median time of `run` (targets with a cheaper call path override this); `cutoff_s`: see `bench`."""
        return bench(lambda: self.run(artifact, args), budget_s=budget_s, cutoff_s=cutoff_s)

    def describe(self) -> str:
        """One line for reports naming the target and its hardware."""
        return self.name

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
    estimate = (time.perf_counter() - start) / warm_calls
    repeats = int(min(max_repeats, max(min_repeats, budget_s / max(estimate, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Measurement(
        time_s=statistics.median(times),
        counters={"repeats": repeats, "min_s": min(times), "max_s": max(times), "warmup_calls": warm_calls},
    )
