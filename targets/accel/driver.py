"""The accelerator's pipeline from a `.kc` kernel: schedule by precedence, map, simulate, check.

    c = compile_kernel(module, kernel, shapes, AccelTarget.from_spec("accel"), schedule=None)
    run = run_checked(c, seed=0)        # random non-zero inputs, simulated, compared with numpy
    run.ok, run.result.cycles, run.result.report()

The schedule follows DESIGN.md's precedence (`kcomp.pipeline.choose_schedule`), with the
accelerator's own rule-based mapping standing in for the default scheduler and the naive mapping
for `--schedule none`; `Compiled.schedule_source` says which.  A `.kc` block that does not fit
overridden shapes, or whose tiles do not fit this configuration's memories, falls back to the
default mapping, and says why.
`kcomp sim` and `kcomp bench accel` both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.arguments import check_arrays
from kcomp.check import param_defaults
from kcomp.compare import Comparison, compare_outputs
from kcomp.data import random_inputs, random_params
from kcomp.errors import ScheduleError
from kcomp.loops import LoopNest
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.pipeline import DEFAULT, NAIVE, choose_schedule, front
from kcomp.program import Program
from kcomp.reference import evaluate
from kcomp.schedule import Schedule
from kcomp.targets.accel.backend import mappings
from kcomp.targets.accel.mapping import Mapping
from kcomp.targets.accel.match import Contraction, match
from kcomp.targets.accel.result import SimResult
from kcomp.targets.accel.target import AccelTarget, Artifact

ACCEL_DEFAULT = "default (accelerator mapping rules)"
ACCEL_NAIVE = "none (naive mapping: dim-sized tiles, one buffer each)"


@dataclass(frozen=True)
class Compiled:
    program: Program
    nest: LoopNest  # scheduled
    schedule: Schedule
    schedule_source: str
    artifact: Artifact
    target: AccelTarget
    mappings: list[str]  # one line per contraction group (`describe_mapping`)
    defaults: dict[str, Any] = field(default_factory=dict)  # parameter defaults of the kernel


@dataclass(frozen=True)
class CheckedRun:
    ok: bool
    max_abs_err: float
    max_rel_err: float
    outputs: dict[str, Comparison]
    result: SimResult


def compile_kernel(
    module: S.Module, kernel: S.Kernel, shapes: dict[str, int], target: AccelTarget, schedule: Any = None
) -> Compiled:
    """The kernel mapped onto `target`; ScheduleError (the kernel or the mapping cannot run)."""
    program = front(module, kernel, shapes)
    naive = lower(program)
    chosen, source = _choose(module, kernel, program, target, naive, schedule)
    try:
        nest = apply(naive, chosen)
        artifact = target.compile(nest, chosen)
    except ScheduleError as e:
        # NOTE: a block is written for the file's shapes (pipeline.build falls back the same way for
        # the CPU) and for some accelerator: on other shapes, or when its tiles do not fit this
        # configuration's memories (a mapping error, not a pass error), go on down the precedence.
        if not source.startswith("schedule block") or not (shapes or _compiles(naive, chosen)):
            raise ScheduleError(f"{e} [schedule: {source}]") from None
        where = "these shapes" if shapes else f"the {target.cfg.name} accelerator"
        chosen, fallback = _choose(module, kernel, program, target, naive, None, use_block=False)
        nest = apply(naive, chosen)
        artifact = target.compile(nest, chosen)
        source = f"{fallback}; the {source} does not fit {where} ({e})"
    lines = [
        describe_mapping(g, m, plain.text)
        for (g, m), plain in zip(mappings(nest, target.cfg, chosen), match(naive).groups, strict=True)
    ]
    return Compiled(program, nest, chosen, source, artifact, target, lines, param_defaults(kernel))


def _choose(
    module: S.Module,
    kernel: S.Kernel,
    program: Program,
    target: AccelTarget,
    naive: LoopNest,
    explicit: Any,
    *,
    use_block: bool = True,
) -> tuple[Schedule, str]:
    """`pipeline.choose_schedule`, with the accelerator's default and naive mappings standing in for
    the CPU's default scheduler and the naive loops."""
    chosen, source = choose_schedule(module, kernel, program, target, explicit, use_block=use_block)
    if source.startswith(DEFAULT):
        return target.default_schedule(naive), ACCEL_DEFAULT + source[len(DEFAULT) :]
    if source == NAIVE:
        return target.naive_schedule(naive), ACCEL_NAIVE
    assert chosen is not None
    return chosen, source


def _compiles(naive: LoopNest, schedule: Schedule) -> bool:
    """Whether the schedule's steps apply (its error, then, was the backend's: a mapping that does
    not fit, which depends on the configuration)."""
    try:
        apply(naive, schedule)
    except ScheduleError:
        return False
    return True


def arguments(
    c: Compiled, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], params: dict
) -> list:
    """Values in ABI order: inputs, outputs, scalar parameters."""
    n = c.nest
    return (
        [inputs[b.name] for b in n.inputs]
        + [outputs[b.name] for b in n.outputs]
        + [params[p.name] for p in n.params]
    )


def run_checked(
    c: Compiled,
    seed: int | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    params: dict[str, float] | None = None,
) -> CheckedRun:
    """Simulate on fresh random inputs (given ones replace them by name) and compare with the reference."""
    rng = np.random.default_rng(seed)
    arrays = random_inputs(c.program, rng)
    if inputs:
        arrays.update(check_arrays(c.program, inputs))
    values = {**random_params(c.program, rng, c.defaults), **(params or {})}
    outputs = {b.name: np.empty(b.shape, b.dtype.numpy) for b in c.program.outputs}
    result = c.target.simulate(c.artifact, arguments(c, arrays, outputs, values))
    comparisons = compare_outputs(c.program, outputs, evaluate(c.program, arrays, values))
    return CheckedRun(
        ok=all(r.ok for r in comparisons.values()),
        max_abs_err=max((r.max_abs_err for r in comparisons.values()), default=0.0),
        max_rel_err=max((r.max_rel_err for r in comparisons.values()), default=0.0),
        outputs=comparisons,
        result=result,
    )


def describe_mapping(g: Contraction, m: Mapping, text: str | None = None) -> str:
    """One line: the statement (`text`: as the unscheduled nest prints it), tiles, order, buffering."""
    sizes = " x ".join(str(min(m.tile(r), g.extent(r))) for r in ("i", "j", "k") if g.role(r) is not None)
    doubled = " ".join(sorted(m.double_buffer)) or "none"
    return f"{text or g.text}: tiles {sizes}, tile order {' '.join(m.order)}, double-buffered: {doubled}"
