"""What several commands read from the command line the same way: dimensions, parameters, input files,
the options every kernel command takes, and strict JSON for `--json`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from kcomp.api import CompiledKernel, compile
from kcomp.errors import UsageError
from kcomp.pipeline import STAGES
from kcomp.sparse.weights import load_weights
from kcomp.targets import DEFAULT


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
        except (OSError, ValueError, EOFError) as e:
            raise UsageError(f"--input {item}: cannot read {path}: {e}") from None
    return out


def kernel_of(args: argparse.Namespace, target: str) -> CompiledKernel:
    """The kernel the command line names (file, `--kernel`, `--shape`, `--schedule`) for `target`,
    compiled now: with no arrays to bind dimensions from, an unbound one is reported naming --shape."""
    k = compile(
        args.file,
        kernel=args.kernel,
        target=target,
        shapes=parse_shapes(args.shape),
        schedule=getattr(args, "schedule", None),
        weights=load_weights(getattr(args, "weights", None)),
        rearrange=not getattr(args, "no_rearrange", False),
    )
    if k.free:
        k.specialize({})
    return k


def add_kernel_options(
    p: argparse.ArgumentParser, *, target: str | None = DEFAULT, schedule_help: str = ""
) -> None:
    """The file, `--kernel`, `--target` (unless `target` is None), `--shape` and `--schedule`."""
    p.add_argument("file", help="a .kc file")
    p.add_argument("--kernel", help="which kernel of the file (needed when it has several)")
    if target is not None:
        p.add_argument("--target", default=target, help=f"code generation target (default: {target})")
    p.add_argument(
        "--shape", action="append", metavar="NAME=VALUE", help="bind a dimension (overrides the file)"
    )
    add_weight_options(p)
    p.add_argument(
        "--schedule",
        metavar="FILE",
        help=schedule_help
        or "a schedule file (text, or .json), 'none' for the target's naive schedule or 'default' for its"
        " rule-based one; without it: the file's schedule block, else the tuning database, else 'default'",
    )


def add_weight_options(p: argparse.ArgumentParser) -> None:
    """`--weights NAME=FILE.npy` (a sparse input's values) and `--no-rearrange`."""
    p.add_argument(
        "--weights",
        action="append",
        metavar="NAME=FILE.npy",
        help="the values of a sparse input, bound at compile time (docs/sparse.md)",
    )
    p.add_argument(
        "--no-rearrange",
        action="store_true",
        help="pack sparse weights in their given row and column order (no rearrangement)",
    )


def weight_paths(args: argparse.Namespace) -> dict[str, str]:
    """`--weights` items as name -> absolute path (checked readable: workers load them again)."""
    load_weights(args.weights)
    out = {}
    for item in args.weights or []:
        name, _, path = item.partition("=")
        out[name.strip()] = str(Path(path.strip()).resolve())
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    """What a command that runs a kernel on random (or given) inputs takes."""
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a scalar parameter")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file")
    p.add_argument("--seed", type=int, default=None, help="seed of the random inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_emit_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--emit",
        metavar="STAGE",
        help=f"print one stage instead of {what}: {', '.join(STAGES)} (loops: after the schedule; source:"
        " the target's code, also by its language's name: c, asm)",
    )


def finite(obj: Any) -> Any:
    """Strict JSON has no inf/nan: they are written as the strings "inf", "-inf", "nan"."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
