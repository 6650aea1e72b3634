"""The `kcomp` command line: `compile` and `run`, their outputs and the exit-code contract
(0 ok, 1 a failed check, 2 bad input), called in-process through `kcomp.cli.main` and once through
the installed console script."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kcomp.api
from kcomp.api import compile
from kcomp.cli import main
from kcomp.compare import Comparison, compare_outputs
from kcomp.targets.base import Target

DEFAULT = Target.default_label  # the CPU's default-scheduler label
NAIVE = Target.naive_label

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MATMUL = str(EXAMPLES / "matmul.kc")
LAYERNORM = str(EXAMPLES / "layernorm.kc")
SMALL = ["--shape", "M=64", "--shape", "N=64", "--shape", "K=64"]
TINY = ["--shape", "M=8", "--shape", "N=6", "--shape", "K=4"]
LN_SMALL = ["--shape", "N=4", "--shape", "D=16"]
RUN_KEYS = {"ok", "max_abs_err", "max_rel_err", "time_s", "gflops", "schedule_source"}


def nonzero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    mag = rng.uniform(0.1, 1.0, size=shape)
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return np.ascontiguousarray((mag * sign).astype(np.float32))


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    """main(argv) with --json: the exit code and the one JSON object printed on stdout."""
    code = main(list(argv))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def assert_usage_error(capsys, argv: list[str], pattern: str) -> str:
    """main(argv) exits 2 with `pattern` on stderr and no traceback."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    assert pattern in captured.err, captured.err
    return captured.err


# --- compile ------------------------------------------------------------------------------------------------


