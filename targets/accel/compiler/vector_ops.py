"""The vector unit's operation tables, read by the vector-section emitters (vector_codegen.py and the
modules beside it): which instruction computes each operation, on f32 values and on i32 words."""

from __future__ import annotations

import math

from kcomp.dtypes import DType
from kcomp.expr import BinaryOp
from kcomp.targets.accel.machine.isa import CMP

BINARY = {
    BinaryOp.ADD: "vadd",
    BinaryOp.SUB: "vsub",
    BinaryOp.MUL: "vmul",
    BinaryOp.MAX: "vmax",
    BinaryOp.MIN: "vmin",
    BinaryOp.AND: "vmul",  # NOTE: masks are 1.0 / 0.0
    BinaryOp.OR: "vmax",
}
CMP_INDEX = {op: CMP.choices.index(name) for op, name in ((BinaryOp.LT, "lt"), (BinaryOp.LE, "le"), (BinaryOp.GT, "gt"),
        (BinaryOp.GE, "ge"), (BinaryOp.EQ, "eq"), (BinaryOp.NE, "ne"))}  # fmt: skip
MIRROR = {BinaryOp.LT: BinaryOp.GT, BinaryOp.LE: BinaryOp.GE, BinaryOp.GT: BinaryOp.LT, BinaryOp.GE: BinaryOp.LE,
           BinaryOp.EQ: BinaryOp.EQ, BinaryOp.NE: BinaryOp.NE}  # fmt: skip
SCALAR = {BinaryOp.ADD: "vadds", BinaryOp.MUL: "vmuls", BinaryOp.MAX: "vmaxs", BinaryOp.MIN: "vmins"}
COMMUTES = {BinaryOp.ADD, BinaryOp.MUL, BinaryOp.MAX, BinaryOp.MIN, BinaryOp.AND, BinaryOp.OR}
COMBINE = {"add": BinaryOp.ADD, "max": BinaryOp.MAX, "min": BinaryOp.MIN, "mul": BinaryOp.MUL}

# i32 words (isa.py's integer entries): constants come from viota.i rows, so no scalar forms
INT_BINARY = {
    BinaryOp.ADD: "viadd",
    BinaryOp.SUB: "visub",
    BinaryOp.MUL: "vimul",
    BinaryOp.MAX: "vimax",
    BinaryOp.MIN: "vimin",
    BinaryOp.DIV: "vidiv",
    BinaryOp.FLOORDIV: "vifdiv",
    BinaryOp.MOD: "vimod",
}
INT_FINISH = {"add": "viredsum", "max": "viredmax", "min": "viredmin"}
# the reductions and scans by name (`+=` is "add"), and what each starts from
REDUCE = {BinaryOp.ADD: "add", BinaryOp.MAX: "max", BinaryOp.MIN: "min", BinaryOp.MUL: "mul"}
IDENTITY = {
    "add": 0.0,
    "max": -math.inf,
    "min": math.inf,
    "mul": 1.0,
    "argmax": -math.inf,
    "argmin": math.inf,
}
INT_IDENTITY = {"add": 0, "mul": 1, "max": DType.I32.bounds[0], "min": DType.I32.bounds[1]}
