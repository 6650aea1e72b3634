"""One fuzz case: a program on a target with a schedule, how a worker runs it, and what came of it.

The outcomes (kcomp.fuzz.run's docstring explains each): ok, mismatch, race, crash, compile_error,
timeout, and unsupported (the target raised `Unsupported`: the kernel is outside what it runs).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from kcomp.api import compile as compile_kernel
from kcomp.errors import KcompError, KernelFault, Unsupported
from kcomp.fuzz.weights import sparse_weights
from kcomp.schedule import parse_schedule
from kcomp.search.measure import WorkerCrashed, WorkerError, WorkerTimeout

OUTCOMES = ("ok", "mismatch", "race", "crash", "compile_error", "timeout", "unsupported")
FAILURES = ("mismatch", "race", "crash", "compile_error", "timeout")


@dataclass(frozen=True, slots=True)
class Case:
    """One program on one target with one schedule ("none", "default" or schedule text)."""

    source: str
    target: str
    schedule: str
    label: str = ""
    seed: int = 0  # of the random inputs
    program: int = 0  # index in the campaign


@dataclass
class Result:
    case: Case
    outcome: str
    error: str = ""
    schedule_used: str = ""  # the schedule that was applied, as text (what "default" resolved to)

    def signature(self) -> str:
        """What must stay the same while shrinking: the outcome and, for errors, the exception type."""
        head = self.error.split(":", 1)[0].strip() if self.outcome in ("crash", "compile_error") else ""
        if self.outcome == "race":  # the emulator's kind of report: race, out of bounds, barrier
            head = _fault_kind(self.error)
        return f"{self.outcome}:{head}"


def run_case(case: Case) -> dict[str, Any]:
    """In a worker: compile `case` and check it against the reference on seeded random inputs."""
    try:
        schedule: Any = case.schedule
        if case.schedule not in ("none", "default"):
            schedule = parse_schedule(case.schedule, "<fuzz schedule>")
        weights = sparse_weights(case.source)
        kernel = compile_kernel(case.source, target=case.target, schedule=schedule, weights=weights)
        used = str(kernel.built.schedule)
    except Unsupported as e:
        return {"outcome": "unsupported", "error": str(e)}
    except KcompError as e:
        return {"outcome": "compile_error", "error": f"{type(e).__name__}: {e}"}
    except Exception as e:
        return {"outcome": "crash", "error": _trace("compile", e)}
    try:
        check = kernel.check(seed=case.seed)
    except KernelFault as e:  # a race, an out-of-bounds access, ...: wrong, whatever the outputs
        return {"outcome": "race", "error": f"{type(e).__name__}: {e}", "schedule_used": used}
    except KcompError as e:
        return {
            "outcome": "compile_error",
            "error": f"{type(e).__name__}: {e} (at run)",
            "schedule_used": used,
        }
    except Exception as e:
        return {"outcome": "crash", "error": _trace("run", e), "schedule_used": used}
    if not check.ok:
        bad = [n for n, c in check.outputs.items() if not c.ok]
        return {
            "outcome": "mismatch",
            "error": f"outputs {', '.join(bad)} differ from the reference: max abs err"
            f" {check.max_abs_err:.3g}, max rel err {check.max_rel_err:.3g}",
            "schedule_used": used,
        }
    return {"outcome": "ok", "schedule_used": used}


def _fault_kind(error: str) -> str:
    """The kind of a run-time fault's report, so shrinking keeps a race a race (not any fault)."""
    text = error.lower()
    found = [(text.find(w), w) for w in ("race on", "out-of-bounds", "barrier divergence") if w in text]
    return min(found)[1] if found else ""


def _trace(phase: str, e: BaseException) -> str:
    tail = "".join(traceback.format_exception(e)[-4:]).rstrip()
    return f"{type(e).__name__}: {e} (in {phase})\n{tail}"


def classify(case: Case, outcome: Any) -> Result:
    """A worker's reply (a dict) or its failure (`WorkerTimeout`, `WorkerCrashed`, `WorkerError`)."""
    if isinstance(outcome, WorkerTimeout):
        return Result(case, "timeout", str(outcome))
    if isinstance(outcome, WorkerCrashed):
        return Result(case, "crash", f"WorkerCrashed: {outcome}")
    if isinstance(outcome, WorkerError | BaseException):
        return Result(case, "crash", f"{type(outcome).__name__}: {outcome}")
    if not isinstance(outcome, dict) or outcome.get("outcome") not in OUTCOMES:
        return Result(case, "crash", f"the worker returned {outcome!r}")
    return Result(case, outcome["outcome"], outcome.get("error", ""), outcome.get("schedule_used", ""))
