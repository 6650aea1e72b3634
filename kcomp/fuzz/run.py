"""Differential fuzzing: random programs x random schedules x targets, each checked against the reference.

    report = Campaign(programs=300, seed=0, targets=("cpu", "accel")).run()  # what `kcomp fuzz` runs
    report["counts"]  ->  {"ok": 1130, "mismatch": 0, "crash": 0, "compile_error": 0, "timeout": 0, ...}

Program `p` of seed `s` is `generate(random.Random(f"{s}:{p}"), types=...)` (the element types
some target of the campaign lowers: `campaign_types`); its schedules come from
`kcomp.fuzz.schedules` (in a worker, seeded the same way); every (program, target, schedule) is a
`Case` compiled with `kcomp.compile` and compared with the numpy reference by `CompiledKernel.check`
on fresh random inputs seeded per case.  So a campaign is deterministic for its seed.

Every case runs in a spawned worker process (search.measure's `LocalExecutor`) under a timeout, so a
segfault or a hang is classified, never fatal.  Outcomes:

    ok             compiled, ran, matched the reference
    mismatch       ran, but an output differs from the reference beyond the numeric policy
    race           the target's run-time checks caught the kernel misbehaving (`KernelFault`: the
                   CUDA emulation's race, out-of-bounds access or barrier divergence), whatever
                   its outputs
    crash          kcomp or the compiled code raised something that is not a KcompError, or the
                   worker process died (a segfault, an abort)
    compile_error  a KcompError (a ScheduleError on replay, a BuildError from gcc, ...) for a
                   program and schedule that are valid by construction
    timeout        no result within the timeout; the worker was killed
    unsupported    the target cannot run the kernel at all (it raised `Unsupported`, as the simulated
                   accelerator does for what is not a contraction): neither a pass nor a failure
All but ok and unsupported are kcomp bugs.  Each failure is shrunk (`kcomp.fuzz.shrink`) and saved.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kcomp.fuzz.case import FAILURES, OUTCOMES, Case, Result, classify, run_case
from kcomp.fuzz.generate import ELEMENTS, generate
from kcomp.fuzz.program import GenProgram
from kcomp.fuzz.schedules import draw_schedules
from kcomp.fuzz.shrink import save, shrink
from kcomp.search.measure import LocalExecutor, scoped_env
from kcomp.targets import DEFAULT, SIMULATED, get_target


def program_for(seed: int, index: int, types: frozenset[str] | None = None) -> GenProgram:
    """Program `index` of a campaign with `seed` (independent of the other programs); `types` as
    for `generate` (`campaign_types`)."""
    return generate(random.Random(f"{seed}:{index}"), types=types)


def campaign_types(targets: Sequence[str]) -> frozenset[str] | None:
    """The element types some target of the campaign lowers, None when that is all the generator
    draws: a program no target can compile tests nothing (an accelerator-only campaign draws no
    f64 or i64, which the machine does not have)."""
    lowered = {d.value for t in targets for d in get_target(t).capabilities.dtypes}
    drawn = {t for t, _ in ELEMENTS}
    return None if drawn <= lowered else frozenset(lowered & drawn)


def case_seed(seed: int, index: int, n: int) -> int:
    return random.Random(f"{seed}:{index}:{n}:inputs").randrange(2**31)


@contextlib.contextmanager
def worker_env(cache_dir: str | None) -> Iterator[None]:
    """Environment the spawned workers inherit: no tuning database, a private library cache."""

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
    targets: Sequence[str] = (DEFAULT, SIMULATED)
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

        start = time.monotonic()
        draw = self.schedules_fn or draw_schedules
        generator_errors: list[dict[str, Any]] = []
        with worker_env(self.cache_dir), LocalExecutor(self.workers, preload=("kcomp.api",)) as pool:
            types = campaign_types(self.targets)
            progs = [program_for(self.seed, p, types) for p in range(self.programs)]
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
            refused = 0
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
                refused += len(got.get("refused", ()))
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
            "refused_walks": refused,
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
