"""kcomp bench ops: every case compiles, matches the reference and torch at its small scale; the
suite's rows carry the keys the issue names (timings are not asserted: shared machines are noisy)."""

from __future__ import annotations

import numpy as np
import pytest

import kcomp
from kcomp.bench import ops
from kcomp.bench.ops_cases import CASES
from kcomp.errors import UsageError


def test_at_least_forty_cases_covering_every_family():
    names = set(CASES)
    assert len(names) >= 40
    for family in ("matmul_", "conv", "pool", "norm", "softmax", "sum_", "arg", "cross_entropy", "mse"):
        assert any(family in n for n in names), family


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_matches_the_reference_and_torch_at_small_scale(name):
    torch = pytest.importorskip("torch")
    case = CASES[name]
    k = kcomp.compile(case.source, shapes=case.small)
    assert k.check(seed=3).ok
    inputs = k.random_inputs(seed=4)[0]
    ours = np.asarray(k(**inputs), dtype=np.float64)
    theirs = case.torch(**{n: torch.from_numpy(v) for n, v in inputs.items()}).numpy().astype(np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)


def test_a_row_has_the_documented_keys_and_the_call_overhead_is_measured():
    result = ops.run_suite(["silu/small", "sum_first/small"], budget_s=0.01, roofs=False, with_torch=False)
    assert [r["case"] for r in result["rows"]] == ["silu", "sum_first"]
    for row in result["rows"]:
        assert row["params"]["scale"] == "small" and "kcomp" in row["times_s"]
        assert row["extra"]["api_call_s"] > 0
    assert result["machine"]["call_overhead_s"] >= 0


def test_case_names_and_scales_are_checked():
    assert ops.parse_case("softmax_outer/large") == "softmax_outer/large"
    with pytest.raises(UsageError, match="no ops case"):
        ops.parse_case("nope")
    with pytest.raises(UsageError, match="small or large"):
        ops.parse_case("silu/huge")
