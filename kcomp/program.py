"""Tensor IR: a `Program` is one kernel with concrete shapes, a list of einsum-style statements.

    program   = Program(name, inputs*, outputs*, params*, temps*, statements*, dims)
    statement = Statement(target, index*, op, value, reduce*, extents*, accumulate)

`C[i, j] += A[i, k] * B[k, j]` is `Statement(C, (i, j), Reduce.ADD, A[i,k]*B[k,j], (k,), (M, N, K))`:
the left-hand side's variables range over the whole target, the others are reduced.  `accumulate`
is False when nothing wrote the target before (the reduction starts from the operator's identity)
and True when it follows a write (`Y = b` then `Y += X*W` adds onto `b`).  Statements run in order;
`graph()` is the dataflow DAG that fusion and scheduling query.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx
import numpy as np

from kcomp.errors import Span
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Expr, Load, Param, Var, children, loads


class Reduce(enum.Enum):
    ASSIGN = "="
    ADD = "+="
    MUL = "*="
    MAX = "max="
    MIN = "min="
    ARGMAX = "argmax="
    ARGMIN = "argmin="

    @property
    def identity(self) -> float:
        """The value a reduction starts from when nothing was written before."""
        return _IDENTITY[self]


_IDENTITY = {
    Reduce.ADD: 0.0,
    Reduce.MUL: 1.0,
    Reduce.MAX: float("-inf"),
    Reduce.MIN: float("inf"),
    Reduce.ARGMAX: float("-inf"),  # of the running best value; the stored index starts at 0
    Reduce.ARGMIN: float("inf"),
}


class Kind(enum.Enum):
    """What a statement computes, for the passes that treat these differently."""

    ELEMENTWISE = "elementwise"  # no reduced index
    REDUCTION = "reduction"  # reduced indices, not a sum of products
    CONTRACTION = "contraction"  # += of a product of two or more tensor reads over a reduced index
    SCAN = "scan"  # a prefix scan along one of its indices


@dataclass(frozen=True)
class Scan:
    """A prefix scan along `var` (an index of the target): element i combines the values at the
    positions up to i (`reverse`: from i on; `exclusive`: i itself left out, the identity first)."""

    var: Var
    reverse: bool = False
    exclusive: bool = False


@dataclass(frozen=True, eq=False)
class Statement:
    target: Buffer
    index: tuple[Var, ...]
    op: Reduce
    value: Expr
    reduce: tuple[Var, ...]
    extents: tuple[int, ...]  # of index + reduce, in that order
    accumulate: bool = False
    span: Span | None = field(default=None, compare=False)
    scan: Scan | None = None

    @property
    def vars(self) -> tuple[Var, ...]:
        return self.index + self.reduce

    def extent(self, v: Var) -> int:
        return self.extents[self.vars.index(v)]

    @property
    def reads(self) -> tuple[Buffer, ...]:
        seen: dict[Buffer, None] = {}
        for ld in loads(self.value):
            seen[ld.buffer] = None
        if self.accumulate:
            seen[self.target] = None
        return tuple(seen)

    @property
    def kind(self) -> Kind:
        if self.scan is not None:
            return Kind.SCAN
        if not self.reduce:
            return Kind.ELEMENTWISE
        if self.op is Reduce.ADD and len(product_factors(self.value)) >= 2:
            return Kind.CONTRACTION
        return Kind.REDUCTION

    @property
    def flops(self) -> int:
        """Arithmetic operations per full evaluation (a multiply-add counts 2), for GFLOP/s."""
        points = 1
        for e in self.extents:
            points *= e
        ops = _arithmetic(self.value)
        return points * (ops + (1 if self.op is not Reduce.ASSIGN else 0))


def _arithmetic(e: Expr) -> int:
    """Operations on values; index arithmetic inside a read is addressing, not work."""
    if isinstance(e, Load):
        return 0
    own = 0 if isinstance(e, Var | Param | Const | Cast) else 1
    return own + sum(_arithmetic(c) for c in children(e))


def product_factors(e: Expr) -> list[Expr]:
    """Tensor reads multiplied together at the top of `e` (a contraction's operands)."""
    if isinstance(e, Binary) and e.op is BinaryOp.MUL:
        return product_factors(e.lhs) + product_factors(e.rhs)
    return [e] if isinstance(e, Load) else []


@dataclass(frozen=True, eq=False)
class Program:
    name: str
    inputs: tuple[Buffer, ...]
    outputs: tuple[Buffer, ...]
    params: tuple[Param, ...]
    temps: tuple[Buffer, ...]
    statements: tuple[Statement, ...]
    dims: tuple[tuple[str, int], ...] = ()  # the dimension binding this program was built with
    # inputs whose values the compiler was given (sparse weights, their packed forms): callers never
    # pass them; the reference and the runtime take them from here
    bound: Mapping[str, np.ndarray] = field(default_factory=dict)
    sparse: Mapping[str, Any] = field(default_factory=dict)  # input name -> kcomp.sparse.Format

    def bound_digest(self) -> str:
        """A digest of the bound tensors' patterns (index tensors whole, values by where they are zero),
        for the workload key: a schedule tuned for one sparsity pattern is not another's."""
        h = hashlib.sha256()
        for name in sorted(self.bound):
            arr = np.ascontiguousarray(self.bound[name])
            h.update(f"{name}{arr.shape}{arr.dtype}".encode())
            h.update((arr != 0).tobytes() if arr.dtype.kind == "f" else arr.tobytes())
        return h.hexdigest()[:16]

    @property
    def free_inputs(self) -> tuple[Buffer, ...]:
        """The inputs a caller passes (all but the bound ones)."""
        return tuple(b for b in self.inputs if b.name not in self.bound)

    @property
    def tensors(self) -> tuple[Buffer, ...]:
        return self.inputs + self.outputs + self.temps

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.statements)

    @cached_property
    def graph(self) -> nx.DiGraph:
        """Dataflow DAG: nodes are statement positions, an edge carries the tensor that flows.

        A statement depends on the latest earlier writer of each tensor it reads, and on the previous
        writer of its own target (write-after-write, e.g. `Y = b` before `Y += X*W`).
        """
        g = nx.DiGraph()
        last_writer: dict[Buffer, int] = {}
        for n, s in enumerate(self.statements):
            g.add_node(n, statement=s)
            deps = [*s.reads, s.target]
            for t in deps:
                if t in last_writer and last_writer[t] != n:
                    g.add_edge(last_writer[t], n, tensor=t)
            last_writer[s.target] = n
        return g

    def producers(self, tensor: Buffer) -> list[Statement]:
        return [s for s in self.statements if s.target is tensor]

    def consumers(self, tensor: Buffer) -> list[Statement]:
        return [s for s in self.statements if tensor in s.reads]

    def topological(self) -> list[Statement]:
        return [self.statements[n] for n in nx.topological_sort(self.graph)]
