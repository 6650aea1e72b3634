"""`kcomp bench SUITE [--json] [--quick | --cases ...] [--repeat-budget SECONDS]` (and, for the search
suite, `[--budgets 32,64,128] [--seeds N] [--with-tvm] [--plot FILE.png]`).

kcomp/cli/app.py registers the subcommand with `add_parsers(subparsers)` and dispatches to `run(args)`.
A suite is one entry in `SUITES`: how to run it, its full and quick cases, and how to read a case
from the command line.  Exit code: 0, or 1 when kcomp failed a case (wrong result, build error); a
row marked `extra.not_supported` (a known limit of a target, with the compiler's reason) is no failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from kcomp.bench import accel, cuda, examples, fusion, gemm, ops, report, search, sparse, torch_front
from kcomp.cli.args import parse_shapes
from kcomp.errors import UsageError
from kcomp.targets import DEFAULT, SIMULATED


@dataclass(frozen=True, slots=True)
class Suite:
    run: Callable[..., dict[str, Any]]  # run(cases, *, budget_s=..., progress=...) -> result
    cases: tuple[Any, ...]
    quick_cases: tuple[Any, ...]
    parse_case: Callable[[str], Any]  # one --cases item -> a case; UsageError when malformed
    help: str
    printer: Callable[[dict[str, Any]], None] = report.print_report  # the human table
    options: Callable[[argparse.Namespace], dict[str, Any]] = lambda _args: {}  # suite-only flags
    main: str = "kcomp"  # the system whose missing time in a row means kcomp failed it


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
        lambda args: {"target": args.target or DEFAULT, "shape": parse_shapes(args.shape)},
    ),
    "accel": Suite(
        accel.run_suite,
        accel.CASES,
        accel.QUICK_CASES,
        accel.parse_case,
        "simulated accelerator cycles: best mapping vs naive mapping vs the ideal bound; cases gemm_MxNxK,"
        " conv2d, gemm_bias_relu",
        accel.print_report,
        lambda args: {"target": args.target or SIMULATED},
    ),
    "fusion": Suite(
        fusion.run_suite,
        tuple(fusion.CASES),
        fusion.QUICK_CASES,
        fusion.parse_case,
        "fused kernels vs the same schedule unfused, torch eager and torch.compile; cases softmax, layernorm,"
        " rmsnorm, gelu_chain, elementwise_chain, gemm_bias_gelu_residual, conv_bias_relu, attention,"
        " attention_causal",
        fusion.print_report,
        fusion.options,
    ),
    "ops": Suite(
        ops.run_suite,
        tuple(ops.CASES),
        ops.QUICK_CASES,
        ops.parse_case,
        "default schedules on 50 operators and chains (matmul layouts, convolutions, pooling, norms,"
        " softmax family, reductions, losses, activations) at two scales vs torch eager and torch.compile;"
        " cases are names, or name/small, name/large",
        ops.print_report,
        ops.options,
    ),
    "cuda": Suite(
        cuda.run_suite,
        tuple(cuda.CASES),
        cuda.QUICK_CASES,
        cuda.parse_case,
        "kcomp's CUDA target on the GPU vs torch (cuBLAS fp32 GEMM with TF32 off, bf16 GEMM, softmax,"
        " layernorm, gemm+bias+gelu), CUDA events, % of the fp32 peak or the copy bandwidth; cases"
        " gemm_fp32, gemm_bf16, softmax, layernorm, gemm_bias_gelu (without a GPU: one line, exit 0)",
        cuda.print_report,
    ),
    "sparse": Suite(
        sparse.run_suite,
        sparse.CASES,
        sparse.QUICK_CASES,
        sparse.parse_case,
        "a sparse weight times dense activations: kcomp sparse (with and without rearrangement) and dense vs"
        " torch dense, torch CSR and scipy CSR, plus accelerator cycles; cases PATTERN_SPARSITY_MxKxN with"
        " patterns bsr4x4, group1x16, nm2:4, planted",
        sparse.print_report,
    ),
    "torch": Suite(
        torch_front.run_suite,
        torch_front.CASES,
        torch_front.QUICK_CASES,
        torch_front.parse_case,
        'torch.compile(backend="kcomp") vs torch eager and Inductor on model blocks (MLP, transformer encoder'
        " layer, ResNet basic block, MobileNet block), with the share of ops and flops kcomp took",
        torch_front.print_report,
    ),
    "search": Suite(
        search.run_suite,
        search.CASES,
        search.QUICK_CASES,
        search.parse_case,
        "MCTS vs random search (vs TVM MetaSchedule with --with-tvm) at equal trial budgets; cases matmul,"
        " gemm_bias_relu, softmax, conv2d, accel_gemm",
        search.print_report,
        search.options,
        "mcts",
    ),
}


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
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
    which_target = p.add_argument_group("examples and accel suites")
    which_target.add_argument(
        "--target",
        help=f"the target (examples: default {DEFAULT}; accel: a simulated one, default {SIMULATED})",
    )
    which_target.add_argument(
        "--shape", action="append", metavar="NAME=VALUE", help="examples: bind a dimension in every case"
    )
    tuning = p.add_argument_group("search suite")
    tuning.add_argument("--budgets", metavar="N,...", help="trial budgets (default 32,64,128; --quick: 4,8)")
    tuning.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per strategy (default 1)")
    tuning.add_argument(
        "--with-tvm", action="store_true", help="add TVM MetaSchedule as a peer (optional extra)"
    )
    tuning.add_argument("--plot", metavar="FILE.png", help="best time so far against trials, per workload")
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
    if args.suite != "search" and (args.budgets or args.with_tvm or args.plot or args.seeds != 1):
        raise UsageError("--budgets, --seeds, --with-tvm and --plot belong to `kcomp bench search`")
    if args.suite not in ("examples", "accel") and args.target:
        raise UsageError("--target belongs to `kcomp bench examples` and `kcomp bench accel`")
    if args.suite != "examples" and args.shape:
        raise UsageError("--shape belongs to `kcomp bench examples`")
    options = suite.options(args)
    say = lambda msg: err.print(f"[dim]{msg}[/]")  # noqa: E731
    result = suite.run(cases, budget_s=args.repeat_budget, progress=say, **options)
    if args.plot:
        search.plot(result, args.plot)
    if args.json:
        sys.stdout.write(report.to_json(result) + "\n")
    else:
        suite.printer(result)
    failed = [
        r for r in result["rows"] if suite.main not in r["times_s"] and "not_supported" not in r["extra"]
    ]
    return 1 if failed else 0


COMMANDS = {"bench": run}
