"""The search suite: MCTS against random search (and TVM MetaSchedule) at equal trial budgets.

    kcomp bench search [--quick | --cases matmul,accel_gemm] [--budgets 32,64,128] [--seeds N]
                       [--with-tvm] [--plot FILE.png] [--json]

Each strategy tunes each workload once per seed, starting from no schedule (the rule-based default is
trial 0, never a hand-written block) and an empty database (none at all: no records of other
hardware seed the search), up to the largest budget; the smaller budgets are read off that run's
best-so-far curve: one run to 128 trials, not three.  A trial is one measured
candidate, failures included.

One row per workload and budget: `params` {workload, trials, seeds}; `times_s` the best time each
strategy found within that many trials (`mcts`, `random`, `metaschedule`; geometric mean over
seeds); `extra`:

- `wall_s`: per strategy, the tuning wall time until that many trials were done (mean over seeds);
- `trials_to_10pct`: per strategy, the trials it needed before its best came within 10% of the best
  time any strategy found on that workload in the run (mean over the seeds that got there within
  the budget; null if none did), and `reached_10pct` how many seeds got there;
- `run_best_time_s`, `default_time_s` (the default schedule, trial 0 of kcomp's strategies),
  `target`, and on the accelerator `best_cycles` and `utilization` per strategy (from the best trial);
- `best_schedule` per kcomp strategy, in the rows of the largest budget.

Accelerator times are simulated (cycles at the nominal 1 GHz), so that row is free of noise; CPU
rows are medians of real runs, and `machine.other_cpu_cores` says whether the CPU was shared.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from kcomp.api import load_module
from kcomp.bench import machine as host_machine
from kcomp.bench import metaschedule
from kcomp.bench.examples import examples_dir
from kcomp.bench.report import load_warning, machine_line
from kcomp.errors import KcompError, UsageError
from kcomp.pipeline import front
from kcomp.search.mcts import MCTS
from kcomp.search.measure import Measurer
from kcomp.search.random_search import RandomSearch
from kcomp.search.space import Space
from kcomp.search.strategy import Budget
from kcomp.targets import DEFAULT, SIMULATED

Progress = Callable[[str], None]
BUDGETS = (32, 64, 128)
QUICK_BUDGETS = (4, 8)
STRATEGIES = ("mcts", "random")
WITHIN = 1.10  # "within 10% of the run's best"
TIMEOUT_S = 10.0  # per candidate's check and timing: every default here takes well under a second


@dataclass(frozen=True)
class Workload:
    example: str  # examples/<example>.kc
    shapes: dict[str, int] = field(default_factory=dict)
    target: str = DEFAULT
    tvm: str | None = None  # the MetaSchedule peer's name for it (None: it cannot express it)


WORKLOADS = {
    "matmul": Workload("matmul", {"M": 1024, "N": 1024, "K": 1024}, tvm="matmul"),
    "gemm_bias_relu": Workload("gemm_bias_relu", tvm="gemm_bias_relu"),
    "softmax": Workload("softmax", tvm="softmax"),
    "conv2d": Workload("conv2d", tvm="conv2d"),
    "accel_gemm": Workload("matmul", {"M": 512, "N": 512, "K": 512}, target=SIMULATED),
}
QUICK_WORKLOADS = {
    "matmul": Workload("matmul", {"M": 256, "N": 256, "K": 256}, tvm="matmul"),
    "softmax": Workload("softmax", {"N": 512, "D": 256}, tvm="softmax"),
    "accel_gemm": Workload("matmul", {"M": 128, "N": 128, "K": 128}, target=SIMULATED),
}
CASES = tuple(WORKLOADS)
QUICK_CASES = tuple(f"quick:{name}" for name in QUICK_WORKLOADS)


def parse_case(text: str) -> str:
    name = text.strip()
    if name in WORKLOADS or (name.startswith("quick:") and name[6:] in QUICK_WORKLOADS):
        return name
    raise UsageError(f"--cases {text}: expected one of {', '.join(WORKLOADS)} (or quick:NAME)")


def _workload(case: str) -> Workload:
    return QUICK_WORKLOADS[case[6:]] if case.startswith("quick:") else WORKLOADS[case]


def parse_budgets(text: str | None, quick: bool) -> tuple[int, ...]:
    if text is None:
        return QUICK_BUDGETS if quick else BUDGETS
    try:
        budgets = tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        raise UsageError(f"--budgets {text}: expected comma-separated trial counts, e.g. 32,64,128") from None
    if not budgets or budgets[0] < 1:
        raise UsageError(f"--budgets {text}: trial counts must be positive")
    return budgets


@dataclass
class Run:
    """One strategy's tuning of one workload with one seed, up to the largest budget."""

    history: list[float | None]  # best time so far after n trials (index 0: before any trial)
    elapsed: list[float]  # wall seconds when trial n was done (index 0: tuning start)
    best_schedule: str | None = None
    best_counters: dict[str, Any] = field(default_factory=dict)
    default_time_s: float | None = None
    error: str | None = None

    def best_within(self, trials: int) -> float | None:
        return self.history[min(trials, len(self.history) - 1)] if self.history else None

    def wall_within(self, trials: int) -> float | None:
        return self.elapsed[min(trials, len(self.elapsed) - 1)] if self.elapsed else None

    def trials_to(self, target_s: float) -> int | None:
        for n, t in enumerate(self.history):
            if t is not None and t <= target_s:
                return n
        return None


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    budget_s: float = 0.1,
    progress: Progress | None = None,
    budgets: Sequence[int] = BUDGETS,
    seeds: int = 1,
    with_tvm: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Tune every case with every strategy and seed; one row per case and budget.  `budget_s` is
    each candidate's timing budget (as `kcomp tune --repeat-budget`)."""
    if seeds < 1:
        raise UsageError(f"--seeds {seeds}: expected 1 or more")
    say = progress or (lambda _msg: None)
    cases = list(cases if cases is not None else CASES)
    others = host_machine.OtherCpu()
    info: dict[str, Any] = {**host_machine.describe_host(), **host_machine.measure_roofs()}
    info["load_avg_1m"] = {"start": host_machine.load_average()}
    tvm_reason = _tvm_reason() if with_tvm else "not requested (--with-tvm)"
    info["metaschedule"] = tvm_reason or "available"
    rows: list[dict[str, Any]] = []
    plots: dict[str, dict[str, list[Run]]] = {}
    for case in cases:
        w = _workload(case)
        runs: dict[str, list[Run]] = {}
        for strategy in STRATEGIES:
            runs[strategy] = [
                _tune_kcomp(w, strategy, max(budgets), seed, budget_s, workers, say) for seed in range(seeds)
            ]
        if w.tvm is not None and tvm_reason is None:
            runs["metaschedule"] = [_tune_tvm(w, max(budgets), seed, say) for seed in range(seeds)]
        rows += _rows(case, w, runs, budgets, seeds, tvm_reason)
        plots[case] = runs
    info["load_avg_1m"]["end"] = host_machine.load_average()
    info["other_cpu_cores"] = others.stop()
    return {"suite": "search", "machine": info, "rows": rows, "curves": _curves(plots)}


