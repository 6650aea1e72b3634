"""torch eager and torch.compile (Inductor) as peers of a kcomp kernel in one interleaved timing.

The suites that compare with torch (`fusion`, `ops`) hand `torch_calls` the torch computation of a
case and the kernel's inputs; it adds two zero-argument calls to the suite's dict (timed later with
the kcomp calls by `targets.base.interleave`), checks torch's result against kcomp's, and records
Inductor's compile time apart.  Torch runs with THREADS intra-op threads, the count kcomp's kernels
use on these machines, under no_grad.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kcomp.bench import machine as host_machine
from kcomp.bench.peers import torch_available
from kcomp.targets.base import interleave

THREADS = 2


def torch_calls(
    fn: Callable[..., Any],
    inputs: dict[str, np.ndarray],
    expected: np.ndarray | None,
    row: dict[str, Any],
    calls: dict[str, Callable[[], object]],
) -> int:
    """Add `torch` (eager) and `torch_compile` (compiled and warmed here) calls of `fn(**inputs as
    tensors)` to `calls`; a result unlike `expected` or an Inductor failure is noted in
    `row["extra"]`.  Returns torch's thread count before, for the caller to restore after timing."""
    import torch

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)

    def eager() -> object:
        with torch.no_grad():
            return fn(**tensors)

    try:
        out = eager()
    except Exception as e:  # a torch failure is a recorded result
        row["extra"]["torch_error"] = f"{type(e).__name__}: {e}"
        return before
    got = np.asarray(out.numpy() if hasattr(out, "numpy") else out)
    # NOTE: the absolute tolerance scales with the result, as a long sum's rounding does (a cumsum of
    # 4M elements reaches thousands, where torch accumulates in f64 and kcomp in f32)
    finite = np.abs(expected[np.isfinite(expected)]) if expected is not None else np.zeros(0)
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    if expected is not None and not np.allclose(got, expected, rtol=1e-3, atol=1e-3 * scale, equal_nan=True):
        row["extra"]["torch_error"] = "torch's result differs from kcomp's"
    calls["torch"] = eager
    try:
        start = time.perf_counter()
        compiled = torch.compile(fn)
        with torch.no_grad():
            for _ in range(3):
                compiled(**tensors)
        row["extra"]["torch_compile_s"] = time.perf_counter() - start

        def inductor() -> object:
            with torch.no_grad():
                return compiled(**tensors)

        calls["torch_compile"] = inductor
    except Exception as e:  # Inductor failing is a result too
        row["extra"]["torch_compile_error"] = f"{type(e).__name__}: {e}"
    return before


def suite_start(roofs: bool, with_torch: bool) -> tuple[dict[str, Any], Any, bool]:
    """The machine section a torch-comparing suite starts with (host, load, roofs, torch's
    availability), the CPU watcher to stop at the end (`suite_end`), and whether torch runs."""
    others = host_machine.OtherCpu()
    info: dict[str, Any] = {
        **host_machine.describe_host(),
        "load_avg_1m": {"start": host_machine.load_average()},
    }
    if roofs:
        info.update(host_machine.measure_roofs())
    why_not = torch_available() if with_torch else "not requested"
    if why_not:
        info["torch_error"] = why_not
    return info, others, why_not is None


def suite_end(info: dict[str, Any], others: Any) -> None:
    info["load_avg_1m"]["end"] = host_machine.load_average()
    info["other_cpu_cores"] = others.stop()


def time_systems(
    calls: dict[str, Callable[[], object]],
    row: dict[str, Any],
    budget_s: float,
    torch_fn: Callable[..., Any] | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    expected: np.ndarray | None = None,
) -> dict[str, float]:
    """Median seconds per system of `calls`, plus torch eager and Inductor when `torch_fn` is given,
    all timed interleaved (`targets.base.interleave`, `budget_s` each); a system that fails is
    noted in `row["extra"]` as `<system>_error`."""
    threads = torch_calls(torch_fn, inputs or {}, expected, row, calls) if torch_fn is not None else None
    try:
        times, errors = interleave(calls, budget_s=budget_s * len(calls))
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
    for system, message in errors.items():
        row["extra"][f"{system}_error"] = message
    return {system: m.time_s for system, m in times.items()}
