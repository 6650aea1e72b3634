"""`kcomp bench search`: rows read off best-so-far curves, the trials-to-10% count, the JSON shape
of DESIGN.md, and one real (simulated, so deterministic) run on the accelerator."""

from __future__ import annotations

import json
import math

import pytest

from kcomp.bench import search
from kcomp.bench.report import to_json
from kcomp.bench.search import Run, Workload
from kcomp.errors import UsageError


def _run(history, step=1.0, **kw):
    return Run(history=list(history), elapsed=[step * n for n in range(len(history))], **kw)


def test_rows_read_each_budget_off_the_largest_run():
    w = Workload("matmul", {"M": 8, "N": 8, "K": 8}, tvm="matmul")
    runs = {
        "mcts": [_run([10.0, 6.0, 5.0, 5.0, 4.0], default_time_s=10.0, best_schedule="split i 2\n")],
        "random": [_run([10.0, 9.0, 9.0, 5.0, 4.5], default_time_s=10.0)],
    }
    rows = search._rows("matmul", w, runs, (2, 4), 1, None)
    assert [r["params"]["trials"] for r in rows] == [2, 4]
    two, four = rows
    assert two["times_s"] == pytest.approx({"mcts": 5.0, "random": 9.0})
    assert four["times_s"] == pytest.approx({"mcts": 4.0, "random": 4.5})
    # the run's best is 4.0; within 10% means <= 4.4: mcts at trial 4, random never
    assert four["extra"]["trials_to_10pct"] == {"mcts": 4, "random": None}
    assert two["extra"]["trials_to_10pct"] == {"mcts": None, "random": None}
    assert four["extra"]["wall_s"] == {"mcts": 4.0, "random": 4.0} and two["extra"]["wall_s"]["mcts"] == 2.0
    assert four["extra"]["best_schedule"] == {"mcts": "split i 2\n"}
    assert "best_schedule" not in two["extra"]
    assert four["extra"]["default_time_s"] == pytest.approx(10.0)


def test_seeds_are_combined_by_geometric_mean_and_failures_are_kept():
    w = Workload("matmul", {"M": 8, "N": 8, "K": 8}, tvm="matmul")
    runs = {
        "mcts": [_run([8.0, 2.0]), _run([8.0, 8.0])],
        "random": [_run([8.0, 8.0]), Run(history=[], elapsed=[], error="no candidate built")],
    }
    (row,) = search._rows("matmul", w, runs, (1,), 2, "not requested")
    assert row["times_s"]["mcts"] == pytest.approx(math.sqrt(2.0 * 8.0))
    assert "random" not in row["times_s"]  # a strategy without a time for every seed has no figure
    assert row["extra"]["random_error"] == "no candidate built"
    assert row["extra"]["metaschedule_error"] == "not requested"
    assert row["extra"]["reached_10pct"] == {"mcts": 1, "random": 0}


def test_case_and_budget_parsing():
    assert search.parse_case("softmax") == "softmax"
    assert search.parse_case("quick:matmul") == "quick:matmul"
    with pytest.raises(UsageError, match="expected one of"):
        search.parse_case("fft")
    assert search.parse_budgets("64,32,64", quick=False) == (32, 64)
    assert search.parse_budgets(None, quick=True) == search.QUICK_BUDGETS
    for bad in ("0,4", "x", ","):
        with pytest.raises(UsageError):
            search.parse_budgets(bad, quick=False)


def test_a_real_accelerator_run_has_the_suite_shape(tmp_path):
    result = search.run_suite(["quick:accel_gemm"], budgets=(1, 3), workers=1)
    data = json.loads(to_json(result))
    assert data["suite"] == "search" and set(data["machine"]) >= {"cpu", "cores", "isa", "load_avg_1m"}
    rows = data["rows"]
    assert [r["params"]["trials"] for r in rows] == [1, 3]
    for row in rows:
        assert row["params"]["workload"] == "quick:accel_gemm" and row["params"]["seeds"] == 1
        assert set(row["times_s"]) == {"mcts", "random"}
        ex = row["extra"]
        assert ex["target"] == "accel" and "metaschedule_error" in ex
        for name in ("mcts", "random"):
            # simulated time is cycles at 1 GHz; a utilization is a fraction of the matrix unit
            assert row["times_s"][name] == pytest.approx(ex["best_cycles"][name] / 1e9)
            assert 0.0 < ex["utilization"][name] <= 1.0
            assert (
                ex["trials_to_10pct"][name] is None or ex["trials_to_10pct"][name] <= row["params"]["trials"]
            )
    # the larger budget never finds worse than the smaller (the same run's curve)
    assert rows[1]["times_s"]["mcts"] <= rows[0]["times_s"]["mcts"]
    curves = data["curves"]["quick:accel_gemm"]
    assert len(curves["mcts"][0]) == 4  # the default, then three trials
    path = tmp_path / "curves.png"
    search.plot(result, str(path))
    assert path.stat().st_size > 1000


def test_suite_only_flags_are_refused_elsewhere(capsys):
    from kcomp.cli import main

    assert main(["bench", "gemm", "--seeds", "2"]) == 2
    assert "belong to `kcomp bench search`" in capsys.readouterr().err
