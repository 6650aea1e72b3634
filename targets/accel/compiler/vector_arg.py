"""Arg-reductions on the vector unit (`argmax=`, `argmin=`): each lane keeps its best value and its
position step by step, then the row's result is the least position among the lanes that hold the
best value (docs/accel-isa.md "Arg-reductions")."""

from __future__ import annotations

import math

from kcomp.dtypes import DType
from kcomp.expr import BinaryOp
from kcomp.targets.accel.compiler.stream import Step, Stream, Val
from kcomp.targets.accel.compiler.vector_match import VectorStmt
from kcomp.targets.accel.compiler.vector_ops import CMP_INDEX
from kcomp.targets.accel.machine.isa import AXIS, f32_bits


def arg_combine(
    v: VectorStmt,
    val: Val,
    res: tuple[int, int],
    rows: int,
    first: bool,
    last: bool,
    at: dict,
    slots,
    out: Stream,
    step: Step,
) -> None:  # type: ignore[no-untyped-def]
    """An arg-reduction's step, element by element: where a value beats the best one held in its
    lane (strictly: the first position wins), its position (the lane's column number, or the serial
    loop's value) replaces the held one (vcmp, vsel, vmax); `_arg_finish` then reduces the lanes.  A
    row of one chunk is one vredargmax."""
    if val.shared:  # NOTE: the same value in every row (`t[i] argmin= C[j, 4]`): copied down the rows
        rowwise = next(slots)
        step.ops.append(out.add("vsel", rowwise, val.row, rows, val.row, val.row, 0, 0, 0))
        val = Val(rowwise)
    pos, best = res
    x = val.row
    words = v.value.dtype is DType.I32  # NOTE: i32 words compare as themselves (no negation: it wraps)
    beats = BinaryOp.LT if words and v.reduce == "argmin" else BinaryOp.GT
    if v.reduce == "argmin" and not words:  # NOTE: the least value is the greatest negation
        neg = next(slots)
        step.ops.append(out.add("vmuls", neg, x, rows, f32_bits(-1.0)))
        x = neg
    axis = v.lane if v.lane_reduced else v.serial[0]
    along = AXIS.choices.index("col" if v.lane_reduced else "none")
    if v.lane_reduced and first and last and not words:
        step.ops.append(out.add("vredargmax", pos, x, rows))
        if at[axis]:
            step.ops.append(out.add("vadds", pos, pos, rows, f32_bits(float(at[axis]))))
        return
    if first:
        step.ops.append(out.add("vsel", best, x, rows, x, x, 1, 1, 1))  # NOTE: a copy of the words
        step.ops.append(out.add("viota", pos, rows, along, f32_bits(float(at[axis]))))
        if v.lane_reduced and last:  # NOTE: i32 words in one chunk: no vredargmax for them
            _arg_finish(v, res, rows, slots, out, step)
        return
    p, mask = next(slots), next(slots)
    step.ops.append(out.add("viota", p, 1, along, f32_bits(float(at[axis]))))
    step.ops.append(out.add("vicmp" if words else "vcmp", mask, x, rows, best, 1, 1, CMP_INDEX[beats]))
    step.ops.append(out.add("vsel", pos, mask, rows, p, pos, 1, 0, 1))
    keep = ("vimin" if beats is BinaryOp.LT else "vimax") if words else "vmax"
    step.ops.append(out.add(keep, best, best, rows, x, 1, 1))
    if v.lane_reduced and last:
        _arg_finish(v, res, rows, slots, out, step)


def _arg_finish(v: VectorStmt, res: tuple[int, int], rows: int, slots, out: Stream, step: Step) -> None:  # type: ignore[no-untyped-def]
    """A lane arg-reduction's row result: the least position among the lanes that hold the row's best
    value (vredmax; vcmp eq; vsel against +inf; the least as the greatest negation), in every lane."""
    pos, best = res
    m, mask, far = next(slots), next(slots), next(slots)
    if v.value.dtype is DType.I32:
        step.ops.append(out.add("viredmin" if v.reduce == "argmin" else "viredmax", m, best, rows))
        step.ops.append(out.add("vicmp", mask, best, rows, m, 1, 1, CMP_INDEX[BinaryOp.EQ]))
    else:
        step.ops.append(out.add("vredmax", m, best, rows))
        step.ops.append(out.add("vcmp", mask, best, rows, m, 1, 1, CMP_INDEX[BinaryOp.EQ]))
    step.ops.append(out.add("viota", far, 1, AXIS.choices.index("none"), f32_bits(math.inf)))
    step.ops.append(out.add("vsel", pos, mask, rows, pos, far, 1, 1, 0))
    step.ops.append(out.add("vmuls", pos, pos, rows, f32_bits(-1.0)))
    step.ops.append(out.add("vredmax", pos, pos, rows))
    step.ops.append(out.add("vmuls", pos, pos, rows, f32_bits(-1.0)))
