"""The cuda suite: kernels of kcomp's CUDA target on the GPU against torch (cuBLAS and torch's kernels).

    kcomp bench cuda [--cases gemm_fp32,softmax] [--quick] [--json]

Cases (their `.kc` text below): `gemm_fp32` (4096³ against `torch.matmul`, i.e. cuBLAS), `gemm_bf16`
(the same in bf16: the CUDA target does not lower bf16 yet, so the row says so, with the compiler's
own message, in `extra.not_supported`, and has torch's time only), `softmax` and `layernorm`
(8192 × 8192 rows, against `torch.softmax` and `torch.nn.functional.layer_norm` with the scale and
shift of examples/layernorm.kc) and `gemm_bias_gelu` (bias, matmul and exact erf GELU in one kernel
against torch eager: `gelu(addmm(b, X, W))`).  TF32 is off on both sides
(`torch.backends.cuda.matmul.allow_tf32 = False`; kcomp's kernels use no tensor cores).

Each kcomp kernel is compiled for the detected GPU's architecture, checked against the numpy
reference on the GPU (a wrong kernel is never timed), then timed interleaved with torch on the same
inputs: rounds that call each system in turn, every call timed alone by a pair of CUDA events on
the default stream (behind a short spin kernel, so the CPU's launch latency is not timed), the
median per system.  torch's result is compared with kcomp's.  `extra.pct_of_roof` is each system's
share of the row's roof: the fp32 peak (FLOP/s) for the fp32 GEMMs, the device-to-device copy
bandwidth measured in the same run for softmax and layernorm (compulsory bytes: inputs read once,
outputs written once).  `machine.fp32_peak_source` says where the peak comes from: NVIDIA's
datasheet figure for a GPU this module knows by name, else SMs × FP32 lanes × 2 × the maximum SM
clock (nvidia-smi), else a cuBLAS GEMM measured in the run (a floor of the real peak).

Without a GPU (no torch, or torch sees no CUDA device) the suite measures nothing: no rows, and
`machine` has `"gpu": null` and `"gpu_error"` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kcomp.api import CompiledKernel, load_module
from kcomp.api import compile as kc_compile
from kcomp.bench import gpu
from kcomp.bench import machine as host_machine
from kcomp.bench.fusion import CASES as FUSION_CASES
from kcomp.bench.peers import torch_available
from kcomp.bench.report import failures
from kcomp.check import check as typecheck
from kcomp.check import param_defaults
from kcomp.data import random_params
from kcomp.dtypes import DType
from kcomp.errors import KcompError, UsageError
from kcomp.program import Program
from kcomp.targets import Target, get_target
from kcomp.targets.cuda import runtime as cuda_runtime

Progress = Callable[[str], None]
FP32_PEAK, COPY_BANDWIDTH = "fp32_peak", "copy_bandwidth"
DEVICE = "cuda"  # where torch's tensors go (the tests run the rows' plumbing on the CPU)


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    shapes: dict[str, int]  # the benchmark's
    small: dict[str, int]  # the tests' (checked in the emulation)
    roof: str | None  # FP32_PEAK, COPY_BANDWIDTH, or None (no peak this suite knows)


_GEMM = {"M": 4096, "N": 4096, "K": 4096}
_GEMM_SMALL = {"M": 64, "N": 128, "K": 64}
_ROWS = {"N": 8192, "D": 8192}
_ROWS_SMALL = {"N": 64, "D": 128}
CASES = {
    c.name: c
    for c in (
        Case(
            "gemm_fp32",
            """kernel gemm_fp32(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}""",
            _GEMM,
            _GEMM_SMALL,
            FP32_PEAK,
        ),
        Case(
            "gemm_bf16",
            """kernel gemm_bf16(A: bf16[M, K], B: bf16[K, N]) -> (C: bf16[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}""",
            _GEMM,
            _GEMM_SMALL,
            None,
        ),
        Case(  # examples/softmax.kc, the text bench fusion times
            "softmax",
            FUSION_CASES["softmax"].source,
            _ROWS,
            _ROWS_SMALL,
            COPY_BANDWIDTH,
        ),
        Case(  # examples/layernorm.kc: with scale and shift
            "layernorm",
            """kernel layernorm(X: f32[N, D], gamma: f32[D], beta: f32[D], eps: f32 = 1e-5) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    xc[n, d] = X[n, d] - mean[n]
    var[n] += xc[n, d] * xc[n, d] / D
    Y[n, d] = xc[n, d] * rsqrt(var[n] + eps) * gamma[d] + beta[d]
}""",
            _ROWS,
            _ROWS_SMALL,
            COPY_BANDWIDTH,
        ),
        Case(  # a transformer MLP's up-projection: 8192 tokens, 1024 -> 4096, exact (erf) GELU
            "gemm_bias_gelu",
            """kernel gemm_bias_gelu(X: f32[M, K], W: f32[K, N], b: f32[N]) -> (Y: f32[M, N]) {
    Z[i, j] = b[j] where i < M
    Z[i, j] += X[i, k] * W[k, j]
    Y[i, j] = 0.5 * Z[i, j] * (1.0 + erf(Z[i, j] * 0.7071067811865476))
}""",
            {"M": 8192, "N": 4096, "K": 1024},
            _GEMM_SMALL,
            FP32_PEAK,
        ),
    )
}
QUICK_CASES = ("gemm_fp32", "softmax")


def parse_case(text: str) -> str:
    name = text.strip()
    if name not in CASES:
        raise UsageError(f"--cases {text}: no cuda case named {name!r}; cases: {', '.join(CASES)}")
    return name


def torch_function(name: str) -> Callable[..., Any]:
    """The torch computation of case `name`, taking the kernel's inputs and parameters by name."""
    import torch
    import torch.nn.functional as nnf

    functions: dict[str, Callable[..., Any]] = {
        "gemm_fp32": lambda A, B: torch.matmul(A, B),
        "gemm_bf16": lambda A, B: torch.matmul(A, B),
        "softmax": lambda X: torch.softmax(X, -1),
        "layernorm": lambda X, gamma, beta, eps: nnf.layer_norm(X, (X.shape[-1],), gamma, beta, eps),
        "gemm_bias_gelu": lambda X, W, b: nnf.gelu(torch.addmm(b, X, W)),
    }
    return functions[name]


