"""Bugs `kcomp fuzz --targets cuda` found in the CUDA emitter and the passes, each shrunk to a
reproducer: what the emulation reported as a race (or a pass accepted) before the fix, and what
happens now (the kernel runs and matches the reference, or the schedule is refused).

- code outside a loop bound to some axis of the block ran on every thread along it, so threads
  wrote the same shared or global elements at once: it now runs on the threads at index 0 there;
- a per-thread array (a `cache_write` at an outer thread loop) around an inner thread loop: each
  thread had its own copy and wrote back elements other threads computed; now refused;
- (with that fix, not found yet by a schedule) statements of one thread loop on different threads
  sharing memory would need a barrier inside the thread loop: refused;
- `fuse` of a bound loop with a reduction loop made the bound loop carry the reduction (a race);
  `fuse` now refuses it, and the emitter checks every bound loop is still independent;
- a reduction across threads (`bind l threadIdx.x reduce`) under the tail guard of a split outer
  loop wrote its combined value past the end of the output (the guard covered the accumulation
  only), and an integer max/min across threads started from i32's bounds whatever the type;
- the same reduction inside such a guard (the guard around the reduction loop, not in it): the
  threads past the tail skipped its barriers; the guard now moves inside the reduction.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from kcomp.api import compile as kc_compile
from kcomp.errors import ScheduleError
from kcomp.loops import Loop, LoopKind, LoopNest, walk_stmts
from kcomp.loops.common import set_kind, substitute_body
from kcomp.lower import lower
from kcomp.parse import parse
from kcomp.pipeline import front
from kcomp.schedule import parse_schedule
from kcomp.targets.cuda.emit import emit

pytestmark = pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("g++") is None, reason="needs nvcc and g++"
)

GATHER = """
dim D1 = 12
kernel fz(C: f32[D1], I3: i32[D1]) -> (t1: f32[D1]) {
    t1[i] = C[I3[i]] where i < D1
}
"""
PACKED_ROW = """
dim D0 = 12, D1 = 5, D3 = 1
kernel fz(A: f32[D1, D1]) -> (t0: f32[D3, D0]) {
    t0[i, j] += A[0, k] where i < D3, j < D0
}
"""
SHIFTED = """
dim D1 = 5, D2 = 3, E0 = (D1 - 1) // 2 + 1
kernel fz(A: f32[E0, D2, E0]) -> (t0: f32[E0, D2, E0]) {
    t0[i, j, k] = A[i, 2*i + k - 1, j] where i < E0, k < E0
}
"""
ARGMIN = """
dim D0 = 1, D1 = 2
kernel fz(B: f64[D0, D1]) -> (t0: i32[D0]) {
    t0[i] argmin= B[i, j] where i < D0, j < D1
}
"""
TWO = """
kernel fz(A: f32[4], B: f32[3]) -> (t: f32[4], u: f32[4, 3]) {
    t[i] = A[i] * 2.0
    u[i, j] = t[i] + B[j]
}
"""
ROWSUM = "kernel fz(A: f32[4, 5]) -> (s: f32[4]) { s[i] += A[i, j] }"
TOTAL = "kernel fz(A: f32[5]) -> (s: f32[]) { s[] += A[i] }"


def compiled(source: str, schedule: str):
    return kc_compile(source, target="cuda", schedule=parse_schedule(schedule, "<test>"))


@pytest.mark.parametrize(
    "source, schedule",
    [
        # the copy into I3_pack bound to z ran on all 12 y threads: now on threadIdx.y == 0
        (GATHER, "split i 12\npack I3 at i_o block 0 12\nbind i_i threadIdx.y\nbind I3_pack_1 threadIdx.z"),
        # a copy bound to y (one thread) ran on the block's 4 x threads
        (
            PACKED_ROW,
            "split j 12\nsplit k 4\npack A at k_o block 1 4\ntile j_o j_i k_o 1 7 2\nsplit j_i_o 1\n"
            "split j_i_i 6 peel\npack A at j_i_o_i block 1 9\nbind A_pack_02 threadIdx.y\n"
            "bind A_pack_21 threadIdx.x",
        ),
    ],
    ids=["pack-bound-to-z", "pack-bound-to-y"],
)
def test_code_off_an_axis_runs_on_its_first_thread(source: str, schedule: str):
    kernel = compiled(source, schedule)
    assert "threadIdx." in kernel.built.source and "== 0) {" in kernel.built.source
    for seed in (1, 2):
        assert kernel.check(seed=seed).ok


@pytest.mark.parametrize(
    "source, schedule, message",
    [
        (SHIFTED, "bind i threadIdx.y\nbind k threadIdx.x\ncache_write t0 at i", "per-thread array"),
        (ARGMIN, "bind i threadIdx.x\nfuse i j", "on CUDA's threads too"),
    ],
    ids=["local-around-thread-loop", "fuse-bound-with-reduction"],
)
def test_refused(source: str, schedule: str, message: str):
    with pytest.raises(ScheduleError, match=message):
        compiled(source, schedule)


def naive(source: str) -> LoopNest:
    module = parse(source, "<test>")
    return lower(front(module, module.kernel(None), {}))


def test_a_barrier_inside_a_thread_loop_is_refused():
    """threadIdx.x for i { t[i] = ..; threadIdx.y for j { u[i, j] = t[i] + .. } }: t[i] is written on
    thread (i, 0) and read on every (i, j) with no barrier between (built by hand: no pass nests one
    statement's loop in another's this way)."""
    nest = naive(TWO)
    first, second = nest.body
    inner = replace(second.body[0], kind=LoopKind.THREAD_Y)
    body = (*substitute_body(first.body, {first.var: second.var}), inner)
    fused = replace(nest, body=(Loop(second.var, second.extent, LoopKind.THREAD_X, body),))
    with pytest.raises(ScheduleError, match="need a barrier"):
        emit(fused)
    emit(replace(fused, body=(replace(fused.body[0], kind=LoopKind.SERIAL),)))  # one thread along x: fine


@pytest.mark.parametrize("source, kind", [(ROWSUM, LoopKind.THREAD_Y), (TOTAL, LoopKind.BLOCK_X)])
def test_emitter_checks_bound_loops_are_still_independent(source: str, kind: LoopKind):
    """A reduction loop bound (as a step after `bind` could leave it) is refused, unless bound to
    threadIdx.x as `bind LOOP threadIdx.x reduce` binds one."""
    nest = naive(source)
    k = next(s for s in walk_stmts(nest.body) if isinstance(s, Loop) and s.extent == 5)  # the reduction
    with pytest.raises(ScheduleError, match="no longer independent"):
        emit(set_kind(nest, k, kind))


TAIL = """
dim D0 = 2, D1 = 7
kernel fz(A: f32[D0, D0, D0]) -> (t0: f32[D0, D0, D1]) {
    t0[i, j, k] += A[i, j, l] where i < D0, k < D1
}
"""


def test_a_reduction_across_threads_keeps_the_outer_tail_guard():
    kernel = compiled(TAIL, "fuse j k\ntile j_k l 12 2\nbind l_i threadIdx.x reduce")
    for seed in (1, 2):
        assert kernel.check(seed=seed).ok  # the emulation reported writes past t0's end before


def test_an_i64_max_across_threads_starts_below_every_value():
    source = "kernel fz(A: i64[4, 8]) -> (m: i64[4]) { m[i] max= A[i, j] * -3000000000 }"
    kernel = compiled(source, "bind i blockIdx.x\nbind j threadIdx.x reduce")
    a = np.abs(np.random.default_rng(0).integers(1, 50, (4, 8))).astype(np.int64)
    np.testing.assert_array_equal(kernel(a), (a * -3_000_000_000).max(axis=1))


def test_a_reduction_across_threads_inside_a_tail_guard_reaches_its_barriers():
    # kcomp fuzz --programs 150 --seed 88 --targets cpu,cuda, program 137: the tail guard of a split
    # loop bound to threadIdx.y enclosed the reduction, so the threads past the tail skipped its
    # barriers and shuffles (the emulation: barrier divergence); the guard now moves inside it
    source = "kernel fz(F: f32[2, 9, 9], I4: i32[2]) -> (t2: f32[9]) { t2[i] += F[j, I4[j], i] }"
    kernel = compiled(source, "split i 8\nbind i_i threadIdx.y\nbind j threadIdx.x reduce")
    for seed in (1, 2):
        assert kernel.check(seed=seed).ok
