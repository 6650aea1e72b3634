"""`kcomp compile` and `kcomp run`: a kernel through the pipeline, its stages, artifacts and checks.

    kcomp compile FILE [--target T] [--shape N=V ...] [--schedule S] [-o DIR | --emit STAGE]
    kcomp run FILE [--target T] ... [--check] [--bench] [--sanitize] [--json]

The target writes its own artifacts (`Target.artifacts`: C, header and library on the CPU; assembly
and binary on the accelerator); `--emit` stages are the same for every target (`pipeline.STAGES`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from kcomp.api import CompiledKernel
from kcomp.cli.args import (
    add_emit_option,
    add_kernel_options,
    add_run_options,
    finite,
    kernel_of,
    parse_inputs,
    parse_params,
)


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("compile", help="compile a kernel: its source, artifacts and a report")
    add_kernel_options(c)
    c.add_argument("-o", "--output", metavar="DIR", help="output folder (default: ./out/KERNEL)")
    add_emit_option(c, "a report")

    r = sub.add_parser("run", help="run a kernel on random (or given) inputs, check it, time it")
    add_kernel_options(r)
    add_run_options(r)
    r.add_argument("--check", action="store_true", help="compare with the numpy reference")
    r.add_argument("--bench", action="store_true", help="time it (median of repeats) and report GFLOP/s")
    r.add_argument(
        "--sanitize",
        action="store_true",
        help="build the target's sanitizer executable (cpu: AddressSanitizer + UBSan), run it, check it",
    )


def cmd_compile(args: argparse.Namespace) -> int:
    k = kernel_of(args, args.target)
    built = k.built
    if args.emit:
        print(built.stage(args.emit))
        return 0
    out = Path(args.output or Path("out") / k.name)
    out.mkdir(parents=True, exist_ok=True)
    files = k.target.artifacts(built, out)
    for name, values in built.bound.items():  # the packed sparse weights the library takes (docs/abi.md)
        np.save(out / f"{name}.npy", values, allow_pickle=False)
        files.append(out / f"{name}.npy")
    report = _report(k, built)
    (out / "report.txt").write_text(report + "\n")
    print(report)
    print(f"wrote {', '.join(map(str, files))}")
    return 0


def _report(k: CompiledKernel, built: Any) -> str:
    dims = " ".join(f"{n}={v}" for n, v in built.program.dims) or "(none)"
    return "\n".join(
        [
            f"kernel    {k.name}",
            f"target    {k.target.describe()}",
            f"shapes    {dims}",
            f"schedule  {built.schedule_source}",
            *(f"          {line}" for line in str(built.schedule).splitlines()),
            *(f"notes     {line}" for line in built.notes),
            f"flops     {built.program.flops}",
        ]
    )


def cmd_run(args: argparse.Namespace) -> int:
    k = kernel_of(args, args.target)
    inputs = parse_inputs(args.input)
    params = parse_params(args.param)
    given, rparams = k.random_inputs(args.seed)
    given.update(inputs)
    params = {**rparams, **params}
    result: dict = {
        "kernel": k.name,
        "target": k.target.name,
        "schedule_source": k.built.schedule_source,
        "shapes": dict(k.built.program.dims),
        "ok": True,
    }
    if (mode := k.target.run_mode()) is not None:
        result["mode"] = mode
    if args.sanitize or args.check:
        c = k.check(inputs=given, params=params, sanitize=args.sanitize)
        result.update(
            ok=c.ok,
            max_abs_err=c.max_abs_err,
            max_rel_err=c.max_rel_err,
            outputs={
                n: {"ok": r.ok, "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err}
                for n, r in c.outputs.items()
            },
        )
    else:
        k(**given, **params)
        result["outputs"] = {b.name: {"shape": list(b.shape)} for b in k.built.program.outputs}
        result.update(max_abs_err=None, max_rel_err=None)
    if args.bench:
        m = k.benchmark(inputs=given, params=params)
        flops = k.built.program.flops
        result.update(time_s=m.time_s, gflops=flops / m.time_s / 1e9 if m.time_s > 0 else None)
        result["time_source"] = m.counters.get("time_source", "measured")  # a target's model says "model"
    else:
        result.update(time_s=None, gflops=None)
    if args.json:
        print(json.dumps(finite(result)))
    else:
        _print_run(result)
    return 0 if result["ok"] else 1


def _print_run(r: dict) -> None:
    con = Console()
    shapes = " ".join(f"{n}={v}" for n, v in r["shapes"].items())
    con.print(f"[bold]{r['kernel']}[/]  target {r['target']}  {shapes}  schedule: {r['schedule_source']}")
    if r.get("max_abs_err") is not None:
        verdict = "[green]ok[/]" if r["ok"] else "[red]MISMATCH[/]"
        con.print(
            f"check     {verdict}  max abs err {r['max_abs_err']:.3g}  max rel err {r['max_rel_err']:.3g}"
        )
        for name, o in r.get("outputs", {}).items():
            if not o.get("ok", True):
                con.print(
                    f"  output {name}: max abs err {o['max_abs_err']:.3g}, max rel err {o['max_rel_err']:.3g}"
                )
    if r.get("time_s") is not None:
        gf = f"  {r['gflops']:.2f} GFLOP/s" if r.get("gflops") else ""
        how = (
            "(median)"
            if r.get("time_source", "measured") == "measured"
            else f"({r['time_source']}, not measured)"
        )
        con.print(f"time      {r['time_s'] * 1e3:.3f} ms {how}{gf}")


COMMANDS = {"compile": cmd_compile, "run": cmd_run}
