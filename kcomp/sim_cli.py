"""`kcomp sim`, `kcomp asm`, `kcomp disasm`: the simulated accelerator from the command line.

    kcomp sim FILE [--kernel K] [--shape N=V ...] [--param P=V ...] [--input T=F.npy ...] [--accel CFG]
                   [--schedule FILE|none|default] [--seed S] [--json] [--trace F.json] [--plot F.png]
                   [--emit schedule|loops|asm]
    kcomp asm FILE.s [-o FILE.bin]        assemble (errors at file:line:col)
    kcomp disasm FILE.bin [-o FILE.s]     disassemble (canonical text)

`sim` maps the kernel (schedule by DESIGN.md's precedence, and it says which), runs it on random
non-zero inputs on the cycle-level simulator, checks the outputs against the numpy reference and
reports cycles, the ideal bound, utilization per unit, the stall breakdown and DMA bytes.  Exit
codes: 0, 1 when the results do not match the reference, 2 for bad input (an unmappable kernel or
schedule says why).  kcomp/cli.py registers these with `add_sim_parsers`; kcomp/commands.py
dispatches through `COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from kcomp.cli import parse_inputs, parse_params, parse_shapes
from kcomp.errors import UsageError


def add_sim_parsers(subparsers: Any) -> None:
    """Register `sim`, `asm` and `disasm` on the `add_subparsers()` object of kcomp's parser."""
    s = subparsers.add_parser(
        "sim",
        help="run a kernel on the simulated accelerator: check it, count its cycles",
        description="Map a kernel onto the accelerator, simulate it on random inputs, check it against the"
        " numpy reference and report where the cycles went.",
    )
    s.add_argument("file", help="a .kc file")
    s.add_argument("--kernel", help="which kernel of the file (needed when it has several)")
    s.add_argument(
        "--shape", action="append", metavar="NAME=VALUE", help="bind a dimension (overrides the file)"
    )
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="a scalar parameter")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file")
    s.add_argument(
        "--accel",
        metavar="CONFIG.toml",
        help="accelerator configuration: a TOML file, or a packaged one (default, small); default: default",
    )
    s.add_argument(
        "--schedule",
        metavar="FILE",
        help="a schedule file (text, or .json), 'none' for the naive mapping or 'default' for the rule-based"
        " mapping; without it: the file's `schedule ... for accel` block, else the rule-based mapping",
    )
    s.add_argument("--seed", type=int, default=None, help="seed of the random inputs")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--trace", metavar="FILE.json", help="write a Chrome/Perfetto trace (one track per unit)")
    s.add_argument("--plot", metavar="FILE.png", help="draw the timeline")
    s.add_argument(
        "--emit",
        choices=("schedule", "loops", "asm"),
        help="print one stage instead of simulating (asm: the program, ready for `kcomp asm`)",
    )

    a = subparsers.add_parser("asm", help="assemble accelerator assembly into a program file")
    a.add_argument("file", help="assembly text (.s)")
    a.add_argument("-o", "--output", metavar="FILE.bin", help="output file (default: FILE with .bin)")

    d = subparsers.add_parser("disasm", help="disassemble an accelerator program file")
    d.add_argument("file", help="a program file (.bin)")
    d.add_argument("-o", "--output", metavar="FILE.s", help="write the text there instead of printing it")


def _target(spec: str | None):  # type: ignore[no-untyped-def]
    from kcomp.targets.accel import AccelConfig
    from kcomp.targets.accel.target import AccelTarget

    if not spec:
        return AccelTarget()
    return AccelTarget(AccelConfig.load(spec), f"accel:{spec}")


def run_sim(args: argparse.Namespace) -> int:
    from kcomp.api import load_module
    from kcomp.arguments import check_params
    from kcomp.printer import format_nest
    from kcomp.targets.accel import plot, write_trace
    from kcomp.targets.accel.driver import compile_kernel, run_checked
    from kcomp.targets.accel.target import CLOCK_HZ, emit_text

    module = load_module(args.file)
    kernel = module.kernel(args.kernel)
    target = _target(args.accel)
    c = compile_kernel(module, kernel, parse_shapes(args.shape), target, args.schedule)
    if args.emit:
        print(
            {
                "schedule": lambda: f"# schedule: {c.schedule_source}\n{c.schedule}".rstrip("\n"),
                "loops": lambda: format_nest(c.nest),
                "asm": lambda: emit_text(c.artifact).rstrip("\n"),
            }[args.emit]()
        )
        return 0
    given = parse_params(args.param)
    unknown = sorted(set(given) - {p.name for p in c.program.params})
    if unknown:
        known = ", ".join(p.name for p in c.program.params) or "none"
        raise UsageError(f"--param {unknown[0]}: the kernel has no such parameter (parameters: {known})")
    params = check_params(c.program, given, c.defaults) if given else None
    run = run_checked(c, args.seed, parse_inputs(args.input), params)
    r = run.result
    for path, write in ((args.trace, write_trace), (args.plot, plot)):
        if path:
            try:
                write(r, path)
            except OSError as e:
                raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    report = {
        "kernel": kernel.name,
        "target": target.name,
        "shapes": dict(c.program.dims),
        "schedule_source": c.schedule_source,
        "schedule": str(c.schedule),
        "mapping": c.mappings,
        "ok": run.ok,
        "max_abs_err": run.max_abs_err,
        "max_rel_err": run.max_rel_err,
        "outputs": {
            n: {"ok": o.ok, "max_abs_err": o.max_abs_err, "max_rel_err": o.max_rel_err}
            for n, o in run.outputs.items()
        },
        "time_s": r.cycles / CLOCK_HZ,
        **r.to_dict(),
    }
    if args.json:
        print(json.dumps(_finite(report)))
    else:
        _print(report, r, c, args)
    return 0 if run.ok else 1


def _print(report: dict, r, c, args) -> None:  # type: ignore[no-untyped-def]
    con = Console(highlight=False, soft_wrap=True)
    shapes = " ".join(f"{n}={v}" for n, v in report["shapes"].items())
    con.print(f"[bold]{report['kernel']}[/]  {c.target.describe()}  {shapes}")
    con.print(f"schedule  {escape(report['schedule_source'])}")
    for line in str(c.schedule).splitlines():
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


def _finite(obj):  # type: ignore[no-untyped-def]
    """Strict JSON has no inf/nan: they are written as the strings "inf", "-inf", "nan"."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


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
    from kcomp.targets.accel import assemble, encode

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
    from kcomp.targets.accel import disassemble

    text = disassemble(_read(args.file, binary=True))
    if args.output:
        _write(args.output, text)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


COMMANDS = {"sim": run_sim, "asm": run_asm, "disasm": run_disasm}