def program_of(case: Case, shapes: dict[str, int] | None = None) -> Program:
    """The case's type-checked program (it exists for element types no target lowers, too)."""
    module = load_module(case.source)
    return typecheck(module, module.kernel(None), shapes or case.shapes)


def compile_case(
    case: Case, target: str, shapes: dict[str, int] | None = None
) -> tuple[CompiledKernel | None, str | None]:
    """The case's kernel for `target`, or (None, the compiler's message) when the target does not
    lower one of its element types: a known limit, not a failure.  Any other error is raised."""
    try:
        return kc_compile(case.source, shapes=shapes or case.shapes, target=target), None
    except KcompError as e:
        takes = get_target(target).capabilities.dtypes
        if any(t.dtype not in takes for t in program_of(case, shapes).tensors):
            return None, str(e)
        raise


def no_gpu_reason() -> str | None:
    """None where torch sees a CUDA device, else why there is nothing to measure."""
    missing = torch_available()
    if missing:
        return missing
    if not cuda_runtime.gpu_available():
        import torch

        return f"torch {torch.__version__} sees no CUDA device"
    return None


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    budget_s: float = 0.25,
    progress: Progress | None = None,
    copy_bytes: int = 1 << 30,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    names = list(cases) if cases is not None else list(CASES)
    info: dict[str, Any] = host_machine.describe_host()
    why = no_gpu_reason()
    if why:
        info.update(gpu=None, gpu_error=why)
        return {"suite": "cuda", "machine": info, "rows": []}
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        target = get_target(_target_spec())
        info.update(gpu.describe_gpu(), kcomp_target=target.describe(), tf32=False)
        say("measuring the device-to-device copy bandwidth and the fp32 peak")
        info.update(gpu.measure_roofs(copy_bytes, budget_s))
        rows = []
        for name in names:
            say(f"cuda {name}")
            rows.append(_row(CASES[name], target, budget_s))
            torch.cuda.empty_cache()
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before
    for row in rows:
        _derive(row, info)
    return {"suite": "cuda", "machine": info, "rows": rows}


