"""`kcomp db list|show ID|best FILE|export [FILE]|import FILE`: read and move the tuning database.

Every form takes `--db PATH` (default: KCOMP_TUNING_DB, else `<cache>/tuning.db`).  Export and import
use JSON lines, one trial per line (the columns of kcomp.db.store).  `export` of a damaged file
writes the rows SQLite can still recover and exits 1.  kcomp/cli/app.py registers it with `add_parsers`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kcomp.api import load_module
from kcomp.cli.args import parse_shapes
from kcomp.db.records import format_time, key_for
from kcomp.db.salvage import salvage
from kcomp.db.store import DatabaseCorrupt, TuningDB, default_path
from kcomp.errors import UsageError
from kcomp.pipeline import front
from kcomp.targets import DEFAULT, get_target


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Register `db` on the `add_subparsers()` object of kcomp's parser."""
    p = subparsers.add_parser("db", help="list, show, export and import tuning-database records")
    sub = p.add_subparsers(dest="db_command", required=True, metavar="{list,show,best,export,import}")

    def with_db(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--db", metavar="PATH", help="tuning database (default: KCOMP_TUNING_DB or the cache)")
        return q

    ls = with_db(sub.add_parser("list", help="the most recent trials"))
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="how many (default 50)")
    ls.add_argument("--status", help="only trials with this status (ok, wrong, crash, ...)")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = with_db(sub.add_parser("show", help="every field of one trial"))
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="one JSON object")
    best = with_db(sub.add_parser("best", help="the best record for a kernel on this hardware"))
    best.add_argument("file", help="a .kc file")
    best.add_argument("--kernel", help="which kernel of the file")
    best.add_argument("--shape", action="append", metavar="NAME=VALUE", help="bind a dimension")
    best.add_argument("--target", default=DEFAULT, help=f"target (default: {DEFAULT})")
    best.add_argument("--json", action="store_true", help="one JSON object")
    export = with_db(sub.add_parser("export", help="all trials as JSON lines (stdout or FILE)"))
    export.add_argument("output", nargs="?", metavar="FILE", help="where to write (default: stdout)")
    imp = with_db(sub.add_parser("import", help="append trials from a JSON lines file"))
    imp.add_argument("input", metavar="FILE")
    return p


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "best": _best, "export": _export, "import": _import}[
        args.db_command
    ](args)


def _path(args: argparse.Namespace) -> Path:

    return Path(args.db).expanduser().absolute() if args.db else default_path()


def _open(args: argparse.Namespace) -> Any:

    return TuningDB.open(_path(args), create=False)


def _object(trial: Any) -> dict[str, Any]:
    k = trial.key
    return {
        "id": trial.id,
        "workload": k.workload,
        "target": k.target,
        "hardware": k.hardware,
        "kcomp_version": trial.version,
        "schedule": str(trial.schedule),
        "schedule_hash": trial.schedule.hash,
        "status": trial.status.value,
        "time_s": trial.time_s,
        "counters": dict(trial.counters),
        "error": trial.error,
        "created": trial.created,
        "strategy": trial.strategy,
        "run_id": trial.run_id,
        "workload_text": k.workload_text,
    }


def _kernel_name(trial: Any) -> str:
    first = trial.key.workload_text.split("(", 1)[0]
    return first.removeprefix("kernel ").strip() or trial.key.workload[:10]


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _list(args: argparse.Namespace) -> int:

    with _open(args) as db:
        trials = db.trials(status=args.status, limit=args.limit)
    if args.json:
        for t in trials:
            sys.stdout.write(json.dumps(_object(t)) + "\n")
        return 0
    rows = [
        (
            str(t.id),
            _when(t.created),
            _kernel_name(t),
            t.key.target,
            t.status.value,
            format_time(t.time_s),
            t.strategy,
            _shorten("; ".join(str(t.schedule).splitlines()) or "(naive loops)", 60),
        )
        for t in trials
    ]
    table = Table(title=f"{len(trials)} most recent trials in {_path(args)}")
    for n, column in enumerate(("id", "created", "kernel", "target", "status", "time", "strategy")):
        table.add_column(column, no_wrap=True, min_width=max([len(column), *(len(r[n]) for r in rows)]))
    table.add_column("schedule")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args) as db:
        trial = db.get(args.id)
    if trial is None:
        raise UsageError(f"no trial {args.id} in {_path(args)}")
    _print_trial(trial, args.json)
    return 0


