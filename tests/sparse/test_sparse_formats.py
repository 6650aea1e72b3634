"""Sparse formats, pruning and rearrangement (kcomp/sparse): the structure each promises, measured
on the arrays they produce."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kcomp.errors import UsageError
from kcomp.sparse import block_count, parse_format, prune, rearrange, validate
from kcomp.sparse.format import block_mask


@pytest.mark.parametrize(
    ("text", "name", "block"),
    [
        ("csr", "csr", (1, 1)),
        ("bsr4x4", "bsr4x4", (4, 4)),
        ("BSR 1x16", "bsr1x16", (1, 16)),
        ("group16", "group1x16", (1, 16)),
        ("group1x8", "group1x8", (1, 8)),
        ("nm2:4", "nm2:4", (1, 1)),
    ],
)
def test_formats_parse_and_name_themselves(text, name, block):
    fmt = parse_format(text)
    assert fmt.name == name and fmt.block == block
    assert parse_format(fmt.name) == fmt


@pytest.mark.parametrize("text", ["coo", "bsr0x4", "bsr4", "nm4:2", "nm2:2", "group0", "group1x65"])
def test_unknown_or_impossible_formats_are_refused(text):
    with pytest.raises(UsageError):
        parse_format(text)


def test_validate_names_shape_nan_and_nm_violations(rng):
    w = rng.standard_normal((8, 8)).astype(np.float32)
    with pytest.raises(UsageError, match="expected shape"):
        validate("W", parse_format("csr"), w, (8, 4))
    bad = w.copy()
    bad[2, 3] = np.nan
    with pytest.raises(UsageError, match=r"\(2, 3\)"):
        validate("W", parse_format("csr"), bad, (8, 8))
    with pytest.raises(UsageError, match=r"row 0 has 4 nonzeros in columns 0\.\.3; nm2:4"):
        validate("W", parse_format("nm2:4"), np.ones((8, 8)), (8, 8))
    ok = prune(w, parse_format("nm2:4"), 0.5)
    assert validate("W", parse_format("nm2:4"), ok, (8, 8)).dtype == np.float32


@pytest.mark.parametrize("fmt", ["bsr4x4", "group1x16", "bsr2x8", "csr"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_prune_reaches_the_sparsity_in_whole_blocks(rng, fmt, sparsity):
    f = parse_format(fmt)
    w = rng.standard_normal((64, 96))
    out = prune(w, f, sparsity)
    blocks = block_mask(w, f.block).size
    kept = block_count(out, f.block)
    assert kept == blocks - round(sparsity * blocks)
    # every kept block is whole (all its values are the input's) and the weakest went first
    mask = np.kron(block_mask(out, f.block), np.ones(f.block, bool))[:64, :96]
    np.testing.assert_array_equal(out[mask], w[mask].astype(np.float32))
    assert not out[~mask].any()


def test_prune_nm_keeps_the_n_largest_of_each_run(rng):
    w = rng.standard_normal((16, 10))  # 10 columns: the last run of 4 is partial
    out = prune(w, parse_format("nm2:4"), 0.9)
    for r in range(16):
        for start in range(0, 10, 4):
            run, got = np.abs(w[r, start : start + 4]), out[r, start : start + 4]
            assert np.count_nonzero(got) == min(2, run.size)
            assert set(np.flatnonzero(got)) == set(np.argsort(-run)[:2])


def planted(rng, rows, cols, block, density):
    """A block-sparse matrix (whole blocks of random values) and its rows and columns permuted."""
    h, w = block
    mask = rng.random((rows // h, cols // w)) < density
    dense = np.kron(mask, np.ones(block)) * rng.standard_normal((rows, cols))
    return dense, dense[rng.permutation(rows)][:, rng.permutation(cols)]


@pytest.mark.parametrize("block", [(4, 4), (1, 16), (16, 1), (2, 8)])
def test_rearrangement_recovers_a_planted_permuted_pattern(rng, block):
    dense, shuffled = planted(rng, 256, 256, block, 0.1)
    r = rearrange(shuffled, block)
    assert r.blocks_before > 3 * block_count(dense, block)
    assert r.blocks_after <= 1.1 * block_count(dense, block)
    assert r.blocks_after == block_count(shuffled[r.rows][:, r.cols], block)
    assert sorted(r.rows) == list(range(256)) and sorted(r.cols) == list(range(256))


def test_rearrangement_never_adds_blocks_and_handles_empty_and_dense(rng):
    for mat in (
        np.zeros((32, 32)),
        np.ones((32, 32)),
        rng.standard_normal((33, 47)) * (rng.random((33, 47)) < 0.1),
    ):
        r = rearrange(mat, (4, 4))
        assert r.blocks_after <= r.blocks_before == block_count(mat, (4, 4))


def test_rearrangement_of_a_4096_square_weight_stays_well_under_a_minute(rng):
    _, shuffled = planted(rng, 4096, 4096, (4, 4), 0.1)
    start = time.perf_counter()
    r = rearrange(shuffled, (4, 4))
    assert time.perf_counter() - start < 60
    assert r.blocks_after < r.blocks_before / 5
