"""kcomp bench cuda without a GPU: every case's kernel compiles for the CUDA target at small shapes and
matches the numpy reference in the emulation (and the case's torch function computes the same on the
CPU); bf16 is a case the target does not lower, reported with the compiler's reason; with no GPU the
suite measures nothing, says so in one line, exits 0, and --json keeps the suites' one shape."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from kcomp.bench import cuda, gpu
from kcomp.cli import main
from kcomp.dtypes import DType
from kcomp.targets import get_target
from kcomp.targets.cuda import runtime as cuda_runtime

needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("g++") is None, reason="needs nvcc and g++"
)
LOWERED = [name for name in cuda.CASES if name != "gemm_bf16"]


@needs_nvcc
@pytest.mark.parametrize("name", LOWERED)
def test_case_kernel_matches_the_reference_in_the_emulation_and_torch(name):
    case = cuda.CASES[name]
    assert all(v <= 128 for v in case.small.values())
    k, why = cuda.compile_case(case, "cuda", case.small)
    assert k is not None, why
    assert k.check(seed=0).ok
    torch = pytest.importorskip("torch")
    inputs, params = k.random_inputs(seed=1)
    ours = np.asarray(k(**inputs, **params))
    theirs = cuda.torch_function(name)(**{n: torch.from_numpy(v) for n, v in inputs.items()}, **params)
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-3, atol=1e-3)


@needs_nvcc
def test_bf16_gemm_is_reported_not_supported_with_the_compilers_reason():
    if DType.BF16 in get_target("cuda").capabilities.dtypes:
        pytest.skip("the CUDA target lowers bf16 now: the case is an ordinary one")
    case = cuda.CASES["gemm_bf16"]
    k, why = cuda.compile_case(case, "cuda", case.small)
    assert k is None and "bf16" in why
    assert cuda.program_of(case).flops == 2 * 4096**3


def test_cases_are_the_issues(capsys):
    assert set(cuda.CASES) == {"gemm_fp32", "gemm_bf16", "softmax", "layernorm", "gemm_bias_gelu"}
    assert cuda.CASES["gemm_fp32"].shapes == {"M": 4096, "N": 4096, "K": 4096}
    assert cuda.CASES["softmax"].shapes == cuda.CASES["layernorm"].shapes == {"N": 8192, "D": 8192}
    assert main(["bench", "cuda", "--cases", "nope"]) == 2
    assert "no cuda case named 'nope'" in capsys.readouterr().err


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(cuda_runtime, "gpu_available", lambda: False)


def test_without_a_gpu_one_line_and_exit_0(no_gpu, capsys):
    assert main(["bench", "cuda"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("kcomp bench cuda: no GPU here (")
    assert "nothing measured" in out


def test_without_a_gpu_json_is_the_suites_shape_with_no_rows(no_gpu, capsys):
    assert main(["bench", "cuda", "--json", "--quick"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"suite", "machine", "rows"}
    assert result["suite"] == "cuda" and result["rows"] == []
    m = result["machine"]
    assert m["gpu"] is None and m["gpu_error"] and {"cpu", "cores"} <= set(m)


def test_peak_by_name_and_lanes_per_sm():
    assert gpu.spec_fp32_tflops("NVIDIA H100 80GB HBM3") == (67.0, "H100 SXM")
    assert gpu.spec_fp32_tflops("NVIDIA H100 PCIe") == (51.2, "H100 PCIe")
    assert gpu.spec_fp32_tflops("NVIDIA H200") == (67.0, "H200 SXM")
    assert gpu.spec_fp32_tflops("NVIDIA A100-SXM4-80GB") == (19.5, "A100")
    assert gpu.spec_fp32_tflops("Tesla T4") is None
    assert gpu.fp32_lanes_per_sm(8, 0) == 64 and gpu.fp32_lanes_per_sm(9, 0) == 128


def test_a_gpu_result_renders_with_ratio_and_share_of_roof():
    """The table of a result shaped as a GPU run gives (figures made up for the printer, not measured)."""
    machine = {"gpu": "Test GPU", "gpu_capability": "9.0", "gpu_sms": 132, "fp32_peak_gflops": 60000.0}
    machine |= {"fp32_peak_source": "datasheet: test", "copy_gbps": 3000.0, "torch": {"version": "x"}}
    rows = [
        {
            "case": "gemm_fp32",
            "params": {},
            "flops": 2 * 4096**3,
            "times_s": {"kcomp": 0.02, "torch": 0.005},
            "extra": {"roof": cuda.FP32_PEAK, "compulsory_bytes": 3 * 4 * 4096**2},
        },
        {
            "case": "gemm_bf16",
            "params": {},
            "flops": 2 * 4096**3,
            "times_s": {"torch": 0.0004},
            "extra": {"roof": None, "compulsory_bytes": 1, "not_supported": "uses bf16"},
        },
    ]
    for row in rows:
        cuda._derive(row, machine)
    assert rows[0]["extra"]["speed_vs_torch"] == pytest.approx(0.25)
    assert rows[0]["extra"]["pct_of_roof"]["kcomp"] == pytest.approx(100 * 2 * 4096**3 / 0.02 / 60e12)
    assert rows[1]["extra"]["pct_of_roof"] == {}
    buf = io.StringIO()
    cuda.print_report({"suite": "cuda", "machine": machine, "rows": rows}, Console(file=buf, width=220))
    text = buf.getvalue()
    assert "0.25x" in text and "of fp32 peak" in text and "not supported gemm_bf16: uses bf16" in text
    assert "datasheet: test" in text and "TFLOP/s" in text


def _cpu_timing(calls, budget_s):
    """gpu.time_interleaved's shape, by wall clock on the CPU (CUDA events need a GPU)."""
    from kcomp.targets.base import interleave

    times, errors = interleave(calls, budget_s=budget_s, warmup_s=0.0)
    return {
        n: {"median_s": m.time_s, "min_s": m.counters["min_s"], "calls": m.counters["repeats"]}
        for n, m in times.items()
    }, errors


