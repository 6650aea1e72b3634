"""Differential fuzzing: random programs x random schedules x targets, each checked against the reference.

    report = campaign(programs=300, seed=0, targets=("cpu", "accel"))      # what `kcomp fuzz` runs
    report["counts"]  ->  {"ok": 1130, "mismatch": 0, "crash": 0, "compile_error": 0, "timeout": 0, ...}

Program `p` of seed `s` is `generate(random.Random(f"{s}:{p}"))`; its schedules come from
`kcomp.fuzz.schedules` (in a worker, seeded the same way); every (program, target, schedule) is a
`Case` compiled with `kcomp.compile` and compared with the numpy reference by `CompiledKernel.check`
on fresh random inputs seeded per case.  So a campaign is deterministic for its seed.

Every case runs in a spawned worker process (search.measure's `LocalExecutor`) under a timeout, so a
segfault or a hang is classified, never fatal.  Outcomes:

    ok             compiled, ran, matched the reference
    mismatch       ran, but an output differs from the reference beyond the numeric policy
    crash          kcomp or the compiled code raised something that is not a KcompError, or the
                   worker process died (a segfault, an abort)
    compile_error  a KcompError (a ScheduleError on replay, a BuildError from gcc, ...) for a
                   program and schedule that are valid by construction
    timeout        no result within the timeout; the worker was killed
    unsupported    the accelerator cannot map the kernel ("cannot map ..."): outside what the target
                   runs, so neither a pass nor a failure (the simulated accelerator maps contractions)
All but ok and unsupported are kcomp bugs.  Each failure is shrunk (`kcomp.fuzz.shrink`) and saved.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kcomp.fuzz.generate import generate
from kcomp.fuzz.program import GenProgram

OUTCOMES = ("ok", "mismatch", "crash", "compile_error", "timeout", "unsupported")
FAILURES = ("mismatch", "crash", "compile_error", "timeout")


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
        return f"{self.outcome}:{head}"


def run_case(case: Case) -> dict[str, Any]:
    """In a worker: compile `case` and check it against the reference on seeded random inputs."""
    from kcomp.api import compile as compile_kernel
    from kcomp.errors import KcompError
    from kcomp.fuzz.schedules import cannot_map
    from kcomp.schedule import parse_schedule

    accel = case.target.split(":")[0] == "accel"
    try:
        schedule: Any = case.schedule
        if case.schedule not in ("none", "default"):
            schedule = parse_schedule(case.schedule, "<fuzz schedule>")
        kernel = compile_kernel(case.source, target=case.target, schedule=schedule)
        used = str(kernel.built.schedule)
    except KcompError as e:
        if accel and cannot_map(e):
            return {"outcome": "unsupported", "error": str(e)}
        return {"outcome": "compile_error", "error": f"{type(e).__name__}: {e}"}
    except Exception as e:
        return {"outcome": "crash", "error": _trace("compile", e)}
    try:
        check = kernel.check(seed=case.seed)
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


def _trace(phase: str, e: BaseException) -> str:
    tail = "".join(traceback.format_exception(e)[-4:]).rstrip()
    return f"{type(e).__name__}: {e} (in {phase})\n{tail}"


def classify(case: Case, outcome: Any) -> Result:
    """A worker's reply (a dict) or its failure (`WorkerTimeout`, `WorkerCrashed`, `WorkerError`)."""
    from kcomp.search.measure import WorkerCrashed, WorkerError, WorkerTimeout

    if isinstance(outcome, WorkerTimeout):
        return Result(case, "timeout", str(outcome))
    if isinstance(outcome, WorkerCrashed):
        return Result(case, "crash", f"WorkerCrashed: {outcome}")
    if isinstance(outcome, WorkerError | BaseException):
        return Result(case, "crash", f"{type(outcome).__name__}: {outcome}")
    if not isinstance(outcome, dict) or outcome.get("outcome") not in OUTCOMES:
        return Result(case, "crash", f"the worker returned {outcome!r}")
    return Result(case, outcome["outcome"], outcome.get("error", ""), outcome.get("schedule_used", ""))


def program_for(seed: int, index: int) -> GenProgram:
    """Program `index` of a campaign with `seed` (independent of the other programs)."""
    return generate(random.Random(f"{seed}:{index}"))


def case_seed(seed: int, index: int, n: int) -> int:
    return random.Random(f"{seed}:{index}:{n}:inputs").randrange(2**31)


@contextlib.contextmanager
def worker_env(cache_dir: str | None) -> Iterator[None]:
    """Environment the spawned workers inherit: no tuning database, a private library cache."""
    from kcomp.search.measure import scoped_env

    with (
        tempfile.TemporaryDirectory(prefix="kcomp-fuzz-") as tmp,
        scoped_env({"KCOMP_NO_DB": "1", "KCOMP_CACHE_DIR": cache_dir or tmp}),
    ):
        yield


