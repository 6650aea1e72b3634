"""`kcomp sim`, `kcomp asm`, `kcomp disasm`: the simulated accelerator from the command line.

    kcomp sim FILE [--kernel K] [--shape N=V ...] [--param P=V ...] [--input T=F.npy ...]
                   [--accel CFG | --target accel:CFG] [--schedule FILE|none|default] [--seed S] [--json]
                   [--trace F.json] [--plot F.png] [--emit ir|schedule|loops|source]
    kcomp asm FILE.s [-o FILE.bin]        assemble (errors at file:line:col)
    kcomp disasm FILE.bin [-o FILE.s]     disassemble (canonical text)

`sim` is kcomp's one pipeline (kcomp.pipeline: the schedule by DESIGN.md's precedence, and it says
which) on a simulated target, plus the simulator's report: it runs the kernel on random non-zero
inputs, checks the outputs against the numpy reference and reports cycles, the ideal bound,
utilization per unit, the stall breakdown and DMA bytes.  `kcomp run --target accel` compiles the
very same program.  Exit codes: 0, 1 when the results do not match the reference, 2 for bad input
(an unmappable kernel or schedule says why).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from kcomp.api import CompiledKernel
from kcomp.arguments import check_arrays, check_params
from kcomp.cli.args import (
    add_emit_option,
    add_kernel_options,
    add_run_options,
    finite,
    kernel_of,
    parse_inputs,
    parse_params,
)
from kcomp.errors import UsageError
from kcomp.targets import SIMULATED
from kcomp.targets.accel.machine import SimResult, assemble, disassemble, encode, plot, write_trace
from kcomp.targets.accel.machine.result import CLOCK_HZ


def add_parsers(subparsers: Any) -> None:
    """Register `sim`, `asm` and `disasm` on the `add_subparsers()` object of kcomp's parser."""
    s = subparsers.add_parser(
        "sim",
        help="run a kernel on the simulated accelerator: check it, count its cycles",
        description="Map a kernel onto the accelerator, simulate it on random inputs, check it against the"
        " numpy reference and report where the cycles went.",
    )
    add_kernel_options(
        s,
        target=None,
        schedule_help="a schedule file (text, or .json), 'none' for the naive mapping or 'default' for the"
        " rule-based mapping; without it: the file's `schedule ... for accel` block, else the tuning"
        " database, else the rule-based mapping",
    )
    where = s.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        help=f"a simulated target (default: {SIMULATED}; e.g. {SIMULATED}:small, {SIMULATED}:FILE.toml)",
    )
    where.add_argument(
        "--accel",
        metavar="CONFIG.toml",
        help=f"accelerator configuration: a TOML file, or a packaged one (default, small); the same as"
        f" --target {SIMULATED}:CONFIG",
    )
    add_run_options(s)
    s.add_argument("--trace", metavar="FILE.json", help="write a Chrome/Perfetto trace (one track per unit)")
    s.add_argument("--plot", metavar="FILE.png", help="draw the timeline")
    add_emit_option(s, "simulating")

    a = subparsers.add_parser("asm", help="assemble accelerator assembly into a program file")
    a.add_argument("file", help="assembly text (.s)")
    a.add_argument("-o", "--output", metavar="FILE.bin", help="output file (default: FILE with .bin)")

    d = subparsers.add_parser("disasm", help="disassemble an accelerator program file")
    d.add_argument("file", help="a program file (.bin)")
    d.add_argument("-o", "--output", metavar="FILE.s", help="write the text there instead of printing it")


