"""The compiler pipeline: the one road from a kernel and a schedule to an artifact, for every command
and every target.  A flat list of named stages, each one's output printable (`--emit STAGE`):

    front    parse -> check                   Program (tensor IR)                      --emit ir
    lower    Program -> naive LoopNest        (once: the schedule is chosen on it too)
    choose   the schedule, and where from     Schedule                                 --emit schedule
    apply    the schedule's passes            scheduled LoopNest                       --emit loops
    emit     target.emit(nest, schedule)      source text (C, assembly, ...)           --emit source
    build    target.build(source)             artifact (a library, a program, ...)

Which schedule, first match wins (DESIGN.md):
  1. the caller's: `--schedule FILE` or the API's `schedule=` (a Schedule, schedule text, a path,
     "none" for the target's naive schedule, or "default" for its rule-based one);
  2. a `schedule KERNEL for FAMILY { ... }` block in the `.kc` file;
  3. the best ok record of the tuning database for this workload, target and hardware (`kcomp tune`;
     none with KCOMP_NO_DB=1; records from other hardware are never used);
  4. the target's rule-based default (`target.default_schedule`).
`Built.schedule_source` says which, and every report prints it.  A block is written for the file's
shapes and for some machine: when it does not fit other shapes, or the target refuses it (an
accelerator's tiles that overflow a smaller configuration's memories), the pipeline goes on down the
precedence and says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.check import check
from kcomp.db.lookup import tuned_schedule
from kcomp.dtypes import LOWERED
from kcomp.errors import ScheduleError, SourceError, Span, Unsupported, UsageError
from kcomp.loops import LoopNest
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.printer import format_nest, format_program
from kcomp.program import Program
from kcomp.schedule import STEP_TYPES, Schedule, parse_schedule
from kcomp.sparse.rewrite import SparseReport, kept_dense, sparsify
from kcomp.sparse.weights import bind_weights
from kcomp.targets.base import Target

STAGES = ("ir", "schedule", "loops", "source")


@dataclass(frozen=True)
class Chosen:
    """A schedule and where it came from (`source`, for reports); `block`: a `.kc` schedule block."""

    schedule: Schedule
    source: str
    block: bool = False


@dataclass(frozen=True)
class Built:
    program: Program
    naive: LoopNest  # the lowered, unscheduled nest
    nest: LoopNest  # after the schedule
    schedule: Schedule
    schedule_source: str
    source: str  # the target's source text
    artifact: Any
    target: Target
    notes: tuple[str, ...] = ()  # the target's lines about how the schedule landed (accelerator mappings)
    lowered: Program | None = None  # what was lowered, when it differs from `program` (sparse weights packed)
    sparse: tuple[SparseReport, ...] = ()  # what the sparse rewrite did with each sparse weight

    @property
    def bound(self) -> dict[str, np.ndarray]:
        """Inputs the compiler holds the values of (sparse weights, packed): callers never pass them."""
        return dict((self.lowered or self.program).bound)

    def arguments(
        self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], params: dict[str, float | int]
    ) -> list[Any]:
        """Values in the ABI's order: inputs, outputs, scalar parameters (docs/abi.md)."""
        n = self.nest
        values = {**self.bound, **inputs}
        return (
            [values[b.name] for b in n.inputs]
            + [outputs[b.name] for b in n.outputs]
            + [params[p.name] for p in n.params]
        )

    def stage(self, name: str) -> str:
        """The text of one stage (`STAGES`; the target's source language name means `source`)."""
        if name == self.target.capabilities.source:
            name = "source"
        texts = {
            "ir": lambda: format_program(self.lowered or self.program),
            "schedule": lambda: f"# schedule: {self.schedule_source}\n{self.schedule}".rstrip("\n"),
            "loops": lambda: format_nest(self.nest),
            "source": lambda: self.source.rstrip("\n"),
        }
        if name not in texts:
            raise UsageError(f"--emit {name}: stages are {', '.join(STAGES)}")
        return texts[name]()


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


def with_weights(
    program: Program, target: Target, weights: dict[str, Any] | None, rearrange: bool = True
) -> tuple[Program, Program, tuple[SparseReport, ...]]:
    """The program with its sparse weights bound (dense, for the reference), the program to lower on
    `target` (packed by the sparse rewrite, or as it is for a target that takes them as tiles), and
    what became of each weight."""
    dense = bind_weights(program, weights)
    if target.capabilities.sparse == "packed":
        packed, reports = sparsify(dense, rearrange)
        return dense, packed, reports
    return dense, dense, kept_dense(dense, "the target skips its zero tiles")


