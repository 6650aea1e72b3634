"""reorder: the rewrite on a tiny nest, the differential check, and every error message."""

from __future__ import annotations

import pytest
from helpers import check_schedule, loop_names, scheduled

from kcomp.errors import ScheduleError
from kcomp.printer import format_nest

MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
SOFTMAX = (
    "kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {\n    mx[n] max= X[n, d]\n    e[n, d] = exp(X[n, d] - mx[n])\n"
    "    s[n] += e[n, d]\n    Y[n, d] = e[n, d] / s[n]\n}"
)
MM = {"M": 5, "N": 6, "K": 3}


def test_reorder_permutes_the_band():
    text = format_nest(scheduled(MATMUL, MM, "reorder k i"))
    assert (
        "for k in 0..3:\n    for j in 0..6:\n      for i in 0..5:\n        C[i, j] = C[i, j] + A[i, k] * B[k, j]"
        in text
    )


def test_unnamed_loops_keep_their_places():
    nest = scheduled(MATMUL, MM, "split j 4\nreorder k j_o")
    assert loop_names(nest)[2:] == ["i", "k", "j_i", "j_o"]


def test_guards_move_to_the_innermost_loop():
    before = format_nest(scheduled(MATMUL, MM, "split i 2"))
    assert "for i_i in 0..2:\n      if i_o * 2 + i_i < 5:\n        for j in 0..6:" in before
    after = format_nest(scheduled(MATMUL, MM, "split i 2\nreorder k i_i"))
    assert (
        "for i_o in 0..3:\n    for k in 0..3:\n      for j in 0..6:\n        for i_i in 0..2:\n          if i_o * 2 + i_i < 5:"
        in after
    )


@pytest.mark.parametrize(
    "schedule",
    [
        "reorder k i",
        "reorder j i",
        "reorder k j i",
        "reorder j_init i_init",
        "split i 2\nsplit k 2\nreorder k_i i_i k_o i_o j",
        "split j 4 peel\nreorder k j_i j_o",
        "split k 2\nreorder k_i i",
    ],
)
def test_reorder_preserves_results(schedule):
    check_schedule(MATMUL, MM, schedule)


@pytest.mark.parametrize(
    "schedule", ["reorder d n", "reorder d1 n1\nreorder d3 n3", "reorder d2 n2\nsplit n2 2"]
)
def test_reorder_softmax(schedule):
    check_schedule(SOFTMAX, {"N": 3, "D": 5}, schedule)


@pytest.mark.parametrize(
    ("kernel", "schedule", "message"),
    [
        ("matmul", "reorder i q", r"reorder i q: no loop named 'q' \(loops are i_init, j_init, i, j, k\)"),
        (
            "matmul",
            "reorder i_init k",
            r"reorder i_init k: loops i_init, k are not nested inside one another",
        ),
        ("softmax", "reorder n d1", r"reorder n d1: loops n, d1 are not nested inside one another"),
        (
            "matmul",
            "split j 4 peel\nreorder i k",
            r"reorder i k: loop i is not perfectly nested around k \(its body has 2 statements\); "
            r"reorder works on one band",
        ),
        (
            "matmul",
            "cache_write C at j\nsplit C_local_0 1\nreorder i j",
            r"reorder i j: C is accessed at different indices inside the band; reordering could change the result",
        ),
    ],
)
def test_reorder_errors(kernel, schedule, message):
    text, shapes = (MATMUL, MM) if kernel == "matmul" else (SOFTMAX, {"N": 3, "D": 5})
    with pytest.raises(ScheduleError, match=message):
        scheduled(text, shapes, schedule)


ARGMIN = "kernel am(A: f32[N, K]) -> (t: i32[N]) { t[n] argmin= A[n, k] }"


def test_an_arg_reduction_keeps_visiting_its_reduced_loop_in_order():
    """Found by the fuzzer: with k split and its parts swapped, a tie (padded reads of 0) was won
    by a later position than the first one."""
    shapes = {"N": 3, "K": 12}
    with pytest.raises(ScheduleError, match="k_o, k_i feed a conditional update"):
        scheduled(ARGMIN, shapes, "split k 4\nreorder k_i k_o")
    with pytest.raises(ScheduleError, match="must keep their order"):
        scheduled(ARGMIN, shapes, "split k 4\ntile k_o k_i 1 2")
    for legal in ("reorder k n", "split k 4\nreorder k_o n k_i", "split n 2\nreorder n_i n_o"):
        check_schedule(ARGMIN, shapes, legal)
