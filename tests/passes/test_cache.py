"""cache_write, cache_read and pack: the staged buffers they create, the differential check, and every
error message."""

from __future__ import annotations

import pytest
from helpers import check_schedule, scheduled

from kcomp.errors import ScheduleError
from kcomp.expr import loads
from kcomp.loops import Store, walk_stmts
from kcomp.printer import format_nest

MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
CONV = (
    "kernel conv(X: f32[C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[K, H, W]) {\n"
    "    Y[k, h, w] += X[c, h + r - 1, w + s - 1] * F[k, c, r, s]\n}"
)
POOL = (
    "kernel pool(X: f32[H, W]) -> (Y: f32[OH, OW]) {\n"
    "    Y[h, w] max= X[2*h + r - 1, 2*w + s - 1, pad=-inf] where r < 3, s < 3\n}"
)
MM = {"M": 5, "N": 6, "K": 3}
TILED = "split i 2\nsplit j 4\nreorder j_o i_i\n"


def test_cache_write_stages_the_tile():
    text = format_nest(scheduled(MATMUL, MM, TILED + "cache_write C at j_o"))
    assert "alloc C_local: f32[2, 4] local" in text
    assert "C_local[C_local_0, C_local_1] = C[i_o * 2 + C_local_0, j_o * 4 + C_local_1, pad=0.0]" in text
    assert (
        "C_local[i_i, j_i] = C_local[i_i, j_i] + A[min(i_o * 2 + i_i, 4), k] * B[k, min(j_o * 4 + j_i, 5)]"
        in text
    )
    assert (
        "if i_o * 2 + C_local_01 < 5 and j_o * 4 + C_local_11 < 6:\n"
        "              C[i_o * 2 + C_local_01, j_o * 4 + C_local_11] = C_local[C_local_01, C_local_11]"
    ) in text


def test_cache_write_copies_take_the_tile_loop_kinds():
    text = format_nest(scheduled(MATMUL, MM, TILED + "unroll i_i\nvectorize j_i\ncache_write C at j_o"))
    assert "unrolled for C_local_0 in 0..2:\n          vector for C_local_1 in 0..4:" in text


def test_cache_read_copies_the_region():
    text = format_nest(scheduled(MATMUL, MM, "split j 4\ncache_read B at i"))
    assert "alloc B_local: f32[3, 8] local" in text
    assert "B_local[B_local_0, B_local_1] = B[B_local_0, B_local_1, pad=0.0]" in text
    assert "A[i, k] * B_local[k, j_o * 4 + j_i]" in text


def test_pack_blocks_one_dimension():
    text = format_nest(scheduled(MATMUL, MM, "split j 4\npack B at i block 1 4"))
    assert "alloc B_pack: f32[2, 3, 4] local" in text
    assert "B_pack[B_pack_0, B_pack_1, B_pack_2] = B[B_pack_1, B_pack_0 * 4 + B_pack_2, pad=0.0]" in text
    assert "A[i, k] * B_pack[j_o, k, j_i]" in text


def test_pack_zero_fills_the_last_partial_block():
    text = format_nest(scheduled(MATMUL, MM, "pack A at i block 1 2"))
    assert (
        "select(A_pack_0 * 2 + A_pack_2 < 3, A[i + A_pack_1, A_pack_0 * 2 + A_pack_2, pad=0.0], 0.0)" in text
    )
    assert "A_pack[k // 2, 0, k % 2]" in text


@pytest.mark.parametrize(
    "schedule",
    [
        "cache_write C at i",
        "cache_write C at j",
        "cache_write C at k",
        "cache_write C at i_init",
        TILED + "cache_write C at j_o",
        TILED + "unroll i_i\nvectorize j_i\ncache_write C at j_o\nparallel i_o",
        "reorder k i\ncache_write C at k",
        "split k 2\ncache_write C at k_o",
        "split k 2 peel\ncache_write C at j",
        "cache_read A at i",
        "cache_read B at i\ncache_read A at j",
        "split j 4\ncache_read B at j_o\ncache_read A at j_i",
        "pack B at i block 1 4",
        "pack B at i block 0 2",
        "pack A at j block 1 2",
        "split k 2\nsplit j 4\nreorder k_o i j_o k_i\npack B at k_o block 1 4\ncache_write C at j_o",
        "split i 3\nsplit j 4\nreorder k i_o\npack B at k block 1 4\npack A at i_o block 0 3\ncache_write C at j_o",
    ],
)
def test_cache_preserves_results(schedule):
    check_schedule(MATMUL, MM, schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "cache_read X at k",
        "cache_read X at h",
        "pack X at h block 2 2",
        "cache_read F at k\ncache_write Y at h",
        "split w 2\ncache_write Y at h\ncache_read X at w_o",
    ],
)
def test_cache_on_a_padded_convolution(schedule):
    check_schedule(CONV, {"C": 2, "H": 5, "W": 4, "K": 2}, schedule)


