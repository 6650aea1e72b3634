"""vscan, the vector unit's prefix scan along the lanes, chained chunk to chunk by its carry: its
semantics and its cost, each against numpy and the timing model by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kcomp.targets.accel.machine import AccelConfig, assemble, simulate

FNS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@pytest.mark.parametrize("fn", sorted(FNS))
@pytest.mark.parametrize("direction", ["fwd", "rev"])
def test_vscan_chains_two_chunks_through_the_carry(rng, fn, direction):
    # two 16-column chunks of each of 3 rows: the second chunk carries in the first one's edge
    first, second = (0, 3) if direction == "fwd" else (3, 0)
    text = f"""\
.buffer X f32 3x32
.buffer Y f32 3x32
dma.load.acc acc=0 buf=X off=0 rows=3 cols=16 stride=32
dma.load.acc acc=3 buf=X off=16 rows=3 cols=16 stride=32 signal=t0
vscan dst={6 + first} src={first} rows=3 c=0 fn={fn} dir={direction} cin=none wait=t0
vscan dst={6 + second} src={second} rows=3 c={6 + first} fn={fn} dir={direction} cin=carry signal=t2
dma.store acc=6 buf=Y off=0 rows=3 cols=16 stride=32 act=none wait=t2
dma.store acc=9 buf=Y off=16 rows=3 cols=16 stride=32 act=none
"""
    x = rng.uniform(0.5, 1.5, (3, 32)).astype(np.float32)
    y = np.full((3, 32), np.nan, np.float32)
    simulate(assemble(text), {"X": x, "Y": y})
    f = FNS[fn]
    want = f.accumulate(x, axis=1) if direction == "fwd" else f.accumulate(x[:, ::-1], axis=1)[:, ::-1]
    np.testing.assert_allclose(y, want, rtol=1e-5)


def test_vscan_costs_a_row_pass_and_a_reduction_tree():
    cfg = AccelConfig.load(None)
    text = """\
vscan dst=8 src=0 rows=8 c=0 fn=add dir=fwd cin=none
"""
    result = simulate(assemble(text), {})
    busy = 8 * math.ceil(cfg.dim / cfg.vector_lanes)
    assert result.cycles == busy + cfg.vector_latency + math.ceil(math.log2(cfg.vector_lanes))
