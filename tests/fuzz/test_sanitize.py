"""The CPU target under AddressSanitizer + UBSan (targets/cpu/sanitize.py): every example runs clean at
small shapes with its own schedule and with the naive loops, and matches the reference; a kernel that
reads out of bounds, and one with undefined behaviour, are caught (so these tests can fail)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import kcomp
from kcomp.cli import main
from kcomp.fuzz.mutate import examples_dir, small_example
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cpu import sanitize
from kcomp.targets.cpu.sanitize import SanitizerError, build_sanitized, run_executable

EXAMPLES = sorted(p.stem for p in examples_dir().glob("*.kc"))


@pytest.mark.parametrize("schedule", [None, "none"], ids=["chosen", "naive"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_clean(name: str, schedule: str | None) -> None:
    k = kcomp.compile(small_example((examples_dir() / f"{name}.kc").read_text()), schedule=schedule)
    r = k.check(seed=1, sanitize=True)
    assert r.ok, {n: (c.max_abs_err, c.max_rel_err) for n, c in r.outputs.items()}


def _hand_written(body: str, signature: str) -> str:
    return "\n".join(
        [
            f"/* kcomp-signature: {signature} */",
            "#include <omp.h>",
            "#include <stdint.h>",
            "void kc_set_threads(int n) { omp_set_num_threads(n); }",
            body,
        ]
    )


SIG = json.dumps(
    {
        "entry": "kc_shift",
        "abi": 1,
        "args": [
            {"name": "X", "role": "input", "dtype": "f32", "shape": [8]},
            {"name": "Y", "role": "output", "dtype": "f32", "shape": [8]},
            {"name": "s", "role": "param", "dtype": "i32", "shape": None},
        ],
    }
)


def test_hand_written_kernel_round_trips() -> None:
    source = _hand_written(
        "void kc_shift(const float *restrict X, float *restrict Y, int32_t s) {\n"
        "    for (int i = 0; i < 8; ++i) Y[i] = X[(i + s) % 8] * 2.0f;\n}",
        SIG,
    )
    x = np.arange(1, 9, dtype=np.float32)
    (y,) = run_executable(build_sanitized(source), Signature.parse(source), [x, None, 3])
    np.testing.assert_array_equal(y, np.roll(x, -3) * 2)


def test_out_of_bounds_read_is_caught() -> None:
    source = _hand_written(
        "void kc_shift(const float *restrict X, float *restrict Y, int32_t s) {\n"
        "    for (int i = 0; i < 8; ++i) Y[i] = X[i + s];\n}",  # s = 1 reads X[8]
        SIG,
    )
    x = np.arange(1, 9, dtype=np.float32)
    with pytest.raises(SanitizerError, match="heap-buffer-overflow"):
        run_executable(build_sanitized(source), Signature.parse(source), [x, None, 1])


def test_undefined_behaviour_is_caught() -> None:
    source = _hand_written(
        "void kc_shift(const float *restrict X, float *restrict Y, int32_t s) {\n"
        "    for (int i = 0; i < 8; ++i) Y[i] = X[i] * (float)(1 << (s + i));\n}",  # s = 30: 1 << 31+
        SIG,
    )
    x = np.arange(1, 9, dtype=np.float32)
    with pytest.raises(SanitizerError, match="runtime error: shift exponent"):
        run_executable(build_sanitized(source), Signature.parse(source), [x, None, 30])


def test_cli_sanitize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kc = tmp_path / "k.kc"
    kc.write_text("kernel scale(X: f32[N], a: f32 = 2.0) -> (Y: f32[N]) { Y[i] = a * X[i] }\n")
    assert main(["run", str(kc), "--shape", "N=37", "--sanitize", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["max_abs_err"] == 0


def test_cli_sanitizer_report_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report is exit code 1 with the report shown (here a driver made to write before a buffer)."""
    driver = sanitize.emit_driver

    def broken(sig: Signature, threads: int) -> str:
        return driver(sig, threads).replace(
            "    kc_set_threads(", "    ((volatile char *)kcsan_0)[-1] = 0;\n    kc_set_threads("
        )

    monkeypatch.setattr(sanitize, "emit_driver", broken)
    kc = tmp_path / "k.kc"
    kc.write_text("kernel twice(X: f32[N]) -> (Y: f32[N]) { Y[i] = 2.0 * X[i] }\n")
    assert main(["run", str(kc), "--shape", "N=5", "--sanitize"]) == 1
    err = capsys.readouterr().err
    assert "AddressSanitizer" in err and "heap-buffer-overflow" in err


def test_sanitize_is_cpu_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kc = tmp_path / "k.kc"
    kc.write_text(
        "kernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }\n"
    )
    argv = ["run", str(kc), "--shape", "M=8", "--shape", "N=8", "--shape", "K=8", "--target", "accel"]
    assert main([*argv, "--sanitize"]) == 2
    assert "target accel has no sanitizer build" in capsys.readouterr().err
