"""The TVM MetaSchedule peer (kcomp/bench/metaschedule.py): a tiny tuning run in its child process, the
request checks, and a child that cannot start turning into an error rather than an exception."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kcomp.bench import metaschedule


@pytest.fixture(scope="module")
def tvm_reason() -> str | None:
    return metaschedule.available()


def test_tiny_matmul_tunes(tvm_reason: str | None, tmp_path: Path) -> None:
    if tvm_reason is not None:
        pytest.skip(tvm_reason)
    result = metaschedule.tune("matmul", {"M": 64, "N": 64, "K": 64}, trials=4, workdir=tmp_path)
    assert result["error"] is None, result["error"]
    best, history = result["best_time_s"], result["history"]
    assert best is not None and math.isfinite(best) and best > 0
    assert 1 <= len(history) == result["trials"] <= 4
    assert history[-1] == best
    known = [t for t in history if t is not None]
    assert known == sorted(known, reverse=True)  # best so far never gets worse
    assert history[: len(history) - len(known)] == [None] * (len(history) - len(known))
    assert result["wall_s"] > 0
    assert result["max_rel_err"] is not None and result["max_rel_err"] < 1e-4
    assert (tmp_path / metaschedule.LOG_NAME).exists()


@pytest.mark.parametrize(
    ("workload", "shapes", "match"),
    [
        ("transpose", {}, "unknown MetaSchedule workload 'transpose'"),
        ("matmul", {"Q": 3}, r"matmul has no dims \['Q'\]"),
        ("softmax", {"N": 0}, "dims must be positive"),
    ],
)
def test_bad_requests_raise(workload: str, shapes: dict[str, int], match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        metaschedule.tune(workload, shapes, trials=4, workdir=tmp_path)


def test_broken_child_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(metaschedule, "PYTHON", str(tmp_path / "no-such-python"))
    assert "could not start" in metaschedule.available()
    result = metaschedule.tune("matmul", {"M": 64, "N": 64, "K": 64}, trials=4, workdir=tmp_path)
    assert result["best_time_s"] is None and result["history"] == [] and result["trials"] == 0
    assert "could not start" in result["error"]


def test_crashing_child_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\necho 'Segmentation fault in the peer' >&2\nexit 139\n")
    failing.chmod(0o755)
    monkeypatch.setattr(metaschedule, "PYTHON", str(failing))
    assert metaschedule.available() is not None
    result = metaschedule.tune("softmax", {"N": 8, "D": 16}, trials=2, workdir=tmp_path)
    assert result["best_time_s"] is None
    assert "exited with 139" in result["error"] and "Segmentation fault in the peer" in result["error"]
