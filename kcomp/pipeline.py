"""The compiler pipeline as one flat list of named stages; each stage's output can be dumped (`--emit`).

    parse -> check (Program) -> lower (LoopNest) -> schedule -> emit (source) -> build (artifact)

Which schedule a build uses, first match wins (DESIGN.md):
  1. the caller's: `--schedule FILE` or the API's `schedule=` (a Schedule, schedule text, a path,
     "none" for the naive loops, or "default" for the rule-based scheduler's);
  2. a `schedule KERNEL for TARGET { ... }` block in the `.kc` file;
  3. the best ok record of the tuning database for this workload, target and hardware (`kcomp tune`;
     none with KCOMP_NO_DB=1; records from other hardware are never used);
  4. the rule-based default scheduler (`kcomp.autoschedule`).
`Built.schedule_source` says which, and every report prints it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.autoschedule import default_schedule
from kcomp.check import check
from kcomp.dtypes import LOWERED
from kcomp.errors import ScheduleError, SourceError, Span, UsageError
from kcomp.loops import LoopNest
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.program import Program
from kcomp.schedule import NONE, STEP_TYPES, Schedule, parse_schedule

NAIVE = "none (naive loops)"
DEFAULT = "default (rule-based scheduler)"


@dataclass(frozen=True)
class Built:
    program: Program
    nest: LoopNest
    source: str
    artifact: Any
    schedule_source: str
    schedule: Schedule = NONE

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


STAGES = ("ir", "schedule", "loops", "c")


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


def choose_schedule(
    module: S.Module,
    kernel: S.Kernel,
    program: Program,
    target: Any,
    explicit: Any = None,
    *,
    use_block: bool = True,
) -> tuple[Schedule | None, str]:
    """The schedule by the precedence above and where it came from; None means the naive loops.
    `use_block=False` skips the file's block (it did not fit these shapes)."""
    if isinstance(explicit, str) and explicit.strip() == "default":
        return default_schedule(program, lower(program), target), DEFAULT
    if explicit is not None:
        return _explicit(explicit)
    family = getattr(target, "name", "cpu").split(":")[0]
    block = (
        module.schedule_for(kernel.name, family) if use_block and hasattr(module, "schedule_for") else None
    )
    if block is not None:
        return block.schedule, f"schedule block at {block.span}"
    from kcomp.search.db import tuned_schedule  # NOTE: here, not on top: kcomp.search imports this module

    tuned, note = tuned_schedule(program, target)
    if tuned is not None:
        return tuned, note
    return default_schedule(program, lower(program), target), f"{DEFAULT}; {note}" if note else DEFAULT


def _explicit(explicit: Any) -> tuple[Schedule | None, str]:
    """The caller's schedule: a Schedule, "none", a file (text, or JSON by its .json suffix), or text."""
    if isinstance(explicit, Schedule):
        return explicit, "given by the caller"
    if not isinstance(explicit, str | Path):
        raise UsageError(
            f"schedule= takes a Schedule, schedule text, a file path or 'none', not {type(explicit).__name__}"
        )
    text = str(explicit).strip()
    if text == "none":
        return None, NAIVE
    path = Path(text)
    if "\n" not in text and path.is_file():
        try:
            content = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--schedule {text}: cannot read it: {e}") from None
        if path.suffix == ".json":
            try:
                data = json.loads(content)
            except json.JSONDecodeError as e:
                raise SourceError(f"not valid JSON: {e.msg}", Span(text, e.lineno, e.colno)) from None
            return Schedule.from_json(data), f"file {text}"
        return parse_schedule(content, text), f"file {text}"
    first = text.split(None, 1)[0] if text else ""
    if isinstance(explicit, Path) or ("\n" not in text and first not in STEP_TYPES):
        raise UsageError(
            f"--schedule {text}: no such file (give a schedule file, or 'none' for the naive loops)"
        )
    return parse_schedule(text, "<schedule>"), "given by the caller"


def build(
    module: S.Module, kernel: S.Kernel, shapes: dict[str, int], target: Any, schedule: Any = None
) -> Built:
    program = front(module, kernel, shapes)
    chosen, source_of_schedule = choose_schedule(module, kernel, program, target, schedule)
    nest = lower(program)
    if chosen is not None:
        try:
            nest = apply(nest, chosen)
        except ScheduleError as e:
            if not (source_of_schedule.startswith("schedule block") and shapes):
                raise ScheduleError(f"{e} [schedule: {source_of_schedule}]") from None
            # NOTE: a block is written for the file's shapes; at other shapes (--shape, or bound from
            # arguments) a step may not fit.  Go on down the precedence (database, default) and say why.
            chosen, fallback = choose_schedule(module, kernel, program, target, use_block=False)
            nest = apply(nest, chosen) if chosen is not None else nest
            source_of_schedule = f"{fallback}; the {source_of_schedule} does not fit these shapes ({e})"
    source = target.emit(nest)
    artifact = target.build(source)
    return Built(program, nest, source, artifact, source_of_schedule, chosen or NONE)
