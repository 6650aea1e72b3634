"""Instructions under construction for one program section, with their tokens added afterwards
(codegen.py's contraction sections and vector_codegen.py's vector sections)."""

from __future__ import annotations

from kcomp.targets.accel.machine.errors import EncodingError
from kcomp.targets.accel.machine.isa import OPS, Instr

Item = list  # [mnemonic, raw operands, waits, signals]


class Stream:
    """Instructions under construction, in program order (each queue keeps its own order within
    it); tokens are added to an item after it is made, and `instrs` checks every field and freezes."""

    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, op: str, *args: int) -> Item:
        item = [op, args, (), ()]
        self.items.append(item)
        return item

    def instrs(self) -> list[Instr]:
        out = []
        for op, args, wait, signal in self.items:
            for f, v in zip(OPS[op].fields, args, strict=True):
                if not f.lo <= v <= f.hi:
                    raise EncodingError(
                        f"{op}: {f.name}={v} is out of range {f.lo}..{f.hi} ({f.bits}-bit field)"
                    )
            out.append(Instr(op, args, tuple(sorted(wait)), tuple(sorted(signal))))
        return out


def wait(item: Item, token: int) -> None:
    item[2] += (token,)


def signal(item: Item, token: int) -> None:
    item[3] += (token,)
