"""Loop IR: what the passes rewrite and the targets emit.

    nest = LoopNest(name, inputs*, outputs*, params*, body*)
    stmt = Loop(var, extent, kind, body*)      -- var runs 0 .. extent-1
         | Alloc(buffer, body*)                -- buffer lives for body (scope on the buffer)
         | Store(buffer, index*, value)        -- buffer[index] = value
         | Guard(cond, body*)                  -- body runs where cond holds (remainders, padding)
    expr = kcomp.expr (Var is a loop variable, Load reads a buffer)

Nodes are immutable; rewrites build new trees (`map_stmts`).  Reductions are explicit here: an
initialising nest stores the identity, the reducing nest stores `load + value`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kcomp.expr import Buffer, Expr, Param, Var


class LoopKind(enum.Enum):
    SERIAL = "serial"
    PARALLEL = "parallel"
    VECTOR = "vector"
    UNROLLED = "unrolled"
    # CUDA's grid and block axes (`bind LOOP blockIdx.x`): the loop's iterations are the blocks or
    # the threads along that axis; every other target runs them as serial loops
    BLOCK_X = "blockIdx.x"
    BLOCK_Y = "blockIdx.y"
    BLOCK_Z = "blockIdx.z"
    THREAD_X = "threadIdx.x"
    THREAD_Y = "threadIdx.y"
    THREAD_Z = "threadIdx.z"

    @property
    def is_block(self) -> bool:
        return self.value.startswith("blockIdx")

    @property
    def is_thread(self) -> bool:
        return self.value.startswith("threadIdx")

    @property
    def axis(self) -> str:
        """'x', 'y' or 'z' of a bound kind; '' for the others."""
        return self.value[-1] if self.is_block or self.is_thread else ""


@dataclass(frozen=True, eq=False)
class Loop:
    var: Var
    extent: int
    kind: LoopKind
    body: tuple[Stmt, ...]


@dataclass(frozen=True, eq=False)
class Alloc:
    buffer: Buffer
    body: tuple[Stmt, ...]


@dataclass(frozen=True, eq=False)
class Store:
    buffer: Buffer
    index: tuple[Expr, ...]
    value: Expr


@dataclass(frozen=True, eq=False)
class Guard:
    cond: Expr
    body: tuple[Stmt, ...]


Stmt = Loop | Alloc | Store | Guard


@dataclass(frozen=True, eq=False)
class LoopNest:
    name: str
    inputs: tuple[Buffer, ...]
    outputs: tuple[Buffer, ...]
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    # inputs whose values the compiler holds (Program.bound): a target may specialize on them (the
    # accelerator skips a sparse weight's zero tiles); code must still read them from the argument
    constants: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def arguments(self) -> tuple[Buffer | Param, ...]:
        """The C ABI's argument order: inputs, outputs, then scalar parameters."""
        return self.inputs + self.outputs + self.params


def walk_stmts(body: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Pre-order traversal of statements."""
    for s in body:
        yield s
        if not isinstance(s, Store):
            yield from walk_stmts(s.body)


def map_stmts(
    body: tuple[Stmt, ...], fn: Callable[[Stmt], Stmt | tuple[Stmt, ...] | None]
) -> tuple[Stmt, ...]:
    """Bottom-up rewrite of a statement list.

    `fn` sees each statement after its children were rewritten and returns a replacement (one
    statement or several), or None to keep it.
    """
    out: list[Stmt] = []
    for s in body:
        if not isinstance(s, Store):
            new_body = map_stmts(s.body, fn)
            if any(a is not b for a, b in zip(new_body, s.body, strict=False)) or len(new_body) != len(
                s.body
            ):
                s = replace(s, body=new_body)
        r = fn(s)
        if r is None:
            out.append(s)
        elif isinstance(r, tuple):
            out.extend(r)
        else:
            out.append(r)
    return tuple(out)


def loops(body: tuple[Stmt, ...]) -> list[Loop]:
    return [s for s in walk_stmts(body) if isinstance(s, Loop)]
