"""Integer values on the vector unit: an i32 expression computed on the accumulator's 32-bit words
with the integer instructions (isa.py's vi* entries), so `t[i] = A[i] * 3 + B[i] // 2` or a count
`c[n] += select(X[n, d] > 0.0, 1, 0)` runs with the language's integer rules (wrapping, floor
division and modulo, division by zero giving 0) instead of being refused.

An i32 tensor lands in the accumulator as its bit patterns; an integer constant or loop value is a
`viota.i` row; `vitof` / `vftoi` convert where the expression casts.  A subexpression of loop values
alone that the float emitter already computed (an index leaf, a value fixed per step) is exact in
f32 below 2**24 and converted with `vftoi`.  Masks stay the float emitter's 1.0 / 0.0 rows.
"""

from __future__ import annotations

from collections.abc import Callable

from kcomp.dtypes import DType
from kcomp.errors import Unsupported
from kcomp.expr import Binary, BinaryOp, Cast, Const, Expr, Load, Param, Select, Unary, UnaryOp, walk
from kcomp.printer import format_expr
from kcomp.targets.accel.compiler.stream import Step, Stream, Val
from kcomp.targets.accel.compiler.vector_ops import COMMUTES, INT_BINARY
from kcomp.targets.accel.machine.isa import AXIS

I32_RANGE = (-(2**31), 2**31 - 1)


def on_words(e: Expr) -> bool:
    """Whether i32 expression `e` must be computed on i32 words: it reads a tensor or a parameter, or
    divides (else it is loop values and constants, which f32 holds exactly below 2**24)."""
    return any(
        isinstance(n, (Load, Param))
        or (
            isinstance(n, Binary)
            and n.dtype is DType.I32
            and n.op in (BinaryOp.DIV, BinaryOp.FLOORDIV, BinaryOp.MOD)
        )
        for n in walk(e)
    )


def int_expr(
    e: Expr,
    loaded: dict,
    rows: int,
    slots,
    out: Stream,
    step: Step,
    other: Callable[[Expr], Val],
    target: int | None = None,
) -> Val:  # type: ignore[no-untyped-def]
    """Emit i32 expression `e`; its value's rows (`target`'s when given and it has a row per row).
    `other` computes a float value or a mask (the float emitter)."""

    def dst(shared: bool) -> int:
        return target if target is not None and not shared else next(slots)

    def sub(k: Expr) -> Val:
        return int_expr(k, loaded, rows, slots, out, step, other)

    if e in loaded:
        got = loaded[e]
        if isinstance(e, (Load, Param)):
            return got  # NOTE: an i32 tensor or parameter: its words as they are
        row = dst(got.shared)  # NOTE: a loop value or a fixed one, computed in f32
        step.ops.append(out.add("vftoi", row, got.row, 1 if got.shared else rows))
        return Val(row, got.shared)
    if isinstance(e, Const):
        value = int(e.value)
        if not I32_RANGE[0] <= value <= I32_RANGE[1]:
            raise Unsupported(f"the accelerator backend cannot map the constant {value}: not an i32")
        row = next(slots)
        step.ops.append(out.add("viota.i", row, 1, AXIS.choices.index("none"), value & 0xFFFFFFFF))
        return Val(row, shared=True)
    if isinstance(e, Cast):
        if e.x.dtype is DType.I32:
            return sub(e.x)
        x = other(e.x)  # NOTE: a float or a 1.0 / 0.0 mask
        row = dst(x.shared)
        step.ops.append(out.add("vftoi", row, x.row, 1 if x.shared else rows))
        return Val(row, x.shared)
    if isinstance(e, Select):
        m, a, b = other(e.cond), sub(e.then), sub(e.other)
        shared = m.shared and a.shared and b.shared
        row = dst(shared)
        steps = (int(not m.shared), int(not a.shared), int(not b.shared))
        step.ops.append(out.add("vsel", row, m.row, 1 if shared else rows, a.row, b.row, *steps))
        return Val(row, shared)
    if isinstance(e, Unary) and e.op in (UnaryOp.NEG, UnaryOp.ABS, UnaryOp.RELU):
        x = sub(e.x)
        n, row = 1 if x.shared else rows, dst(x.shared)
        if e.op is UnaryOp.ABS:
            step.ops.append(out.add("viabs", row, x.row, n))
        elif e.op is UnaryOp.RELU:
            zero = sub(Const(0, DType.I32))
            step.ops.append(out.add("vimax", row, x.row, n, zero.row, 1, 0))
        else:  # NOTE: -x as x * -1, which wraps as negation does
            minus = sub(Const(-1, DType.I32))
            step.ops.append(out.add("vimul", row, x.row, n, minus.row, 1, 0))
        return Val(row, x.shared)
    if isinstance(e, Binary) and e.op in INT_BINARY:
        a, b = sub(e.lhs), sub(e.rhs)
        if a.shared and not b.shared:
            if e.op in COMMUTES:
                a, b = b, a
            else:  # NOTE: one row for every row, copied down so the operation has rows on its left
                down = next(slots)
                step.ops.append(out.add("vsel", down, a.row, rows, a.row, a.row, 0, 0, 0))
                a = Val(down)
        shared = a.shared and b.shared
        row = dst(shared)
        step.ops.append(
            out.add(INT_BINARY[e.op], row, a.row, 1 if shared else rows, b.row, 1, int(not b.shared))
        )
        return Val(row, shared)
    raise Unsupported(
        f"the accelerator backend cannot map {format_expr(e)}: no vector-unit form on i32 words"
    )
