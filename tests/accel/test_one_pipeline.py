"""One pipeline: for the same program, shapes and schedule, `kcomp sim`, `kcomp run --target accel
--bench`, `kcomp compile --target accel` and a `kcomp tune --target accel` trial compile the same
program and report the same cycles.  (They once disagreed: the run and tuning roads double-buffered
whatever fit, whatever the schedule said, so a single-buffered schedule was measured as something
else: 85,028 cycles reported for a 157,028-cycle program.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kcomp
from kcomp.cli import main
from kcomp.errors import Unsupported
from kcomp.schedule import parse_schedule
from kcomp.search.measure import Measurer, _compile

MATMUL = str(Path(__file__).resolve().parents[2] / "examples" / "matmul.kc")
SHAPES = ["--shape", "M=256", "--shape", "N=256", "--shape", "K=256"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def emitted(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def trials() -> dict[str, tuple[int, str]]:
    """(cycles, program text) of a tuning trial per schedule, measured by the tuner's own workers."""
    texts = {"single": "tile i j k 64 64 64\n", "double": "tile i j k 64 64 64\ndouble_buffer\n"}
    out = {}
    with Measurer(MATMUL, None, {"M": 256, "N": 256, "K": 256}, "accel", workers=1) as m:
        measured = m.measure([parse_schedule(t) for t in texts.values()])
        for (name, text), trial in zip(texts.items(), measured, strict=True):
            assert trial is not None and trial.ok, trial
            out[name] = (trial.counters["cycles"], _compile(m.job(parse_schedule(text))).source)
    return out


@pytest.mark.parametrize("buffering", ["single", "double"])
def test_sim_run_compile_and_tune_agree(buffering, trials, capsys, tmp_path):
    schedule = tmp_path / "s.txt"
    schedule.write_text("tile i j k 64 64 64\n" + ("double_buffer\n" if buffering == "double" else ""))
    flags = [*SHAPES, "--schedule", str(schedule)]
    sim = run_json(capsys, "sim", MATMUL, *flags, "--json")
    run = run_json(capsys, "run", MATMUL, "--target", "accel", *flags, "--bench", "--check", "--json")
    assert sim["ok"] and run["ok"]
    assert round(run["time_s"] * 1e9) == sim["cycles"] == trials[buffering][0]
    program = emitted(capsys, "sim", MATMUL, *flags, "--emit", "source")
    assert emitted(capsys, "compile", MATMUL, "--target", "accel", *flags, "--emit", "source") == program
    assert trials[buffering][1].rstrip("\n") == program.rstrip("\n")


def slots(program: str) -> set[str]:
    """The scratchpad rows the program's DMA loads fill (two buffers per operand fill twice as many)."""
    return {
        word for line in program.splitlines() if line.startswith("dma.load ") for word in line.split()[1:2]
    }


def test_single_buffering_is_measured_as_single(trials):
    (single, single_text), (double, double_text) = trials["single"], trials["double"]
    assert len(slots(double_text)) == 2 * len(slots(single_text))
    assert single > 1.5 * double  # the 256^3 case: 157,028 against 85,028 cycles


def test_a_target_refuses_element_types_it_does_not_lower(capsys):
    """The pipeline asks the target's capabilities: the accelerator takes f32, i8 and i32 tensors."""
    f64 = "kernel k(A: f64[4, 4], B: f64[4, 4]) -> (C: f64[4, 4]) { C[i, j] += A[i, k] * B[k, j] }"
    with pytest.raises(
        Unsupported, match=r"target accel does not lower f64 tensors \(it takes f32, i32, i8\)"
    ):
        kcomp.compile(f64, target="accel")
    assert kcomp.compile(f64).check().ok  # the CPU lowers f64
