"""`parallel LOOP reduce`: a reduction axis shared by threads, each with a private partial result."""

from __future__ import annotations

import pytest

from kcomp import compile
from kcomp.errors import ScheduleError
from kcomp.schedule import Parallel, parse_schedule

GEMV = "dim M = 3, N = 70, K = 64\nkernel mm(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"


def test_text_round_trip():
    s = parse_schedule("parallel k reduce\nparallel i\n")
    assert s.steps == (Parallel("k", True), Parallel("i"))
    assert parse_schedule(str(s)) == s


@pytest.mark.parametrize(
    "schedule",
    [
        "reorder k i j\nparallel k reduce",
        "split k 16\nreorder k_o i k_i j\nvectorize j\nparallel k_o reduce",
    ],
)
def test_parallel_reduction_matches_the_reference(schedule):
    k = compile(GEMV, schedule=schedule)
    assert "reduction(+: C[0:210])" in k.source
    for seed in range(3):
        assert k.check(seed=seed).ok


def test_product_reduction():
    k = compile(
        "kernel p(X: f32[8, 40]) -> (P: f32[8]) { P[i] *= X[i, j] }",
        schedule="reorder j i\nparallel j reduce",
    )
    assert k.check().ok


def test_refused_without_reduce_with_a_hint():
    with pytest.raises(
        ScheduleError, match=r"parallel k: cannot run k in parallel: .*reduction.*parallel LOOP reduce"
    ):
        compile(GEMV, schedule="reorder k i j\nparallel k")


def test_reduce_refuses_max_and_loops_that_are_not_reductions():
    with pytest.raises(ScheduleError, match=r"parallel j reduce needs"):
        compile(
            "kernel m(X: f32[8, 40]) -> (M: f32[8]) { M[i] max= X[i, j] }",
            schedule="reorder j i\nparallel j reduce",
        )
    with pytest.raises(ScheduleError, match=r"parallel i reduce needs"):
        compile(GEMV, schedule="parallel i reduce")


def test_reduction_into_a_register_tile_keeps_the_tile_in_memory():
    """Found by `kcomp tune`: a cache_write tile promoted to registers was named in the reduction
    clause, which gcc rejected; a reduced tile must stay an array."""
    sched = (
        "split i 3\nsplit j 16\nsplit k 16\nreorder i_o j_o k_o k_i i_i j_i\nunroll i_i\n"
        "vectorize j_i\ncache_write C at j_o\nparallel k_i reduce"
    )
    k = compile(GEMV.replace("N = 70", "N = 64"), schedule=sched)
    assert "reduction(+: C_local" in k.source
    for seed in range(2):
        assert k.check(seed=seed).ok
