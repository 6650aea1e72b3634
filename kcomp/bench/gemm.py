"""The gemm suite: C[M, N] = A[M, K] @ B[K, N] in fp32, kcomp against numpy and torch.

    run_suite([(64, 48, 32)], budget_s=0.01)
      -> {"suite": "gemm", "machine": {...}, "rows": [{"case": "gemm_64x48x32",
          "params": {"M": 64, "N": 48, "K": 32}, "flops": 196608,
          "times_s": {"kcomp": ..., "numpy": ..., "torch": ...}, "extra": {...}}]}

The run goes system by system, not case by case: roofs first (on an idle process), then every case
with kcomp, then numpy in one child process, then torch.  Two OpenMP runtimes (kcomp's libgomp and
torch's) never take turns between timings that way, so one's spinning threads cannot slow the other.
kcomp's result is checked against the reference before it is timed; a wrong kernel is never timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import numpy as np

import kcomp
from kcomp.bench import machine as host_machine
from kcomp.bench import peers
from kcomp.errors import UsageError
from kcomp.targets.cpu import host

Shape = tuple[int, int, int]  # (M, N, K)

CASES: tuple[Shape, ...] = (
    (1024, 1024, 1024),
    (1000, 1000, 1000),  # not a multiple of any vector width or tile: tails
    (512, 3072, 768),  # a transformer MLP projection
    (4096, 4096, 64),  # short K: bound by writing C
    (1, 4096, 4096),  # matrix-vector: bound by reading B
)
QUICK_CASES: tuple[Shape, ...] = ((256, 256, 256), (250, 250, 250), (128, 768, 192), (1, 1024, 1024))

MATMUL = """dim M = {M}, N = {N}, K = {K}

kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {{
    C[i, j] += A[i, k] * B[k, j]
}}
"""

SYSTEMS = ("kcomp", "numpy", "torch")

Progress = Callable[[str], None]


def case_name(shape: Shape) -> str:
    m, n, k = shape
    return f"gemm_{m}x{n}x{k}"


def parse_case(text: str) -> Shape:
    """ "MxNxK" (e.g. "64x48x32") as a shape; anything else is a UsageError."""
    parts = text.strip().lower().removeprefix("gemm_").split("x")
    try:
        m, n, k = (int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"gemm case {text!r}: expected MxNxK with positive integers, e.g. 64x48x32"
        ) from None
    if min(m, n, k) <= 0:
        raise UsageError(f"gemm case {text!r}: every dimension must be positive")
    return m, n, k


def run_suite(
    cases: Iterable[Shape] = CASES,
    *,
    budget_s: float = 0.25,
    fma_call_s: float = 0.08,
    copy_bytes: int = 256 << 20,
    roof_budget_s: float = 0.4,
    systems: Collection[str] = SYSTEMS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure every case with each of `systems`; the suite's one JSON-ready object.

    `budget_s` is the timing budget per system and case (at least 5 timed calls always run);
    `fma_call_s`, `copy_bytes` and `roof_budget_s` size the roof measurements (small for tests).
    A system left out of `systems` is simply absent; one that fails says why in
    `extra["<system>_error"]`.
    """
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise UsageError(f"unknown systems {', '.join(sorted(unknown))}; known: {', '.join(SYSTEMS)}")
    shapes: list[Shape] = [(int(m), int(n), int(k)) for m, n, k in cases]
    say = progress or (lambda _msg: None)
    rows = [
        {
            "case": case_name(s),
            "params": {"M": s[0], "N": s[1], "K": s[2]},
            "flops": 2 * s[0] * s[1] * s[2],
            "times_s": {},
            "extra": {"min_bytes": 4 * (s[0] * s[2] + s[2] * s[1] + s[0] * s[1])},  # read A, B; write C
        }
        for s in shapes
    ]
    say("measuring roofs (FMA peak, copy bandwidth)")
    load_before = host_machine.load_average()
    others = host_machine.OtherCpu()
    info: dict[str, Any] = {
        **host_machine.describe_host(),
        **host_machine.measure_roofs(fma_call_s=fma_call_s, copy_bytes=copy_bytes, budget_s=roof_budget_s),
    }
    threads: dict[str, int] = {}
    if "kcomp" in systems:
        for shape, row in zip(shapes, rows, strict=True):
            say(f"kcomp {row['case']}")
            _time_kcomp(shape, row, budget_s, info, threads)
    if "numpy" in systems:
        say(f"numpy ({len(shapes)} cases, subprocess)")
        _time_numpy(shapes, rows, budget_s, info, threads)
    if "torch" in systems:
        _time_torch(shapes, rows, budget_s, info, threads, say)
    info["threads"] = threads
    info["load_avg_1m"] = {"start": load_before, "end": host_machine.load_average()}
    info["other_cpu_cores"] = others.stop()
    return {"suite": "gemm", "machine": info, "rows": rows}


