"""A throwaway third target, kept in the tests folder: the loop-IR interpreter (kcomp.interp) behind
kcomp's Target interface.  It is registered through `KCOMP_TARGETS=interp=interp_target:InterpTarget`
alone (test_third_target.py), which proves that adding a target needs no file outside its package:
compile, run --check, tune and bench reach it through the registry and its methods only.

Its "source" is the scheduled nest as `--emit loops` prints it; `build` finds the nest that text was
emitted from (the pipeline emits and builds in one process), and `run` interprets it.  Everything
else is the interface's loop-nest default: the rule-based loop scheduler, the loop search rules
(no vectors, one core), the roofline cost model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kcomp import interp
from kcomp.errors import BuildError, UsageError
from kcomp.loops import LoopNest
from kcomp.printer import format_nest
from kcomp.schedule import NONE, Schedule
from kcomp.targets.base import Arg, Capabilities, Target


class InterpTarget(Target):
    family = "interp"
    capabilities = Capabilities(source="loops", suffix=".loops.txt")

    def __init__(self) -> None:
        self.name = "interp"
        self.emitted: dict[str, LoopNest] = {}

    @classmethod
    def from_spec(cls, spec: str) -> InterpTarget:
        if spec != "interp":
            raise UsageError(f"target {spec!r}: the interpreter has no variants")
        return cls()

    def emit(self, nest: LoopNest, schedule: Schedule = NONE) -> str:
        text = format_nest(nest)
        self.emitted[text] = nest
        return text

    def build(self, source: str) -> LoopNest:
        if source not in self.emitted:
            raise BuildError("the interpreter builds only what this process emitted")
        return self.emitted[source]

    def run(self, artifact: LoopNest, args: Sequence[Arg]) -> Any:
        tensors = [*artifact.inputs, *artifact.outputs]
        arrays = {b.name: np.asarray(a) for b, a in zip(tensors, args, strict=False)}
        params = {p.name: a for p, a in zip(artifact.params, args[len(tensors) :], strict=True)}
        interp.run(artifact, arrays, params)
        return None
