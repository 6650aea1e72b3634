"""`kcomp tune FILE [--trials N] [--time-limit S] [--strategy mcts|random] [--resume] [--json] ...`.

Searches the kernel's schedule space, measuring every candidate in isolated worker processes
(kcomp.search.measure) and recording every trial in the tuning database as soon as it is final, so a
killed run loses nothing and `--resume` (same `--seed`) replays it without measuring again.  Trial 0
is the default schedule: every speedup is against it.  `kcomp compile`/`run` then pick the best record
for this workload, target and hardware.  kcomp/cli/app.py registers it with `add_parsers`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kcomp.bench.machine import measure_roofs
from kcomp.cli.args import add_weight_options, finite, parse_shapes, weight_paths
from kcomp.db.records import format_time
from kcomp.db.store import TuningDB, default_path
from kcomp.errors import UsageError
from kcomp.search.cluster import RayExecutor, ray_session
from kcomp.search.mcts import MCTS
from kcomp.search.measure import TIMER_ENV, Measurer
from kcomp.search.random_search import RandomSearch
from kcomp.search.space import Space
from kcomp.search.strategy import Budget
from kcomp.targets import DEFAULT

STRATEGIES = ("mcts", "random")
EXECUTORS = ("local", "ray")


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Register `tune` on the `add_subparsers()` object of kcomp's parser."""
    p = subparsers.add_parser(
        "tune",
        help="search for a faster schedule; every trial goes to the tuning database",
        description="Autotune one kernel: trial 0 is the default schedule, then the strategy's candidates,"
        " each built in parallel, checked against the numpy reference and timed one at a time.",
    )
    p.add_argument("file", help="a .kc file")
    p.add_argument("--kernel", help="which kernel of the file (needed when it has several)")
    p.add_argument(
        "--shape", action="append", metavar="NAME=VALUE", help="bind a dimension (overrides the file)"
    )
    p.add_argument(
        "--target", default=DEFAULT, help=f"target to tune for (default {DEFAULT}; e.g. cpu:LEVEL, accel)"
    )
    add_weight_options(p)
    p.add_argument("--trials", type=int, default=64, metavar="N", help="candidates to evaluate (default 64)")
    p.add_argument("--time-limit", type=float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--strategy", choices=STRATEGIES, default="mcts", help="search strategy (default mcts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and the inputs (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="parallel build processes (with --executor ray and no --ray-address: the local cluster's CPUs)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where candidates are built and timed: worker processes here (local, the default) or the"
        " tasks of a Ray cluster (ray: a local cluster of --workers CPUs unless --ray-address names one)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: the cluster to join (host:port, or auto); its timing nodes offer the"
        " kcomp_timer resource",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help="tuning database (default: KCOMP_TUNING_DB or the cache)")
    where.add_argument("--no-db", action="store_true", help="keep nothing: no database read or written")
    p.add_argument(
        "--resume", action="store_true", help="never re-measure a schedule already in the database"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="plot the best time so far against trials")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="per-candidate check+timing limit (60)"
    )
    p.add_argument(
        "--repeat-budget",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="timing budget per candidate (default 0.1; at least 5 timed calls always run)",
    )
    p.add_argument(
        "--start",
        choices=("fused", "unfused"),
        default="fused",
        help="the baseline (trial 0) and the first fusion choice: the default schedule as it is, or "
        "the default with no fusion steps, so that the search decides fusion itself (default fused)",
    )
    p.add_argument(
        "--no-confirm",
        action="store_true",
        help="skip re-timing the default and the best schedule at the end (CPU targets)",
    )
    return p


def _strategy(name: str) -> Any:
    return RandomSearch() if name == "random" else MCTS()


def run(args: argparse.Namespace) -> int:

    if args.resume and args.no_db:
        raise UsageError("--resume reads the tuning database: drop --no-db")
    if args.trials < 0:
        raise UsageError(f"--trials {args.trials}: expected 0 or more")
    if not args.repeat_budget > 0 or not args.timeout > 0:
        raise UsageError("--repeat-budget and --timeout take a positive number of seconds")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: expected 1 or more")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address names a Ray cluster: add --executor ray")
    with contextlib.ExitStack() as stack:
        executors = _executors(args, stack)
        summary, result, measurer = _tune(args, executors)
    summary["ceilings"] = _ceilings(measurer, summary)  # NOTE: the roofs are measured with the workers gone
    if args.plot:
        _plot(result, args.plot, measurer.kernel)
    if args.json:
        sys.stdout.write(json.dumps(finite(summary)) + "\n")
    else:
        _print_table(Console(), summary, result, measurer.program.flops)
    return 0 if result.best is not None else 1


