"""A third target registered from the tests folder alone (interp_target.py, through KCOMP_TARGETS)
goes through every user-facing road: compile (stages, artifacts), run --check, tune --trials 4
(spawned build and timing workers, which inherit the registration) and the bench JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcomp.cli import main
from kcomp.config import config
from kcomp.targets import families, get_target, target_class

SOURCE = """
kernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""
SHAPES = ["--shape", "M=6", "--shape", "N=5", "--shape", "K=4"]


@pytest.fixture
def interp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("KCOMP_TARGETS", "interp=interp_target:InterpTarget")
    config.cache_clear()
    target_class.cache_clear()
    kc = tmp_path / "mm.kc"
    kc.write_text(SOURCE)
    yield kc
    config.cache_clear()
    target_class.cache_clear()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_the_registry_finds_it(interp: Path) -> None:
    assert families()["interp"] == "interp_target:InterpTarget"
    target = get_target("INTERP")
    assert type(target).__name__ == "InterpTarget" and target.name == "interp"


def test_compile_prints_stages_and_writes_its_artifact(interp: Path, capsys, tmp_path: Path) -> None:
    assert main(["compile", str(interp), "--target", "interp", *SHAPES, "--emit", "source"]) == 0
    loops = capsys.readouterr().out
    assert main(["compile", str(interp), "--target", "interp", *SHAPES, "--emit", "loops"]) == 0
    assert capsys.readouterr().out == loops and "for i" in loops
    out = tmp_path / "out"
    assert main(["compile", str(interp), "--target", "interp", *SHAPES, "-o", str(out)]) == 0
    assert (out / "mm.loops.txt").read_text().rstrip("\n") == loops.rstrip("\n")
    assert "target    interp" in (out / "report.txt").read_text()


def test_run_checks_against_the_reference(interp: Path, capsys) -> None:
    code, report = run_json(capsys, "run", str(interp), "--target", "interp", *SHAPES, "--check", "--json")
    assert code == 0 and report["ok"] and report["target"] == "interp"
    assert report["schedule_source"].startswith("default (rule-based scheduler)")
    assert report["max_rel_err"] < 1e-5


def test_tune_measures_four_candidates_in_workers(interp: Path, capsys, tmp_path: Path) -> None:
    argv = ["tune", str(interp), "--target", "interp", *SHAPES, "--trials", "4", "--workers", "1"]
    code, summary = run_json(capsys, *argv, "--db", str(tmp_path / "t.db"), "--json", "--no-confirm")
    assert code == 0, summary
    assert summary["target"] == "interp" and summary["trials"] == 4 and summary["failures"] == 0
    assert summary["best_time_s"] > 0 and summary["measured"] == 5  # the default, then four candidates


def test_the_bench_json_has_its_rows(interp: Path, capsys) -> None:
    argv = ["bench", "examples", "--cases", "matmul", "--target", "interp", *SHAPES, "--json"]
    code, result = run_json(capsys, *argv, "--repeat-budget", "0.01")
    assert code == 0 and result["suite"] == "examples"
    (row,) = result["rows"]
    assert row["extra"]["target"] == "interp" and row["params"] == {"M": 6, "N": 5, "K": 4}
    assert set(row["times_s"]) == {"kcomp", "naive"} and row["extra"]["speedup"] > 0
