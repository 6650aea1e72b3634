"""`cache_write ... init` (a register tile that starts from the reduction's identity, its fill pass
gone), staging a gathered operand (the whole gathered dimension), and the default scheduler's rule
for multiply-accumulates over a gathered operand: differential checks, refusals, where rules fire."""

from __future__ import annotations

import copy

import pytest
from helpers import build, check_schedule, cpu_target, scheduled

import kcomp
from kcomp.autoschedule import default_schedule
from kcomp.errors import ScheduleError
from kcomp.loops import Loop
from kcomp.printer import format_nest
from kcomp.schedule import CacheWrite
from kcomp.sparse import parse_format, prune

MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
BIAS = (
    "kernel lin(A: f32[M, K], B: f32[K, N], b: f32[N]) -> (C: f32[M, N]) {\n"
    "    C[i, j] = b[j]\n    C[i, j] += A[i, k] * B[k, j]\n}"
)
BAG = (
    "kernel bag(S: f32[T, L], ids: i32[T, L], E: f32[V, D]) -> (Y: f32[T, D]) {\n"
    "    Y[t, d] += S[t, l] * E[ids[t, l], d]\n}"
)
MM = {"M": 6, "N": 32, "K": 5}
BAGS = {"T": 9, "L": 4, "V": 13, "D": 40}
TILE = "split i 2\nsplit j 16\nreorder i_o j_o k i_i j_i\nunroll i_i\nvectorize j_i\n"


def top_loops(nest):
    return [s for s in nest.body if isinstance(s, Loop)]


@pytest.mark.parametrize("at", ["j_o", "i_o"])
def test_init_tiles_start_from_zero_and_the_fill_pass_is_gone(at):
    plain = scheduled(MATMUL, MM, TILE + f"cache_write C at {at}")
    nest = check_schedule(MATMUL, MM, TILE + f"cache_write C at {at} init")
    assert len(top_loops(nest)) == len(top_loops(plain)) - 1
    text = format_nest(nest)
    assert "C_local[" in text and "= 0.0" in text and "pad=0.0" not in text  # no copy-in of C


@pytest.mark.parametrize(
    ("kernel", "schedule", "message"),
    [
        (MATMUL, "split k 2\nreorder k_o i j k_i\ncache_write C at i init", "do not cover C once"),
        (BIAS, "cache_write C at i init", "does not fill all of C with one constant"),
        (MATMUL, "split i 4\ncache_write C at i_i init", "do not cover C once"),  # 8 rows for 6
    ],
)
def test_init_is_refused_where_a_tile_would_lose_values(kernel, schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(kernel, MM, schedule)


def test_init_step_text_round_trips():
    from kcomp.schedule import parse_schedule

    s = parse_schedule("cache_write C at j_o init")
    assert s.steps == (CacheWrite("C", "j_o", True),) and str(s).strip() == "cache_write C at j_o init"


def test_the_default_scheduler_folds_inits_where_they_replay():
    program, naive = build(MATMUL, {"M": 48, "N": 64, "K": 32})
    schedule = default_schedule(program, naive, cpu_target())
    assert any(isinstance(s, CacheWrite) and s.init for s in schedule.steps)
    check_schedule(MATMUL, {"M": 48, "N": 64, "K": 32}, schedule)


SPMM = """dim M = 24, K = 40, N = 48
kernel spmm(W: f32[M, K] sparse(group1x4), X: f32[K, N]) -> (Y: f32[M, N]) {
    Y[m, n] += W[m, k] * X[k, n]
}"""


@pytest.mark.parametrize(
    "schedule",
    [
        "split n 16\nreorder n_o v p bj n_i\nvectorize n_i\npack X at n_o block 1 16",
        "split n 16\nreorder v n_o p bj n_i\ncache_read X at n_o",
        "split n 16\nreorder n_o v p bj n_i\npack X at n_o block 1 16\nvectorize X_pack_2\nparallel v",
    ],
)
def test_a_gathered_operand_known_in_bounds_is_staged_whole_along_its_gathered_dimension(rng, schedule):
    w = prune(rng.standard_normal((24, 40)), parse_format("group1x4"), 0.7)
    k = kcomp.compile(SPMM, weights={"W": w}, schedule=schedule)
    assert "X_" in k.source and k.check(seed=4).ok


def test_a_bounds_checked_gather_is_not_staged():
    with pytest.raises(ScheduleError, match="not affine"):
        scheduled(BAG, BAGS, "split d 8\nreorder t d_o l d_i\npack E at d_o block 1 8")


def test_the_gathered_rule_gives_a_register_tile_and_not_to_a_gemm():
    program, naive = build(BAG, {"T": 64, "L": 8, "V": 100, "D": 256})
    schedule = default_schedule(program, naive, cpu_target())
    text = str(schedule)
    assert "cache_write Y at" in text and "init" in text and "vectorize d" in text
    check_schedule(BAG, {"T": 64, "L": 8, "V": 100, "D": 256}, schedule)
    program, naive = build(MATMUL, {"M": 64, "N": 64, "K": 64})
    gemm = str(default_schedule(program, naive, cpu_target()))
    assert "pack B" in gemm  # the GEMM rule, not the gathered one


@pytest.mark.parametrize(("l2", "width"), [(1 << 20, 64), (512 << 10, 32), (64 << 10, 128)])
def test_a_gathered_slab_narrows_until_it_fits_the_l2_it_is_given(l2, width):
    # E is 3072 x 512 floats (6 MiB): its column slabs go outermost, each as wide as fits three
    # quarters of the core's L2 (not below two vectors: past that the register tile's width)
    shapes = {"T": 96, "L": 8, "V": 3072, "D": 512}
    program, naive = build(BAG, shapes)
    target = copy.copy(cpu_target())  # NOTE: the shared target stays as it is
    target.l2_bytes = l2
    schedule = default_schedule(program, naive, target)
    assert f"split d {width}" in str(schedule)
    check_schedule(BAG, {"T": 9, "L": 4, "V": 300, "D": 512}, schedule)
