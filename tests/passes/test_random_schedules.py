"""Properties of random legal schedules: each one round-trips through its text, replays to the same
nest, and preserves the kernel's meaning (interpreter and compiled C against the reference).

A schedule is drawn step by step on the nest as it stands: a random step (split, tile, reorder, fuse,
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
from kcomp.loops import Alloc, Guard, Loop, LoopNest, walk_stmts
from kcomp.passes import apply, apply_step
from kcomp.passes.dependence import accesses
from kcomp.printer import canonical, symbol_names
from kcomp.schedule import (
    CacheRead,
    CacheWrite,
    Fuse,
    Layout,
    Pack,
    Parallel,
    Reorder,
    Schedule,
    Split,
    Step,
    Tile,
    Unroll,
    Vectorize,
    parse_schedule,
)

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


def band(loop: Loop) -> list[Loop]:
    """`loop` and the loops perfectly nested inside it (guards in between allowed), outermost first."""
    chain = [loop]
    while True:
        body = chain[-1].body
        while len(body) == 1 and isinstance(body[0], Guard):
            body = body[0].body
        if len(body) != 1 or not isinstance(body[0], Loop):
            return chain
        chain.append(body[0])


KINDS = (
    "split",
    "tile",
    "reorder",
    "fuse",
    "unroll",
    "vectorize",
    "parallel",
    "cache_write",
    "cache_read",
    "pack",
)


def draw_step(draw: st.DrawFn, nest: LoopNest) -> Step | None:
    """A random step naming loops and tensors of `nest` (None: the drawn kind does not apply here)."""
    names = symbol_names(nest)
    loop = draw(st.sampled_from([s for s in walk_stmts(nest.body) if isinstance(s, Loop)]))
    name = names[loop.var]
    written, read = accesses(nest.body)
    temps = [s.buffer for s in walk_stmts(nest.body) if isinstance(s, Alloc)]
    match draw(st.sampled_from((*KINDS, "layout") if temps else KINDS)):
        case "split":
            return Split(name, draw(st.integers(1, loop.extent)), draw(st.sampled_from(("guard", "peel"))))
        case "tile":
            chain = band(loop)[:3]
            if len(chain) < 2:
                return None
            chain = chain[: draw(st.integers(2, len(chain)))]
            factors = tuple(draw(st.integers(1, lp.extent)) for lp in chain)
            return Tile(tuple(names[lp.var] for lp in chain), factors)
        case "reorder":
            chain = band(loop)
            if len(chain) < 2:
                return None
            picked = draw(st.lists(st.sampled_from(chain), min_size=2, max_size=len(chain), unique=True))
            return Reorder(tuple(names[lp.var] for lp in draw(st.permutations(picked))))
        case "fuse":
            if len(loop.body) != 1 or not isinstance(loop.body[0], Loop):
                return None
            return Fuse(name, names[loop.body[0].var])
        case "unroll":
            return Unroll(name) if loop.extent <= 8 else None
        case "vectorize":
            return Vectorize(name, draw(st.booleans()))
        case "parallel":
            return Parallel(name, draw(st.booleans()))
        case "cache_write":
            return CacheWrite(names[draw(st.sampled_from(sorted(written, key=names.get)))], name)
        case "cache_read":
            return CacheRead(names[draw(st.sampled_from(sorted(read, key=names.get)))], name)
        case "pack":
            buf = draw(st.sampled_from(sorted(read, key=names.get)))
            return Pack(names[buf], name, draw(st.integers(0, len(buf.shape) - 1)), draw(st.integers(1, 16)))
        case _:
            buf = draw(st.sampled_from(temps))
            return Layout(names[buf], tuple(draw(st.permutations(range(len(buf.shape))))))


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
            step = draw_step(draw, nest)
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