@needs_nvcc
def test_rows_plumbing_on_the_emulation_and_torch_cpu(monkeypatch):
    """A row's path (compile, check, kcomp's and torch's calls on the same inputs, their comparison,
    the times, the derived figures) with the GPU parts swapped for the emulation and torch on the CPU:
    plumbing, not a measurement."""
    pytest.importorskip("torch")
    monkeypatch.setattr(cuda, "DEVICE", "cpu")
    monkeypatch.setattr(gpu, "time_interleaved", _cpu_timing)
    target = get_target("cuda")
    machine = {"fp32_peak_gflops": 1000.0, "copy_gbps": 100.0}
    rows = {}
    for name, case in cuda.CASES.items():
        tiny = {d: min(v, 32) for d, v in case.small.items()}  # each call is emulated: keep it short
        rows[name] = row = cuda._row(case, target, 0.005, tiny)
        cuda._derive(row, machine)
        assert set(row) == {"case", "params", "flops", "times_s", "extra"}
        assert not [k for k in row["extra"] if k.endswith("_error")], row["extra"]
    for name in LOWERED:
        x = rows[name]["extra"]
        assert set(rows[name]["times_s"]) == {"kcomp", "torch"} and x["speed_vs_torch"] > 0
        assert set(x["pct_of_roof"]) == {"kcomp", "torch"} and x["kcomp_max_rel_err"] < 1e-3
    bf16 = rows["gemm_bf16"]
    assert set(bf16["times_s"]) == {"torch"} and "bf16" in bf16["extra"]["not_supported"]
    assert bf16["extra"]["pct_of_roof"] == {}


def test_a_not_supported_row_is_no_failure_of_the_command(monkeypatch, capsys):
    import dataclasses

    from kcomp.cli import bench as cli

    def result(extra):
        row = {"case": "c", "params": {}, "flops": 1, "times_s": {"torch": 1.0}, "extra": extra}
        return lambda *a, **k: {"suite": "cuda", "machine": {"gpu": None}, "rows": [row]}

    for extra, code in (({"not_supported": "uses bf16"}, 0), ({"kcomp_error": "BuildError: x"}, 1)):
        suite = dataclasses.replace(cli.SUITES["cuda"], run=result(extra))
        monkeypatch.setitem(cli.SUITES, "cuda", suite)
        assert main(["bench", "cuda", "--json"]) == code
    capsys.readouterr()
