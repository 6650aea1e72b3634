"""`kcomp` command line: one parser, each subcommand from its module in this package.

    commands.py  compile, run          sim.py   sim, asm, disasm       tune.py  tune
    db.py        db                    fuzz.py  fuzz                   bench.py bench
    sparse.py    prune, sparsity

Each module has `add_parsers(subparsers)` and `COMMANDS` (name -> function of the parsed arguments).
Exit codes everywhere: 0 success, 1 a check that failed, 2 bad input (program, flags, files).
Errors are printed as messages; a Python traceback means a bug in kcomp (KCOMP_DEBUG=1 shows it).
"""

from __future__ import annotations

import argparse
import os
import sys

from kcomp.cli import bench, commands, db, fuzz, sim, sparse, tune
from kcomp.errors import KcompError

MODULES = (commands, bench, tune, db, fuzz, sim, sparse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcomp", description="kcomp: a kernel compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {name: fn for module in MODULES for name, fn in module.COMMANDS.items()}
    try:
        return handlers[args.command](args)
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