def _tvm_reason() -> str | None:
    return metaschedule.available()


def _program(w: Workload) -> tuple[str, dict[str, int]]:

    return str(examples_dir() / f"{w.example}.kc"), dict(w.shapes)


def _tune_kcomp(
    w: Workload, strategy: str, trials: int, seed: int, budget_s: float, workers: int | None, say: Progress
) -> Run:

    path, shapes = _program(w)
    start = time.monotonic()
    run = Run(history=[], elapsed=[])

    def progress(session: Any, trial: Any) -> None:
        run.history.append(session.best.time_s if session.best is not None else None)
        run.elapsed.append(time.monotonic() - start)
        if len(run.history) % 16 == 1 or len(run.history) == trials + 1:
            best = run.history[-1]
            say(f"search {w.example} {w.target} {strategy} seed {seed}: trial {len(run.history) - 1}/{trials}"
                f", best {best * 1e3:.3g} ms" if best else "")  # fmt: skip

    try:
        with Measurer(
            path,
            None,
            shapes,
            w.target,
            workers=workers or os.cpu_count() or 1,
            budget_s=budget_s,
            seed=seed,
            timeout_s=TIMEOUT_S,
        ) as measurer:
            result = _strategy(strategy).run(
                Space(measurer.program, measurer.target), measurer, Budget(trials=trials), None,
                seed=seed, progress=progress,
            )  # fmt: skip
    except KcompError as e:
        run.error = str(e)
        return run
    if result.best is not None:
        run.best_schedule = str(result.best.schedule)
        run.best_counters = dict(result.best.counters or {})
    if result.default is not None and result.default.ok:
        run.default_time_s = result.default.time_s
    return run


