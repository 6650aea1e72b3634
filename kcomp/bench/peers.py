"""The systems kcomp is compared with: numpy (in a subprocess) and torch (in this process).

numpy runs in a child (`python -m kcomp.bench.peers`, request as JSON on stdin, one JSON object on
stdout) whose environment lacks OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: OpenBLAS reads them once,
at load, and a forced core type can hide the best kernel the machine has.  The child reports which
BLAS kernel it got (threadpoolctl) and whether those variables were set, so a reader can trust it.
kcomp itself never sets them.  torch bundles its own BLAS, so it runs in this process.

Both time with `kcomp.targets.base.bench` (warm-up, repeats from a budget, median), on fp32 inputs,
writing into a preallocated output so allocation is not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info

from kcomp.targets.base import bench

DROPPED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NUMPY_TIMEOUT_S = 1800

Shape = tuple[int, int, int]  # (M, N, K)


def peer_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without the variables that pin OpenBLAS's kernel choice."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k not in DROPPED_ENV}


def run_numpy(shapes: Sequence[Shape], *, budget_s: float) -> dict[str, Any]:
    """Time `A @ B` for each (M, N, K) in a clean child process.

    Returns {"times_s": [seconds or None per shape], "errors": [message or None per shape],
    "blas": {...threadpoolctl...}, "env_set": {var: bool}, "numpy": version}; a child that could
    not run at all gives {"error": message}.
    """
    request = json.dumps({"shapes": [list(s) for s in shapes], "budget_s": budget_s})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kcomp.bench.peers"],
            input=request,
            capture_output=True,
            text=True,
            env=peer_env(),
            timeout=NUMPY_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"numpy peer did not finish: {e}"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"numpy peer exited with {done.returncode}: {tail}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"numpy peer printed something other than JSON: {lines[-1][:200]}"}


def _blas_info() -> dict[str, Any]:
    """The first BLAS threadpoolctl finds in this process (numpy must be imported first)."""
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            keys = ("architecture", "internal_api", "version", "num_threads", "threading_layer")
            return {k: pool.get(k) for k in keys}
    return {"architecture": "unknown (no BLAS found by threadpoolctl)"}


def numpy_child(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work: time each shape, then describe the BLAS that ran."""
    env_set = {var: var in os.environ for var in DROPPED_ENV}  # NOTE: before anything loads OpenBLAS

    rng = np.random.default_rng(0)
    times: list[float | None] = []
    errors: list[str | None] = []
    for m, n, k in request["shapes"]:
        try:
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
            c = np.empty((m, n), np.float32)
            times.append(
                bench(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), budget_s=request["budget_s"]).time_s
            )
            errors.append(None)
        except Exception as e:  # one failed shape must not lose the others' times
            times.append(None)
            errors.append(f"{type(e).__name__}: {e}")
    return {
        "times_s": times,
        "errors": errors,
        "blas": _blas_info(),
        "env_set": env_set,
        "numpy": np.__version__,
    }


def torch_available() -> str | None:
    """None if torch imports, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"torch is not installed ({e})"
    return None


def torch_info() -> dict[str, Any]:
    import torch

    return {
        "version": torch.__version__,
        "blas": "mkl" if torch.backends.mkl.is_available() else "unknown",
    }


def time_torch(shape: Shape, *, budget_s: float, threads: int) -> float:
    """Median seconds of `torch.mm(a, b, out=c)` with `threads` intra-op threads (restored after)."""
    import torch

    m, n, k = shape
    gen = torch.Generator().manual_seed(0)
    a = torch.rand((m, k), generator=gen, dtype=torch.float32) * 2 - 1
    b = torch.rand((k, n), generator=gen, dtype=torch.float32) * 2 - 1
    c = torch.empty((m, n), dtype=torch.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return bench(lambda: torch.mm(a, b, out=c), budget_s=budget_s).time_s
    finally:
        torch.set_num_threads(before)


def main() -> int:
    """Child entry point: a request on stdin, one JSON line on stdout."""
    result = numpy_child(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
