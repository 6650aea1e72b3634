"""What each `kcomp` subcommand does, given parsed arguments (kcomp.cli parses them)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from rich.console import Console

from kcomp import db_cli, fuzz_cli, sim_cli, tune_cli
from kcomp.api import CompiledKernel, compile
from kcomp.cli import parse_inputs, parse_params, parse_shapes
from kcomp.printer import format_nest, format_program
from kcomp.targets.cpu.emit import emit_header


def _kernel(args) -> CompiledKernel:
    k = compile(
        args.file,
        kernel=args.kernel,
        target=args.target,
        shapes=parse_shapes(args.shape),
        schedule=getattr(args, "schedule", None),
    )
    if k.free:  # the command line has no arrays to bind from: report the first use, naming --shape
        k.specialize({})
    return k


def cmd_compile(args) -> int:
    k = _kernel(args)
    built = k.built
    if args.emit:
        print(
            {
                "ir": lambda: format_program(built.program),
                "schedule": lambda: f"# schedule: {built.schedule_source}\n{built.schedule}".rstrip("\n"),
                "loops": lambda: format_nest(built.nest),
                "c": lambda: built.source,
            }[args.emit]()
        )
        return 0
    out = Path(args.output or Path("out") / k.name)
    out.mkdir(parents=True, exist_ok=True)
    if k.target.name.split(":")[0] == "accel":
        # the accelerator's artifact is a program: its assembly text and its binary encoding
        from kcomp.targets.accel import encode

        files = [out / f"{k.name}.s", out / f"{k.name}.bin"]
        files[0].write_text(built.source)
        files[1].write_bytes(encode(built.artifact.program))
    else:
        files = [out / f"{k.name}.c", out / f"{k.name}.h", out / f"lib{k.name}.so"]
        files[0].write_text(built.source)
        files[1].write_text(emit_header(built.nest))
        shutil.copyfile(built.artifact.path, files[2])
    report = _report(k, built)
    (out / "report.txt").write_text(report + "\n")
    print(report)
    print(f"wrote {', '.join(map(str, files))}")
    return 0


def _report(k: CompiledKernel, built) -> str:
    dims = " ".join(f"{n}={v}" for n, v in built.program.dims) or "(none)"
    return "\n".join(
        [
            f"kernel    {k.name}",
            f"target    {k.target.describe() if hasattr(k.target, 'describe') else k.target.name}",
            f"shapes    {dims}",
            f"schedule  {built.schedule_source}",
            *(f"          {line}" for line in str(built.schedule).splitlines()),
            f"flops     {built.program.flops}",
        ]
    )


def cmd_run(args) -> int:
    k = _kernel(args)
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
    sanitize = getattr(args, "sanitize", False)
    if sanitize or args.check:
        c = _sanitized(k, given, params) if sanitize else k.check(inputs=given, params=params)
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
    else:
        result.update(time_s=None, gflops=None)
    if args.json:
        print(json.dumps(_finite(result)))
    else:
        _print_run(result)
    return 0 if result["ok"] else 1


def _sanitized(k: CompiledKernel, given: dict, params: dict):  # type: ignore[no-untyped-def]
    """`--sanitize`: the kernel as an ASan/UBSan executable (targets/cpu/sanitize.py), checked."""
    from kcomp.errors import UsageError
    from kcomp.targets.cpu.sanitize import run_sanitized

    if k.target.name.split(":")[0] != "cpu":
        raise UsageError(f"--sanitize builds CPU kernels only, not target {k.target.name}")
    return run_sanitized(k, inputs=given, params=params).check


def _finite(obj):
    """Strict JSON has no inf/nan: they are written as the strings "inf", "-inf", "nan"."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


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
        con.print(f"time      {r['time_s'] * 1e3:.3f} ms (median){gf}")


def cmd_bench(args) -> int:
    from kcomp.bench.cli import run

    return run(args)


COMMANDS = {
    "compile": cmd_compile,
    "run": cmd_run,
    "bench": cmd_bench,
    "tune": tune_cli.run,
    "db": db_cli.run,
    "fuzz": fuzz_cli.run,
    **sim_cli.COMMANDS,
}