def _strategy(name: str) -> Any:
    if name == "mcts":
        return MCTS()

    return RandomSearch()


def _tune_tvm(w: Workload, trials: int, seed: int, say: Progress) -> Run:

    _path, shapes = _program(w)
    if not shapes:
        shapes = _file_dims(w)
    say(f"search {w.example} metaschedule seed {seed}: {trials} trials")
    with tempfile.TemporaryDirectory(prefix="kcomp-ms-") as tmp:
        out = metaschedule.tune(w.tvm or w.example, shapes, trials, seed=seed, workdir=tmp)
    history = [None, *out.get("history", [])]
    wall = float(out.get("wall_s") or 0.0)
    # NOTE: MetaSchedule reports no per-trial clock; its wall time is spread evenly over its trials
    elapsed = [wall * n / max(1, len(history) - 1) for n in range(len(history))]
    return Run(history=history, elapsed=elapsed, error=out.get("error"))


def _file_dims(w: Workload) -> dict[str, int]:

    path, shapes = _program(w)
    module = load_module(path)
    return {name: int(value) for name, value in front(module, module.kernel(None), shapes).dims}


def _geomean(values: list[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def _rows(
    case: str, w: Workload, runs: dict[str, list[Run]], budgets: Sequence[int], seeds: int, tvm: str | None
) -> list[dict[str, Any]]:
    finals = [r.best_within(max(budgets)) for rs in runs.values() for r in rs]
    run_best = min((t for t in finals if t is not None), default=None)
    flops = _flops(w)
    defaults = [r.default_time_s for r in runs.get("mcts", []) + runs.get("random", []) if r.default_time_s]
    rows = []
    for b in budgets:
        times: dict[str, float] = {}
        extra: dict[str, Any] = {"target": w.target, "run_best_time_s": run_best}
        extra["default_time_s"] = _geomean(defaults)
        wall, to10, reached = {}, {}, {}
        for name, rs in runs.items():
            best = [t for r in rs if (t := r.best_within(b)) is not None]
            if len(best) == len(rs) and best:
                times[name] = _geomean(best)  # type: ignore[assignment]
            errors = sorted({r.error for r in rs if r.error})
            if errors:
                extra[f"{name}_error"] = "; ".join(errors)
            wall[name] = (
                statistics.fmean(x for r in rs if (x := r.wall_within(b)) is not None) if rs else None
            )
            if run_best is not None:
                hits = [n for r in rs if (n := r.trials_to(run_best * WITHIN)) is not None and n <= b]
                to10[name] = statistics.fmean(hits) if hits else None
                reached[name] = len(hits)
            if rs and "cycles" in (rs[0].best_counters or {}):  # a simulated target's figures
                c = rs[0].best_counters
                extra.setdefault("best_cycles", {})[name] = c.get("cycles")
                extra.setdefault("utilization", {})[name] = _utilization(c)
            if b == max(budgets) and rs and rs[0].best_schedule is not None:
                extra.setdefault("best_schedule", {})[name] = rs[0].best_schedule
        extra.update(wall_s=wall, trials_to_10pct=to10, reached_10pct=reached)
        if w.tvm is None:
            extra["metaschedule_error"] = "MetaSchedule has no model of kcomp's simulated accelerator"
        elif tvm is not None:
            extra["metaschedule_error"] = tvm
        rows.append(
            {
                "case": f"{case}@{b}",
                "params": {"workload": case, "trials": b, "seeds": seeds, **w.shapes},
                "flops": flops,
                "times_s": times,
                "extra": extra,
            }
        )
    return rows


def _utilization(counters: dict[str, Any]) -> float | None:
    u = counters.get("utilization")
    if isinstance(u, dict):
        return u.get("matrix")
    return counters.get("utilization.matrix", u if isinstance(u, int | float) else None)


def _flops(w: Workload) -> int | None:

    path, shapes = _program(w)
    try:
        module = load_module(path)
        return front(module, module.kernel(None), shapes).flops
    except KcompError:
        return None


def _curves(plots: dict[str, dict[str, list[Run]]]) -> dict[str, dict[str, list[list[float | None]]]]:
    """Best-so-far per trial, per case, strategy and seed (for `--plot` and for readers)."""
    return {
        case: {name: [r.history for r in rs] for name, rs in runs.items()} for case, runs in plots.items()
    }


def plot(result: dict[str, Any], path: str) -> None:
    """Best time so far against trials: one panel per workload, one line per strategy (and seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result.get("curves", {})
    if not curves:
        raise UsageError("--plot: nothing to plot")
    n = len(curves)
    cols = min(3, n)
    fig, axes = plt.subplots(
        math.ceil(n / cols), cols, figsize=(5 * cols, 3.6 * math.ceil(n / cols)), squeeze=False
    )
    colors = {"mcts": "tab:blue", "random": "tab:orange", "metaschedule": "tab:green"}
    for ax, (case, runs) in zip(axes.flat, curves.items(), strict=False):
        for name, histories in runs.items():
            for s, h in enumerate(histories):
                xs = [i for i, t in enumerate(h) if t is not None]
                ax.step(xs, [h[i] * 1e3 for i in xs], where="post", color=colors.get(name), alpha=1.0 if s == 0 else 0.4,
                        label=name if s == 0 else None)  # fmt: skip
        ax.set_title(case)
        ax.set_xlabel("trials")
        ax.set_ylabel("best time so far (ms)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise UsageError(f"--plot {path}: cannot write it: {e.strerror}") from None
    finally:
        plt.close(fig)


def print_report(result: dict[str, Any]) -> None:

    con = Console()
    if not con.is_terminal:
        con.width = max(con.width, 150)
    names = [s for s in ("mcts", "random", "metaschedule") if any(s in r["times_s"] for r in result["rows"])]
    t = Table(
        title=f"kcomp bench search: best time found per trial budget ({machine_line(result['machine'])})"
    )
    for col in (
        "workload",
        "trials",
        *names,
        "random / mcts",
        *(f"{n} to 10%" for n in names),
        "wall s (mcts/random)",
    ):
        t.add_column(col, justify="left" if col == "workload" else "right")
    for row in result["rows"]:
        ts, ex = row["times_s"], row["extra"]
        ratio = f"{ts['random'] / ts['mcts']:.2f}x" if "mcts" in ts and "random" in ts else "-"
        to10 = [ex["trials_to_10pct"].get(n) for n in names]
        wall = "/".join(f"{ex['wall_s'].get(n) or 0:.0f}" for n in ("mcts", "random"))
        t.add_row(
            row["params"]["workload"], str(row["params"]["trials"]),
            *(_fmt(ts.get(n)) for n in names), ratio, *(f"{x:.0f}" if x is not None else "-" for x in to10), wall,
        )  # fmt: skip
    con.print(t)
    for b in sorted({r["params"]["trials"] for r in result["rows"]}):
        rows = [r["times_s"] for r in result["rows"] if r["params"]["trials"] == b]
        for peer in ("random", "metaschedule"):
            ratios = [ts[peer] / ts["mcts"] for ts in rows if "mcts" in ts and peer in ts]
            if ratios:
                con.print(f"{b} trials: geomean {peer} / mcts best time {_geomean(ratios):.3f} over"
                          f" {len(ratios)} workloads (above 1: MCTS found faster schedules)")  # fmt: skip
    warning = load_warning(result["machine"])
    if warning:
        con.print(f"[yellow]{warning}[/]")


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def options(args: Any) -> dict[str, Any]:
    """The search suite's command-line options as `run_suite` keywords."""
    return {
        "budgets": parse_budgets(getattr(args, "budgets", None), bool(getattr(args, "quick", False))),
        "seeds": getattr(args, "seeds", 1),
        "with_tvm": bool(getattr(args, "with_tvm", False)),
    }


__all__ = ["CASES", "QUICK_CASES", "options", "parse_case", "plot", "print_report", "run_suite"]
