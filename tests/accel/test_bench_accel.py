"""`kcomp bench accel` (kcomp/bench/accel.py): the shared JSON shape, the cycle figures every row
carries (cycles, naive_cycles, ideal_cycles, utilization), the conv2d rows, case
parsing and the command line.  Tiny cases keep it fast; cycles are deterministic, so the figures
are checked for consistency, not for speed."""

from __future__ import annotations

import json

import pytest

from kcomp.bench import accel
from kcomp.cli import bench as cli
from kcomp.cli import main
from kcomp.errors import UsageError

CASES = ("gemm_64x48x40", "conv2d_small", "conv2d_example_small")


@pytest.fixture(scope="module")
def suite() -> dict:
    return accel.run_suite(CASES, target="accel:small")


def test_rows_have_the_shared_shape_and_the_cycle_figures(suite):
    assert suite["suite"] == "accel" and suite["machine"]["accelerator"]["name"] == "small"
    assert [row["case"] for row in suite["rows"]] == list(CASES)
    for row in suite["rows"]:
        assert set(row) == {"case", "params", "flops", "times_s", "extra"}
        e = row["extra"]
        assert {"cycles", "naive_cycles", "ideal_cycles", "utilization"} <= set(e), row
        assert 0 < e["utilization"] <= 1
        assert e["naive_cycles"] > e["cycles"] >= e["ideal_cycles"] > 0
        assert row["times_s"] == {"kcomp": e["cycles"] / 1e9, "naive": e["naive_cycles"] / 1e9}
        assert e["ok"] and e["naive_ok"] and e["sim_instr_per_s"] > 0
    gemm = suite["rows"][0]
    assert gemm["params"] == {"M": 64, "N": 48, "K": 40} and gemm["flops"] == 2 * 64 * 48 * 40
    assert gemm["extra"]["ideal_cycles"] == 64 * 48 * 40 // 64  # compute-bound on dim 8
    assert gemm["extra"]["schedule_source"] == "default (accelerator mapping rules)"


def test_the_conv2d_rows_are_the_nhwc_form_and_the_example_itself(suite):
    note = suite["rows"][1]["extra"]["note"]
    assert "NHWC" in note and "conv2d_example" in note
    example = suite["rows"][2]["extra"]
    assert example["ok"] and "note" not in example and example["schedule_source"].startswith("default")


def test_an_unmappable_case_is_a_row_with_a_reason(monkeypatch):
    monkeypatch.setattr(
        accel,
        "_kernel",
        lambda case, target: (
            "kernel t(A: f32[4, 4]) -> (B: f32[4, 4]) { B[i, j] = pow(A[i, j], A[j, i]) }",
            {},
            "",
        ),
    )
    (row,) = accel.run_suite(["gemm_4x4x4"])["rows"]
    assert row["times_s"] == {} and "cannot map" in row["extra"]["kcomp_error"]
    assert "cannot map" in row["extra"]["naive_error"]


def test_parse_case():
    assert accel.parse_case("512x256x128") == "gemm_512x256x128"
    assert accel.parse_case("gemm_8x8x8") == "gemm_8x8x8"
    assert accel.parse_case("conv2d") == "conv2d"
    assert accel.parse_case("softmax") == "softmax"
    with pytest.raises(UsageError, match="expected gemm_MxNxK, conv2d"):
        accel.parse_case("argmax")


def test_the_command_line(capsys):
    assert "accel" in cli.SUITES
    assert main(["bench", "accel", "--cases", "gemm_32x32x32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (row,) = result["rows"]
    assert row["case"] == "gemm_32x32x32" and row["extra"]["cycles"] < row["extra"]["naive_cycles"]
    assert main(["bench", "accel", "--cases", "gemm_32x32x32"]) == 0
    assert "best mapping vs naive vs ideal" in capsys.readouterr().out