@dataclass
class Campaign:
    """A fuzzing run's settings; `run()` returns the report (module docstring).  `case_fn` and
    `schedules_fn` are the worker functions (module level, so they pickle by name): tests substitute
    ones that crash, hang or lie."""

    programs: int = 100
    seed: int = 0
    targets: Sequence[str] = ("cpu", "accel")
    schedules_per_program: int = 3
    timeout_s: float = 60.0
    workers: int = 2
    out: Path | None = Path("fuzz-out")
    shrink: bool = True
    max_shrink: int = 20  # failures shrunk per campaign (the others are saved as found)
    shrink_budget: int = 150  # cases run while shrinking one failure
    cache_dir: str | None = None
    case_fn: Callable[[Case], dict[str, Any]] = run_case
    schedules_fn: Callable[..., dict[str, Any]] | None = None
    on_result: Callable[[Result, int, int], None] | None = None  # (result, done, total so far)
    results: list[Result] = field(default_factory=list)

    def run(self) -> dict[str, Any]:
        from kcomp.fuzz.schedules import draw_schedules
        from kcomp.search.measure import LocalExecutor

        start = time.monotonic()
        draw = self.schedules_fn or draw_schedules
        generator_errors: list[dict[str, Any]] = []
        with worker_env(self.cache_dir), LocalExecutor(self.workers, preload=("kcomp.api",)) as pool:
            progs = [program_for(self.seed, p) for p in range(self.programs)]
            texts = [p.render() for p in progs]
            jobs = [(p, t) for p in range(self.programs) for t in self.targets]
            drawn = [
                pool.submit(
                    draw,
                    texts[p],
                    t,
                    random.Random(f"{self.seed}:{p}:{t}:schedules").randrange(2**31),
                    self.schedules_per_program,
                    p,
                    timeout_s=self.timeout_s,
                )
                for p, t in jobs
            ]
            cases: list[Case] = []
            for (p, t), future in zip(jobs, drawn, strict=True):
                got = future.exception() or future.result()
                if not isinstance(got, dict):
                    generator_errors.append(
                        {"program": p, "target": t, "error": f"{type(got).__name__}: {got}"}
                    )
                    continue
                if got["unsupported"]:
                    cases.append(Case(texts[p], t, "default", "unsupported", 0, p))
                for e in got["errors"]:
                    generator_errors.append({"program": p, "target": t, "error": e})
                for n, (label, text) in enumerate(got["schedules"]):
                    cases.append(Case(texts[p], t, text, label, case_seed(self.seed, p, len(cases) + n), p))
            futures = [pool.submit(self.case_fn, c, timeout_s=self.timeout_s) for c in cases]
            for n, (case, future) in enumerate(zip(cases, futures, strict=True)):
                result = classify(case, future.exception() or future.result())
                self.results.append(result)
                if self.on_result:
                    self.on_result(result, n + 1, len(cases))
            saved = self.save_failures(pool, progs) if self.out is not None else []
        counts = {k: sum(r.outcome == k for r in self.results) for k in OUTCOMES}
        return {
            "seed": self.seed,
            "programs": self.programs,
            "targets": list(self.targets),
            "cases": len(self.results),
            **counts,
            "generator_errors": len(generator_errors),
            "failures": [
                {
                    "program": r.case.program,
                    "target": r.case.target,
                    "schedule": r.case.label,
                    "outcome": r.outcome,
                    "error": r.error.splitlines()[0] if r.error else "",
                }
                for r in self.results
                if r.outcome in FAILURES
            ]
            + [{"outcome": "generator_error", **g} for g in generator_errors],
            "reproducers": saved,
            "wall_s": round(time.monotonic() - start, 1),
        }

    def save_failures(self, pool: Any, progs: list[GenProgram]) -> list[str]:
        """Shrink (up to `max_shrink`) and write every failure into `out`; the paths written."""
        from kcomp.fuzz.shrink import save, shrink

        failed = [r for r in self.results if r.outcome in FAILURES]
        paths: list[str] = []
        if not failed:
            return paths
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        for n, result in enumerate(failed):
            prog, schedule = progs[result.case.program], result.case.schedule
            if result.schedule_used and schedule == "default":
                schedule = result.schedule_used
            small = None
            if self.shrink and n < self.max_shrink:

                def attempt(c: Case) -> Result:
                    f = pool.submit(self.case_fn, c, timeout_s=self.timeout_s)
                    return classify(c, f.exception() or f.result())

                small = shrink(prog, result, schedule, attempt, self.shrink_budget)
            paths.append(str(save(self.out, n, result, small)))
        return paths


def asjson(case: Case) -> dict[str, Any]:
    return asdict(case)
