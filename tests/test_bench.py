"""`kcomp bench`: the one JSON shape every suite shares, the clean numpy subprocess, the roofs, the
failure paths (a system that cannot run is absent with a reason) and the command line.

Tiny shapes and budgets keep this fast.  No assertion is about speed: timings on a shared machine
are not test material (benchmarks live behind `kcomp bench`).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys

import pytest
from rich.console import Console

import kcomp.api
from kcomp.api import CheckResult
from kcomp.bench import gemm, machine, peers, report
from kcomp.cli import bench as cli
from kcomp.errors import UsageError

SHAPES = [(64, 48, 32), (1, 40, 24)]
TINY_ROOFS = {"fma_call_s": 0.002, "copy_bytes": 1 << 20, "budget_s": 0.01}
FAST = {"budget_s": 0.002, "fma_call_s": 0.002, "copy_bytes": 1 << 20, "roof_budget_s": 0.01}
SYSTEMS = {"kcomp", "numpy", "torch"}
ROW_KEYS = {"case", "params", "flops", "times_s", "extra"}
MACHINE_KEYS = {
    "cpu",
    "cores",
    "isa",
    "blas_kernel",
    "fma_peak_gflops",
    "copy_gbps",
    "threads",
    "load_avg_1m",
    "other_cpu_cores",
}


def finite_positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def suite() -> dict:
    """One run of the suite with OpenBLAS pinned in the parent, as a user's shell might have it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENBLAS_CORETYPE", "Sandybridge")
        mp.setenv("OPENBLAS_L2_SIZE", "262144")
        return gemm.run_suite(SHAPES, **FAST)


