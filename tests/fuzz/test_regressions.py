"""Reproducers the fuzzer found (kcomp fuzz), each kept once its bug was fixed.

Each `regressions/NAME.kc` runs with `regressions/NAME.schedule` on the targets its
`# targets: ...` line names (default cpu) and must match the reference on several input seeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import kcomp

HERE = Path(__file__).parent / "regressions"
CASES = sorted(p.stem for p in HERE.glob("*.kc"))


def targets(source: str) -> list[str]:
    m = re.search(r"^# targets: (.+)$", source, re.M)
    return [t.strip() for t in m.group(1).split(",")] if m else ["cpu"]


@pytest.mark.parametrize("name", CASES)
def test_regression(name: str):
    source = (HERE / f"{name}.kc").read_text()
    for target in targets(source):
        kernel = kcomp.compile(HERE / f"{name}.kc", target=target, schedule=HERE / f"{name}.schedule")
        for seed in range(3):
            result = kernel.check(seed=seed)
            assert result.ok, f"{name} on {target}, seed {seed}: max abs err {result.max_abs_err}"
