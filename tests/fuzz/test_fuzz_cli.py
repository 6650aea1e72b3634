"""`kcomp fuzz` from the command line: the CI smoke run (a fixed seed, no mismatch, no crash), the JSON
shape, exit codes and the --mutants hand-off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcomp.cli import fuzz as fuzz_cli
from kcomp.cli import main

KEYS = ("ok", "mismatch", "crash", "compile_error", "timeout", "programs", "seed")


def fuzz(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["fuzz", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_smoke_run(capsys, tmp_path: Path):
    code, report = fuzz(capsys, "--programs", "20", "--seed", "0", "--out", str(tmp_path))
    assert all(k in report for k in KEYS)
    assert (report["programs"], report["seed"]) == (20, 0)
    assert report["mismatch"] == 0 and report["crash"] == 0, report["failures"]
    assert report["compile_error"] == 0 and report["timeout"] == 0, report["failures"]
    assert report["ok"] > 20 and code == 0


def test_mutants_merged(capsys, monkeypatch, tmp_path: Path):
    monkeypatch.setattr(fuzz_cli, "campaign", lambda n, seed, timeout_s: {"diagnosed": n, "traceback": 0})
    code, report = fuzz(capsys, "--programs", "0", "--mutants", "3", "--out", str(tmp_path))
    assert report["mutants"] == {"diagnosed": 3, "traceback": 0} and code == 0
    monkeypatch.setattr(fuzz_cli, "campaign", lambda n, seed, timeout_s: {"diagnosed": 2, "traceback": 1})
    code, report = fuzz(capsys, "--programs", "0", "--mutants", "3", "--out", str(tmp_path))
    assert code == 1


@pytest.mark.parametrize(
    "argv, message",
    [(["--programs", "-1"], "0 or more"), (["--targets", "nope"], "nope"), (["--timeout", "0"], "positive")],
)
def test_bad_flags(capsys, argv: list[str], message: str):
    assert main(["fuzz", *argv]) == 2
    assert message in capsys.readouterr().err
