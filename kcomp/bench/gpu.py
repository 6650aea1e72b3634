"""The GPU a benchmark ran on, its roofs, and timing by CUDA events (`kcomp bench cuda`).

    describe_gpu()     name, compute capability, SMs, memory; torch's version and CUDA
    measure_roofs()    copy_gbps: `dst.copy_(src)` of a large device buffer (1 GiB by default), bytes
                       read + written per second, median call, measured in the run;
                       fp32_peak_gflops and fp32_peak_source: NVIDIA's datasheet figure for a GPU
                       known by name, else SMs x FP32 lanes x 2 x nvidia-smi's maximum SM clock, else
                       the fastest cuBLAS fp32 GEMM call measured now (labelled: a floor)
    time_interleaved() systems timed in turn, each call alone between two CUDA events

torch is imported in the functions: this module loads without it.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections.abc import Callable
from typing import Any

# NVIDIA's datasheet figures, non-tensor FP32 at boost clock (TFLOP/s); the first entry whose words
# are all in the device's name wins, so the more specific names come first.
SPEC_FP32_TFLOPS: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("h200", "nvl"), 60.0, "H200 NVL"),
    (("h200",), 67.0, "H200 SXM"),
    (("h100", "nvl"), 60.0, "H100 NVL"),
    (("h100", "pcie"), 51.2, "H100 PCIe"),
    (("h100",), 67.0, "H100 SXM"),
    (("a100",), 19.5, "A100"),
)


def describe_gpu() -> dict[str, Any]:
    """The GPU torch sees as device 0, and torch's version and CUDA."""
    import torch

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_sms": props.multi_processor_count,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda},
    }


def measure_roofs(copy_bytes: int, budget_s: float) -> dict[str, Any]:
    """`copy_gbps` and the fp32 peak with its source; a roof that cannot be had is absent, with a
    `<roof>_error` saying why."""
    out = _roof("copy_gbps", lambda: measure_copy_gbps(copy_bytes, budget_s))
    try:
        out.update(fp32_peak(budget_s))
    except Exception as e:
        out["fp32_peak_error"] = f"{type(e).__name__}: {e}"
    return out


def _roof(key: str, measure: Callable[[], float]) -> dict[str, Any]:
    try:
        return {key: measure()}
    except Exception as e:  # a roof that cannot be measured is absent, with its reason
        return {f"{key.rsplit('_', 1)[0]}_error": f"{type(e).__name__}: {e}"}


def measure_copy_gbps(nbytes: int, budget_s: float) -> float:
    """GB/s of `dst.copy_(src)` on the device, bytes read + bytes written (median call)."""
    import torch

    src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times, errors = time_interleaved({"copy": lambda: dst.copy_(src)}, budget_s)
    if errors:
        raise RuntimeError(errors["copy"])
    return 2.0 * nbytes / times["copy"]["median_s"] / 1e9


def spec_fp32_tflops(name: str) -> tuple[float, str] | None:
    """(TFLOP/s, product) from NVIDIA's datasheets for a GPU known by `name`, else None."""
    lower = name.lower()
    for words, tflops, product in SPEC_FP32_TFLOPS:
        if all(w in lower for w in words):
            return tflops, product
    return None


def fp32_lanes_per_sm(major: int, minor: int) -> int:
    """FP32 lanes per SM: 64 on sm_60, Volta, Turing and the A100 (sm_80); 128 on the others since sm_61."""
    return 64 if (major, minor) in {(6, 0), (7, 0), (7, 2), (7, 5), (8, 0)} else 128


