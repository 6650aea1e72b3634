"""Tensors of a torch graph as kcomp sees them while it writes a kernel: a shape, an element type and a
way to read one element as `.kc` expression text.

A `TV` is either *materialized* (a tensor of the kernel: an input, an output or a temporary, read as
`t3[i0, i1]`) or *lazy*: an expression over other values, inlined into whatever reads it.  Views
(permute, reshape, expand, slice, unsqueeze) are lazy index maps over their base and cost nothing;
elementwise ops are lazy too, and the kernel builder materializes them where recomputing would cost
(several readers, a contraction operand, a long expression).  Index arguments are expression text
(`"i0"`, `"2*i1 + r0 - 1"`), so a read composes its index maps by substitution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kcomp.errors import Unsupported

Reader = Callable[[list[str]], str]
# torch dtypes by name -> the kernel language's element types
DTYPES = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}


@dataclass
class TV:
    """A tensor value (module docstring); `cost`: the size of its expression, 0 for a tensor or a view."""

    shape: tuple[int, ...]
    dtype: str
    reader: Reader
    name: str | None = None  # set when materialized
    cost: int = 0

    @property
    def rank(self) -> int:
        return len(self.shape)

    def read(self, idx: Sequence[str]) -> str:
        if len(idx) != self.rank:
            raise AssertionError(f"a rank-{self.rank} value read with {len(idx)} indices")
        return self.reader(list(idx))


def tensor(name: str, shape: tuple[int, ...], dtype: str) -> TV:
    """A tensor of the kernel, read by name."""
    return TV(shape, dtype, lambda idx: f"{name}[{', '.join(idx)}]", name=name)


def lazy(shape: tuple[int, ...], dtype: str, reader: Reader, cost: int) -> TV:
    """A computed value: its text always parenthesized, so any operator may take it as an operand."""
    return TV(shape, dtype, lambda idx: f"({reader(idx)})", cost=cost)


def view(base: TV, shape: tuple[int, ...], mapping: Callable[[list[str]], list[str]]) -> TV:
    """`base` read through an index map (a view: no work of its own)."""
    return TV(shape, base.dtype, lambda idx: base.read(mapping(idx)), cost=base.cost)


def broadcast_index(value: TV, idx: list[str], shape: tuple[int, ...]) -> list[str]:
    """The index into `value` of element `idx` of the broadcast result of `shape` (numpy's rules)."""
    lead = len(shape) - value.rank
    out = []
    for k, size in enumerate(value.shape):
        out.append("0" if size == 1 and shape[lead + k] != 1 else idx[lead + k])
    return out


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        sizes = {s[k - rank + len(s)] for s in shapes if k - rank + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise Unsupported(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def reshape(base: TV, shape: tuple[int, ...]) -> TV:
    """`base` viewed with `shape` (row-major, same size): dimensions grouped where the running products
    meet, each group's index rebuilt from the group's flat offset (no // or % where a group maps one
    dimension onto one)."""
    if math.prod(shape) != math.prod(base.shape):
        raise Unsupported(f"reshape of {base.shape} to {shape} changes the size")
    groups = _groups(base.shape, shape)

    def mapping(idx: list[str]) -> list[str]:
        out: list[str] = []
        for ins, outs in groups:
            flat = _flat([idx[k] for k in outs], [shape[k] for k in outs])
            sizes = [base.shape[k] for k in ins]
            first = next((n for n, size in enumerate(sizes) if size != 1), len(sizes))
            for n in range(len(ins)):
                inner = math.prod(sizes[n + 1 :])
                part = flat if inner == 1 else f"({flat}) // {inner}"
                # NOTE: a dimension of size 1 is 0; the first other one needs no modulo (flat < its size)
                out.append("0" if sizes[n] == 1 else part if n == first else f"({part}) % {sizes[n]}")
        return out

    return view(base, shape, mapping)


def _flat(idx: list[str], sizes: list[int]) -> str:
    """Row-major flat offset of `idx` within `sizes` (dimensions of size 1 contribute nothing)."""
    terms = []
    for n, (i, size) in enumerate(zip(idx, sizes, strict=True)):
        if size == 1:
            continue
        stride = math.prod(sizes[n + 1 :])
        terms.append(i if stride == 1 else f"{stride}*{i}")
    return " + ".join(terms) or "0"


def _groups(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Dimensions of `a` and `b` grouped where their running products agree (each group the same size)."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        ins, outs = [], []
        pa = pb = 1
        while True:
            if pa <= pb and i < len(a):
                pa *= a[i]
                ins.append(i)
                i += 1
            elif j < len(b):
                pb *= b[j]
                outs.append(j)
                j += 1
            else:
                break
            if pa == pb and (i == len(a) or a[i] != 1 or pa != 1) and (j == len(b) or b[j] != 1 or pb != 1):
                break
        groups.append((ins, outs))
    return groups
