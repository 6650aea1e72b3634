"""fuse: the rewrite on a tiny nest, the differential check, and every error message."""

from __future__ import annotations

import pytest
from helpers import check_schedule, scheduled

from kcomp.errors import ScheduleError
from kcomp.printer import format_nest

MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
ROWS = "kernel rows(x: f32[M, N]) -> (s: f32[M]) { s[i] += x[i, j] }"
BIAS = "kernel bias(X: f32[M, N], w: f32[N]) -> (Y: f32[M, N]) { Y[i, j] = X[i, j] + w[j] }"
MM = {"M": 4, "N": 6, "K": 3}


def test_fuse_makes_one_loop():
    text = format_nest(scheduled(BIAS, {"M": 4, "N": 6}, "fuse i j"))
    assert "for i_j in 0..24:\n    Y[i_j // 6, i_j % 6] = X[i_j // 6, i_j % 6] + w[i_j % 6]" in text


def test_fused_loop_keeps_the_outer_kind():
    assert "parallel for i_j in 0..24:" in format_nest(
        scheduled(BIAS, {"M": 4, "N": 6}, "parallel i\nfuse i j")
    )


def test_fused_loop_can_run_in_parallel():
    """The reason to fuse: a longer loop for the threads (the dependence test sees through // and %)."""
    nest = check_schedule(MATMUL, MM, "fuse i j\nparallel i_j")
    assert "parallel for i_j in 0..24:" in format_nest(nest)


@pytest.mark.parametrize(
    "schedule",
    [
        "fuse i j",
        "fuse i_init j_init",
        "fuse i j\nsplit i_j 5",
        "fuse i j\nsplit i_j 7 peel\nparallel i_j_o",
        "split j 4\nfuse i j_o\nparallel i_j_o",
        "reorder k j\nfuse k j",
        "fuse i j\nfuse i_j k",
    ],
)
def test_fuse_preserves_results(schedule):
    check_schedule(MATMUL, MM, schedule)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (3, 5)])
def test_fuse_odd_shapes(shape):
    check_schedule(BIAS, {"M": shape[0], "N": shape[1]}, "fuse i j\nparallel i_j")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("fuse i q", r"fuse i q: no loop named 'q' \(loops are i_init, j_init, i, j, k\)"),
        ("fuse i k", r"fuse i k: loop k is not the whole body of loop i; only directly nested loops fuse"),
        ("fuse j i", r"fuse j i: loop i is not the whole body of loop j"),
        ("fuse i_init j", r"fuse i_init j: loop j is not the whole body of loop i_init"),
        ("split j 4 peel\nfuse i j_o", r"fuse i j_o: loop j_o is not the whole body of loop i"),
        (
            "reorder k j\nparallel i\nfuse i k",
            r"fuse i k: i is parallel and the fused loop would run k in parallel too, but every iteration "
            r"updates the same C\[i, j\] \(a reduction\)",
        ),
    ],
)
def test_fuse_errors(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(MATMUL, MM, schedule)


def test_fused_loop_keeps_a_vector_kind_when_the_inner_loop_is_independent():
    nest = check_schedule(BIAS, {"M": 3, "N": 5}, "vectorize i\nfuse i j")
    assert "vector for i_j in 0..15:" in format_nest(nest)


# Regression: the fused loop kept the outer loop's vector kind without checking the inner loop, so a
# reduction ran in SIMD lanes (the compiled C summed wrongly); an unrolled one slipped past the limit;
# a parallel reduction axis fused with an inner loop became a plain parallel loop (threads raced on C).
@pytest.mark.parametrize(
    ("kernel", "shapes", "schedule", "message"),
    [
        (
            ROWS,
            {"M": 3, "N": 5},
            "vectorize i\nfuse i j",
            r"fuse i j: i is vector and the fused loop would run j in SIMD lanes too, but every iteration "
            r"updates the same s\[i\] \(a reduction\)",
        ),
        (
            MATMUL,
            {"M": 5, "N": 13, "K": 2},
            "unroll i\nfuse i j",
            r"fuse i j: i is unrolled and the fused loop would have 65 iterations \(unroll limit 64\)",
        ),
        (
            MATMUL,
            {"M": 2, "N": 3, "K": 4},
            "reorder k j\nparallel k reduce\nfuse k j",
            r"fuse k j: k is a parallel reduction into C; fused with j its threads would no longer own private",
        ),
    ],
    ids=["vector", "unrolled", "parallel-reduce"],
)
def test_fuse_checks_the_kind_it_keeps(kernel, shapes, schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(kernel, shapes, schedule)
