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
    if expected is not None and not np.allclose(got, expected, rtol=1e-3, atol=1e-3, equal_nan=True):
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
