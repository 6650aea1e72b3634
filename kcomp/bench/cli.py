"""`kcomp bench SUITE [--json] [--quick | --cases ...] [--repeat-budget SECONDS]`.

kcomp/cli.py registers the subcommand with `add_parser(subparsers)` and dispatches to `run(args)`.
A suite is one entry in `SUITES`: how to run it, its full and quick cases, and how to read a case
from the command line.  Exit code: 0, or 1 when kcomp failed a case (wrong result, build error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from kcomp.bench import accel, examples, gemm, report
from kcomp.errors import UsageError


@dataclass(frozen=True, slots=True)
class Suite:
    run: Callable[..., dict[str, Any]]  # run(cases, *, budget_s=..., progress=...) -> result
    cases: tuple[Any, ...]
    quick_cases: tuple[Any, ...]
    parse_case: Callable[[str], Any]  # one --cases item -> a case; UsageError when malformed
    help: str
    printer: Callable[[dict[str, Any]], None] = report.print_report  # the human table


SUITES: dict[str, Suite] = {
    "gemm": Suite(
        gemm.run_suite,
        gemm.CASES,
        gemm.QUICK_CASES,
        gemm.parse_case,
        "fp32 matmul vs numpy and torch; cases MxNxK",
    ),
    "examples": Suite(
        examples.run_suite,
        examples.all_cases(),
        examples.QUICK_CASES,
        examples.parse_case,
        "every example under the schedule kcomp picks vs its naive loops; cases are example names",
        examples.print_report,
    ),
    "accel": Suite(
        accel.run_suite,
        accel.CASES,
        accel.QUICK_CASES,
        accel.parse_case,
        "simulated accelerator cycles: best mapping vs naive mapping vs the ideal bound; cases gemm_MxNxK,"
        " conv2d, gemm_bias_relu",
        accel.print_report,
    ),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `bench` on the `add_subparsers()` object of kcomp's parser."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark kcomp against numpy/torch, with the machine's roofs",
        description="; ".join(f"{name}: {s.help}" for name, s in SUITES.items()),
    )
    p.add_argument(
        "suite", metavar="SUITE", choices=sorted(SUITES), help=f"one of: {', '.join(sorted(SUITES))}"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="smaller cases, for a fast look")
    which.add_argument("--cases", metavar="CASE,...", help="comma-separated cases, e.g. 64x48x32,1x40x24")
    p.add_argument(
        "--repeat-budget",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="timing budget per system and case (default 0.25; at least 5 timed calls always run)",
    )
    return p


def select_cases(suite: Suite, args: argparse.Namespace) -> Sequence[Any]:
    if args.cases is not None:
        items = [c for c in args.cases.split(",") if c.strip()]
        if not items:
            raise UsageError("--cases: give at least one case, e.g. --cases 64x48x32")
        return [suite.parse_case(c) for c in items]
    return suite.quick_cases if args.quick else suite.cases


def run(args: argparse.Namespace) -> int:
    """Run the suite named by `args.suite`; print JSON or the table; 1 if kcomp failed a case."""
    suite = SUITES[args.suite]
    if not args.repeat_budget > 0:
        raise UsageError(f"--repeat-budget {args.repeat_budget}: expected a positive number of seconds")
    cases = select_cases(suite, args)
    err = Console(stderr=True)
    result = suite.run(cases, budget_s=args.repeat_budget, progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    if args.json:
        sys.stdout.write(report.to_json(result) + "\n")
    else:
        suite.printer(result)
    return 1 if any("kcomp" not in row["times_s"] for row in result["rows"]) else 0
