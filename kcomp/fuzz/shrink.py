"""Shrink a failing fuzz case to a small reproducer, and save reproducers to a folder.

    small = shrink(program, result, schedule_text, attempt, budget=150)
    save(Path("fuzz-out"), 0, result, small)   # case_0.kc, case_0.schedule, case_0.json, README.md

Greedy, first improvement wins, until a full round changes nothing or `budget` cases have run:
  1. the schedule: the whole schedule dropped (`none`), else each step dropped, last first
  2. statements dropped (not one whose tensor a later statement reads), extra outputs dropped
  3. expressions: a node replaced by a same-typed child (`tanh(x) + y` -> `x + y` -> `x`), pads dropped
  4. dimensions: each base dimension set to 1, halved, or decreased by one
A candidate is kept when it still parses and type-checks and its outcome has the same signature
(the outcome and, for crash / compile_error, the exception type).  Candidates run through the same
worker function as the campaign, so a crashing candidate is classified, not fatal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from kcomp.errors import KcompError
from kcomp.fuzz.case import Case, Result
from kcomp.fuzz.program import Expr, GenProgram, names, rebuild, same_type_children, subexprs
from kcomp.parse import parse
from kcomp.pipeline import front


@dataclass(frozen=True)
class Shrunk:
    program: GenProgram
    schedule: str
    result: Result
    attempts: int


def valid(prog: GenProgram) -> bool:
    """Whether the program parses and type-checks (checked here, before spending a worker call)."""

    try:
        module = parse(prog.render(), "<shrink>")
        front(module, module.kernel(None), {})
    except (KcompError, ValueError, KeyError, StopIteration):
        return False
    return True


def shrink(
    prog: GenProgram, failed: Result, schedule: str, attempt: Callable[[Case], Result], budget: int = 150
) -> Shrunk:
    """The smallest variant of (`prog`, `schedule`) found that fails like `failed` (module docstring)."""
    want, case = failed.signature(), failed.case
    best = Shrunk(prog, schedule, failed, 0)
    tried: set[tuple[str, str]] = {(prog.render(), schedule)}
    runs = 0

    def fails(p: GenProgram, s: str) -> Result | None:
        nonlocal runs
        key = (p.render(), s)
        if key in tried or runs >= budget or not valid(p):
            return None
        tried.add(key)
        runs += 1
        r = attempt(replace(case, source=key[0], schedule=s))
        return r if r.signature() == want else None

    changed = True
    while changed and runs < budget:
        changed = False
        for p, s in _candidates(best.program, best.schedule):
            r = fails(p, s)
            if r is not None:
                best = Shrunk(p, s, r, runs)
                changed = True
                break
    return replace(best, attempts=runs)


def _candidates(prog: GenProgram, schedule: str) -> Iterator[tuple[GenProgram, str]]:
    steps = [line for line in schedule.splitlines() if line.strip()]
    if schedule not in ("none", "default"):
        if steps:
            yield prog, "none"
        for k in range(len(steps) - 1, -1, -1):
            yield prog, "\n".join(steps[:k] + steps[k + 1 :]) + "\n"
    for k, s in enumerate(prog.stmts):
        if s.target not in {n for t in prog.stmts[k + 1 :] for n in names(t.value)}:
            yield replace(prog, stmts=prog.stmts[:k] + prog.stmts[k + 1 :]), schedule
    for name in sorted(prog.keep):
        yield replace(prog, keep=prog.keep - {name}), schedule
    for k, s in enumerate(prog.stmts):
        for value in _simpler(s.value):
            yield (
                replace(prog, stmts=(*prog.stmts[:k], replace(s, value=value), *prog.stmts[k + 1 :])),
                schedule,
            )
    for k, (name, value) in enumerate(prog.dims):
        if isinstance(value, int):
            for smaller in sorted({1, value // 2, value - 1} - {0, value}):
                dims = (*prog.dims[:k], (name, smaller), *prog.dims[k + 1 :])
                yield replace(prog, dims=dims), schedule


def _simpler(e: Expr) -> Iterator[Expr]:
    """`e` with one node replaced by a same-typed child, or one pad dropped (outermost first)."""
    yield from same_type_children(e)
    if e[0] == "read" and e[3] is not None:
        yield (*e[:3], None)
    kids = subexprs(e)
    for k, kid in enumerate(kids):
        for small in _simpler(kid):
            yield rebuild(e, [*kids[:k], small, *kids[k + 1 :]])


def save(out: Path, n: int, failed: Result, small: Shrunk | None) -> Path:
    """Write case_N.kc, case_N.schedule and case_N.json (and refresh README.md); the .kc path."""
    source = small.program.render() if small else failed.case.source
    schedule = small.schedule if small else failed.case.schedule
    result = small.result if small else failed
    kc, sched = out / f"case_{n}.kc", out / f"case_{n}.schedule"
    kc.write_text(source)
    if schedule in ("none", "default"):
        sched.write_text(f"# --schedule {schedule}\n")
        flag = f"--schedule {schedule}"
    else:
        sched.write_text(schedule)
        flag = f"--schedule {sched.name}"
    command = f"kcomp run {kc.name} {flag} --check --seed {failed.case.seed} --target {failed.case.target}"
    info = {
        "outcome": result.outcome,
        "error": result.error,
        "target": failed.case.target,
        "program": failed.case.program,
        "schedule_kind": failed.case.label,
        "input_seed": failed.case.seed,
        "shrunk": small is not None,
        "shrink_attempts": small.attempts if small else 0,
        "reproduce": command,
        "original_program": failed.case.source,
        "original_schedule": failed.case.schedule,
    }
    (out / f"case_{n}.json").write_text(json.dumps(info, indent=2) + "\n")
    with open(out / "README.md", "a") as f:
        f.write(f"- case_{n}: {result.outcome} on {failed.case.target}: `{command}`\n")
    return kc
