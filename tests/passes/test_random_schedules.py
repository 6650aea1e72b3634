"""Properties of random legal schedules: each one round-trips through its text, replays to the same
nest, and preserves the kernel's meaning (interpreter and compiled C against the reference).

A schedule is drawn step by step on the nest as it stands (`kcomp.fuzz.steps.draw_step`, which
`kcomp fuzz` uses too): a random step (split, tile, reorder, fuse,
unroll, vectorize [reduce], parallel [reduce], cache_write, cache_read, pack, layout) naming the
current loops and tensors is applied, kept if legal, and redrawn if the pass raises `ScheduleError`,
so every schedule is legal by construction.  Shapes are small (1..13 per dimension, capped by a work budget so the
interpreter stays quick), primes and sizes below the factors included.

The default run draws 20 examples per kernel; `KCOMP_LONG_TESTS=1` draws 500 (a number instead of
1 draws that many).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from helpers import build, check_schedule
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kcomp.errors import ScheduleError
from kcomp.fuzz.steps import draw_step
from kcomp.loops import LoopNest
from kcomp.passes import apply, apply_step
from kcomp.printer import canonical
from kcomp.schedule import Schedule, Step, parse_schedule

_LONG = os.environ.get("KCOMP_LONG_TESTS", "")
EXAMPLES = (500 if _LONG == "1" else int(_LONG)) if _LONG.isdigit() and _LONG != "0" else 20
MAX_STEPS = 10
TRIES = 8  # draws per step before giving up on it


@dataclass(frozen=True)
class Kernel:
    text: str
    dims: tuple[str, ...]
    work: int  # largest product of all dims (times `per_point`) a drawn shape may reach
    per_point: int = 1


KERNELS = {
    "matmul": Kernel(
        "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }",
        ("M", "N", "K"),
        2197,
    ),
    "broadcast": Kernel(
        "kernel bias_relu(X: f32[M, N], w: f32[N], b: f32[M]) -> (Y: f32[M, N]) {\n"
        "    Y[i, j] = max(X[i, j] * w[j] + b[i], 0.0)\n}",
        ("M", "N"),
        169,
    ),
    "row_reduce": Kernel(
        "kernel rows(x: f32[M, N]) -> (s: f32[M], m: f32[M]) {\n    s[i] += x[i, j]\n    m[i] max= x[i, j]\n}",
        ("M", "N"),
        169,
    ),
    "argmax": Kernel("kernel am(x: f32[M, N]) -> (y: i32[M]) { y[i] argmax= x[i, j] }", ("M", "N"), 169),
    "softmax": Kernel(
        "kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {\n    mx[n] max= X[n, d]\n    e[n, d] = exp(X[n, d] - mx[n])\n"
        "    s[n] += e[n, d]\n    Y[n, d] = e[n, d] / s[n]\n}",
        ("N", "D"),
        169,
    ),
    "conv": Kernel(
        "kernel conv(X: f32[C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[K, H, W]) {\n"
        "    Y[k, h, w] += X[c, h + r - 1, w + s - 1] * F[k, c, r, s]\n}",
        ("H", "W", "C", "K"),
        3000,
        per_point=9,
    ),
}


@st.composite
def shapes(draw: st.DrawFn, kernel: Kernel) -> dict[str, int]:
    """1..13 per dimension, each capped so the product stays within the kernel's work budget."""
    out: dict[str, int] = {}
    work = kernel.per_point
    for d in kernel.dims:
        out[d] = draw(st.integers(1, max(1, min(13, kernel.work // work))))
        work *= out[d]
    return out


class HypothesisChooser:
    """kcomp.fuzz.steps' `Chooser` over hypothesis draws (so failing examples shrink)."""

    def __init__(self, draw: st.DrawFn):
        self.draw = draw

    def choice(self, items):
        return self.draw(st.sampled_from(list(items)))

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def permutation(self, items):
        return list(self.draw(st.permutations(list(items))))

    def subset(self, items, min_size: int):
        items = list(items)
        return self.draw(
            st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)
        )


@dataclass(frozen=True)
class Case:
    shapes: dict[str, int]
    schedule: Schedule
    nest: LoopNest  # the naive nest with the schedule applied step by step

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Case(shapes={self.shapes}, schedule={str(self.schedule)!r})"


@st.composite
def legal_schedules(draw: st.DrawFn, kernel: Kernel) -> Case:
    """Random shapes and a schedule built by applying random steps, keeping only the legal ones."""
    sizes = draw(shapes(kernel))
    nest = build(kernel.text, sizes)[1]
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, MAX_STEPS))):
        for _ in range(TRIES):
            step = draw_step(HypothesisChooser(draw), nest)
            if step is None:
                continue
            try:
                nest = apply_step(nest, step)
            except ScheduleError:
                continue
            steps.append(step)
            break
    return Case(sizes, Schedule(tuple(steps)), nest)


@pytest.mark.parametrize("kernel", list(KERNELS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_random_legal_schedule(kernel: str, data: st.DataObject):
    k = KERNELS[kernel]
    case = data.draw(legal_schedules(k), label="case")
    event(f"{len(case.schedule.steps)} steps")  # shown by --hypothesis-show-statistics
    for verb in sorted({s.verb for s in case.schedule.steps}):
        event(f"uses {verb}")
    text = str(case.schedule)
    assert parse_schedule(text) == case.schedule
    replayed = apply(build(k.text, case.shapes)[1], parse_schedule(text))
    assert canonical(replayed) == canonical(case.nest)
    check_schedule(k.text, case.shapes, case.schedule)