def parse_bench(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kcomp")
    cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_suite_has_the_shared_shape(suite):
    assert set(suite) == {"suite", "machine", "rows"}
    assert suite["suite"] == "gemm"
    assert [r["case"] for r in suite["rows"]] == ["gemm_64x48x32", "gemm_1x40x24"]
    for row, (m, n, k) in zip(suite["rows"], SHAPES, strict=True):
        assert set(row) == ROW_KEYS
        assert row["params"] == {"M": m, "N": n, "K": k}
        assert row["flops"] == 2 * m * n * k
        assert row["extra"]["min_bytes"] == 4 * (m * k + k * n + m * n)
        assert set(row["times_s"]) <= SYSTEMS
        for system in SYSTEMS:  # timed, or absent with the reason
            assert (system in row["times_s"]) != (f"{system}_error" in row["extra"])
        assert all(finite_positive(t) for t in row["times_s"].values())


def test_kcomp_is_checked_then_timed(suite):
    for row in suite["rows"]:
        assert "kcomp" in row["times_s"], row["extra"].get("kcomp_error")
        assert row["extra"]["schedule_source"]
        assert 0 <= row["extra"]["kcomp_max_rel_err"] < 1e-3


def test_machine_carries_host_and_roofs(suite):
    m = suite["machine"]
    assert set(m) >= MACHINE_KEYS
    assert m["isa"] in {"avx512", "avx2", "scalar"}
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert finite_positive(m["fma_peak_gflops"]) and finite_positive(m["copy_gbps"])
    assert m["blas_kernel"] and "unknown" not in m["blas_kernel"]
    assert m["threads"]["kcomp"] >= 1


def test_numpy_peer_runs_without_the_openblas_pins(suite):
    assert suite["machine"]["numpy_env_set"] == {"OPENBLAS_CORETYPE": False, "OPENBLAS_L2_SIZE": False}


def test_numpy_child_env_lacks_pins_and_parent_keeps_them(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")
    result = peers.run_numpy([(8, 8, 8)], budget_s=0.001)
    assert result["env_set"] == {"OPENBLAS_CORETYPE": False, "OPENBLAS_L2_SIZE": False}
    assert finite_positive(result["times_s"][0])
    assert os.environ["OPENBLAS_CORETYPE"] == "Sandybridge"  # only the child's environment is cleaned
    assert peers.peer_env({"PATH": "/bin", "OPENBLAS_L2_SIZE": "1"}) == {"PATH": "/bin"}


def test_numpy_peer_failure_is_recorded(monkeypatch):
    monkeypatch.setattr(peers.sys, "executable", "/nonexistent/python")
    result = gemm.run_suite(SHAPES[:1], systems=("numpy",), **FAST)
    row = result["rows"][0]
    assert "numpy" not in row["times_s"]
    assert "numpy peer did not finish" in row["extra"]["numpy_error"]


def test_missing_torch_is_absent_with_reason(monkeypatch):
    monkeypatch.setattr(peers, "torch_available", lambda: "torch is not installed (test)")
    row = gemm.run_suite(SHAPES[:1], systems=("torch",), **FAST)["rows"][0]
    assert row["times_s"] == {}
    assert row["extra"]["torch_error"] == "torch is not installed (test)"


def test_wrong_kcomp_result_is_never_timed(monkeypatch):
    wrong = CheckResult(ok=False, max_abs_err=1.0, max_rel_err=0.5, outputs={})
    monkeypatch.setattr(kcomp.api.CompiledKernel, "check", lambda self, **kw: wrong)
    row = gemm.run_suite(SHAPES[:1], systems=("kcomp",), **FAST)["rows"][0]
    assert "kcomp" not in row["times_s"]
    assert row["extra"]["kcomp_error"] == "wrong result (max rel err 0.5): not timed"


def test_unknown_system_is_rejected():
    with pytest.raises(UsageError, match="unknown systems cuda; known: kcomp, numpy, torch"):
        gemm.run_suite(SHAPES, systems=("cuda",))


def test_roofs_are_finite():
    roofs = machine.measure_roofs(**TINY_ROOFS)
    assert set(roofs) == {"fma_peak_gflops", "copy_gbps"}
    assert all(finite_positive(v) for v in roofs.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("64x48", "gemm case '64x48': expected MxNxK"),
        ("axbxc", "gemm case 'axbxc': expected MxNxK"),
        ("0x4x4", "gemm case '0x4x4': every dimension must be positive"),
    ],
)
def test_bad_case_is_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        gemm.parse_case(text)


def test_case_names_round_trip():
    assert gemm.parse_case("gemm_1x4096x4096") == (1, 4096, 4096)
    assert [gemm.case_name(s) for s in gemm.CASES] == [
        "gemm_1024x1024x1024",
        "gemm_1000x1000x1000",
        "gemm_512x3072x768",
        "gemm_4096x4096x64",
        "gemm_1x4096x4096",
    ]


def test_json_flag_prints_exactly_one_object(capsys, monkeypatch):
    measure = machine.measure_roofs
    monkeypatch.setattr(machine, "measure_roofs", lambda **_: measure(**TINY_ROOFS))  # speed only
    code = cli.run(parse_bench("gemm", "--json", "--cases", "16x8x4,1x8x4", "--repeat-budget", "0.002"))
    out = capsys.readouterr().out
    obj, end = json.JSONDecoder().raw_decode(out)
    assert out[end:].strip() == ""
    assert isinstance(obj, dict) and [r["case"] for r in obj["rows"]] == ["gemm_16x8x4", "gemm_1x8x4"]
    assert code == 0


def test_cli_options():
    args = parse_bench("gemm", "--quick")
    assert cli.select_cases(cli.SUITES["gemm"], args) == gemm.QUICK_CASES
    assert cli.select_cases(cli.SUITES["gemm"], parse_bench("gemm")) == gemm.CASES
    with pytest.raises(SystemExit):
        parse_bench("gemm", "--quick", "--cases", "8x8x8")
    with pytest.raises(SystemExit):
        parse_bench("nosuch")
    with pytest.raises(UsageError, match=r"--repeat-budget 0\.0: expected a positive number of seconds"):
        cli.run(parse_bench("gemm", "--repeat-budget", "0"))
    with pytest.raises(UsageError, match="--cases: give at least one case"):
        cli.run(parse_bench("gemm", "--cases", ","))


def test_table_shows_rates_ratio_and_machine(suite):
    buf = io.StringIO()
    report.print_report(suite, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "GFLOP/s (% of FMA peak)" in text and "kcomp/numpy" in text
    assert "gemm_64x48x32" in text and suite["rows"][0]["extra"]["schedule_source"] in text
    assert f"numpy BLAS {suite['machine']['blas_kernel']}" in text


def test_roofline_is_the_lower_roof():
    m = {"fma_peak_gflops": 100.0, "copy_gbps": 10.0}
    matvec = {"flops": 2 * 4096 * 4096, "extra": {"min_bytes": 4 * (4096 + 4096 * 4096 + 4096)}}
    square = {"flops": 2 * 1024**3, "extra": {"min_bytes": 4 * 3 * 1024**2}}
    attainable, roof = report.roofline(matvec, m)
    assert roof == "memory" and attainable == pytest.approx(
        2 * 4096 * 4096 / matvec["extra"]["min_bytes"] * 10
    )
    assert report.roofline(square, m) == (100.0, "compute")
    assert report.roofline(square, {"fma_peak_gflops": 100.0}) is None


def test_load_warning_only_when_cores_were_shared():
    quiet = {"cores": 2, "other_cpu_cores": 0.01, "load_avg_1m": {"start": 0.2, "end": 1.9}}
    busy = {"cores": 2, "other_cpu_cores": 0.8, "load_avg_1m": {"start": 0.2, "end": 1.9}}
    old_busy = {"cores": 2, "load_avg_1m": {"start": 1.5, "end": 5.25}}
    old_quiet = {"cores": 2, "load_avg_1m": {"start": 0.2, "end": 5.25}}  # the end counts our threads
    assert report.load_warning(quiet) is None and report.load_warning({"cores": 2}) is None
    assert report.load_warning(old_quiet) is None
    assert report.load_warning(busy) == (
        "other processes kept 0.80 of 2 cores busy on average during the run,"
        " so these figures (roofs included) are unreliable"
    )
    assert "load average was 1.5 on 2 cores" in report.load_warning(old_busy)


def test_other_cpu_is_machine_busy_time_minus_ours(monkeypatch):
    snaps = iter([(10.0, 100.0, 5.0), (12.0, 104.0, 7.0)])  # (wall, machine busy, ours) in seconds
    monkeypatch.setattr(machine, "_cpu_snapshot", lambda: next(snaps))
    assert machine.OtherCpu().stop() == 1.0  # 4 s busy - 2 s ours over 2 s of wall time
    snaps = iter([(10.0, 100.0, 5.0), None])
    assert machine.OtherCpu().stop() is None  # no /proc/stat


def test_a_child_we_waited_for_counts_as_ours():
    """Its CPU time (a fixed 0.4 s of it, whatever else the machine runs) is in our share."""
    spin = [sys.executable, "-c", "import time\nwhile time.process_time() < 0.4: pass"]
    before = machine._cpu_snapshot()
    if before is None:
        pytest.skip("no /proc/stat here")
    subprocess.run(spin, check=True)
    after = machine._cpu_snapshot()
    assert after[2] - before[2] >= 0.4
    assert after[1] - before[1] >= 0.3  # the machine saw it busy too (tick granularity)


def test_json_is_strict():
    text = report.to_json({"suite": "x", "machine": {"v": float("nan")}, "rows": [{"t": float("inf")}]})
    assert json.loads(text) == {"suite": "x", "machine": {"v": "nan"}, "rows": [{"t": "inf"}]}