def _executors(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    """The Measurer's builder and timer (none: its own local workers) and a line saying where."""
    if args.executor != "ray":
        return {"builder": None, "timer": None, "where": f"local: {args.workers} build process(es)"}
    # NOTE: Ray's driver prints its cluster's messages (a worker died, ...) on stdout; they go to
    # stderr while the session lasts, so that stdout keeps only the report (one JSON object with --json)
    stack.enter_context(contextlib.redirect_stdout(sys.stderr))
    session = stack.enter_context(ray_session(args.ray_address, cpus=args.workers))
    return {
        "builder": RayExecutor(session),
        "timer": RayExecutor(session, timer=True, env=TIMER_ENV),
        "where": session.describe(),
    }


def _tune(args: argparse.Namespace, executors: dict[str, Any]) -> tuple[dict[str, Any], Any, Measurer]:
    """The search itself: its summary, result and (closed) measurer."""
    budget = Budget(trials=args.trials, time_s=args.time_limit)
    fused = args.start == "fused"
    strategy = _strategy(args.strategy)
    measurer = Measurer(
        args.file,
        args.kernel,
        parse_shapes(args.shape),
        args.target,
        workers=args.workers,
        timeout_s=args.timeout,
        budget_s=args.repeat_budget,
        seed=args.seed,
        fused_default=fused,
        weights=weight_paths(args),
        rearrange=not args.no_rearrange,
        builder=executors["builder"],
        timer=executors["timer"],
    )
    db = None if args.no_db else TuningDB.open(args.db or default_path(), check=True)
    err = Console(stderr=True)
    progress = _Progress(err, measurer.program.flops, args.trials)
    try:
        with progress:
            result = strategy.run(
                Space(measurer.program, measurer.target, fused_default=fused),
                measurer,
                budget,
                db,
                seed=args.seed,
                progress=progress.update,
                resume=args.resume,
            )
        summary = _summary(args, measurer, result, db.path if db is not None else None)
        summary["executor"] = executors["where"]
        if not args.no_confirm:
            summary.update(_confirm(measurer, result, err))
    except KeyboardInterrupt:
        if db is not None:
            err.print(f"[yellow]interrupted[/]: finished trials are in {db.path}; rerun with --resume")
        raise
    finally:
        measurer.close()
        if db is not None:
            db.close()
    return summary, result, measurer


class _Progress:
    """Live display on stderr: trials done, best time and GFLOP/s, speedup, failures, ETA.
    A line per trial instead when stderr is not a terminal (logs, CI)."""

    def __init__(self, console: Console, flops: int, total: int | None):
        self.console, self.flops, self.total = console, flops, total
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("tuning"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task("tune", total=self.total, status="measuring the default schedule")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, session: Any, trial: Any) -> None:
        best = session.best
        parts = []
        if best is not None and best.time_s:
            parts.append(f"best {_ms(best.time_s)}, {self.flops / best.time_s / 1e9:.3g} GFLOP/s")
            if session.default is not None and session.default.ok and session.default.time_s:
                parts.append(f"{session.default.time_s / best.time_s:.2f}x default")
        parts.append(f"{session.failures} failed")
        if session.db_hits:
            parts.append(f"{session.db_hits} from the database")
        status = ", ".join(parts)
        if self.bar is not None:
            self.bar.update(self.task, completed=len(session.trials), status=status)
            return
        n = f"{len(session.trials)}/{self.total}" if trial is not session.default else "0 (default)"
        what = _ms(trial.time_s) if trial.ok else f"{trial.status.value}: {trial.error.splitlines()[0][:80]}"
        self.console.print(f"trial {n}  {what}  ({status})", highlight=False, soft_wrap=True)


def _ms(seconds: float | None) -> str:

    return format_time(seconds)


def _summary(args: argparse.Namespace, measurer: Any, result: Any, db_path: Any) -> dict[str, Any]:
    best, default = result.best, result.default
    flops = measurer.program.flops
    summary: dict[str, Any] = {
        "kernel": measurer.kernel,
        "file": args.file,
        "target": measurer.target.name,
        "shapes": dict(measurer.program.dims),
        "strategy": result.strategy,
        "seed": args.seed,
        "best_time_s": best.time_s if best else None,
        "best_schedule": str(best.schedule) if best else None,
        "best_trial": best.id if best else None,
        "best_gflops": flops / best.time_s / 1e9 if best and best.time_s else None,
        "default_time_s": default.time_s if default else None,
        "default_schedule": str(default.schedule) if default else None,
        "speedup_vs_default": result.speedup_vs_default,
        "trials": len(result.trials),
        "measured": result.measured,
        "db_hits": result.db_hits,
        "failures": result.failures,
        "failures_by_status": dict(
            Counter(t.status.value for t in (default, *result.trials) if t and not t.ok)
        ),
        "wall_s": result.wall_s,
        "db": str(db_path) if db_path else None,
        "run_id": result.run_id,
    }
    counters = dict(best.counters) if best else {}
    if "cycles" in counters:  # the accelerator's simulated figures
        summary["best_cycles"] = counters["cycles"]
        summary["utilization"] = counters.get("utilization")
        summary["best_counters"] = counters
    if counters.get("time_source") == "model":  # a target's proxy model (CUDA without a GPU)
        summary["time_source"] = "model"
    if "counter_source" in counters:  # the CPU's: hardware counters, or counts derived from the build
        summary["counter_source"] = counters["counter_source"]
        summary["counter_note"] = counters.get("counter_note", "")
        summary["best_counters"] = counters
    return summary


def _confirm(measurer: Any, result: Any, err: Console) -> dict[str, Any]:
    """Re-time the default and the best schedule once more, back to back, and keep each one's
    faster median.  A trial's median can be inflated by a noisy moment (the first trial of a
    run, another process); the speedup a user reads should not rest on one such figure.  Simulated
    targets are deterministic and skip this."""
    best, default = result.best, result.default
    if best is None or default is None or not default.ok or best is default:
        return {}
    if "cycles" in (best.counters or {}) or (best.counters or {}).get("time_source") == "model":
        return {}
    err.print("[dim]confirming: timing the default and the best schedule again[/]")
    again = measurer.measure([default.schedule, best.schedule])
    if not all(t is not None and t.ok and t.time_s for t in again):
        return {"confirmed": None}
    d, b = min(default.time_s, again[0].time_s), min(best.time_s, again[1].time_s)
    confirmed = {"default_time_s": d, "best_time_s": b, "remeasured_s": [again[0].time_s, again[1].time_s]}
    return {"confirmed": confirmed, "speedup_vs_default": d / b}


def _ceilings(measurer: Any, s: dict[str, Any]) -> dict[str, Any] | None:
    """Where the best schedule stands against this machine's roofs, measured now: achieved FLOP/s
    and compulsory bytes/s against the FMA peak and the copy bandwidth (the roofline's two roofs),
    or on the accelerator the simulator's ideal bound."""
    t = s.get("best_time_s")
    if not t:
        return None
    if s.get("best_cycles"):
        ideal = (s.get("best_counters") or {}).get("ideal_cycles")
        if not ideal:
            return None
        return {"roof": "ideal cycles", "ideal_cycles": ideal, "of_roof": ideal / s["best_cycles"]}

    if s.get("time_source") == "model":
        return None  # this machine's roofs say nothing of the modelled GPU's
    program = measurer.program
    nbytes = sum(b.size * b.dtype.itemsize for b in (*program.inputs, *program.outputs))
    roofs = measure_roofs(copy_bytes=64 << 20, budget_s=0.2)
    peak, bandwidth = roofs.get("fma_peak_gflops"), roofs.get("copy_gbps")
    out: dict[str, Any] = {
        "gflops": program.flops / t / 1e9,
        "gbps": nbytes / t / 1e9,
        "intensity": program.flops / nbytes if nbytes else None,
        **roofs,
    }
    if peak and bandwidth and nbytes:
        memory_roof = program.flops / nbytes * bandwidth
        out["bound"] = "compute" if peak <= memory_roof else "memory"
        out["roof_gflops"] = min(peak, memory_roof)
        out["of_roof"] = out["gflops"] / out["roof_gflops"]
    return out


def _ceiling_line(c: dict[str, Any] | None) -> str | None:
    if not c or "of_roof" not in c:
        return None
    if c.get("roof") == "ideal cycles":
        return f"ceiling: {100 * c['of_roof']:.1f}% of the ideal bound ({c['ideal_cycles']} cycles)"
    return (
        f"ceiling: {c['gflops']:.3g} GFLOP/s and {c['gbps']:.3g} GB/s of compulsory traffic; {c['bound']}-bound"
        f" (intensity {c['intensity']:.3g} flop/byte; FMA peak {c['fma_peak_gflops']:.4g} GFLOP/s, copy"
        f" {c['copy_gbps']:.3g} GB/s measured now): {100 * c['of_roof']:.1f}% of the roof"
    )


def _counter_line(s: dict[str, Any]) -> str | None:
    """Which counters the CPU measured with, and the best trial's."""
    c = s.get("best_counters") or {}
    if s.get("counter_source") == "hardware":
        n = c.get("hw.instructions") or 1.0
        return (
            f"counters: hardware (perf_event), per call: {n:.3g} instructions,"
            f" {n / (c.get('hw.cycles') or 1.0):.2f} per cycle; {1000 * c.get('hw.cache_misses', 0) / n:.3g}"
            f" cache and {1000 * c.get('hw.dtlb_misses', 0) / n:.3g} dTLB misses per 1000 instructions"
        )
    if s.get("counter_source") == "model":
        return (
            f"times: the proxy model of {c.get('model.gpu', 'a GPU')} (no GPU here), not measurements;"
            f" best: compute {c.get('model.compute_s', 0) * 1e6:.3g} us, memory {c.get('model.memory_s', 0) * 1e6:.3g} us,"
            f" occupancy {c.get('model.occupancy', 0):.0%}, {c.get('model.registers', 0)} registers,"
            f" {c.get('model.spill_bytes', 0)} B spilled (docs/cuda.md)"
        )
    if s.get("counter_source") == "derived":
        traffic = ", ".join(
            f"{level} {c[f'est.{key}_bytes'] / 1e3:.3g} kB"
            for level, key in (("L1", "l1"), ("L2", "l2"), ("DRAM", "dram"))
            if f"est.{key}_bytes" in c
        )
        return (
            f"counters: derived from the build ({s.get('counter_note') or 'no hardware counters'}):"
            f" {c.get('asm.vector_fp', 0):g} packed and {c.get('asm.scalar_fp', 0):g} scalar FP instructions"
            f" ({c.get('asm.fma', 0):g} FMA), {c.get('asm.spills', 0):g} vector spills"
            + (f"; estimated traffic per call: {traffic}" if traffic else "")
        )
    return None


def _print_table(con: Console, s: dict[str, Any], result: Any, flops: int) -> None:
    ranked: dict[str, Any] = {}
    for t in sorted((t for t in (result.default, *result.trials) if t and t.ok), key=lambda t: t.time_s):
        ranked.setdefault(t.schedule.hash, t)
    table = Table(title=f"top schedules for {s['kernel']} on {s['target']}")
    for column in ("#", "trial", "time", "GFLOP/s", "vs default", "schedule"):
        table.add_column(column, justify="left" if column == "schedule" else "right")
    default_time = s["default_time_s"]
    for rank, t in enumerate(list(ranked.values())[:5], 1):
        speed = f"{default_time / t.time_s:.2f}x" if default_time else "-"
        label = "; ".join(str(t.schedule).splitlines()) or "(naive loops)"
        if t is result.default:
            label = f"[dim](default)[/] {label}"
        table.add_row(
            str(rank), str(t.id or "-"), _ms(t.time_s), f"{flops / t.time_s / 1e9:.3g}", speed, label
        )
    con.print(table)
    failed = ", ".join(f"{n} {k}" for k, n in sorted(s["failures_by_status"].items())) or "none"
    con.print(
        f"{s['trials']} trials and the default in {s['wall_s']:.1f} s ({s['measured']} measured now,"
        f" {s['db_hits']} read from the database; failures: {failed}); measured on {s['executor']}"
    )
    if s["best_time_s"] is None:
        con.print("[red]no candidate passed the check[/]")
    else:
        speedup = f", {s['speedup_vs_default']:.2f}x the default" if s["speedup_vs_default"] else ""
        con.print(f"best: {_ms(s['best_time_s'])}, {s['best_gflops']:.3g} GFLOP/s{speedup}")
        if s.get("best_cycles") is not None:
            con.print(f"      {s['best_cycles']} cycles, utilization {s.get('utilization')}")
        if s.get("confirmed"):
            again = s["confirmed"]["remeasured_s"]
            con.print(
                f"      (timed again at the end: default {_ms(again[0])}, best {_ms(again[1])}; the speedup"
                " uses each one's faster figure)"
            )
        for line in (_counter_line(s), _ceiling_line(s.get("ceilings"))):
            if line:
                con.print(line)
    if s["db"]:
        con.print(
            f"trials kept in {s['db']}; `kcomp compile`/`run` use the best one on this hardware"
            " (unless --schedule or a schedule block in the file says otherwise)"
        )


def _plot(result: Any, path: str, kernel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [n for n, t in enumerate(result.history) if t is not None]
    ys = [result.history[n] * 1e3 for n in xs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(xs, ys, where="post", label=result.strategy)
    if result.default is not None and result.default.ok:
        ax.axhline(result.default.time_s * 1e3, color="gray", linestyle="--", linewidth=1, label="default")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xlabel("trial (0: the default schedule)")
    ax.set_ylabel("best time so far (ms)")
    ax.set_title(f"kcomp tune {kernel}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as e:
        raise UsageError(f"--plot {path}: cannot write it: {e.strerror}") from None
    finally:
        plt.close(fig)


COMMANDS = {"tune": run}