@pytest.mark.parametrize(
    "schedule", ["cache_read X at h", "pack X at h block 2 2", "split w 2\ncache_read X at w_o"]
)
def test_reads_of_a_staged_copy_need_no_bounds_test(schedule):
    """The copy holds the whole window, halo included (filled with the pad value), so the reads of
    it drop their `pad=` and the compute loop loads without a bounds test (3-8x on conv2d)."""
    shapes = {"C": 2, "H": 5, "W": 4, "K": 2}
    nest = check_schedule(CONV, shapes, schedule)
    staged = [
        ld
        for s in walk_stmts(nest.body)
        if isinstance(s, Store) and s.buffer.name == "Y"
        for ld in loads(s.value)
        if ld.buffer.name.startswith("X_")
    ]
    fills = [s for s in walk_stmts(nest.body) if isinstance(s, Store) and s.buffer.name.startswith("X_")]
    assert staged and all(ld.pad is None for ld in staged)
    assert fills and all(ld.pad is not None for s in fills for ld in loads(s.value) if ld.buffer.name == "X")


# Regression: cache_write dropped a split's guard whose extra points lie *inside* C (the loop j_i,
# shortened by a peel, is split again): those points belong to the next tile and were accumulated twice.
def test_cache_write_keeps_guards_that_are_not_tensor_bounds():
    nest = check_schedule(
        MATMUL, {"M": 1, "N": 7, "K": 2}, "split j 3 peel\nsplit j_i 2\ncache_write C at j_i_o"
    )
    assert "if j_i_o * 2 + j_i_i < 3:" in format_nest(nest)


