"""`kcomp sim`, `kcomp asm`, `kcomp disasm` (kcomp/cli/sim.py), in-process through `kcomp.cli.main`:
the JSON report, the exit-code contract (0 ok, 1 a failed check, 2 bad input: never a traceback),
the schedule it says it used, traces and plots, and the assembler round trip on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kcomp.api
from kcomp.cli import main
from kcomp.targets.accel.machine import decode
from kcomp.targets.accel.target import AccelTarget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MATMUL = str(EXAMPLES / "matmul.kc")
SMALL = ["--shape", "M=48", "--shape", "N=40", "--shape", "K=36"]
KEYS = {"ok", "cycles", "ideal_cycles", "utilization", "dma_bytes", "schedule_source", "stalls", "time_s"}


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def run_error(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


@pytest.mark.parametrize(
    ("example", "shapes"),
    [
        ("matmul", SMALL),
        ("gemm_bias_relu", ["--shape", "M=40", "--shape", "N=24", "--shape", "K=20"]),
        ("batched_matmul", ["--shape", "BATCH=2", "--shape", "M=24", "--shape", "N=16", "--shape", "K=8"]),
        ("matvec", ["--shape", "M=40", "--shape", "K=24"]),
    ],
)
@pytest.mark.parametrize("config", ["default", "small"])
def test_sim_json_for_every_mapped_example(capsys, example, shapes, config):
    code, report = run_json(
        capsys, "sim", str(EXAMPLES / f"{example}.kc"), *shapes, "--accel", config, "--json"
    )
    assert code == 0 and report["ok"] is True
    assert set(report) >= KEYS
    assert report["schedule_source"].startswith(AccelTarget.default_label)
    assert 0 < report["utilization"]["matrix"] <= 1 and report["cycles"] >= report["ideal_cycles"] > 0
    assert report["dma_bytes"]["load"] > 0 and report["dma_bytes"]["store"] > 0
    assert report["config"]["name"] == config and report["time_s"] == report["cycles"] / 1e9


def test_sim_report_for_people(capsys):
    assert main(["sim", MATMUL, *SMALL, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for line in (
        "schedule  default (accelerator mapping rules)",
        "tile i j k",
        "mapping   C[i, j] += A[i, k] * B[k, j]",
    ):
        assert line in out
    for word in ("check     ok", "cycles", "ideal", "matrix unit", "stalls:", "DMA bytes", "instructions/s"):
        assert word in out


def test_sim_says_which_schedule(capsys, tmp_path):
    _, naive = run_json(capsys, "sim", MATMUL, *SMALL, "--schedule", "none", "--json")
    assert (
        naive["schedule_source"] == AccelTarget.naive_label and naive["schedule"] == "tile i j k 16 16 16\n"
    )
    path = tmp_path / "s.sched"
    path.write_text("tile i j k 32 16 16\nreorder j_o i_o k_o\ndouble_buffer A\n")
    code, given = run_json(capsys, "sim", MATMUL, *SMALL, "--schedule", str(path), "--json")
    assert code == 0 and given["ok"] and given["schedule_source"] == f"file {path}"
    assert "tile order j i k, double-buffered: A" in given["mapping"][0]
    assert given["cycles"] != naive["cycles"]


def test_unmappable_kernels_exit_2_with_the_reason(capsys, tmp_path):
    source = tmp_path / "power.kc"
    source.write_text("kernel k(A: f32[8, 8]) -> (B: f32[8, 8]) { B[i, j] = pow(A[i, j], A[j, i]) }\n")
    code, err = run_error(capsys, "sim", str(source))
    assert code == 2 and "has no vector-unit instruction" in err


def test_mapping_errors_exit_2(capsys):
    code, err = run_error(capsys, "sim", MATMUL, "--shape", "M=4096", "--shape", "N=4096", "--shape", "K=4096",
                          "--schedule", "tile i j k 4096 64 64")  # fmt: skip
    assert (
        code == 2
        and "of scratchpad" in err
        and "too much" in err
        and "[schedule: given by the caller]" in err
    )
    code, err = run_error(capsys, "sim", MATMUL, *SMALL, "--schedule", "tile i j k 16 20 16")
    assert code == 2 and "the j tile 20 must be a multiple of 16" in err
    code, err = run_error(capsys, "sim", MATMUL, *SMALL, "--schedule", "double_buffer")
    assert code == 2 and "no tiled loop to pipeline" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accel", "nope.toml"], "nope.toml: cannot read accelerator config"),
        (["--param", "alpha=2"], "--param alpha: the kernel has no such parameter"),
        (["--shape", "M=0"], "a dimension must be positive"),
        (["--kernel", "other"], "other"),
    ],
)
def test_bad_flags_exit_2(capsys, argv, message):
    code, err = run_error(capsys, "sim", MATMUL, *SMALL, *argv)
    assert code == 2 and message in err


def test_a_wrong_result_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(
        kcomp.api, "evaluate", lambda program, arrays, params: {"C": arrays["A"][:, :40] * 0 + 1e6}
    )
    code, report = run_json(capsys, "sim", MATMUL, *SMALL, "--json")
    assert code == 1 and report["ok"] is False and report["outputs"]["C"]["ok"] is False


def test_trace_and_plot(capsys, tmp_path):
    trace, picture = tmp_path / "t.json", tmp_path / "t.png"
    code = main(["sim", MATMUL, *SMALL, "--trace", str(trace), "--plot", str(picture)])
    assert code == 0 and "wrote trace" in capsys.readouterr().out
    events = json.loads(trace.read_text())
    assert events and picture.read_bytes().startswith(b"\x89PNG")
    code, err = run_error(capsys, "sim", MATMUL, *SMALL, "--trace", str(tmp_path / "missing" / "t.json"))
    assert code == 2 and "cannot write" in err


def test_emit_asm_then_asm_and_disasm_round_trip(capsys, tmp_path):
    assert main(["sim", str(EXAMPLES / "gemm_bias_relu.kc"), "--shape", "M=20", "--shape", "N=24",
                 "--shape", "K=12", "--emit", "asm"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert text.startswith("# kcomp-abi: ") and "dma.load.acc" in text and "act=relu" in text
    source, binary = tmp_path / "k.s", tmp_path / "k.bin"
    source.write_text(text)
    assert main(["asm", str(source)]) == 0
    assert "wrote" in capsys.readouterr().out and binary.exists()
    assert main(["disasm", str(binary)]) == 0
    assert capsys.readouterr().out == text.split("\n", 1)[1]  # the canonical text, less the ABI comment
    assert main(["disasm", str(binary), "-o", str(tmp_path / "again.s")]) == 0
    assert decode(binary.read_bytes()).instrs[-1].op == "halt"


def test_emit_schedule_and_loops(capsys):
    assert main(["sim", MATMUL, *SMALL, "--emit", "schedule"]) == 0
    assert capsys.readouterr().out.startswith("# schedule: default (accelerator mapping rules)\ntile i j k")
    assert main(["sim", MATMUL, *SMALL, "--emit", "loops"]) == 0
    assert "for i_o in" in capsys.readouterr().out


def test_asm_and_disasm_errors(capsys, tmp_path):
    bad = tmp_path / "bad.s"
    bad.write_text(".buffer A f32 4x4\ndma.load sp=0 buf=A off=0 rows=4 cols=4 stride=4\nfrob x=1\n")
    code, err = run_error(capsys, "asm", str(bad))
    assert code == 2 and f"{bad}:3:1: error:" in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"KACC" + b"\x00" * 7)
    code, err = run_error(capsys, "disasm", str(junk))
    assert code == 2 and err
    code, err = run_error(capsys, "disasm", str(tmp_path / "none.bin"))
    assert code == 2 and "cannot read" in err
    code, err = run_error(capsys, "asm", str(bad), "-o", str(bad))
    assert code == 2 and "would overwrite the input" in err
