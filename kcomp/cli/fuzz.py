"""`kcomp fuzz`: differential fuzzing of the compiler (kcomp.fuzz.run) from the command line.

    kcomp fuzz [--programs N] [--seed S] [--targets cpu,accel] [--schedules-per-program K]
               [--out DIR] [--timeout S] [--workers W] [--no-shrink] [--mutants N] [--json]

Prints a progress line and a summary table (or, with --json, one object whose counts are under
`ok`, `mismatch`, `race`, `crash`, `compile_error`, `timeout`, `unsupported`, with `programs`, `seed`,
`cases`, `wall_s`, `reproducers`).  Failures are shrunk and saved in --out.  `--mutants N` also runs
N invalid-input mutants (kcomp.fuzz.mutate) and puts its counts under `mutants`.  Exit codes: 0 no
failure, 1 any failure (a kcomp bug), 2 bad flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kcomp.errors import UsageError
from kcomp.fuzz.mutate import campaign
from kcomp.fuzz.run import FAILURES, OUTCOMES, Campaign
from kcomp.targets import DEFAULT, SIMULATED, get_target

MUTANT_BUGS = ("wrong", "traceback", "hang", "other")  # kcomp.fuzz.mutate's classes that are bugs


def add_parsers(subparsers: Any) -> None:
    f = subparsers.add_parser(
        "fuzz",
        help="differential fuzzing: random programs and schedules checked against the reference",
        description="Generate random well-typed kernels and random legal schedules, compile each for each"
        " target, compare with the numpy reference, classify the outcomes and shrink every failure to a"
        " reproducer in --out (docs/fuzzing.md).",
    )
    f.add_argument("--programs", type=int, default=100, help="random programs to generate (default 100)")
    f.add_argument("--seed", type=int, default=0, help="campaign seed (default 0): same seed, same cases")
    every = f"{DEFAULT},{SIMULATED}"
    f.add_argument("--targets", default=every, help=f"comma-separated targets (default {every})")
    f.add_argument(
        "--schedules-per-program",
        type=int,
        default=2,
        metavar="K",
        help="random schedules per program and target (default 2)",
    )
    f.add_argument(
        "--out", default="fuzz-out", metavar="DIR", help="where reproducers go (default ./fuzz-out)"
    )
    f.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    f.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    f.add_argument("--no-shrink", action="store_true", help="save failures as found, without shrinking")
    f.add_argument("--mutants", type=int, default=0, metavar="N", help="also run N invalid-input mutants")
    f.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:

    if args.programs < 0 or args.schedules_per_program < 0 or args.mutants < 0:
        raise UsageError("--programs, --schedules-per-program and --mutants take 0 or more")
    if not args.timeout > 0 or args.workers < 1:
        raise UsageError("--timeout takes a positive number of seconds, --workers 1 or more")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        get_target(t)  # an unknown target is a UsageError now, not in every worker
    err = Console(stderr=True)
    counts = dict.fromkeys(OUTCOMES, 0)

    with err.status("fuzzing: generating ...") as status:

        def progress(result: Any, done: int, total: int) -> None:
            counts[result.outcome] += 1
            bad = sum(counts[k] for k in FAILURES)
            status.update(
                f"fuzzing: case {done}/{total}  ok {counts['ok']}  unsupported {counts['unsupported']}"
                f"  failures {bad}"
                + (f" (last: {result.outcome} on program {result.case.program})" if bad else "")
            )

        campaign = Campaign(
            programs=args.programs,
            seed=args.seed,
            targets=targets,
            schedules_per_program=args.schedules_per_program,
            timeout_s=args.timeout,
            workers=args.workers,
            out=Path(args.out),
            shrink=not args.no_shrink,
            on_result=progress,
        )
        report = campaign.run()
        if args.mutants:
            status.update(f"mutants: {args.mutants} invalid inputs ...")
            report["mutants"] = _mutants(args.mutants, args.seed, args.timeout)
    failed = any(report[k] for k in FAILURES) or report["generator_errors"] > 0
    if "mutants" in report:
        mutants = report["mutants"]
        failed |= bool(mutants.get("bugs", sum(mutants.get(k, 0) for k in MUTANT_BUGS)))
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 1 if failed else 0


def _mutants(n: int, seed: int, timeout_s: float) -> dict[str, Any]:
    return campaign(n, seed, timeout_s)


def _print(report: dict[str, Any]) -> None:
    con = Console()
    table = Table(
        title=f"kcomp fuzz: {report['programs']} programs, seed {report['seed']}, {', '.join(report['targets'])}"
    )
    table.add_column("outcome")
    table.add_column("cases", justify="right")
    for k in ("ok", "unsupported", "mismatch", "race", "crash", "compile_error", "timeout"):
        style = "red" if k not in ("ok", "unsupported") and report[k] else ""
        table.add_row(k, f"[{style}]{report[k]}[/]" if style else str(report[k]))
    if report["generator_errors"]:
        table.add_row("generator_errors", f"[red]{report['generator_errors']}[/]")
    if report.get("refused_walks"):  # not a failure: walks cut to what the target's emitter takes
        table.add_row("refused_walks", str(report["refused_walks"]))
    con.print(table)
    con.print(f"{report['cases']} cases in {report['wall_s']:.1f} s")
    for f in report["failures"][:20]:
        con.print(
            f"  [red]{f['outcome']}[/] program {f.get('program')} on {f.get('target')}: {f.get('error', '')}"
        )
    if report["reproducers"]:
        con.print(f"reproducers: {', '.join(report['reproducers'])}")
    if "mutants" in report:
        con.print(f"mutants: {json.dumps(report['mutants'])}")


COMMANDS = {"fuzz": run}
