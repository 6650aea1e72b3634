"""Matching a caller's arrays and scalars to a kernel's signature, with errors that name the argument.

One place checks dtype, shape and contiguity for the Python API and the CLI alike; the targets then
trust what they receive.  torch CPU tensors are accepted and viewed as numpy arrays (no copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.errors import UsageError
from kcomp.program import Program


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "numpy")


def as_array(name: str, x: Any) -> np.ndarray:
    """A numpy view of `x` (numpy array or torch CPU tensor), never a silent copy."""
    if is_torch(x):
        if not x.is_cpu:
            raise UsageError(
                f"argument '{name}': torch tensor is on {x.device}; the cpu target needs a CPU tensor"
            )
        if x.requires_grad:
            x = x.detach()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise UsageError(f"argument '{name}': expected a numpy array or torch tensor, got {type(x).__name__}")


def split_arguments(
    kernel: S.Kernel, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Positional arguments follow the declaration order of the kernel's inputs (tensors and scalars)."""
    bound = [d.name for d in kernel.inputs if d.sparse is not None]
    names = [d.name for d in kernel.inputs if d.sparse is None]
    for k in kwargs:
        if k in bound:
            raise UsageError(
                f"input '{k}' is sparse: its values were given when the kernel was compiled (weights=)"
            )
    if len(args) > len(names):
        raise UsageError(
            f"kernel '{kernel.name}' takes {len(names)} inputs ({', '.join(names)}), {len(args)} given"
        )
    given = dict(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k not in names:
            raise UsageError(
                f"kernel '{kernel.name}' has no input named '{k}' (its inputs: {', '.join(names)})"
            )
        if k in given:
            raise UsageError(f"input '{k}' given twice")
        given[k] = v
    tensors = {d.name: given[d.name] for d in kernel.inputs if d.shape is not None and d.name in given}
    scalars = {d.name: given[d.name] for d in kernel.inputs if d.shape is None and d.name in given}
    missing = [
        d.name for d in kernel.inputs if d.shape is not None and d.name in names and d.name not in given
    ]
    if missing:
        raise UsageError(
            f"kernel '{kernel.name}': missing input{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    return tensors, scalars


def infer_shapes(kernel: S.Kernel, free: list[str], tensors: dict[str, Any]) -> dict[str, int]:
    """Bind the dimensions the source leaves free from the arrays passed (`A: f32[M, K]` binds M, K)."""
    out: dict[str, int] = {}
    source: dict[str, str] = {}
    for d in kernel.inputs:
        if d.shape is None or d.name not in tensors:
            continue
        shape = tuple(tensors[d.name].shape)
        if len(shape) != len(d.shape):
            raise UsageError(f"input '{d.name}' must have rank {len(d.shape)}, got shape {shape}")
        for k, e in enumerate(d.shape):
            if isinstance(e, S.Name) and e.id in free:
                if e.id in out and out[e.id] != shape[k]:
                    raise UsageError(
                        f"dimension {e.id} is {out[e.id]} from input '{source[e.id]}' but {shape[k]} from input '{d.name}'"
                    )
                out[e.id] = int(shape[k])
                source[e.id] = d.name
    return out


def check_arrays(program: Program, tensors: dict[str, Any], role: str = "input") -> dict[str, np.ndarray]:
    """numpy views of the given tensors, each checked against the program's dtype and shape."""
    buffers = program.inputs if role == "input" else program.outputs
    out = {}
    for buf in buffers:
        if buf.name not in tensors:
            continue
        arr = as_array(buf.name, tensors[buf.name])
        want = buf.dtype.numpy
        if arr.dtype != want:
            raise UsageError(f"{role} '{buf.name}': expected dtype {buf.dtype} ({want}), got {arr.dtype}")
        if tuple(arr.shape) != buf.shape:
            raise UsageError(f"{role} '{buf.name}': expected shape {buf.shape}, got {tuple(arr.shape)}")
        if not arr.flags.c_contiguous:
            raise UsageError(
                f"{role} '{buf.name}' must be C-contiguous (use np.ascontiguousarray or .contiguous())"
            )
        if role == "output" and not arr.flags.writeable:
            raise UsageError(f"output '{buf.name}' is read-only")
        out[buf.name] = arr
    return out


def check_params(program: Program, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for p in program.params:
        if p.name in given:
            value = given[p.name]
        elif p.name in defaults:
            value = defaults[p.name]
        else:
            raise UsageError(f"scalar parameter '{p.name}' has no default: pass it (--param {p.name}=VALUE)")
        try:
            out[p.name] = float(value) if p.dtype.is_float else int(value)
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"parameter '{p.name}': expected a {p.dtype} number, got {value!r}") from None
        if not p.dtype.is_float and out[p.name] != value:
            raise UsageError(f"parameter '{p.name}' is {p.dtype}: {value!r} is not an integer")
        if p.dtype.is_int and not p.dtype.bounds[0] <= out[p.name] <= p.dtype.bounds[1]:
            raise UsageError(f"parameter '{p.name}': {value} does not fit in {p.dtype}")
    return out
