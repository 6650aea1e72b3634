"""The parsed form of a `.kc` file, before names, shapes and types are resolved.

    module = Module(dims*, kernels*, schedules: ScheduleBlock*)
    block  = ScheduleBlock(kernel, target, schedule: Schedule)      -- `schedule KERNEL for TARGET { steps }`
    kernel = Kernel(name, inputs: Decl*, outputs: Decl*, body: Stmt*)
    decl   = Decl(name, dtype, shape: Node* | None, default: Node | None)   -- shape None: a scalar
    stmt   = Stmt(target, target_index: Name*, op, value: Node, where: (Name, Node)*)
    node   = Num(value, is_float) | Name(id) | Call(fn, args*) | Access(tensor, index*, pad)
           | Bin(op, lhs, rhs) | Un(op, x)

Every node keeps its `Span`, so the checker can point at the exact token.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcomp.errors import Span, UsageError
from kcomp.schedule import Schedule


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    is_float: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    fn: str
    args: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Access:
    tensor: str
    index: tuple[Node, ...]
    pad: Node | None
    span: Span


@dataclass(frozen=True, slots=True)
class Bin:
    op: str  # + - * / // % < <= > >= == != and or
    lhs: Node
    rhs: Node
    span: Span


@dataclass(frozen=True, slots=True)
class Un:
    op: str  # - not
    x: Node
    span: Span


Node = Num | Name | Call | Access | Bin | Un


@dataclass(frozen=True, slots=True)
class Decl:
    name: str
    dtype: str
    shape: tuple[Node, ...] | None
    default: Node | None
    span: Span
    sparse: str | None = None  # the format text of a `sparse(...)` declaration
    sparse_span: Span | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """`scan [reverse] [exclusive] i`: the statement's reduction runs along i as a prefix scan."""

    var: Name
    reverse: bool
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Stmt:
    target: str
    target_index: tuple[Name, ...]
    op: str
    value: Node
    where: tuple[tuple[Name, Node], ...]
    span: Span
    op_span: Span
    scan: Scan | None = None


@dataclass(frozen=True, slots=True)
class Kernel:
    name: str
    inputs: tuple[Decl, ...]
    outputs: tuple[Decl, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DimBind:
    name: str
    value: Node
    span: Span


@dataclass(frozen=True, slots=True)
class ScheduleBlock:
    """`schedule KERNEL for TARGET { steps }`: the schedule a file suggests for one kernel on one target family."""

    kernel: str
    target: str  # a target family: cpu, accel, cuda
    schedule: Schedule
    span: Span  # the kernel's name in the block


@dataclass(frozen=True, slots=True)
class Module:
    path: str
    text: str
    dims: tuple[DimBind, ...]
    kernels: tuple[Kernel, ...]
    schedules: tuple[ScheduleBlock, ...] = ()

    def schedule_for(self, kernel_name: str, family: str) -> ScheduleBlock | None:
        """The block for `kernel_name` on targets of `family` (`Target.family`: a `cpu:avx2` target
        finds the `cpu` block), or None; the parser has made sure there is at most one per pair."""
        for b in self.schedules:
            if b.kernel == kernel_name and b.target == family:
                return b
        return None

    def kernel(self, name: str | None) -> Kernel:
        """The kernel called `name`, or the only one in the file."""
        names = [k.name for k in self.kernels]
        if name is None:
            if len(self.kernels) == 1:
                return self.kernels[0]
            if not self.kernels:
                raise UsageError(f"{self.path}: the file defines no kernel")
            raise UsageError(f"{self.path} defines kernels {', '.join(names)}: choose one with --kernel NAME")
        for k in self.kernels:
            if k.name == name:
                return k
        raise UsageError(f"{self.path}: no kernel named '{name}'; the file defines {', '.join(names)}")