def _target_spec() -> str:
    """`cuda:sm_XY` for the detected GPU where kcomp knows that architecture, else `cuda` (sm_80)."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    spec = f"cuda:sm_{major}{minor}"
    try:
        get_target(spec)
    except UsageError:
        return "cuda"
    return spec


def _row(case: Case, target: Target, budget_s: float, shapes: dict[str, int] | None = None) -> dict[str, Any]:
    shapes = shapes or case.shapes
    program = program_of(case, shapes)
    row: dict[str, Any] = {
        "case": case.name,
        "params": dict(shapes),
        "flops": program.flops,
        "times_s": {},
        "extra": {"roof": case.roof, "compulsory_bytes": compulsory_bytes(program)},
    }
    extra = row["extra"]
    calls: dict[str, Callable[[], object]] = {}
    inputs: dict[str, np.ndarray] | None = None
    params: dict[str, float | int] = {}
    ours: np.ndarray | None = None
    try:
        start = time.perf_counter()
        k, unsupported = compile_case(case, target.name, shapes)
        extra["kcomp_compile_s"] = time.perf_counter() - start
        if k is None:
            extra["not_supported"] = unsupported
        else:
            extra["schedule"] = str(k.built.schedule)
            check = k.check(seed=0)
            extra["kcomp_max_rel_err"] = check.max_rel_err
            if not check.ok:
                extra["kcomp_error"] = f"wrong result (max rel err {check.max_rel_err:.3g}): not timed"
            else:
                inputs, params = k.random_inputs(seed=1)
                calls["kcomp"] = k.timer(inputs=inputs, params=params)
                ours = np.asarray(k(**inputs, **params))
    except Exception as e:  # a case kcomp cannot build or run is a recorded result, never a crashed suite
        extra["kcomp_error"] = f"{type(e).__name__}: {e}"
    try:
        calls["torch"] = _torch_call(case, program, inputs, params, ours, extra)
    except Exception as e:
        extra["torch_error"] = f"{type(e).__name__}: {e}"
    times, errors = gpu.time_interleaved(calls, budget_s)
    for system, message in errors.items():
        extra[f"{system}_error"] = message
    row["times_s"] = {system: t["median_s"] for system, t in times.items()}
    extra["calls"] = {system: t["calls"] for system, t in times.items()}
    return row


def _torch_call(
    case: Case,
    program: Program,
    inputs: dict[str, np.ndarray] | None,
    params: dict[str, float | int],
    ours: np.ndarray | None,
    extra: dict[str, Any],
) -> Callable[[], object]:
    """torch's call of the case on kcomp's inputs (fresh fp32 ones, cast, where kcomp has none); a
    result unlike kcomp's is noted as `torch_error` (and still timed)."""
    import torch

    if inputs is None:
        rng = np.random.default_rng(1)
        inputs = {b.name: rng.uniform(-1, 1, b.shape).astype(np.float32) for b in program.inputs}
        module = load_module(case.source)
        params = random_params(program, rng, param_defaults(module.kernel(None)))
    dtypes = {b.name: b.dtype for b in program.inputs}
    tensors = {
        name: torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE).to(_torch_dtype(dtypes[name]))
        for name, a in inputs.items()
    }
    fn = torch_function(case.name)

    def call() -> object:
        with torch.no_grad():
            return fn(**tensors, **params)

    theirs = call().float().cpu().numpy()
    if ours is not None:
        diff = float(np.max(np.abs(theirs - ours)))
        if not np.allclose(theirs, ours, rtol=1e-3, atol=1e-3 * max(1.0, float(np.max(np.abs(ours))))):
            extra["torch_error"] = f"torch's result differs from kcomp's (max abs diff {diff:.3g})"
    return call