def _print_trial(trial: Any, as_json: bool) -> None:

    obj = _object(trial)
    if as_json:
        sys.stdout.write(json.dumps(obj) + "\n")
        return
    con = Console(highlight=False, soft_wrap=True)
    for name in ("id", "status", "target", "hardware", "workload", "kcomp_version", "strategy", "run_id"):
        con.print(f"{name:<14}{obj[name]}")
    con.print(f"{'time':<14}{format_time(trial.time_s)}")
    con.print(f"{'created':<14}{_when(trial.created)}")
    if trial.counters:
        con.print(f"{'counters':<14}{json.dumps(obj['counters'])}")
    if trial.error:
        con.print(f"{'error':<14}{trial.error}")
    con.print("schedule:", markup=False)
    con.print(
        "".join(f"    {line}\n" for line in str(trial.schedule).splitlines()) or "    (naive loops)\n", end=""
    )
    con.print("workload:", markup=False)
    con.print("".join(f"    {line}\n" for line in trial.key.workload_text.splitlines()), end="", markup=False)


def _best(args: argparse.Namespace) -> int:

    module = load_module(args.file)
    program = front(module, module.kernel(args.kernel), parse_shapes(args.shape))
    key = key_for(program, get_target(args.target))
    with _open(args) as db:
        best = db.best(key)
        others = db.best_other_hardware(key)
    if args.json:
        sys.stdout.write(
            json.dumps(
                {"best": _object(best) if best else None, "other_hardware": [_object(t) for t in others]}
            )
            + "\n"
        )
        return 0 if best else 1
    con = Console(highlight=False)
    if best is None:
        con.print(f"no ok record for {program.name} on this hardware ({key.hardware}) in {_path(args)}")
    else:
        _print_trial(best, False)
    if others:
        con.print(f"\nfrom other hardware (seeds for a new search, not used by compile): {len(others)}")
        for t in others:
            con.print(f"  trial {t.id}  {format_time(t.time_s)}  {t.key.hardware}", markup=False)
    return 0 if best else 1


def _export(args: argparse.Namespace) -> int:

    path, text = _path(args), io.StringIO()
    damaged = None
    try:
        with _open(args) as db:
            n = db.export_jsonl(text)
    except DatabaseCorrupt as e:
        damaged, text = e, io.StringIO()
        n = salvage(path, text)
    if args.output and args.output != "-":
        try:
            Path(args.output).write_text(text.getvalue())
        except OSError as e:
            raise UsageError(f"cannot write {args.output}: {e.strerror}") from None
    else:
        sys.stdout.write(text.getvalue())
    err = Console(stderr=True, highlight=False)
    where = args.output if args.output and args.output != "-" else "stdout"
    if damaged is not None:
        err.print(f"{str(damaged).splitlines()[0]}\nsalvaged {n} trials to {where}", markup=False)
        return 1
    err.print(f"exported {n} trials to {where}", markup=False)
    return 0


def _import(args: argparse.Namespace) -> int:

    try:
        fp = open(args.input)  # noqa: SIM115 (closed below, after the database)
    except OSError as e:
        raise UsageError(f"cannot read {args.input}: {e.strerror}") from None
    with fp, TuningDB.open(_path(args)) as db:
        imported, skipped = db.import_jsonl(fp, args.input)
    Console(stderr=True, highlight=False).print(
        f"imported {imported} trials into {db.path} ({skipped} already there)", markup=False
    )
    return 0


COMMANDS = {"db": run}