def test_compile_writes_c_header_library_and_report(tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["compile", MATMUL, *SMALL, "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["libmatmul.so", "matmul.c", "matmul.h", "report.txt"]
    source = (out / "matmul.c").read_text()
    assert "kc_matmul" in source
    assert source == compile(MATMUL, shapes={"M": 64, "N": 64, "K": 64}).source
    header = (out / "matmul.h").read_text()
    assert "kc_matmul" in header
    assert (out / "libmatmul.so").read_bytes()[:4] == b"\x7fELF"
    report = (out / "report.txt").read_text()
    assert f"schedule  {DEFAULT}" in report
    assert "kernel    matmul" in report
    assert "K=64 M=64 N=64" in report
    assert f"flops     {2 * 64**3}" in report
    assert report.strip() in stdout
    assert "libmatmul.so" in stdout


def test_compile_default_output_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", MATMUL, *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "out" / "matmul"
    assert {p.name for p in out.iterdir()} == {"libmatmul.so", "matmul.c", "matmul.h", "report.txt"}


def test_compiled_library_is_loadable(tmp_path, capsys):
    import ctypes

    assert main(["compile", MATMUL, *TINY, "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    lib = ctypes.CDLL(str(tmp_path / "libmatmul.so"))
    assert hasattr(lib, "kc_matmul")


def test_emit_ir(capsys, tmp_path):
    assert main(["compile", MATMUL, *TINY, "--emit", "ir", "-o", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "kernel matmul(A: f32[8, 4], B: f32[4, 6]) -> (C: f32[8, 6])" in out
    assert "C[i, j] += A[i, k] * B[k, j]" in out
    assert not (tmp_path / "x").exists()  # --emit prints instead of writing files


def test_emit_loops(capsys):
    assert main(["compile", MATMUL, *TINY, "--schedule", "none", "--emit", "loops"]) == 0
    out = capsys.readouterr().out
    assert "for i in 0..8:" in out
    assert "for k in 0..4:" in out
    assert "C[i_init, j_init] = 0.0" in out


def test_emit_c(capsys):
    assert main(["compile", MATMUL, *TINY, "--emit", "c"]) == 0
    out = capsys.readouterr().out
    assert "kc_matmul" in out and "#include" in out
    assert out.strip() == compile(MATMUL, shapes={"M": 8, "N": 6, "K": 4}).source.strip()


def test_emit_stages_differ(capsys):
    texts = {}
    for stage in ("ir", "loops", "c"):
        assert main(["compile", MATMUL, *TINY, "--emit", stage]) == 0
        texts[stage] = capsys.readouterr().out
    assert len(set(texts.values())) == 3


def test_emit_stage_names_are_the_same_for_every_target(capsys):
    """`--emit ir|schedule|loops|source` everywhere; the target's language name is an alias of `source`
    (c on the CPU, asm on the accelerator), another target's is not."""
    assert main(["compile", MATMUL, "--emit", "source"]) == 0
    source = capsys.readouterr().out
    assert main(["compile", MATMUL, "--emit", "c"]) == 0 and capsys.readouterr().out == source
    assert main(["compile", MATMUL, "--emit", "asm"]) == 2
    assert "--emit asm: stages are ir, schedule, loops, source" in capsys.readouterr().err


def test_compile_unbound_dim_names_shape_flag(tmp_path, capsys):
    src = tmp_path / "scale.kc"
    src.write_text("kernel scale(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 2.0 }\n")
    assert_usage_error(capsys, ["compile", str(src), "--emit", "c"], "--shape N=VALUE")
    assert main(["compile", str(src), "--shape", "N=5", "--emit", "ir"]) == 0
    assert "X: f32[5]" in capsys.readouterr().out


def test_compile_kernel_flag_selects_kernel(tmp_path, capsys):
    src = tmp_path / "two.kc"
    src.write_text(
        "dim N = 4\n"
        "kernel double(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 2.0 }\n"
        "kernel triple(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 3.0 }\n"
    )
    assert_usage_error(capsys, ["compile", str(src), "--emit", "ir"], "choose one with --kernel NAME")
    assert main(["compile", str(src), "--kernel", "triple", "--emit", "ir"]) == 0
    assert "kernel triple" in capsys.readouterr().out
    assert_usage_error(
        capsys, ["compile", str(src), "--kernel", "nope", "--emit", "ir"], "no kernel named 'nope'"
    )


# --- run ------------------------------------------------------------------------------------------------------


def test_run_check_json(capsys):
    code, result = run_json(capsys, "run", MATMUL, *SMALL, "--check", "--json", "--seed", "1")
    assert code == 0
    assert set(result) >= RUN_KEYS
    assert result["ok"] is True
    assert 0 <= result["max_abs_err"] < 1e-3
    assert 0 <= result["max_rel_err"] < 1e-4
    assert result["time_s"] is None and result["gflops"] is None
    assert result["schedule_source"].startswith(DEFAULT)
    assert result["kernel"] == "matmul"
    assert result["shapes"] == {"M": 64, "N": 64, "K": 64}
    assert result["outputs"]["C"]["ok"] is True


def test_run_json_output_is_the_only_stdout(capfd):
    # at the file-descriptor level too: nothing (gcc, rich) writes next to the JSON object
    assert main(["run", MATMUL, *TINY, "--check", "--json", "--seed", "2"]) == 0
    out = capfd.readouterr().out
    assert json.loads(out)["ok"] is True
    assert out.count("\n") == 1


def test_run_without_check(capsys):
    code, result = run_json(capsys, "run", MATMUL, *TINY, "--json")
    assert code == 0
    assert result["ok"] is True
    assert result["max_abs_err"] is None and result["max_rel_err"] is None
    assert result["outputs"] == {"C": {"shape": [8, 6]}}


def test_run_bench(capsys):
    code, result = run_json(capsys, "run", MATMUL, *SMALL, "--bench", "--json", "--seed", "0")
    assert code == 0
    t = result["time_s"]
    assert isinstance(t, float) and math.isfinite(t) and t > 0
    flops = 2 * 64 * 64 * 64
    assert result["gflops"] == pytest.approx(flops / t / 1e9, rel=1e-9)
    assert result["gflops"] > 0


def test_run_check_and_bench(capsys):
    code, result = run_json(capsys, "run", MATMUL, *SMALL, "--check", "--bench", "--json")
    assert code == 0 and result["ok"] is True
    assert math.isfinite(result["time_s"]) and result["time_s"] > 0
    assert math.isfinite(result["max_abs_err"])


def test_run_human_readable(capsys):
    assert main(["run", MATMUL, *TINY, "--check", "--bench", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "matmul" in out and DEFAULT in out
    assert "check" in out and "ok" in out
    assert "ms (median)" in out and "GFLOP/s" in out


def test_run_seed_reproducible(capsys):
    _, a = run_json(capsys, "run", MATMUL, *SMALL, "--check", "--json", "--seed", "11")
    _, b = run_json(capsys, "run", MATMUL, *SMALL, "--check", "--json", "--seed", "11")
    assert a["max_abs_err"] == b["max_abs_err"]
    assert a["max_rel_err"] == b["max_rel_err"]


def test_seed_selects_api_random_inputs(capsys, monkeypatch):
    """`--seed S` runs on exactly `CompiledKernel.random_inputs(S)`: verified by capturing the outputs."""
    seen = []

    def spy(program, actual, expected):
        seen.append({k: np.array(v) for k, v in actual.items()})
        return compare_outputs(program, actual, expected)

    monkeypatch.setattr(kcomp.api, "compare_outputs", spy)
    code, _ = run_json(capsys, "run", MATMUL, *TINY, "--check", "--json", "--seed", "4")
    assert code == 0 and len(seen) == 1
    k = compile(MATMUL, shapes={"M": 8, "N": 6, "K": 4})
    inputs, _ = k.random_inputs(4)
    np.testing.assert_array_equal(seen[0]["C"], k(**inputs))


def test_run_input_files_are_used(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(99)
    A, B = nonzero(rng, 8, 4), nonzero(rng, 4, 6)
    np.save(tmp_path / "a.npy", A)
    np.save(tmp_path / "b.npy", B)
    seen = []

    def spy(program, actual, expected):
        seen.append(
            ({k: np.array(v) for k, v in actual.items()}, {k: np.array(v) for k, v in expected.items()})
        )
        return compare_outputs(program, actual, expected)

    monkeypatch.setattr(kcomp.api, "compare_outputs", spy)
    argv = ["run", MATMUL, *TINY, "--input", f"A={tmp_path / 'a.npy'}", "--input", f"B={tmp_path / 'b.npy'}"]
    code, result = run_json(capsys, *argv, "--check", "--json", "--seed", "0")
    assert code == 0 and result["ok"] is True
    ((actual, expected),) = seen
    # second route: the API on the same data gives the same output, and numpy agrees
    k = compile(MATMUL, shapes={"M": 8, "N": 6, "K": 4})
    np.testing.assert_array_equal(actual["C"], k(A, B))
    np.testing.assert_allclose(expected["C"], k.reference(A, B), rtol=1e-6)
    np.testing.assert_allclose(actual["C"], A.astype(np.float64) @ B, rtol=1e-5, atol=1e-6)
    # a different seed does not change the result when every input comes from a file
    _, again = run_json(capsys, *argv, "--check", "--json", "--seed", "12345")
    assert again["max_abs_err"] == result["max_abs_err"]
    np.testing.assert_array_equal(seen[1][0]["C"], actual["C"])


def test_run_one_input_file_rest_random(tmp_path, capsys, monkeypatch):
    A = np.ones((8, 4), np.float32)
    np.save(tmp_path / "a.npy", A)
    seen = []

    def spy(program, actual, expected):
        seen.append({k: np.array(v) for k, v in actual.items()})
        return compare_outputs(program, actual, expected)

    monkeypatch.setattr(kcomp.api, "compare_outputs", spy)
    code, _ = run_json(
        capsys, "run", MATMUL, *TINY, "--input", f"A={tmp_path / 'a.npy'}", "--check", "--json", "--seed", "3"
    )
    assert code == 0
    k = compile(MATMUL, shapes={"M": 8, "N": 6, "K": 4})
    B = k.random_inputs(3)[0]["B"]
    np.testing.assert_array_equal(seen[0]["C"], k(A, B))
    np.testing.assert_allclose(seen[0]["C"], np.broadcast_to(B.sum(axis=0), (8, 6)), rtol=1e-5, atol=1e-6)


def test_run_input_exact_result(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((8, 4), np.float32))
    np.save(tmp_path / "b.npy", np.full((4, 6), 2.0, np.float32))
    code, result = run_json(
        capsys, "run", MATMUL, *TINY, "--input", f"A={tmp_path / 'a.npy'}",
        "--input", f"B={tmp_path / 'b.npy'}", "--check", "--json",
    )  # fmt: skip
    assert code == 0 and result["ok"] is True
    assert result["max_abs_err"] == 0.0  # small integers: exact in any order


def test_run_param_accepted(capsys):
    code, small = run_json(capsys, "run", LAYERNORM, *LN_SMALL, "--param", "eps=0.5", "--check", "--json")
    assert code == 0 and small["ok"] is True
    code, _ = run_json(capsys, "run", LAYERNORM, *LN_SMALL, "--param", "eps=1e-3", "--json")
    assert code == 0


def test_run_param_changes_result(tmp_path, capsys, monkeypatch):
    seen = []

    def spy(program, actual, expected):
        seen.append(np.array(actual["Y"]))
        return compare_outputs(program, actual, expected)

    monkeypatch.setattr(kcomp.api, "compare_outputs", spy)
    for eps in ("1e-5", "4.0"):
        code, _ = run_json(
            capsys, "run", LAYERNORM, *LN_SMALL, "--param", f"eps={eps}", "--check", "--json", "--seed", "6"
        )
        assert code == 0
    k = compile(LAYERNORM, shapes={"N": 4, "D": 16})
    inputs, _ = k.random_inputs(6)
    np.testing.assert_allclose(seen[1], k(**inputs, eps=4.0), rtol=1e-6)
    assert not np.allclose(seen[0], seen[1], rtol=1e-3, atol=1e-3)


# --- bad input: exit 2, a message, no traceback ----------------------------------------------------------------


def test_param_bad_value(capsys):
    assert_usage_error(
        capsys, ["run", LAYERNORM, *LN_SMALL, "--param", "eps=abc"], "--param eps=abc: 'abc' is not a number"
    )


def test_param_malformed(capsys):
    assert_usage_error(capsys, ["run", LAYERNORM, *LN_SMALL, "--param", "eps"], "expected NAME=VALUE")
    assert_usage_error(capsys, ["run", LAYERNORM, *LN_SMALL, "--param", "=1"], "expected NAME=VALUE")


def test_param_unknown_name(capsys):
    assert_usage_error(
        capsys, ["run", MATMUL, *TINY, "--param", "eps=1", "--check"], "has no input named 'eps'"
    )


def test_shape_not_an_integer(capsys):
    assert_usage_error(capsys, ["run", MATMUL, "--shape", "M=abc"], "--shape M=abc: 'abc' is not an integer")


def test_shape_not_positive(capsys):
    err = assert_usage_error(capsys, ["run", MATMUL, "--shape", "M=0"], "--shape M=0")
    assert "positive" in err
    assert_usage_error(capsys, ["compile", MATMUL, "--shape", "M=-4", "--emit", "ir"], "positive")


def test_shape_unknown_dimension(capsys):
    assert_usage_error(capsys, ["run", MATMUL, *TINY, "--shape", "Q=3"], "has no dimension 'Q'")


def test_shape_malformed(capsys):
    assert_usage_error(capsys, ["run", MATMUL, "--shape", "M"], "expected NAME=VALUE")


def test_input_errors(tmp_path, capsys):
    np.save(tmp_path / "f64.npy", np.ones((8, 4)))
    np.save(tmp_path / "shape.npy", np.ones((3, 3), np.float32))
    np.save(tmp_path / "ok.npy", np.ones((8, 4), np.float32))
    (tmp_path / "junk.npy").write_text("not numpy")
    base = ["run", MATMUL, *TINY, "--check"]
    assert_usage_error(
        capsys, [*base, "--input", f"A={tmp_path / 'f64.npy'}"], "input 'A': expected dtype f32"
    )
    assert_usage_error(
        capsys, [*base, "--input", f"A={tmp_path / 'shape.npy'}"], "expected shape (8, 4), got (3, 3)"
    )
    assert_usage_error(capsys, [*base, "--input", f"Q={tmp_path / 'ok.npy'}"], "has no input named 'Q'")
    assert_usage_error(capsys, [*base, "--input", f"A={tmp_path / 'missing.npy'}"], "cannot read")
    assert_usage_error(capsys, [*base, "--input", f"A={tmp_path / 'junk.npy'}"], "cannot read")
    assert_usage_error(capsys, [*base, "--input", "A"], "expected NAME=VALUE")


def test_missing_file_unknown_target_unknown_kernel(capsys, tmp_path):
    assert_usage_error(capsys, ["run", str(tmp_path / "nope.kc")], "cannot read")
    assert_usage_error(capsys, ["run", MATMUL, *TINY, "--target", "tpu"], "unknown target 'tpu'")
    assert_usage_error(capsys, ["run", MATMUL, *TINY, "--kernel", "nope"], "no kernel named 'nope'")


def test_source_error_exits_2(capsys, tmp_path):
    src = tmp_path / "bad.kc"
    src.write_text("kernel f(X: f32[4]) -> (Y: f32[4]) { Y[i] = X[i] + }\n")
    code = main(["compile", str(src), "--emit", "ir"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "bad.kc:1:" in err and "error" in err


def test_no_subcommand_is_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


# --- failed check: exit 1 ----------------------------------------------------------------------------------------


def failing(program, actual, expected):
    return {
        b.name: Comparison(False, 0.75, 0.25, 1e-5, 1e-4, 3, "3 elements outside tolerance")
        for b in program.outputs
    }


def test_failed_check_exits_1_json(capsys, monkeypatch):
    monkeypatch.setattr(kcomp.api, "compare_outputs", failing)
    code, result = run_json(capsys, "run", MATMUL, *TINY, "--check", "--json", "--seed", "0")
    assert code == 1
    assert result["ok"] is False
    assert result["max_abs_err"] == 0.75 and result["max_rel_err"] == 0.25
    assert result["outputs"]["C"] == {"ok": False, "max_abs_err": 0.75, "max_rel_err": 0.25}


def test_failed_check_exits_1_text(capsys, monkeypatch):
    monkeypatch.setattr(kcomp.api, "compare_outputs", failing)
    assert main(["run", MATMUL, *TINY, "--check"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "output C" in out


def test_failed_check_of_one_output_of_several(capsys, monkeypatch):
    def one_bad(program, actual, expected):
        result = compare_outputs(program, actual, expected)
        result["total"] = Comparison(False, 2.0, 1.0, 1e-5, 1e-4, 1, "1 elements outside tolerance")
        return result

    monkeypatch.setattr(kcomp.api, "compare_outputs", one_bad)
    code, result = run_json(
        capsys,
        "run",
        str(EXAMPLES / "row_reduce.kc"),
        "--shape",
        "N=4",
        "--shape",
        "D=8",
        "--check",
        "--json",
    )
    assert code == 1 and result["ok"] is False
    assert result["outputs"]["total"]["ok"] is False
    assert result["outputs"]["biggest"]["ok"] is True


def test_without_check_a_bad_comparison_is_not_consulted(capsys, monkeypatch):
    monkeypatch.setattr(kcomp.api, "compare_outputs", failing)
    code, result = run_json(capsys, "run", MATMUL, *TINY, "--json")
    assert code == 0 and result["ok"] is True


def test_failed_check_with_infinite_error_prints_valid_json(capsys, monkeypatch):
    def nan_mismatch(program, actual, expected):
        return {
            b.name: Comparison(False, math.inf, math.inf, 1e-5, 1e-4, 1, "NaN at 1 positions")
            for b in program.outputs
        }

    monkeypatch.setattr(kcomp.api, "compare_outputs", nan_mismatch)
    code = main(["run", MATMUL, *TINY, "--check", "--json"])
    out = capsys.readouterr().out
    assert code == 1

    def reject(token):
        raise ValueError(f"not JSON: {token}")

    result = json.loads(out, parse_constant=reject)
    assert result["ok"] is False
    assert result["max_abs_err"] == "inf"


# --- the console script -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kcomp_exe() -> str:
    exe = shutil.which("kcomp")
    if exe is None:
        pytest.skip("the kcomp console script is not installed")
    return exe


def test_console_script_run_check_json(kcomp_exe, tmp_path):
    proc = subprocess.run(
        [kcomp_exe, "run", MATMUL, *SMALL, "--check", "--bench", "--json", "--seed", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) >= RUN_KEYS
    assert result["ok"] is True and result["schedule_source"].startswith(DEFAULT)
    assert math.isfinite(result["time_s"]) and result["time_s"] > 0


def test_console_script_exit_codes(kcomp_exe, tmp_path):
    proc = subprocess.run(
        [kcomp_exe, "run", MATMUL, "--shape", "M=abc"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "'abc' is not an integer" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [kcomp_exe, "compile", MATMUL, *TINY, "-o", "o"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "report.txt").exists()


def test_schedule_none_runs_the_naive_loops(capsys):
    assert main(["run", MATMUL, *TINY, "--schedule", "none", "--check", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["schedule_source"] == NAIVE


def test_schedule_file_is_applied_and_reported(tmp_path, capsys):
    sched = tmp_path / "mm.sched"
    sched.write_text("split i 4\nvectorize j\n")
    assert main(["compile", MATMUL, *TINY, "--schedule", str(sched), "--emit", "loops"]) == 0
    out = capsys.readouterr().out
    assert "for i_o in 0..2:" in out and "vector for j in 0..6:" in out
    assert main(["run", MATMUL, *TINY, "--schedule", str(sched), "--check", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["schedule_source"] == f"file {sched}"


def test_emit_schedule_prints_the_default_schedule_and_it_replays(tmp_path, capsys):
    assert main(["compile", MATMUL, *TINY, "--emit", "schedule"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# schedule: {DEFAULT}")
    (tmp_path / "again.sched").write_text(text)
    assert main(["run", MATMUL, *TINY, "--schedule", str(tmp_path / "again.sched"), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_illegal_schedule_step_is_reported_without_traceback(tmp_path, capsys):
    sched = tmp_path / "bad.sched"
    sched.write_text("split i 4\nparallel k\n")
    assert main(["run", MATMUL, *TINY, "--schedule", str(sched)]) == 2
    err = capsys.readouterr().err
    assert "parallel k: cannot run k in parallel" in err and "reduction" in err
    assert "Traceback" not in err


def test_missing_schedule_file(capsys):
    assert main(["run", MATMUL, *TINY, "--schedule", "nonexistent.sched"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compile_for_the_accelerator_writes_assembly_and_binary(tmp_path, capsys):
    out = tmp_path / "acc"
    assert main(["compile", MATMUL, *TINY, "--target", "accel", "-o", str(out)]) == 0
    assert (out / "matmul.s").read_text().strip() and (out / "matmul.bin").stat().st_size > 0
    assert "report.txt" in {p.name for p in out.iterdir()}