def check_takes(program: Program, target: Target) -> None:
    """`Unsupported` when the program has tensors of an element type the target does not lower."""
    takes = target.capabilities.dtypes
    foreign = sorted({t.dtype.value for t in program.tensors if t.dtype not in takes})
    if foreign:
        known = ", ".join(sorted(d.value for d in takes))
        raise Unsupported(
            f"target {target.name} does not lower {', '.join(foreign)} tensors (it takes {known})"
        )


def choose_schedule(
    module: S.Module,
    kernel: S.Kernel,
    program: Program,
    naive: LoopNest,
    target: Target,
    explicit: Any = None,
    *,
    use_block: bool = True,
) -> Chosen:
    """The schedule by the precedence above.  `use_block=False` skips the file's block (it did not fit)."""
    if isinstance(explicit, str) and explicit.strip() == "default":
        return Chosen(target.default_schedule(program, naive), target.default_label)
    if isinstance(explicit, str) and explicit.strip() == "none":
        return Chosen(target.naive_schedule(naive), target.naive_label)
    if explicit is not None:
        return _explicit(explicit)
    block = module.schedule_for(kernel.name, target.family) if use_block else None
    if block is not None:
        return Chosen(block.schedule, f"schedule block at {block.span}", block=True)
    tuned, note = tuned_schedule(program, naive, target)
    if tuned is not None:
        return Chosen(tuned, note)
    label = f"{target.default_label}; {note}" if note else target.default_label
    return Chosen(target.default_schedule(program, naive), label)


def _explicit(explicit: Any) -> Chosen:
    """The caller's schedule: a Schedule, a file (text, or JSON by its .json suffix), or text."""
    if isinstance(explicit, Schedule):
        return Chosen(explicit, "given by the caller")
    if not isinstance(explicit, str | Path):
        raise UsageError(
            f"schedule= takes a Schedule, schedule text, a file path or 'none', not {type(explicit).__name__}"
        )
    text = str(explicit).strip()
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
            return Chosen(Schedule.from_json(data), f"file {text}")
        return Chosen(parse_schedule(content, text), f"file {text}")
    first = text.split(None, 1)[0] if text else ""
    if isinstance(explicit, Path) or ("\n" not in text and first not in STEP_TYPES):
        raise UsageError(
            f"--schedule {text}: no such file (give a schedule file, or 'none' for the naive loops)"
        )
    return Chosen(parse_schedule(text, "<schedule>"), "given by the caller")


def build(
    module: S.Module,
    kernel: S.Kernel,
    shapes: dict[str, int],
    target: Target,
    schedule: Any = None,
    weights: dict[str, Any] | None = None,
    rearrange: bool = True,
) -> Built:
    """Every stage, in order, for `kernel` at `shapes` on `target` (module docstring).  `weights`: the
    values of the kernel's sparse inputs, packed by `kcomp.sparse` (rearranged unless `rearrange` is
    False) before lowering; the program keeps them dense for the reference."""
    dense, program, reports = with_weights(front(module, kernel, shapes), target, weights, rearrange)
    check_takes(program, target)
    naive = lower(program)
    chosen = choose_schedule(module, kernel, program, naive, target, schedule)
    nest = None
    try:
        nest = apply(naive, chosen.schedule)
        source = target.emit(nest, chosen.schedule)
    except ScheduleError as e:
        # NOTE: at the block's own shapes its steps must apply; what may not fit there is the target
        if not chosen.block or not (shapes or nest is not None):
            kind = (
                Unsupported if isinstance(e, Unsupported) else ScheduleError
            )  # what the target cannot run stays so
            raise kind(f"{e} [schedule: {chosen.source}]") from None
        where = "these shapes" if shapes else f"target {target.name}"
        fallback = choose_schedule(module, kernel, program, naive, target, use_block=False)
        nest = apply(naive, fallback.schedule)
        source = target.emit(nest, fallback.schedule)
        chosen = Chosen(
            fallback.schedule, f"{fallback.source}; the {chosen.source} does not fit {where} ({e})"
        )
    artifact = target.build(source)
    notes = target.notes(naive, nest, chosen.schedule) + tuple(r.line() for r in reports)
    lowered = program if program is not dense else None
    return Built(
        dense, naive, nest, chosen.schedule, chosen.source, source, artifact, target, notes, lowered, reports
    )
