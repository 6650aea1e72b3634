"""Scalar expressions as C, from tables: the C-family core that a CUDA emitter overrides entry by entry.

Values are computed in `dtype.compute` (kcomp/semantics.py is the policy): a load of an i8 buffer is
widened to `int32_t`, a load of f16 to `float`; a `Var` used as a value is an `int32_t`, so int32
arithmetic wraps as int32 (the library is built with -fwrapv).  Buffer indices are the exception:
they are computed in `int64_t` ("index mode"), so flattening never overflows and gcc sees plain
induction variables.  Templates take `{a} {b}` (operands) or `{x}`, `{s}` (the prelude helper suffix:
i32, i64, f32, f64), `{f}` (the libm suffix: "f" for float, "" for double) and `{one}`/`{zero}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kcomp import semantics
from kcomp.dtypes import DType, common
from kcomp.errors import UsageError
from kcomp.expr import (
    COMPARISONS,
    LOGICAL,
    Binary,
    BinaryOp,
    Buffer,
    Cast,
    Const,
    Expr,
    Load,
    Param,
    Select,
    Unary,
    UnaryOp,
    Var,
)

BINARY_TEMPLATE = {
    BinaryOp.ADD: "({a} + {b})",
    BinaryOp.SUB: "({a} - {b})",
    BinaryOp.MUL: "({a} * {b})",
    BinaryOp.FLOORDIV: "kc_floordiv_{s}({a}, {b})",  # Python's floor division, prelude helper
    BinaryOp.MOD: "kc_mod_{s}({a}, {b})",  # Python's floor modulo
    BinaryOp.LT: "({a} < {b})",
    BinaryOp.LE: "({a} <= {b})",
    BinaryOp.GT: "({a} > {b})",
    BinaryOp.GE: "({a} >= {b})",
    BinaryOp.EQ: "({a} == {b})",
    BinaryOp.NE: "({a} != {b})",
    BinaryOp.AND: "({a} && {b})",
    BinaryOp.OR: "({a} || {b})",
}
FLOAT_BINARY_TEMPLATE = {
    BinaryOp.DIV: "({a} / {b})",
    BinaryOp.POW: "pow{f}({a}, {b})",
    BinaryOp.MAX: "kc_fmax{f}({a}, {b})",  # NaN-ignoring, like np.fmax (an inline helper: no libm call)
    BinaryOp.MIN: "kc_fmin{f}({a}, {b})",
}
INT_BINARY_TEMPLATE = {
    BinaryOp.DIV: "kc_div_{s}({a}, {b})",  # truncating, but x/0 == 0 and x/-1 wraps instead of trapping
    BinaryOp.POW: "kc_pow_{s}({a}, {b})",
    BinaryOp.MAX: "kc_max_{s}({a}, {b})",  # a helper, so each operand is evaluated once
    BinaryOp.MIN: "kc_min_{s}({a}, {b})",
}
FLOAT_UNARY_TEMPLATE = {
    UnaryOp.NEG: "(-{x})",
    UnaryOp.NOT: "(!{x})",
    UnaryOp.EXP: "exp{f}({x})",
    UnaryOp.LOG: "log{f}({x})",
    UnaryOp.LOG1P: "log1p{f}({x})",
    UnaryOp.EXPM1: "expm1{f}({x})",
    UnaryOp.SQRT: "sqrt{f}({x})",
    UnaryOp.RSQRT: "({one} / sqrt{f}({x}))",
    UnaryOp.TANH: "tanh{f}({x})",
    UnaryOp.ERF: "erf{f}({x})",
    UnaryOp.SIGMOID: "({one} / ({one} + exp{f}(-{x})))",
    UnaryOp.RELU: "kc_fmax{f}({x}, {zero})",
    UnaryOp.ABS: "fabs{f}({x})",
}
INT_UNARY_TEMPLATE = {
    UnaryOp.NEG: "(-{x})",
    UnaryOp.NOT: "(!{x})",
    UnaryOp.RELU: "kc_max_{s}({x}, 0)",
    UnaryOp.ABS: "kc_abs_{s}({x})",
}
# Ops that stay in int64 when they appear in a buffer index.
INDEX_OPS = frozenset(
    {
        BinaryOp.ADD,
        BinaryOp.SUB,
        BinaryOp.MUL,
        BinaryOp.DIV,
        BinaryOp.FLOORDIV,
        BinaryOp.MOD,
        BinaryOp.MAX,
        BinaryOp.MIN,
    }
)
SUFFIX = {DType.F32: "f32", DType.F64: "f64", DType.I32: "i32", DType.I64: "i64", DType.BOOL: "i32"}
LIBM_SUFFIX = {DType.F32: "f", DType.F64: ""}
ONE = {DType.F32: "1.0f", DType.F64: "1.0"}
ZERO = {DType.F32: "0.0f", DType.F64: "0.0"}


def check_supported(dtype: DType) -> None:
    if dtype is DType.BF16:
        raise UsageError(
            "the cpu target does not support bf16 yet (f32, f64, f16, i32, i64, i8 and bool work)"
        )


def emit_const(value: float | int | bool, dtype: DType) -> str:
    """An exact C literal of `value` converted to `dtype` (as the reference converts it, so -inf as an
    i32 pad is INT_MIN), typed as `dtype.compute`."""
    check_supported(dtype)
    v = semantics.cast(np.asarray(value), dtype).item()
    if dtype is DType.BOOL:
        return "true" if v else "false"
    compute = dtype.compute
    if compute is DType.I32:
        return "(-2147483647 - 1)" if v == -(2**31) else f"({v})" if v < 0 else str(v)
    if compute is DType.I64:  # NOTE: an int64_t literal whatever `long` is; the least one as an expression
        return "(-INT64_C(9223372036854775807) - 1)" if v == -(2**63) else f"INT64_C({v})"
    if math.isnan(v):
        return "NAN" if compute is DType.F32 else "((double)NAN)"
    if math.isinf(v):
        inf = "INFINITY" if compute is DType.F32 else "((double)INFINITY)"
        return inf if v > 0 else f"(-{inf})"
    # repr is the shortest decimal that reads back as the same double; that double is exact in the
    # compute type, so the C compiler's correctly rounded parse gives exactly this value.
    text = repr(float(v)) + ("f" if compute is DType.F32 else "")
    return f"({text})" if text.startswith("-") else text


def store_cast(text: str, src: DType, dst: DType) -> str:
    """`text` (a value of compute type `src.compute`) converted to storage type `dst`."""
    if dst is DType.I8 and src.is_float:
        return f"(int8_t)(int32_t)({text})"  # through int32 like numpy's x86 conversion
    return f"({dst.c_type})({text})"


class CExpr:
    """Emits expressions; `name` maps a symbol (Var, Param, Buffer) to its unique C identifier."""

    BINARY_TEMPLATE = BINARY_TEMPLATE
    FLOAT_BINARY_TEMPLATE = FLOAT_BINARY_TEMPLATE
    INT_BINARY_TEMPLATE = INT_BINARY_TEMPLATE
    FLOAT_UNARY_TEMPLATE = FLOAT_UNARY_TEMPLATE
    INT_UNARY_TEMPLATE = INT_UNARY_TEMPLATE

    def __init__(self, name: Callable[[Var | Param | Buffer], str]):
        self.name = name
        self._temps = 0

    # -- values (compute types) --------------------------------------------------------------------
    def value(self, e: Expr) -> str:
        match e:
            case Const():
                return emit_const(e.value, e.dtype)
            case Var():
                return f"((int32_t){self.name(e)})"
            case Param():
                check_supported(e.dtype)
                # NOTE: f16 parameters travel as float (ctypes has no _Float16); round them here.
                return f"((float)(_Float16){self.name(e)})" if e.dtype is DType.F16 else self.name(e)
            case Load():
                return self.load(e)
            case Unary():
                return self.unary(e.op, e.x.dtype.compute, self.value(e.x))
            case Binary():
                return self.binary(
                    e.op, common(e.lhs.dtype, e.rhs.dtype), self.value(e.lhs), self.value(e.rhs)
                )
            case Select():
                return f"({self.value(e.cond)} ? {self.value(e.then)} : {self.value(e.other)})"
            case Cast():
                return self.cast(e)
        raise TypeError(f"not an expression: {e!r}")

    def unary(self, op: UnaryOp, dtype: DType, x: str) -> str:
        table = self.FLOAT_UNARY_TEMPLATE if dtype.is_float else self.INT_UNARY_TEMPLATE
        if op not in table:
            raise UsageError(f"the cpu target cannot apply {op.value} to {dtype}")
        return table[op].format(x=x, **self._fields(dtype))

    def binary(self, op: BinaryOp, dtype: DType, a: str, b: str, *, index: bool = False) -> str:
        """`a op b` in `dtype`; `index=True` picks the int64 helpers (operands are int64_t)."""
        table = self.FLOAT_BINARY_TEMPLATE if dtype.is_float else self.INT_BINARY_TEMPLATE
        template = table.get(op) or self.BINARY_TEMPLATE[op]
        fields = {"s": "i64"} if index else self._fields(dtype)
        text = template.format(a=a, b=b, **fields)
        if dtype is DType.BOOL and op not in COMPARISONS and op not in LOGICAL:
            text = f"((bool){text})"  # numpy's bool arithmetic: + is or, * is and
        return text

    def cast(self, e: Cast) -> str:
        check_supported(e.dtype)
        text = store_cast(self.value(e.x), e.x.dtype, e.dtype)
        if e.dtype.compute is not e.dtype:
            text = f"({e.dtype.compute.c_type}){text}"
        return f"({text})"

    def load(self, e: Load) -> str:
        """`buf[flat]` widened to the compute type; with `pad`, bounds-checked, each index evaluated once."""
        buf = e.buffer
        check_supported(buf.dtype)
        widen = f"({buf.dtype.compute.c_type})" if buf.dtype.compute is not buf.dtype else ""
        if e.pad is None:
            return f"{widen}{self.element(buf, self.flat(buf, e.index))}"
        temps = []
        for _ in e.index:
            temps.append(f"kc_t{self._temps}")
            self._temps += 1
        decls = " ".join(f"int64_t {t} = {self.index(i)};" for t, i in zip(temps, e.index, strict=True))
        inside = " && ".join(f"{t} >= 0 && {t} < {n}" for t, n in zip(temps, buf.shape, strict=True)) or "1"
        flat = self._horner(temps, buf.shape)
        pad = emit_const(e.pad, buf.dtype)
        return f"({{ {decls} ({inside}) ? {widen}{self.element(buf, flat)} : {pad}; }})"

    def element(self, buf: Buffer, flat: str) -> str:
        """A read of `buf` at the flat offset `flat` (a CUDA emitter wraps global and shared reads)."""
        return f"{self.name(buf)}[{flat}]"

    # -- indices (int64) ---------------------------------------------------------------------------
    def index(self, e: Expr) -> str:
        """`e` as an int64_t: loop variables are int64, index arithmetic stays in int64."""
        match e:
            case Var():
                return self.name(e)
            case Const() if e.dtype.is_int:
                return emit_const(e.value, e.dtype)
            case Binary() if e.op in INDEX_OPS and e.lhs.dtype.is_int and e.rhs.dtype.is_int:
                return self.binary(e.op, DType.I32, self.index(e.lhs), self.index(e.rhs), index=True)
            case Unary(op=UnaryOp.NEG) if e.x.dtype.is_int:
                return f"(-{self.index(e.x)})"
        return f"((int64_t){self.value(e)})"

    def flat(self, buf: Buffer, index: tuple[Expr, ...]) -> str:
        """Row-major flat offset of `index` in `buf`, in int64."""
        return self._horner([self.index(i) for i in index], buf.shape)

    @staticmethod
    def _horner(parts: list[str], shape: tuple[int, ...]) -> str:
        if not parts:
            return "0"
        # NOTE: every operand text is atomic or parenthesised, so only the running sum needs parens.
        text = parts[0]
        for k, (part, n) in enumerate(zip(parts[1:], shape[1:], strict=True)):
            text = f"{text} * {n} + {part}" if k == 0 else f"({text}) * {n} + {part}"
        return text

    @staticmethod
    def _fields(dtype: DType) -> dict[str, str]:
        if dtype.is_float:
            return {"s": SUFFIX[dtype], "f": LIBM_SUFFIX[dtype], "one": ONE[dtype], "zero": ZERO[dtype]}
        return {"s": SUFFIX.get(dtype, "i32")}
