"""kcomp bench fusion: each case's kernels compile, check against the reference, and the fused one
moves fewer bytes than the unfused one (timings are not asserted: shared machines are noisy)."""

from __future__ import annotations

import pytest

from kcomp.bench import fusion
from kcomp.errors import UsageError


@pytest.mark.parametrize("case", ["softmax", "elementwise_chain", "conv_bias_relu"])
def test_a_case_times_both_kcomp_kernels_and_fusion_saves_traffic(case):
    result = fusion.run_suite([case], quick=True, budget_s=0.01, roofs=False, with_torch=False)
    (row,) = result["rows"]
    assert {"kcomp", "kcomp_unfused"} <= set(row["times_s"]), row["extra"]
    x = row["extra"]
    if case == "conv_bias_relu":  # the convolution keeps its nest; the epilogue is one pass either way
        assert x["kcomp_bytes"] <= x["kcomp_unfused_bytes"]
    else:
        assert x["kcomp_bytes"] < x["kcomp_unfused_bytes"]
        assert x["kcomp_bytes"] <= 1.01 * x["compulsory_bytes"] + 64 * 1024  # read once, written once
        assert any(verb in x["schedule"] for verb in ("compute_at", "inline"))


def test_unknown_case_is_a_usage_error():
    with pytest.raises(UsageError, match="no fusion case named"):
        fusion.parse_case("nope")


@pytest.mark.parametrize("case", sorted(fusion.CASES))
def test_every_case_compiles_and_matches_the_reference_at_its_quick_shapes(case):
    import kcomp

    c = fusion.CASES[case]
    k = kcomp.compile(c.source, shapes=c.quick)
    assert k.check(seed=2).ok