def _time_kcomp(shape: Shape, row: dict, budget_s: float, info: dict, threads: dict) -> None:
    extra = row["extra"]
    m, n, k = shape
    try:
        start = time.perf_counter()
        kernel = kcomp.compile(MATMUL.format(M=m, N=n, K=k), shapes={"M": m, "N": n, "K": k})
        built = kernel.built
        extra["kcomp_compile_s"] = time.perf_counter() - start
        # NOTE: getattr: the Built's fields are being reworked with the scheduler
        extra["schedule_source"] = str(getattr(built, "schedule_source", "unknown"))
        info.setdefault("kcomp_target", kernel.target.describe())
        threads.setdefault("kcomp", int(getattr(kernel.target, "threads", 1)))
        rng = np.random.default_rng(0)
        inputs = {
            "A": rng.uniform(-1, 1, (m, k)).astype(np.float32),
            "B": rng.uniform(-1, 1, (k, n)).astype(np.float32),
        }
        check = kernel.check(inputs=inputs)
        extra["kcomp_max_rel_err"] = check.max_rel_err
        extra["kcomp_max_abs_err"] = check.max_abs_err
        if not check.ok:
            extra["kcomp_error"] = f"wrong result (max rel err {check.max_rel_err:.3g}): not timed"
            return
        outputs = {"C": np.empty((m, n), np.float32)}
        args = built.arguments(inputs, outputs, {})
        row["times_s"]["kcomp"] = kernel.target.profile(built.artifact, args, budget_s=budget_s).time_s
    except Exception as e:  # a failed system is a recorded result, never a crashed suite
        extra["kcomp_error"] = f"{type(e).__name__}: {e}"


def _time_numpy(
    shapes: Sequence[Shape], rows: list[dict], budget_s: float, info: dict, threads: dict
) -> None:
    result = peers.run_numpy(shapes, budget_s=budget_s)
    if "error" in result:
        for row in rows:
            row["extra"]["numpy_error"] = result["error"]
        info["blas_kernel"] = "unknown (numpy peer failed)"
        return
    blas = result.get("blas", {})
    info["blas_kernel"] = blas.get("architecture") or "unknown"
    info["blas_library"] = " ".join(str(blas[k]) for k in ("internal_api", "version") if blas.get(k))
    info["numpy"] = result.get("numpy")
    info["numpy_env_set"] = result.get("env_set", {})
    if blas.get("num_threads"):
        threads["numpy"] = int(blas["num_threads"])
    for row, t, err in zip(rows, result["times_s"], result["errors"], strict=True):
        if t is not None:
            row["times_s"]["numpy"] = t
        else:
            row["extra"]["numpy_error"] = err or "no time reported"


def _time_torch(
    shapes: Sequence[Shape], rows: list[dict], budget_s: float, info: dict, threads: dict, say: Progress
) -> None:
    missing = peers.torch_available()
    if missing:
        for row in rows:
            row["extra"]["torch_error"] = missing
        return
    info["torch"] = peers.torch_info()
    threads["torch"] = host.cores()
    for shape, row in zip(shapes, rows, strict=True):
        say(f"torch {row['case']}")
        try:
            row["times_s"]["torch"] = peers.time_torch(shape, budget_s=budget_s, threads=threads["torch"])
        except Exception as e:
            row["extra"]["torch_error"] = f"{type(e).__name__}: {e}"
