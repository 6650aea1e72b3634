"""The invalid-input fuzzer (kcomp/fuzz/mutate.py): its mutators, its classifier and a bounded smoke
campaign through the real command line (0 tracebacks, 0 hangs, every invalid mutant diagnosed)."""

from __future__ import annotations

import random

import pytest

from kcomp.fuzz.mutate import (
    CLASSES,
    KINDS,
    MUTATORS,
    campaign,
    classify,
    mutate,
    mutate_bytes,
    replace_number,
    run_case,
    small_example,
    tokenize,
)

TEXT = "dim N = 16\nkernel s(X: f32[N]) -> (Y: f32[N]) {\n    Y[i] = 2.0 * X[i]   # twice\n}\n"


def test_tokens_join_back() -> None:
    tokens = tokenize(TEXT)
    assert "".join(tokens) == TEXT
    assert "->" in tokens and "# twice" in tokens and "2.0" in tokens


@pytest.mark.parametrize("name", sorted(MUTATORS))
def test_each_mutator_changes_the_text_deterministically(name: str) -> None:
    outs = [MUTATORS[name](TEXT, random.Random(seed)) for seed in range(20)]
    assert any(out != TEXT for out in outs)
    assert outs == [MUTATORS[name](TEXT, random.Random(seed)) for seed in range(20)]


def test_replace_number_uses_out_of_range_values() -> None:
    outs = {replace_number("split i 6", random.Random(seed)) for seed in range(60)}
    assert {"split i 0", "split i -1", f"split i {2**63}", "split i 1e400", "split i nan"} <= outs


def test_mutate_returns_bytes_and_names() -> None:
    data, ops = mutate(TEXT, random.Random(3), "kc")
    assert isinstance(data, bytes) and ops and all(op in MUTATORS or op == "bytes" for op in ops)
    blob, ops = mutate_bytes(b"KACC" + bytes(60), random.Random(1))
    assert isinstance(blob, bytes) and ops


def test_small_example_lowers_dims_and_schedule_factors() -> None:
    text = "dim M = 1024, K = 4\nkernel k(A: f32[M]) -> (B: f32[M]) { B[i] = A[i] }\nschedule k for cpu {\n    split i 256\n}\n"
    small = small_example(text)
    assert "dim M = 16, K = 4" in small and "split i 16" in small and "A: f32[M]" in small


@pytest.mark.parametrize(
    ("rc", "out", "err", "kwargs", "expected"),
    [
        (2, "", "k.kc:1:5: error: unexpected ','", {}, "diagnosed"),
        (2, "", "", {}, "other"),
        (0, "ok", "", {}, "valid"),
        (0, "", "", {"same": False}, "wrong"),
        (1, "MISMATCH", "", {}, "wrong"),
        (3, "", "internal error: KeyError: 'x'", {}, "traceback"),
        (2, "", "Traceback (most recent call last):\n  ...", {}, "traceback"),
        (None, "", "", {"timed_out": True}, "hang"),
        (-11, "", "", {}, "other"),
    ],
)
def test_classify(rc, out, err, kwargs, expected) -> None:  # type: ignore[no-untyped-def]
    assert classify(rc, out, err, **kwargs) == expected


def test_run_case_captures_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run_case({"k.kc": b"kernel s(X: f32[N]) -> (Y: f32[N]) {\n    Y[i] = X[i] +\n}\n"}, [["run", "k.kc"]])
    assert r["rc"] == 2 and "k.kc:3:1: error:" in r["err"]
    good = b"kernel s(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 3.0 }\n"
    r = run_case({"k.kc": good}, [["run", "k.kc", "--shape", "N=7", "--check"]])
    assert r["rc"] == 0 and classify(r["rc"], r["out"], r["err"]) == "valid"


def test_smoke_campaign() -> None:
    """60 mutants over the four kinds, fixed seed: no traceback, no hang, nothing but diagnostics and
    valid mutants that check correctly."""
    r = campaign(60, seed=11, timeout_s=60.0)
    assert sum(r[c] for c in CLASSES) == 60 and set(r["by_kind"]) == set(KINDS)
    assert r["traceback"] == 0 and r["hang"] == 0, r["failures"]
    assert r["bugs"] == 0, r["failures"]
    assert r["diagnosed"] > 0 and r["valid"] > 0