def _torch_dtype(dtype: DType) -> Any:
    import torch

    names = {DType.BF16: "bfloat16", DType.F16: "float16", DType.F64: "float64", DType.I32: "int32"}
    return getattr(torch, names.get(dtype, "float32"))


def compulsory_bytes(program: Program) -> int:
    """Inputs read once and outputs written once."""
    return sum(
        b.size * (2 if b.dtype is DType.BF16 else b.dtype.numpy.itemsize)
        for b in (*program.inputs, *program.outputs)
    )


def _derive(row: dict[str, Any], m: dict[str, Any]) -> None:
    """kcomp's speed against torch and each system's share of the row's roof, into `extra`."""
    extra, times = row["extra"], row["times_s"]
    if "kcomp" in times and "torch" in times:
        extra["speed_vs_torch"] = times["torch"] / times["kcomp"]
    pct = {}
    for system, t in times.items():
        if extra["roof"] == FP32_PEAK and m.get("fp32_peak_gflops") and row["flops"]:
            pct[system] = 100 * row["flops"] / t / 1e9 / m["fp32_peak_gflops"]
        elif extra["roof"] == COPY_BANDWIDTH and m.get("copy_gbps"):
            pct[system] = 100 * extra["compulsory_bytes"] / t / 1e9 / m["copy_gbps"]
    extra["pct_of_roof"] = pct


def rate(row: dict[str, Any], system: str) -> str:
    """TFLOP/s for a compute row (and a row with no roof), GB/s of compulsory traffic for a memory one."""
    t = row["times_s"].get(system)
    if not t:
        return "-"
    if row["extra"].get("roof") == COPY_BANDWIDTH:
        return f"{row['extra']['compulsory_bytes'] / t / 1e9:.0f} GB/s"
    return f"{row['flops'] / t / 1e12:.2f} TFLOP/s" if row["flops"] else "-"


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    con = console or Console()
    m = result["machine"]
    if m.get("gpu") is None:
        why = m.get("gpu_error", "no GPU")
        con.print(f"kcomp bench cuda: no GPU here ({why}); nothing measured", highlight=False, soft_wrap=True)
        return
    if console is None and not con.is_terminal:
        con.width = max(con.width, 150)
    t = Table(
        title="kcomp bench cuda: median time by CUDA events (vs torch: torch time / kcomp time)",
        caption=escape(gpu.gpu_line(m)),
        caption_justify="left",
    )
    for col in (
        "case",
        "kcomp",
        "torch",
        "vs torch",
        "kcomp rate",
        "torch rate",
        "% of roof (kcomp / torch)",
    ):
        t.add_column(col, justify="left" if col == "case" else "right")
    for row in result["rows"]:
        times, x = row["times_s"], row["extra"]
        cells = [f"{times[s] * 1e3:.3f} ms" if s in times else "-" for s in ("kcomp", "torch")]
        if "not_supported" in x:
            cells[0] = "not supported"
        speed = x.get("speed_vs_torch")
        pct = x.get("pct_of_roof", {})
        shares = " / ".join(f"{pct[s]:.1f}%" if s in pct else "-" for s in ("kcomp", "torch"))
        roof = {FP32_PEAK: "fp32 peak", COPY_BANDWIDTH: "copy bw"}.get(x.get("roof"), "")
        t.add_row(
            row["case"],
            *cells,
            f"{speed:.2f}x" if speed else "-",
            rate(row, "kcomp"),
            rate(row, "torch"),
            f"{shares} of {roof}" if roof else "-",
        )
    con.print(t)
    for row in result["rows"]:
        if "not_supported" in row["extra"]:
            con.print(
                f"not supported {row['case']}: {escape(row['extra']['not_supported'])}", highlight=False
            )
    for line in failures(result):
        con.print(f"[red]failed[/] {escape(line)}", highlight=False)


__all__ = [
    "CASES",
    "QUICK_CASES",
    "compile_case",
    "no_gpu_reason",
    "parse_case",
    "print_report",
    "run_suite",
]
