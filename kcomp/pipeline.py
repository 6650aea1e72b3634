"""The compiler pipeline as one flat list of named stages; each stage's output can be dumped (`--emit`).

    parse -> check (Program) -> lower (LoopNest) -> schedule -> emit (source) -> build (artifact)

Schedules arrive with the scheduling issue: until then the only schedule is "none", the naive loops
of the default lowering, and every report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.check import check
from kcomp.dtypes import LOWERED
from kcomp.errors import UsageError
from kcomp.loops import LoopNest
from kcomp.lower import lower
from kcomp.program import Program

NAIVE = "none (naive loops)"


@dataclass(frozen=True)
class Built:
    program: Program
    nest: LoopNest
    source: str
    artifact: Any
    schedule_source: str

    def arguments(
        self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], params: dict[str, float | int]
    ) -> list[Any]:
        """Values in the C ABI's order: inputs, outputs, scalar parameters (docs/abi.md)."""
        n = self.nest
        return (
            [inputs[b.name] for b in n.inputs]
            + [outputs[b.name] for b in n.outputs]
            + [params[p.name] for p in n.params]
        )


STAGES = ("ir", "loops", "c")


def front(module: S.Module, kernel: S.Kernel, shapes: dict[str, int]) -> Program:
    program = check(module, kernel, shapes)
    unsupported = sorted(
        {t.dtype.value for t in program.tensors if t.dtype not in LOWERED}
        | {p.dtype.value for p in program.params if p.dtype not in LOWERED}
    )
    if unsupported:
        raise UsageError(
            f"kernel '{kernel.name}' uses {', '.join(unsupported)}, which no target lowers yet"
            " (the type is parsed and checked only)"
        )
    return program


def schedule_nest(nest: LoopNest, schedule: Any) -> tuple[LoopNest, str]:
    if schedule not in (None, "none"):
        raise UsageError("schedules are not supported yet: only the naive loops (schedule 'none') exist")
    return nest, NAIVE


def build(
    module: S.Module, kernel: S.Kernel, shapes: dict[str, int], target: Any, schedule: Any = None
) -> Built:
    program = front(module, kernel, shapes)
    nest, source_of_schedule = schedule_nest(lower(program), schedule)
    source = target.emit(nest)
    artifact = target.build(source)
    return Built(program, nest, source, artifact, source_of_schedule)