def run_sim(args: argparse.Namespace) -> int:
    spec = args.target or (f"{SIMULATED}:{args.accel}" if args.accel else SIMULATED)
    k = kernel_of(args, spec)
    if not k.target.capabilities.simulated:
        raise UsageError(f"kcomp sim runs simulated targets; {k.target.name} is not one (use kcomp run)")
    built = k.built
    if args.emit:
        print(built.stage(args.emit))
        return 0
    given = parse_params(args.param)
    unknown = sorted(set(given) - {p.name for p in built.program.params})
    if unknown:
        known = ", ".join(p.name for p in built.program.params) or "none"
        raise UsageError(f"--param {unknown[0]}: the kernel has no such parameter (parameters: {known})")
    inputs, params = k.random_inputs(args.seed)
    inputs.update(check_arrays(built.program, parse_inputs(args.input)))
    params.update(check_params(built.program, given, k.defaults) if given else {})
    check = k.check(inputs=inputs, params=params)
    r = check.report
    for path, write in ((args.trace, write_trace), (args.plot, plot)):
        if path:
            try:
                write(r, path)
            except OSError as e:
                raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    report = {
        "kernel": k.name,
        "target": k.target.name,
        "shapes": dict(built.program.dims),
        "schedule_source": built.schedule_source,
        "schedule": str(built.schedule),
        "mapping": list(built.notes),
        "ok": check.ok,
        "max_abs_err": check.max_abs_err,
        "max_rel_err": check.max_rel_err,
        "outputs": {
            n: {"ok": o.ok, "max_abs_err": o.max_abs_err, "max_rel_err": o.max_rel_err}
            for n, o in check.outputs.items()
        },
        "time_s": r.cycles / CLOCK_HZ,
        **r.to_dict(),
    }
    if args.json:
        print(json.dumps(finite(report)))
    else:
        _print(report, r, k, args)
    return 0 if check.ok else 1


def _print(report: dict, r: SimResult, k: CompiledKernel, args: argparse.Namespace) -> None:
    con = Console(highlight=False, soft_wrap=True)
    shapes = " ".join(f"{n}={v}" for n, v in report["shapes"].items())
    con.print(f"[bold]{report['kernel']}[/]  {k.target.describe()}  {shapes}")
    con.print(f"schedule  {escape(report['schedule_source'])}")
    for line in report["schedule"].splitlines():
        con.print(f"          {line}")
    for line in report["mapping"]:
        con.print(f"mapping   {escape(line)}")
    verdict = "[green]ok[/]" if report["ok"] else "[red]MISMATCH[/]"
    con.print(
        f"check     {verdict}  max abs err {report['max_abs_err']:.3g}  max rel err {report['max_rel_err']:.3g}"
    )
    for name, o in report["outputs"].items():
        if not o["ok"]:
            con.print(
                f"  output {name}: max abs err {o['max_abs_err']:.3g}, max rel err {o['max_rel_err']:.3g}"
            )
    con.print(f"time      {report['time_s'] * 1e3:.4g} ms at the nominal 1 GHz clock")
    con.print(escape(r.report()))
    for what, path in (("trace", args.trace), ("plot", args.plot)):
        if path:
            con.print(f"wrote {what} {path}")


def _read(path: str, binary: bool) -> Any:
    try:
        return Path(path).read_bytes() if binary else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def _write(path: str, data: str | bytes) -> None:
    try:
        if isinstance(data, bytes):
            Path(path).write_bytes(data)
        else:
            Path(path).write_text(data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def run_asm(args: argparse.Namespace) -> int:

    out = args.output or str(Path(args.file).with_suffix(".bin"))
    if Path(out).resolve() == Path(args.file).resolve():
        raise UsageError(f"-o {out}: the output would overwrite the input")
    program = assemble(_read(args.file, binary=False), args.file)
    data = encode(program)
    _write(out, data)
    print(
        f"wrote {out} ({len(program.instrs)} instructions, {len(program.buffers)} buffers, {len(data)} bytes)"
    )
    return 0


def run_disasm(args: argparse.Namespace) -> int:

    text = disassemble(_read(args.file, binary=True))
    if args.output:
        _write(args.output, text)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


COMMANDS = {"sim": run_sim, "asm": run_asm, "disasm": run_disasm}
