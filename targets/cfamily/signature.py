"""The kernel's ABI as data, carried inside the C source as one comment line.

`build(source)` takes only text, yet `run` must know the entry symbol and what each argument is to
check arrays before handing raw pointers to C.  So the emitter writes

    /* kcomp-signature: {"entry": "kc_matmul", "abi": 1, "args": [...]} */

as the first line, and the builder reads it back.  Hand-written sources without the line still
build; they just cannot be run through `CpuTarget.run`.
"""

from __future__ import annotations

import ctypes
import json
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kcomp.dtypes import DType
from kcomp.errors import UsageError
from kcomp.expr import Buffer, Param
from kcomp.loops import LoopNest

ABI_VERSION = 1
_LINE = re.compile(r"^/\* kcomp-signature: (\{.*\}) \*/$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str  # the source-level name (for messages)
    role: str  # "input", "output" or "param"
    dtype: DType
    shape: tuple[int, ...] | None  # None for scalar params


@dataclass(frozen=True, slots=True)
class Signature:
    entry: str  # the exported C symbol, e.g. kc_matmul
    args: tuple[ArgSpec, ...]  # in ABI order
    abi: int = ABI_VERSION

    @classmethod
    def of(cls, nest: LoopNest, entry: str) -> Signature:
        def spec(a: Buffer | Param, role: str) -> ArgSpec:
            return ArgSpec(a.name, role, a.dtype, a.shape if isinstance(a, Buffer) else None)

        args = (
            [spec(b, "input") for b in nest.inputs]
            + [spec(b, "output") for b in nest.outputs]
            + [spec(p, "param") for p in nest.params]
        )
        return cls(entry, tuple(args))

    def to_comment(self) -> str:
        args = [
            {
                "name": a.name,
                "role": a.role,
                "dtype": a.dtype.value,
                "shape": None if a.shape is None else list(a.shape),
            }
            for a in self.args
        ]
        text = json.dumps({"entry": self.entry, "abi": self.abi, "args": args}, separators=(",", ":"))
        return f"/* kcomp-signature: {text.replace('*/', '* /')} */"

    @classmethod
    def parse(cls, source: str) -> Signature | None:
        """The signature written by the emitter, or None for a source without one."""
        m = _LINE.search(source)
        if m is None:
            return None
        data = json.loads(m.group(1))
        args = tuple(
            ArgSpec(
                a["name"], a["role"], DType(a["dtype"]), None if a["shape"] is None else tuple(a["shape"])
            )
            for a in data["args"]
        )
        return cls(data["entry"], args, data["abi"])


# By-value C types of scalar parameters; f16 travels as float (docs/abi.md).
PARAM_CTYPE = {
    DType.F32: ctypes.c_float,
    DType.F64: ctypes.c_double,
    DType.F16: ctypes.c_float,
    DType.I32: ctypes.c_int32,
    DType.I64: ctypes.c_int64,
    DType.I8: ctypes.c_int8,
    DType.BOOL: ctypes.c_bool,
}


def checked_arguments(signature: Signature, args: Sequence[object]) -> list[object]:
    """`args` as ctypes values in ABI order, each checked against the signature first: C trusts its
    pointers, so a wrong argument is a UsageError naming it, never a crash."""
    specs = signature.args
    if len(args) != len(specs):
        names = ", ".join(a.name for a in specs)
        raise UsageError(f"{signature.entry} takes {len(specs)} arguments ({names}), got {len(args)}")
    converted = [_convert(spec, arg) for spec, arg in zip(specs, args, strict=True)]
    _check_overlap(specs, args)
    return converted


def _convert(spec: ArgSpec, arg: object) -> object:
    if spec.role == "param":
        return scalar(spec, arg)
    if not isinstance(arg, np.ndarray):
        raise UsageError(f"argument {spec.name}: expected a numpy array, got {type(arg).__name__}")
    if arg.dtype != spec.dtype.numpy:
        raise UsageError(f"argument {spec.name}: expected dtype {spec.dtype.numpy}, got {arg.dtype}")
    if arg.shape != spec.shape:
        raise UsageError(f"argument {spec.name}: expected shape {spec.shape}, got {arg.shape}")
    if not arg.flags.c_contiguous:
        raise UsageError(f"argument {spec.name}: must be C-contiguous (use np.ascontiguousarray)")
    if spec.role == "output" and not arg.flags.writeable:
        raise UsageError(f"argument {spec.name}: output array is read-only")
    return arg.ctypes.data


def scalar(spec: ArgSpec, arg: object) -> object:
    if isinstance(arg, np.ndarray) and arg.ndim == 0:
        arg = arg.item()
    ctype = PARAM_CTYPE[spec.dtype]
    if spec.dtype is DType.BOOL:
        if not isinstance(arg, bool | np.bool_):
            raise UsageError(f"parameter {spec.name}: expected a bool, got {arg!r}")
        return ctype(bool(arg))
    if spec.dtype.is_int:
        if not isinstance(arg, numbers.Integral) or isinstance(arg, bool | np.bool_):
            raise UsageError(f"parameter {spec.name}: expected an integer ({spec.dtype}), got {arg!r}")
        lo, hi = spec.dtype.bounds
        if not lo <= int(arg) <= hi:
            raise UsageError(f"parameter {spec.name}: {arg} does not fit in {spec.dtype}")
        return ctype(int(arg))
    if not isinstance(arg, numbers.Real):
        raise UsageError(f"parameter {spec.name}: expected a number ({spec.dtype}), got {arg!r}")
    return ctype(float(arg))


def _check_overlap(specs: Sequence[ArgSpec], args: Sequence[object]) -> None:
    """Outputs are `restrict` pointers: one sharing memory with another argument is undefined."""
    arrays = [(s, a) for s, a in zip(specs, args, strict=True) if isinstance(a, np.ndarray)]
    for i, (spec, arr) in enumerate(arrays):
        if spec.role != "output":
            continue
        for j, (other_spec, other) in enumerate(arrays):
            if i != j and np.may_share_memory(arr, other):
                raise UsageError(
                    f"argument {spec.name} shares memory with {other_spec.name}; pass separate arrays"
                )