# Regression: the copy filled positions outside X with 0 instead of the reads' pad (-inf here), so
# a max over a window hanging off the edge of all-negative values came out 0.
@pytest.mark.parametrize(
    "schedule", ["cache_read X at h", "pack X at h block 1 2", "split w 2\ncache_read X at w_i"]
)
def test_staged_copy_uses_the_pad_value(schedule):
    nest = scheduled(POOL, {"H": 6, "W": 6, "OH": 3, "OW": 3}, schedule)
    assert "pad=-inf]" in format_nest(nest).split("max(")[0]
    for seed in range(4):
        check_schedule(POOL, {"H": 6, "W": 6, "OH": 3, "OW": 3}, schedule, seed=seed)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "cache_write C at q",
            r"cache_write C at q: no loop named 'q' \(loops are i_init, j_init, i, j, k\)",
        ),
        ("cache_write Z at i", r"cache_write Z at i: no tensor named 'Z' \(tensors are A, B, C\)"),
        ("cache_write A at i", r"cache_write A at i: A is not written inside loop i"),
        (
            "split j 4 peel\ncache_write C at i",
            r"cache_write C at i: C is accessed at more than one index inside i; cannot keep one tile of it",
        ),
        (
            "fuse i j\ncache_write C at i_j",
            r"cache_write C at i_j: index i_j // 6 of C is not affine; cannot stage",
        ),
        (
            "cache_read C at i",
            r"cache_read C at i: C is written inside i; only tensors read there can be staged",
        ),
        ("cache_read A at i_init", r"cache_read A at i_init: A is not read inside loop i_init"),
        ("cache_read Z at i", r"cache_read Z at i: no tensor named 'Z'"),
        ("pack B at i block 2 4", r"pack B at i block 2 4: B has 2 dimensions; there is no dimension 2"),
        ("pack C at i block 0 4", r"pack C at i block 0 4: C is written inside i"),
    ],
)
def test_cache_errors(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(MATMUL, MM, schedule)


def test_an_in_bounds_non_affine_index_is_staged_whole_along_its_dimension():
    """`B[k, i_j % 6]` after `fuse i j` is known in bounds (no pad): B is staged whole along it."""
    text = format_nest(check_schedule(MATMUL, MM, "fuse i j\ncache_read B at k"))
    assert "B_local" in text


def test_reads_without_one_base_cannot_be_staged():
    text = "kernel sym(X: f32[N, N]) -> (Y: f32[N, N]) { Y[i, j] = X[i, j] + X[j, i] }"
    with pytest.raises(
        ScheduleError, match=r"cache_read X at j: accesses of X inside the loop do not share one base"
    ):
        scheduled(text, {"N": 3}, "cache_read X at j")


def test_reads_with_different_pads_cannot_be_staged():
    text = "kernel two(X: f32[N]) -> (Y: f32[N]) { Y[i] = max(X[i - 1, pad=-inf], X[i]) }"
    check_schedule(text, {"N": 5}, "cache_read X at i")  # X[i] is in bounds: it has no pad
    text = "kernel two(X: f32[N]) -> (Y: f32[N]) { Y[i] = max(X[i - 1, pad=-inf], X[i + 1]) }"
    with pytest.raises(
        ScheduleError, match=r"cache_read X at i: X is read with different pad values \(-inf, 0.0\)"
    ):
        scheduled(text, {"N": 5}, "cache_read X at i")


@pytest.mark.parametrize("schedule", ["parallel i\ncache_write C at j", "vectorize j\ncache_write C at j"])
def test_cache_write_inside_independent_parallel_or_vector_loops(schedule):
    check_schedule(MATMUL, MM, schedule)


# Regression: copying the tile in and out in every iteration of a reduction axis run by threads
# (`parallel k reduce`) or in SIMD lanes (`vectorize k reduce`) made the iterations race on it.
@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "reorder k i\nparallel k reduce\ncache_write C at j",
            r"cache_write C at j: loop k is parallel, and with the tile copied in and out in each iteration "
            r"every iteration updates the same C\[.*\] \(a reduction\); stage the tile outside it",
        ),
        (
            "parallel k reduce\ncache_write C at k",
            r"cache_write C at k: loop k is parallel, and with the tile",
        ),
        (
            "vectorize k reduce\ncache_write C at k",
            r"cache_write C at k: loop k is vector, and with the tile",
        ),
    ],
)
def test_cache_write_keeps_parallel_and_vector_loops_legal(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(MATMUL, MM, schedule)


STRIDED = (
    "kernel sconv(X: f32[C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[K, OH, OW]) {\n"
    "    Y[k, h, w] += X[c, 2*h + r - 1, S*w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3\n}"
)


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize(
    "schedule",
    [
        "cache_read X at h stride 2 {S}",
        "cache_read X at h stride 1 2",  # the rows' stride 2, split into phases too
        "reorder k h c r s w\ncache_read X at h stride 2 {S}\nvectorize w",
        "split w 2\ncache_read X at w_o stride 2 {S}",
        "cache_read X at k stride 2 {S}",
    ],
)
def test_cache_read_by_phase_preserves_results(stride, schedule):
    text = STRIDED.replace("S*w", f"{stride}*w")
    shapes = {"C": 2, "H": 9, "W": 11, "K": 3, "OH": 5, "OW": 11 // stride}
    check_schedule(text, shapes, schedule.format(S=stride))


def test_a_strided_window_reads_one_phase_contiguously():
    nest = scheduled(
        STRIDED.replace("S*w", "2*w"),
        {"C": 2, "H": 9, "W": 11, "K": 3, "OH": 5, "OW": 5},
        "cache_read X at h stride 2 2",
    )
    text = format_nest(nest)
    assert "alloc X_local: f32[2, 3, 2, 6] local" in text
    assert "X_local[c, r, s % 2, w + s // 2]" in text


def test_cache_read_stride_text_round_trips_and_checks_its_dimension():
    from kcomp.schedule import CacheRead, parse_schedule

    s = parse_schedule("cache_read X at h stride 2 4")
    assert s.steps == (CacheRead("X", "h", 2, 4),) and str(s).strip() == "cache_read X at h stride 2 4"
    with pytest.raises(ScheduleError, match="no dimension 5"):
        scheduled(CONV, {"C": 2, "H": 5, "W": 4, "K": 2}, "cache_read X at h stride 5 2")