def fp32_peak(budget_s: float) -> dict[str, Any]:
    """{"fp32_peak_gflops", "fp32_peak_source"}: the datasheet figure, else one derived from the
    SMs and nvidia-smi's maximum SM clock, else a cuBLAS GEMM measured now (a floor)."""
    import torch

    name = torch.cuda.get_device_name(0)
    spec = spec_fp32_tflops(name)
    if spec:
        return {
            "fp32_peak_gflops": spec[0] * 1e3,
            "fp32_peak_source": f"datasheet: NVIDIA {spec[1]}, {spec[0]} TFLOP/s non-tensor FP32 at boost"
            f" clock (matched by the device name {name!r})",
        }
    props = torch.cuda.get_device_properties(0)
    lanes, mhz = fp32_lanes_per_sm(props.major, props.minor), _max_sm_clock_mhz()
    if mhz:
        return {
            "fp32_peak_gflops": props.multi_processor_count * lanes * 2 * mhz / 1e3,
            "fp32_peak_source": f"derived: {props.multi_processor_count} SMs x {lanes} FP32 lanes x 2 flops"
            f" x {mhz:.0f} MHz maximum SM clock (nvidia-smi)",
        }
    n = 4096
    a, b = (torch.rand((n, n), device="cuda") for _ in range(2))
    times, errors = time_interleaved({"cublas": lambda: torch.matmul(a, b)}, budget_s)
    if errors:
        return {"fp32_peak_error": f"no datasheet figure, no clock, and cuBLAS failed: {errors['cublas']}"}
    return {
        "fp32_peak_gflops": 2 * n**3 / times["cublas"]["min_s"] / 1e9,
        "fp32_peak_source": f"measured: the fastest cuBLAS fp32 GEMM {n}^3 call (TF32 off) in this run;"
        " a floor: the GPU's real peak is higher",
    }


def _max_sm_clock_mhz() -> float | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return float(done.stdout.strip().splitlines()[0]) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def time_interleaved(
    calls: dict[str, Callable[[], object]], budget_s: float, *, rounds: int = 7, min_calls: int = 5
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Per system: {"median_s", "min_s", "calls"} over `rounds` rounds that call each system in
    turn (about `budget_s / rounds` seconds each), every call timed alone by CUDA events behind a
    short spin kernel (so the GPU waits for no launch); a system that raises is dropped, its
    message in the second dict."""
    import torch

    errors: dict[str, str] = {}
    estimate: dict[str, float] = {}
    for name, fn in calls.items():
        try:
            fn()  # module load, memory pools, cuBLAS's heuristics
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(3):
                fn()
            end.record()
            end.synchronize()
            estimate[name] = start.elapsed_time(end) / 3e3
        except Exception as e:  # a failing system is a result, never a crashed comparison
            errors[name] = f"{type(e).__name__}: {e}"
    per_round = {
        name: max(-(-min_calls // rounds), min(200, int(budget_s / rounds / max(t, 1e-7))))
        for name, t in estimate.items()
    }
    times: dict[str, list[float]] = {name: [] for name in estimate}
    spin = getattr(torch.cuda, "_sleep", None)
    for _ in range(rounds):
        for name in list(times):
            try:
                for _ in range(per_round[name]):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    if spin is not None:
                        spin(200_000)  # ~100 us at 2 GHz: longer than enqueueing the three below
                    start.record()
                    calls[name]()
                    end.record()
                    end.synchronize()
                    times[name].append(start.elapsed_time(end) / 1e3)
            except Exception as e:
                errors[name] = f"{type(e).__name__}: {e}"
                del times[name]
    out = {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "calls": len(ts)}
        for name, ts in times.items()
    }
    return out, errors


def gpu_line(m: dict[str, Any]) -> str:
    parts = [f"{m.get('gpu')} (sm {m.get('gpu_capability', '?')}, {m.get('gpu_sms', '?')} SMs)"]
    if "fp32_peak_gflops" in m:
        parts.append(f"fp32 peak {m['fp32_peak_gflops'] / 1e3:.1f} TFLOP/s, {m['fp32_peak_source']}")
    if "copy_gbps" in m:
        parts.append(f"device copy {m['copy_gbps']:.0f} GB/s (read + write, measured now)")
    torch_info = m.get("torch") or {}
    parts.append(f"torch {torch_info.get('version', '?')} (CUDA {torch_info.get('cuda', '?')}), TF32 off")
    parts.append(str(m.get("kcomp_target", "?")))
    parts += [f"{k.removesuffix('_error')} not measured: {v}" for k, v in m.items() if k.endswith("_error")]
    return " | ".join(parts)
