"""Fixtures shared by the test files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kcomp.config import Config
from kcomp.targets.cpu.target import CpuTarget

# Tests never read the user's tuning database: a record there would change which schedule a test
# compiles (tests/search gives each of its tests a private database instead).
os.environ.setdefault("KCOMP_NO_DB", "1")
# Every pass step in every test is followed by the loop-IR verifier (kcomp.loops.verify): a pass that
# breaks an invariant fails at its step, whichever test reached it.  Spawned workers inherit it.
os.environ.setdefault("KCOMP_VERIFY", "1")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> CpuTarget:
    return CpuTarget(cfg=Config(cache_dir=tmp_path_factory.mktemp("kcache"), threads=2))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
