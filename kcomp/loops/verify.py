"""Invariants of the loop IR, checked after lowering and after every pass in tests.

A pass that breaks one of these has a bug; `verify` says which invariant and where (the printed
statement), so the failure points at the pass instead of at a wrong number three stages later:

- every Var used is bound by an enclosing Loop, and each Var is bound by exactly one Loop;
- Load/Store indices have as many entries as the buffer has dimensions;
- every buffer read or written is an argument or allocated by an enclosing Alloc (allocated once);
- every Param used is a parameter of the nest;
- loop extents are positive;
- a Store's value converts to the buffer's type implicitly (numbers to numbers, bool to bool) and a
  Guard's condition is a bool.
"""

from __future__ import annotations

from kcomp.dtypes import DType
from kcomp.expr import Buffer, Expr, Load, Param, Var, walk
from kcomp.loops import Alloc, Guard, Loop, LoopNest, Stmt, Store
from kcomp.printer import format_stmt


class VerifyError(AssertionError):
    """A broken loop-IR invariant: a compiler bug, never a user error."""


def verify(nest: LoopNest) -> None:
    """Raise `VerifyError` naming the first broken invariant of `nest`."""
    _Checker(nest).body(nest.body, frozenset(), frozenset(nest.inputs + nest.outputs))


class _Checker:
    def __init__(self, nest: LoopNest):
        self.nest = nest
        self.params = frozenset(nest.params)
        self.bound: set[Var] = set()
        self.allocated: set[object] = set()
        for b in nest.inputs + nest.outputs:
            if len(b.shape) and min(b.shape) <= 0:
                self.fail(f"argument {b.name} has a non-positive dimension {b.shape}", None)

    def fail(self, message: str, where: Stmt | None) -> None:
        at = "" if where is None else f"\n  at: {format_stmt(where).splitlines()[0].strip()}"
        raise VerifyError(f"{self.nest.name}: {message}{at}")

    def body(self, stmts: tuple[Stmt, ...], scope: frozenset[Var], buffers: frozenset) -> None:
        for s in stmts:
            self.stmt(s, scope, buffers)

    def stmt(self, s: Stmt, scope: frozenset[Var], buffers: frozenset) -> None:
        match s:
            case Loop():
                if s.var in self.bound:
                    self.fail(f"loop variable {s.var.name} is bound by more than one loop", s)
                self.bound.add(s.var)
                if s.extent <= 0:
                    self.fail(f"loop {s.var.name} has non-positive extent {s.extent}", s)
                self.body(s.body, scope | {s.var}, buffers)
            case Alloc():
                if s.buffer in buffers or s.buffer in self.allocated:
                    self.fail(f"buffer {s.buffer.name} is allocated twice or shadows an argument", s)
                self.allocated.add(s.buffer)
                if any(d <= 0 for d in s.buffer.shape):
                    self.fail(f"buffer {s.buffer.name} has a non-positive dimension {s.buffer.shape}", s)
                self.body(s.body, scope, buffers | {s.buffer})
            case Guard():
                self.expr(s.cond, scope, buffers, s)
                if s.cond.dtype is not DType.BOOL:
                    self.fail(f"guard condition has type {s.cond.dtype}, not bool", s)
                self.body(s.body, scope, buffers)
            case Store():
                self.access(s.buffer, s.index, buffers, s)
                for e in (*s.index, s.value):
                    self.expr(e, scope, buffers, s)
                if not _converts(s.value.dtype, s.buffer.dtype):
                    self.fail(
                        f"cannot store a {s.value.dtype} value into {s.buffer.name}: {s.buffer.dtype}", s
                    )
            case _:
                self.fail(f"unknown statement {type(s).__name__}", None)

    def access(self, buf: Buffer, index: tuple[Expr, ...], buffers: frozenset, where: Stmt) -> None:
        if buf not in buffers:
            self.fail(f"buffer {buf.name} is neither an argument nor allocated by an enclosing alloc", where)
        if len(index) != len(buf.shape):
            self.fail(f"{buf.name} has {len(buf.shape)} dimensions but is indexed with {len(index)}", where)
        for e in index:
            if not e.dtype.is_int:
                self.fail(f"index of {buf.name} has type {e.dtype}, not an integer", where)

    def expr(self, e: Expr, scope: frozenset[Var], buffers: frozenset, where: Stmt) -> None:
        for n in walk(e):
            if isinstance(n, Var) and n not in scope:
                self.fail(f"variable {n.name} is used outside a loop that binds it", where)
            elif isinstance(n, Param) and n not in self.params:
                self.fail(f"parameter {n.name} is not a parameter of the kernel", where)
            elif isinstance(n, Load):
                self.access(n.buffer, n.index, buffers, where)


def _converts(value: DType, target: DType) -> bool:
    """Implicit conversions on store: between numeric types (C's rules), bool only to bool."""
    if value is target:
        return True
    return value is not DType.BOOL and target is not DType.BOOL
