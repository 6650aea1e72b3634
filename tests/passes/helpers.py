"""Shared by the pass tests: build a kernel's naive loop nest, schedule it, and check the result
differentially (loop interpreter and compiled C against the numpy reference).

    nest = check_schedule(MATMUL, {"M": 7, "N": 5, "K": 3}, "split i 4\\nvectorize j")

`check_schedule` verifies the IR invariants after the schedule, runs every executor on the same
fresh random non-zero inputs (outputs pre-filled with NaN, so an element nobody writes shows) and
asserts each output is equal to the reference under the numeric policy (`kcomp.compare`).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from kcomp import interp
from kcomp.api import load_module
from kcomp.compare import compare_outputs
from kcomp.config import Config
from kcomp.data import random_inputs
from kcomp.loops import Loop, LoopNest, walk_stmts
from kcomp.loops.verify import verify
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.printer import format_nest, symbol_names
from kcomp.program import Program
from kcomp.reference import evaluate
from kcomp.schedule import Schedule, parse_schedule
from kcomp.targets.cpu.target import CpuTarget

EXECUTORS = ("interp", "c")


def build(kernel_text: str, shapes: dict[str, int]) -> tuple[Program, LoopNest]:
    """The checked program of the (only) kernel in `kernel_text` at `shapes`, and its naive nest."""
    module = load_module(kernel_text)
    program = front(module, module.kernel(None), shapes)
    return program, lower(program)


def scheduled(kernel_text: str, shapes: dict[str, int], schedule: Schedule | str) -> LoopNest:
    """The naive nest with `schedule` applied (ScheduleError propagates)."""
    if isinstance(schedule, str):
        schedule = parse_schedule(schedule)
    return apply(build(kernel_text, shapes)[1], schedule)


def loop_names(nest: LoopNest) -> list[str]:
    """The printed names of the nest's loops, in pre-order (what a schedule addresses)."""
    names = symbol_names(nest)
    return [names[s.var] for s in walk_stmts(nest.body) if isinstance(s, Loop)]


@functools.cache
def cpu_target() -> CpuTarget:
    """One CPU target per test process, building into a private cache; 2 threads run parallel loops."""
    cache = Path(tempfile.mkdtemp(prefix="kcomp-pass-tests-"))
    return CpuTarget(cfg=Config(cache_dir=cache, threads=2))


def check_schedule(
    kernel_text: str,
    shapes: dict[str, int],
    schedule: Schedule | str,
    executors: tuple[str, ...] = EXECUTORS,
    *,
    seed: int = 0,
) -> LoopNest:
    """Apply `schedule`, verify the nest, and check every executor against the reference.

    Returns the scheduled nest so a test can also look at its printed form.
    """
    program, naive = build(kernel_text, shapes)
    if isinstance(schedule, str):
        schedule = parse_schedule(schedule)
    nest = apply(naive, schedule)
    verify(nest)
    inputs = random_inputs(program, np.random.default_rng(seed))
    expected = evaluate(program, inputs)
    for executor in executors:
        outputs = {b.name: unwritten(b.shape, b.dtype.numpy) for b in program.outputs}
        arrays = {**{k: v.copy() for k, v in inputs.items()}, **outputs}
        _RUN[executor](nest, arrays)
        result = compare_outputs(program, {b.name: arrays[b.name] for b in program.outputs}, expected)
        bad = {name: str(c) for name, c in result.items() if not c.ok}
        assert not bad, (
            f"{executor} differs from the reference: {bad}\nschedule:\n{schedule}\n{format_nest(nest)}"
        )
    return nest


def unwritten(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An output array before the kernel runs: NaN (integers: their minimum), so unwritten elements show."""
    if np.issubdtype(dtype, np.integer):
        return np.full(shape, np.iinfo(dtype).min, dtype)
    return np.full(shape, np.nan if np.issubdtype(dtype, np.floating) else True, dtype)


def _run_c(nest: LoopNest, arrays: dict[str, np.ndarray]) -> None:
    target = cpu_target()
    library = target.build(target.emit(nest))
    target.run(library, [arrays[b.name] for b in nest.inputs + nest.outputs])


_RUN = {"interp": interp.run, "c": _run_c}
