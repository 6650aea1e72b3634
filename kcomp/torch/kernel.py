"""One kcomp kernel written from a run of torch graph nodes, as `.kc` source text.

The builder hands out names and index variables, turns values into statements where they must exist
as tensors (`materialize`), and writes the kernel: its inputs (the values the run reads from outside),
its outputs (the values read after it) and its statements in order.  Every statement declares the
range of each of its index variables with `where`, so no range is left to inference.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from kcomp.torch.values import TV, lazy, tensor, view

INLINE_COST = 24  # a lazy value longer than this is materialized before a second statement reads it


@dataclass
class KernelBuilder:
    name: str
    inputs: list[tuple[str, TV]] = field(default_factory=list)  # (graph value key, tensor)
    outputs: list[tuple[str, TV]] = field(default_factory=list)
    stmts: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    def fresh(self, prefix: str = "t") -> str:
        return f"{prefix}{next(self._ids)}"

    def input(self, key: str, shape: tuple[int, ...], dtype: str) -> TV:
        """An input of the kernel, declared without its dimensions of size 1 (the caller reshapes, a
        view): a product then reads it through plain loop variables (`a0[i0, r0]`, not `a0[0, i0,
        r0]`), which is what the scheduler's contraction rules match."""
        kept = tuple(s for s in shape if s != 1)
        t = tensor(self.fresh("a"), kept, dtype)
        self.inputs.append((key, t))
        if kept == shape:
            return t
        dims = [k for k, s in enumerate(shape) if s != 1]
        return view(t, shape, lambda idx: [idx[k] for k in dims])

    def statement(
        self,
        shape: tuple[int, ...],
        dtype: str,
        body: str,
        op: str = "=",
        reduced: tuple[tuple[str, int], ...] = (),
        name: str | None = None,
    ) -> TV:
        """`name[i0, ..] op body where i0 < .., r0 < ..`: `body` is written over the index variables
        `i0, i1, ...` of the result and the reduced ones given; the result as a tensor."""
        if dtype == "i64" and op.startswith("arg"):  # NOTE: a temporary's positions are i32
            positions = self.statement(shape, "i32", body, op, reduced, name)
            return lazy(shape, "i64", lambda i: f"i64({positions.read(i)})", 0)
        if dtype == "i64":  # NOTE: a temporary takes its value's type, and masks or literals are i32
            body = f"i64({body})"
        name = name or self.fresh()
        idx = [f"i{k}" for k in range(len(shape))]
        where = [f"{v} < {n}" for v, n in zip(idx, shape, strict=True)] + [f"{v} < {n}" for v, n in reduced]
        text = f"{name}[{', '.join(idx)}] {op} {body}"
        self.stmts.append(text + (f" where {', '.join(where)}" if where else ""))
        return tensor(name, shape, dtype)

    def materialize(self, value: TV, name: str | None = None) -> TV:
        """`value` as a tensor of the kernel (a copy when it is already one under another name)."""
        if value.name is not None and name is None:
            return value
        idx = [f"i{k}" for k in range(value.rank)]
        return self.statement(value.shape, value.dtype, value.read(idx), name=name)

    def settle(self, value: TV, readers: int) -> TV:
        """`value` as later statements should read it: materialized when it computes something and
        several read it, or when its expression has grown long."""
        if value.dtype == "bool":
            return value  # NOTE: the language has no bool tensors: a mask is recomputed where read
        if value.name is None and value.cost and (readers > 1 or value.cost > INLINE_COST):
            return self.materialize(value)
        return value

    def output(self, key: str, value: TV) -> None:
        """`value` as an output: a temporary of this kernel is renamed (no copy), anything else copied."""
        name = self.fresh("o")
        temps = {t.name for _, t in self.inputs} | {t.name for _, t in self.outputs}
        if value.name is not None and value.name not in temps:
            pattern = re.compile(rf"\b{value.name}\b")
            self.stmts = [pattern.sub(name, text) for text in self.stmts]
            out = tensor(name, value.shape, value.dtype)
            value.name, value.reader = name, out.reader  # NOTE: a second output of it copies the renamed one
            self.outputs.append((key, out))
            return
        self.outputs.append((key, self.materialize(value, name)))

    def source(self) -> str:
        def decl(t: TV) -> str:
            return f"{t.name}: {t.dtype}[{', '.join(map(str, t.shape))}]"

        params = ", ".join(decl(t) for _, t in self.inputs)
        outs = ", ".join(decl(t) for _, t in self.outputs)
        body = "\n".join(f"    {s}" for s in self.stmts)
        return f"kernel {self.name}({params}) -> ({outs}) {{\n{body}\n}}\n"
