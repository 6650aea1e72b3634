"""The kernel's ABI as data, carried inside the C source as one comment line.

`build(source)` takes only text, yet `run` must know the entry symbol and what each argument is to
check arrays before handing raw pointers to C.  So the emitter writes

    /* kcomp-signature: {"entry": "kc_matmul", "abi": 1, "args": [...]} */

as the first line, and the builder reads it back.  Hand-written sources without the line still
build; they just cannot be run through `CpuTarget.run`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kcomp.dtypes import DType
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
