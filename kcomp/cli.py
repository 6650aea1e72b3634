"""`kcomp` command line: compile, run (and, as later issues land, tune, sim, bench, ...).

Exit codes everywhere: 0 success, 1 a check that failed, 2 bad input (program, flags, files).
Errors are printed as messages; a Python traceback means a bug in kcomp (KCOMP_DEBUG=1 shows it).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from kcomp.errors import KcompError, UsageError


def _key_value(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise UsageError(f"--{what} {text}: expected NAME=VALUE")
    return name.strip(), value.strip()


def parse_shapes(items: list[str] | None) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, value = _key_value(item, "shape")
        try:
            out[name] = int(value)
        except ValueError:
            raise UsageError(f"--shape {item}: {value!r} is not an integer") from None
        if out[name] <= 0:
            raise UsageError(f"--shape {item}: a dimension must be positive")
    return out


def parse_params(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, value = _key_value(item, "param")
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"--param {item}: {value!r} is not a number") from None
    return out


def parse_inputs(items: list[str] | None) -> dict[str, np.ndarray]:
    out = {}
    for item in items or []:
        name, path = _key_value(item, "input")
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"--input {item}: cannot read {path}: {e}") from None
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .kc file")
    p.add_argument("--kernel", help="which kernel of the file (needed when it has several)")
    p.add_argument("--target", default="cpu", help="code generation target (default: cpu)")
    p.add_argument(
        "--shape", action="append", metavar="NAME=VALUE", help="bind a dimension (overrides the file)"
    )
    p.add_argument(
        "--schedule",
        metavar="FILE",
        help="a schedule file (text, or .json), 'none' for the naive loops or 'default' for the rule-based"
        " scheduler's; without it: the file's schedule block, else the tuning database, else 'default'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcomp", description="kcomp: a kernel compiler")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a kernel to C, a header and a shared library")
    _common(c)
    c.add_argument("-o", "--output", metavar="DIR", help="output folder (default: ./out/KERNEL)")
    c.add_argument(
        "--emit",
        choices=("ir", "schedule", "loops", "c"),
        help="print one stage to stdout instead of a report (loops: after the schedule)",
    )

    r = sub.add_parser("run", help="run a kernel on random (or given) inputs, check it, time it")
    _common(r)
    r.add_argument("--param", action="append", metavar="NAME=VALUE", help="a scalar parameter")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file")
    r.add_argument("--check", action="store_true", help="compare with the numpy reference")
    r.add_argument("--bench", action="store_true", help="time it (median of repeats) and report GFLOP/s")
    r.add_argument("--seed", type=int, default=None, help="seed of the random inputs")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument(
        "--sanitize",
        action="store_true",
        help="cpu: build a standalone executable with AddressSanitizer + UBSan, run it, check its outputs",
    )

    from kcomp.bench.cli import add_parser as add_bench

    add_bench(sub)
    from kcomp import db_cli, fuzz_cli, tune_cli

    tune_cli.add_parser(sub)
    db_cli.add_parser(sub)
    fuzz_cli.add_parser(sub)
    from kcomp.sim_cli import add_sim_parsers

    add_sim_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from kcomp.commands import COMMANDS

        return COMMANDS[args.command](args)
    except KcompError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:  # arrays larger than the machine: the input asks too much, not a bug
        print(f"error: out of memory ({e}); try smaller shapes (--shape NAME=VALUE)", file=sys.stderr)
        return 2
    except Exception as e:  # a bug in kcomp, not in the user's input
        if os.environ.get("KCOMP_DEBUG"):
            raise
        print(
            f"internal error: {type(e).__name__}: {e}\n(run with KCOMP_DEBUG=1 for the traceback; please report it)",
            file=sys.stderr,
        )
        return 3
