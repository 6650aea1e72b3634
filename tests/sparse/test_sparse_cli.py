"""Sparse weights from the command line (`--weights`, `kcomp prune`, `kcomp sparsity`), the bench
suite's JSON, the accelerator's skipped tiles and the fuzzer's sparse programs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kcomp
from kcomp.bench.sparse import parse_case, run_suite
from kcomp.cli import main
from kcomp.errors import UsageError
from kcomp.fuzz.weights import sparse_weights
from kcomp.sparse import block_count, parse_format, prune

SPMM = """dim M = 48, K = 64, N = 16
kernel spmm(W: f32[M, K] sparse({fmt}), X: f32[K, N]) -> (Y: f32[M, N]) {{
    Y[m, n] += W[m, k] * X[k, n]
}}
"""


@pytest.fixture
def files(tmp_path, rng):
    dense = tmp_path / "w.npy"
    np.save(dense, rng.standard_normal((48, 64)).astype(np.float32))
    kc = tmp_path / "spmm.kc"
    kc.write_text(SPMM.format(fmt="bsr4x4"))
    return tmp_path, dense, kc


def test_prune_then_run_and_compile_from_the_command_line(files, capsys):
    tmp, dense, kc = files
    pruned = tmp / "w90.npy"
    assert (
        main(["prune", str(dense), "--format", "bsr4x4", "--sparsity", "0.9", "-o", str(pruned), "--json"])
        == 0
    )
    got = json.loads(capsys.readouterr().out)
    w = np.load(pruned)
    assert got["blocks"] == block_count(w, (4, 4)) == round(0.1 * 12 * 16)
    assert main(["run", str(kc), "--weights", f"W={pruned}", "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    out = tmp / "out"
    assert main(["compile", str(kc), "--weights", f"W={pruned}", "-o", str(out)]) == 0
    assert "sparse W (bsr4x4)" in capsys.readouterr().out
    assert (out / "W_val.npy").is_file() and (out / "W_col.npy").is_file()
    assert main(["sparsity", str(pruned), "--format", "bsr4x4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocks_after"] <= got["blocks"]


def test_bad_weights_exit_2_with_a_message(files, capsys):
    tmp, dense, kc = files
    assert main(["run", str(kc), "--check"]) == 2
    assert "needs its values at compile time" in capsys.readouterr().err
    bad = tmp / "nan.npy"
    w = np.load(dense)
    w[3, 4] = np.nan
    np.save(bad, w)
    assert main(["run", str(kc), "--weights", f"W={bad}"]) == 2
    assert "must be finite" in capsys.readouterr().err
    assert main(["run", str(kc), "--weights", f"W={tmp / 'missing.npy'}"]) == 2
    assert main(["run", str(kc), "--weights", "W"]) == 2
    nm = tmp / "nm.kc"
    nm.write_text(SPMM.format(fmt="nm2:4"))
    assert main(["run", str(nm), "--weights", f"W={dense}"]) == 2
    assert "nm2:4 allows 2" in capsys.readouterr().err
    assert main(["prune", str(dense), "--format", "coo", "-o", str(tmp / "x.npy")]) == 2


def test_the_accelerator_moves_and_multiplies_only_nonzero_tiles(rng):
    src = SPMM.replace("M = 48, K = 64, N = 16", "M = 128, K = 128, N = 32").format(fmt="bsr16x16")
    w = prune(rng.standard_normal((128, 128)), parse_format("bsr16x16"), 0.9)
    sparse = kcomp.compile(src, target="accel", weights={"W": w})
    dense = kcomp.compile(src.replace(" sparse(bsr16x16)", ""), target="accel")
    s, d = sparse.check(seed=2), dense.check(seed=2)
    assert s.ok and d.ok
    # simulated cycles are deterministic: far fewer, yet the kernel is the dense one's
    assert s.report.cycles < 0.5 * d.report.cycles
    empty = kcomp.compile(src, target="accel", weights={"W": np.zeros((128, 128), np.float32)})
    assert empty.check(seed=3).ok


def test_the_bench_suite_reports_every_system_in_one_json_shape():
    result = run_suite([parse_case("planted_90_64x64x32")], budget_s=0.01, roofs=False)
    row = result["rows"][0]
    assert row["params"]["pattern"] == "planted" and 0.8 < row["params"]["sparsity"] < 1.0
    assert {"kcomp", "kcomp_no_rearrange", "kcomp_dense"} <= set(row["times_s"])
    extra = row["extra"]
    assert extra["blocks"] <= 1.1 * extra["blocks_planted"] < extra["blocks_before"]
    # a permuted 4x4 pattern leaves no 16x16 tile of the matrix unit empty: no fewer cycles, no more
    assert extra["accel_cycles_sparse"] == extra["accel_cycles_dense"]
    linear = run_suite([parse_case("group1x16_90_64x64x32_linear")], budget_s=0.01, roofs=False)["rows"][0]
    assert linear["case"] == "group1x16_90_64x64x32_linear"
    assert {"kcomp", "kcomp_dense", "torch", "torch_sparse"} <= set(linear["times_s"])
    assert "accel_cycles_sparse" not in linear["extra"]
    with pytest.raises(UsageError):
        parse_case("diag_90_64x64x32")


def test_fuzz_weights_follow_the_program_text_and_its_format():
    src = SPMM.format(fmt="nm2:4")
    a, b = sparse_weights(src), sparse_weights(src)
    np.testing.assert_array_equal(a["W"], b["W"])
    assert sparse_weights(SPMM.format(fmt="csr").replace("sparse(csr)", "")) == {}
    for n in range(10):
        w = sparse_weights(src.replace("N = 16", f"N = {16 + n}"))["W"]
        runs = (w.reshape(48, 16, 4) != 0).sum(axis=2)
        assert runs.max() <= 2
