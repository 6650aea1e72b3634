"""The vector unit's masks and arg-reduction (viota, vcmp, vcmps, vsel, vredargmax), the gathering DMA
(dma.load.idx, dma.load.acc.g) and the store that rounds into i32: each against numpy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kcomp.targets.accel.machine import AccelConfig, SimError, assemble, simulate


def run(text: str, **arrays: np.ndarray):  # type: ignore[no-untyped-def]
    return simulate(assemble(text), arrays)


def test_iota_compare_and_select_build_a_causal_mask(rng):
    # rows i = 4..7 of a causal mask over columns j: keep X where j <= i, else -inf
    text = """\
.buffer X f32 4x16
.buffer C f32 4x16
dma.load.acc acc=0 buf=X off=0 rows=4 cols=16 stride=16 signal=t0
viota dst=4 rows=1 axis=col imm=0 wait=t0
viota dst=5 rows=4 axis=row imm=4
viota dst=9 rows=1 axis=none imm=-inf
vcmp dst=10 src=5 rows=4 b=4 bmem=acc bstep=0 cmp=ge
vsel dst=14 src=10 rows=4 a=0 b=9 sstep=1 astep=1 bstep=0 signal=t2
dma.store acc=14 buf=C off=0 rows=4 cols=16 stride=16 act=none wait=t2
"""
    x = rng.standard_normal((4, 16)).astype(np.float32)
    c = np.full((4, 16), np.nan, np.float32)
    run(text, X=x, C=c)
    i, j = np.arange(4, 8)[:, None], np.arange(16)[None, :]
    np.testing.assert_array_equal(c, np.where(j <= i, x, -np.inf))


@pytest.mark.parametrize("cmp,fn", [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                                    ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)])  # fmt: skip
def test_compares_with_an_immediate_and_a_row(rng, cmp, fn):
    text = f"""\
.buffer X f32 3x16
.buffer C f32 6x16
dma.load.acc acc=0 buf=X off=0 rows=3 cols=16 stride=16 signal=t0
vcmps dst=3 src=0 rows=3 imm=0.25 cmp={cmp} wait=t0
vcmp dst=6 src=0 rows=3 b=1 bmem=acc bstep=0 cmp={cmp} signal=t2
dma.store acc=3 buf=C off=0 rows=6 cols=16 stride=16 act=none wait=t2
"""
    x = np.round(rng.standard_normal((3, 16)), 1).astype(np.float32)
    x[0, :4] = 0.25
    x[2, 5:9] = x[1, 5:9]  # ties with the broadcast row
    c = np.full((6, 16), np.nan, np.float32)
    run(text, X=x, C=c)
    np.testing.assert_array_equal(c[:3], fn(x, np.float32(0.25)).astype(np.float32))
    np.testing.assert_array_equal(c[3:], fn(x, x[1]).astype(np.float32))


def test_argmax_takes_the_first_maximum_and_the_store_rounds_into_i32(rng):
    text = """\
.buffer X f32 5x16
.buffer I i32 5
dma.load.acc acc=0 buf=X off=0 rows=5 cols=16 stride=16 signal=t0
vredargmax dst=8 src=0 rows=5 wait=t0
vadds dst=8 src=8 rows=5 imm=100.4 signal=t2
dma.store acc=8 buf=I off=0 rows=5 cols=1 stride=1 act=none wait=t2
"""
    x = rng.standard_normal((5, 16)).astype(np.float32)
    x[1, 3] = x[1, 11] = 9.0  # two maxima: the first wins
    idx = np.full(5, -7, np.int32)
    run(text, X=x, I=idx)
    np.testing.assert_array_equal(idx, np.argmax(x, axis=1) + 100)  # 100.4 rounds to 100


def test_a_gather_reads_rows_through_the_index_buffer(rng):
    text = """\
.buffer E f32 50x20
.buffer ids i32 8
.buffer Y f32 6x16
dma.load.idx slot=2 buf=ids off=1 rows=6 limit=45
dma.load.acc.g acc=0 buf=E off=3 rows=6 cols=12 stride=20 slot=2 fill=-inf signal=t0
dma.store acc=0 buf=Y off=0 rows=6 cols=16 stride=16 act=none wait=t0
"""
    e = rng.standard_normal((50, 20)).astype(np.float32)
    ids = np.array([3, 44, 45, -2, 0, 49, 7, 1], np.int32)  # 45, -2 and 49 are out of range (limit 45)
    y = np.full((6, 16), np.nan, np.float32)
    result = run(text, E=e, ids=ids, Y=y)
    want = np.zeros((6, 16), np.float32)
    taken = ids[1:7]
    want[:, :12] = np.where(((taken >= 0) & (taken < 45))[:, None], e[np.clip(taken, 0, 49), 3:15], -np.inf)
    np.testing.assert_array_equal(y, want)
    assert result.dma_bytes["load"] == 6 * 4 + 6 * 12 * 4


def test_a_gather_waits_for_its_indices_and_pays_a_burst_per_row():
    cfg = AccelConfig.load(None)
    text = """\
.buffer E f32 40x64
.buffer ids i32 4
.buffer Y f32 4x16
dma.load.idx slot=0 buf=ids off=0 rows=4 limit=40
dma.load.acc.g acc=0 buf=E off=0 rows=4 cols=16 stride=64 slot=0 fill=zero signal=t0
dma.store acc=0 buf=Y off=0 rows=4 cols=16 stride=16 act=none wait=t0
"""
    result = run(
        text,
        E=np.ones((40, 64), np.float32),
        ids=np.arange(4, dtype=np.int32),
        Y=np.zeros((4, 16), np.float32),
    )
    idx_cycles = -(-4 * 4 // cfg.dma_bytes_per_cycle)
    gather_start = idx_cycles + cfg.dma_latency  # the indices have landed
    gather_end = gather_start + 4 * -(-16 * 4 // cfg.dma_bytes_per_cycle)
    store_end = gather_end + cfg.dma_latency + -(-4 * 16 * 4 // cfg.dma_bytes_per_cycle)
    assert result.cycles == store_end + cfg.dma_latency


@pytest.mark.parametrize(
    "body,match",
    [
        (
            "dma.load.idx slot=0 buf=ids off=0 rows=4 limit=100\n"
            "dma.load.acc.g acc=0 buf=E off=0 rows=4 cols=4 stride=4 slot=0 fill=zero",
            "index 9 .* reaches elements 36..39 of a buffer of 32",
        ),
        (
            "dma.load.acc.g acc=0 buf=E off=0 rows=1 cols=4 stride=4 slot=7 fill=zero",
            "entry 7 was never loaded",
        ),
        ("dma.load.idx slot=250 buf=ids off=0 rows=8 limit=8", "entries 250..257 of 256"),
        ("dma.load.idx slot=0 buf=E off=0 rows=2 limit=8", "not an i32 buffer"),
    ],
)
def test_gather_errors_name_the_instruction(body, match):
    text = f".buffer E f32 8x4\n.buffer ids i32 8\n{body}\n"
    ids = np.array([0, 1, 9, 2, 0, 0, 0, 0], np.int32)
    with pytest.raises(SimError, match=match):
        run(text, E=np.zeros((8, 4), np.float32), ids=ids)
