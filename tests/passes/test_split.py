"""split and tile: the rewrite on a tiny nest, the differential check, and every error message."""

from __future__ import annotations

import pytest
from helpers import check_schedule, loop_names, scheduled

from kcomp.errors import ScheduleError
from kcomp.printer import format_nest

SCALE = "kernel scale(x: f32[N]) -> (y: f32[N]) { y[i] = x[i] * 2.0 }"
MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
MM = {"M": 7, "N": 10, "K": 5}


def test_split_with_guard():
    text = format_nest(scheduled(SCALE, {"N": 10}, "split i 4"))
    assert "for i_o in 0..3:\n    for i_i in 0..4:\n      if i_o * 4 + i_i < 10:" in text
    assert "y[i_o * 4 + i_i] = x[i_o * 4 + i_i] * 2.0" in text


def test_exact_split_has_no_guard():
    text = format_nest(scheduled(SCALE, {"N": 12}, "split i 4"))
    assert "for i_o in 0..3:\n    for i_i in 0..4:\n      y[i_o * 4 + i_i]" in text
    assert "if" not in text


def test_split_with_peel():
    text = format_nest(scheduled(SCALE, {"N": 10}, "split i 4 peel"))
    assert "for i_o in 0..2:\n    for i_i in 0..4:\n      y[i_o * 4 + i_i]" in text
    assert "for i_t in 0..2:\n    y[8 + i_t] = x[8 + i_t] * 2.0" in text
    assert "if" not in text


def test_peel_clones_inner_loops():
    """The remainder is a copy of the body with fresh loops (printed with a suffix)."""
    nest = scheduled(MATMUL, MM, "split j 4 peel")
    assert loop_names(nest) == ["i_init", "j_init", "i", "j_o", "j_i", "k", "j_t", "k1"]


def test_split_by_the_extent_gives_an_outer_loop_of_one():
    assert "for i_o in 0..1:\n    for i_i in 0..10:" in format_nest(scheduled(SCALE, {"N": 10}, "split i 10"))


def test_split_keeps_a_parallel_outer_loop():
    text = format_nest(scheduled(SCALE, {"N": 10}, "parallel i\nsplit i 3"))
    assert "parallel for i_o in 0..4:\n    for i_i in 0..3:" in text


def test_tile_is_split_split_reorder():
    tiled = scheduled(MATMUL, MM, "tile i j 4 3")
    by_hand = scheduled(MATMUL, MM, "split i 4\nsplit j 3\nreorder i_o j_o i_i j_i")
    assert format_nest(tiled) == format_nest(by_hand)
    assert loop_names(tiled)[2:] == ["i_o", "j_o", "i_i", "j_i", "k"]


@pytest.mark.parametrize(
    "schedule",
    [
        "split i 4",
        "split i 4 peel",
        "split i 1",
        "split i 7",
        "split k 2\nsplit k_i 1",
        "split k 3 peel\nsplit j 4 peel\nsplit j_i 3",
        "split j_init 3 peel\nsplit i_init 2",
        "tile i j 3 4",
        "tile i j k 2 3 2",
        "split i 2 peel\ntile i_o j 2 3",
    ],
)
def test_split_preserves_results(schedule):
    check_schedule(MATMUL, MM, schedule)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 13])
@pytest.mark.parametrize("tail", ["guard", "peel"])
def test_split_small_and_prime_extents(n, tail):
    for factor in sorted({1, n // 2 or 1, n}):
        check_schedule(SCALE, {"N": n}, f"split i {factor} {tail}")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("split q 3", r"split q 3: no loop named 'q' \(loops are i_init, j_init, i, j, k\)"),
        ("split i 8", r"split i 8: factor 8 is larger than the extent 7 of loop i"),
        ("split i 8 peel", r"split i 8 peel: factor 8 is larger than the extent 7 of loop i"),
        ("split i 4\nsplit i 2", r"split i 2: no loop named 'i' \(loops are .*i_o, i_i"),
        ("tile i q 2 2", r"tile i q 2 2: no loop named 'q'"),
        ("tile i j 8 2", r"tile i j 8 2: factor 8 is larger than the extent 7 of loop i"),
        ("tile i_init k 2 2", r"tile i_init k 2 2: loops i_init_o, k_o.* are not nested inside one another"),
    ],
)
def test_split_errors(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(MATMUL, MM, schedule)
