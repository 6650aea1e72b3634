"""Typing one statement's expressions: syntax nodes to `kcomp.expr` with dtypes, ranges and pads.

Constants, dimensions and `inf` are *flexible*: they take the dtype of the other operand (`x * 2`
with x: f64 multiplies by a f64 2).  Everything else must match exactly, so `f32 + i32` is an error
that suggests a cast.  Index expressions are quasi-affine: index variables, integer constants and
dimensions combined by +, -, * by a constant, // and % by a positive constant, plus reads of i32
tensors (gathers), which the passes treat as non-affine.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING

from kcomp import syntax as S
from kcomp.affine import interval
from kcomp.dtypes import DType
from kcomp.errors import SourceError, Span
from kcomp.expr import (
    FLOAT_FUNCTIONS,
    Binary,
    BinaryOp,
    Cast,
    Const,
    Expr,
    Load,
    Select,
    Unary,
    UnaryOp,
    Var,
)
from kcomp.program import Reduce

if TYPE_CHECKING:
    from kcomp.check import _KernelChecker

_BINARY = {op.value: op for op in BinaryOp if op not in (BinaryOp.POW, BinaryOp.MAX, BinaryOp.MIN)}
_ARITH = {"+", "-", "*", "/"}
_UNARY_FUNCS = {op.value: op for op in UnaryOp if op not in (UnaryOp.NEG, UnaryOp.NOT)}
_BINARY_FUNCS = {"max": BinaryOp.MAX, "min": BinaryOp.MIN, "pow": BinaryOp.POW}
_CASTS = {d.value: d for d in DType if d is not DType.BOOL}
FUNCTIONS = sorted([*_UNARY_FUNCS, *_BINARY_FUNCS, *_CASTS, "select"])


class Scope:
    """Index variables of one statement: their symbols, ranges and first uses."""

    def __init__(self, kernel: _KernelChecker, written: set[str]):
        self.kernel = kernel
        self.written = written
        self.vars: dict[str, Var] = {}
        self.ranges: dict[str, tuple[int, Span, str]] = {}
        self.order: list[str] = []
        self.first_use: dict[str, Span] = {}
        self.used: set[str] = set()
        self.indexing: set[str] = set()  # names that index a tensor somewhere in the statement
        self.declared: set[str] = set()  # names ranged by `where`

    def kind(self, name: str) -> str:
        k = self.kernel
        if name in k.params:
            return "param"
        if name in k.dims.names:
            return "dim"
        if name in ("inf", "nan"):
            return "const"
        if k.tensor(name) is not None:
            return "tensor"
        return "var"

    def var(self, name: str) -> Var:
        if name not in self.vars:
            self.vars[name] = Var(name)
        return self.vars[name]

    def use(self, name: str, span: Span) -> None:
        self.used.add(name)
        if name not in self.first_use:
            self.first_use[name] = span
            self.order.append(name)

    def set_range(self, name: str, extent: int, span: Span, source: str) -> None:
        old = self.ranges.get(name)
        if old is None:
            self.ranges[name] = (extent, span, source)
        elif old[0] != extent:
            raise SourceError(
                f"conflicting ranges for index '{name}': {extent} here ({source}) but {old[0]}"
                f" from {old[2]} at {old[1].line}:{old[1].col}",
                span,
            )


class ExprChecker:
    def __init__(self, scope: Scope):
        self.scope = scope
        self.kernel = scope.kernel

    # --- ranges ---------------------------------------------------------------------------------
    def infer_ranges(self, e: S.Node, in_index: bool = False) -> None:
        """Record every index variable of `e` and the ranges its direct tensor indexing implies."""
        match e:
            case S.Name(id=n) if self.scope.kind(n) == "var":
                self.scope.use(n, e.span)
                if in_index:
                    self.scope.indexing.add(n)
            case S.Access(tensor=t, index=index, pad=pad):
                buf = self.kernel.tensor(t)
                if buf is not None and len(index) == len(buf.shape):
                    for k, ix in enumerate(index):
                        # NOTE: a `where` range is authoritative: `X[j] where j < 3` reads a prefix of X.
                        if (
                            isinstance(ix, S.Name)
                            and self.scope.kind(ix.id) == "var"
                            and ix.id not in self.scope.declared
                        ):
                            self.scope.set_range(ix.id, buf.shape[k], ix.span, f"dimension {k} of {t}")
                for ix in index:
                    self.infer_ranges(ix, True)
                if pad is not None:
                    self.infer_ranges(pad, in_index)
            case S.Bin(lhs=a, rhs=b):
                self.infer_ranges(a, in_index)
                self.infer_ranges(b, in_index)
            case S.Un(x=x):
                self.infer_ranges(x, in_index)
            case S.Call(args=args):
                for a in args:
                    self.infer_ranges(a, in_index)

    def check_names(self, declared: set[str]) -> None:
        """A name used only as a value, never as an index nor declared, is a typo, not an index."""
        for n in self.scope.order:
            if n not in self.scope.indexing and n not in declared:
                k = self.kernel
                known = [*k.params, *k.inputs, *k.outputs, *k.temps, *k.dims.names, *declared]
                close = difflib.get_close_matches(n, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise SourceError(
                    f"unknown name '{n}'{hint} (not a tensor, parameter, dimension or index variable)",
                    self.scope.first_use[n],
                )

    # --- values ---------------------------------------------------------------------------------
    def flexible(self, e: S.Node) -> bool:
        """Constants, dimensions and arithmetic on them: exact values that adopt a context's dtype."""
        return self.constant(e) is not None

    def constant(self, e: S.Node) -> tuple[int | float, bool] | None:
        """The exact value of a flexible subtree and whether it is a float, or None if not constant."""
        match e:
            case S.Num(value=v, is_float=f):
                return v, f
            case S.Name(id=n) if self.scope.kind(n) == "dim":
                return self.kernel.dims.value(n, e.span), False
            case S.Name(id=n) if self.scope.kind(n) == "const":
                return (math.inf if n == "inf" else math.nan), True
            case S.Un(op="-", x=x):
                c = self.constant(x)
                return None if c is None else (-c[0], c[1])
            case S.Bin(op="+" | "-" | "*" | "//" | "%" as op, lhs=a, rhs=b):
                ca, cb = self.constant(a), self.constant(b)
                if ca is None or cb is None:
                    return None
                if op in ("//", "%"):
                    if ca[1] or cb[1]:
                        return None
                    if cb[0] == 0:
                        raise SourceError(f"constant '{op}' by zero", e.span)
                    return (ca[0] // cb[0] if op == "//" else ca[0] % cb[0]), False
                value = {"+": ca[0] + cb[0], "-": ca[0] - cb[0], "*": ca[0] * cb[0]}[op]
                return value, ca[1] or cb[1]
        return None

    def folded(self, e: S.Node, expected: DType | None) -> Const:
        value, is_float = self.constant(e)
        dtype = expected or (DType.F32 if is_float else DType.I32)
        if dtype is DType.BOOL:
            raise SourceError(f"expected a condition, found the number {value}", e.span)
        if is_float and not dtype.is_float:
            raise SourceError(f"dtype mismatch: float constant {value} in an {dtype} expression", e.span)
        return Const(float(value) if dtype.is_float else int(value), dtype)

    def expr(self, e: S.Node, expected: DType | None) -> Expr:
        if self.flexible(e):
            return self.folded(e, expected)
        match e:
            case S.Name():
                return self.name(e, expected)
            case S.Un(op="-", x=x):
                inner = self.expr(x, expected)
                if isinstance(inner, Const) and inner.dtype is not DType.BOOL:
                    return Const(-inner.value, inner.dtype)
                self.numeric(inner, e.span, "-")
                return Unary(UnaryOp.NEG, inner)
            case S.Un(op="not", x=x):
                return Unary(UnaryOp.NOT, self.condition(x))
            case S.Bin():
                return self.binary(e, expected)
            case S.Call():
                return self.call(e, expected)
            case S.Access():
                return self.access(e)
        raise AssertionError(e)

    def name(self, e: S.Name, expected: DType | None) -> Expr:
        kind = self.scope.kind(e.id)
        if kind == "param":
            return self.kernel.params[e.id]
        if kind == "dim":
            value = self.kernel.dims.value(e.id, e.span)
            dtype = expected if expected is not None and expected is not DType.BOOL else DType.I32
            return Const(float(value) if dtype.is_float else value, dtype)
        if kind == "const":
            dtype = expected or DType.F32
            if not dtype.is_float:
                raise SourceError(
                    f"dtype mismatch: '{e.id}' is a float constant but {dtype} is expected", e.span
                )
            return Const(math.inf if e.id == "inf" else math.nan, dtype)
        if kind == "tensor":
            buf = self.kernel.tensor(e.id)
            raise SourceError(
                f"tensor '{e.id}' needs indices: write {e.id}[{', '.join('_' * len(buf.shape))}]", e.span
            )
        self.scope.use(e.id, e.span)
        return self.scope.var(e.id)

    def condition(self, e: S.Node) -> Expr:
        out = self.expr(e, None)
        if out.dtype is not DType.BOOL:
            raise SourceError(
                f"expected a condition (a comparison), found a value of type {out.dtype}", e.span
            )
        return out

    def numeric(self, x: Expr, span: Span, what: str) -> None:
        if x.dtype is DType.BOOL:
            raise SourceError(f"'{what}' needs numbers, not a condition", span)

    def pair(self, a: S.Node, b: S.Node, expected: DType | None) -> tuple[Expr, Expr]:
        """Type two operands that must agree; a flexible one adopts the other's dtype."""
        if self.flexible(a) and not self.flexible(b):
            y = self.expr(b, expected)
            return self.expr(a, y.dtype), y
        x = self.expr(a, expected)
        return x, self.expr(b, x.dtype if self.flexible(b) else expected)

    def binary(self, e: S.Bin, expected: DType | None) -> Expr:
        if e.op in ("and", "or"):
            return Binary(_BINARY[e.op], self.condition(e.lhs), self.condition(e.rhs))
        is_cmp = e.op in ("<", "<=", ">", ">=", "==", "!=")
        x, y = self.pair(e.lhs, e.rhs, None if is_cmp else expected)
        self.same(x, y, e.span, e.op)
        self.numeric(x, e.span, e.op)
        if e.op in ("//", "%") and not x.dtype.is_int:
            raise SourceError(f"'{e.op}' needs integer operands, found {x.dtype}", e.span)
        return Binary(_BINARY[e.op], x, y)

    def same(self, x: Expr, y: Expr, span: Span, what: str) -> None:
        if x.dtype is not y.dtype:
            raise SourceError(
                f"dtype mismatch: {x.dtype} {what} {y.dtype} (convert one side, e.g. {x.dtype}(...))", span
            )

    def call(self, e: S.Call, expected: DType | None) -> Expr:
        fn, args = e.fn, e.args

        def arity(n: int) -> None:
            if len(args) != n:
                raise SourceError(
                    f"{fn}() takes {n} argument{'s' if n > 1 else ''}, {len(args)} given", e.span
                )

        if fn == "select":
            arity(3)
            cond = self.condition(args[0])
            a, b = self.pair(args[1], args[2], expected)
            self.same(a, b, e.span, "select")
            return Select(cond, a, b)
        if fn in _CASTS:
            arity(1)
            dtype = _CASTS[fn]
            if self.flexible(args[0]):  # f64(0.1) is the f64 nearest 0.1, not a widened f32
                value, _ = self.constant(args[0])
                return Const(float(value) if dtype.is_float else int(value), dtype)
            return Cast(dtype, self.expr(args[0], None))
        if fn in _UNARY_FUNCS:
            arity(1)
            op = _UNARY_FUNCS[fn]
            x = self.expr(args[0], expected if expected is not DType.BOOL else None)
            self.numeric(x, e.span, fn)
            if op in FLOAT_FUNCTIONS and not x.dtype.is_float:
                raise SourceError(
                    f"{fn}() needs a float argument, found {x.dtype} (convert with f32(...))", e.span
                )
            return Unary(op, x)
        if fn in _BINARY_FUNCS:
            arity(2)
            x, y = self.pair(args[0], args[1], expected)
            self.same(x, y, e.span, fn)
            self.numeric(x, e.span, fn)
            if fn == "pow" and not x.dtype.is_float:
                raise SourceError(f"pow() needs float arguments, found {x.dtype}", e.span)
            return Binary(_BINARY_FUNCS[fn], x, y)
        close = difflib.get_close_matches(fn, FUNCTIONS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SourceError(f"unknown function '{fn}'{hint}", e.span)

    # --- tensor reads ---------------------------------------------------------------------------
    def access(self, e: S.Access) -> Load:
        if e.tensor in self.kernel.params:
            raise SourceError(f"scalar parameter '{e.tensor}' cannot be indexed", e.span)
        buf = self.kernel.tensor(e.tensor)
        if buf is None:
            later = [s for s in self.kernel.kernel.body if s.target == e.tensor]
            if later:
                raise SourceError(
                    f"'{e.tensor}' is used before it is defined (first written at line {later[0].span.line})",
                    e.span,
                )
            raise self.kernel.unknown_tensor(e.tensor, e.span)
        is_input = buf.name in self.kernel.inputs
        if not is_input and e.tensor not in self.scope.written:
            raise SourceError(f"'{e.tensor}' is read before any statement writes it", e.span)
        if len(e.index) != len(buf.shape):
            raise SourceError(
                f"'{e.tensor}' has rank {len(buf.shape)} but is indexed with {len(e.index)} indices", e.span
            )
        index = tuple(self.index(ix) for ix in e.index)
        pad = None
        if e.pad is not None:
            pad_expr = self.expr(e.pad, buf.dtype)
            if not isinstance(pad_expr, Const):
                raise SourceError("the pad value must be a constant", e.pad.span)
            pad = pad_expr.value
        ranges = {self.scope.vars[n]: r[0] for n, r in self.scope.ranges.items() if n in self.scope.vars}
        in_bounds = all(
            (iv := interval(ix, ranges)) is not None and iv[0] >= 0 and iv[1] < dim
            for ix, dim in zip(index, buf.shape, strict=True)
        )
        if in_bounds:
            pad = None
        elif pad is None:
            pad = 0.0 if buf.dtype.is_float else 0
        return Load(buf, index, pad)

    def index(self, e: S.Node) -> Expr:
        out = self.expr(e, DType.I32)
        if out.dtype not in (DType.I32, DType.I64):  # NOTE: i64, torch's index type, gathers as it is
            raise SourceError(f"an index must be an i32 or i64 expression, found {out.dtype}", e.span)
        _check_quasi_affine(e, out)
        return out

    def check_self_reads(self, s: S.Stmt, lhs: list[str], op: Reduce) -> None:
        """A statement may read its own target only elementwise (`Y[i] = Y[i] * 2`)."""
        for acc in _accesses(s.value):
            if acc.tensor != s.target:
                continue
            same = [ix.id if isinstance(ix, S.Name) else None for ix in acc.index] == lhs
            if op is not Reduce.ASSIGN or not same:
                raise SourceError(
                    f"cycle: '{s.target}' is read by the statement that writes it; only an elementwise"
                    f" '=' may read its target at exactly [{', '.join(lhs)}] (write to a new tensor instead)",
                    acc.span,
                )


def _accesses(e: S.Node):
    match e:
        case S.Access(index=index, pad=pad):
            yield e
            for ix in index:
                yield from _accesses(ix)
            if pad is not None:
                yield from _accesses(pad)
        case S.Bin(lhs=a, rhs=b):
            yield from _accesses(a)
            yield from _accesses(b)
        case S.Un(x=x):
            yield from _accesses(x)
        case S.Call(args=args):
            for a in args:
                yield from _accesses(a)


def _check_quasi_affine(node: S.Node, e: Expr) -> None:
    """Index expressions: +, -, * by a constant, // and % by a positive constant, i32 tensor reads."""

    def bad(why: str) -> SourceError:
        return SourceError(f"index expressions must be quasi-affine: {why}", node.span)

    def walk(x: Expr) -> None:
        match x:
            case Var() | Const() | Load():
                return  # a Load's own indices were checked when it was built
            case Binary(op=BinaryOp.ADD | BinaryOp.SUB, lhs=a, rhs=b):
                walk(a)
                walk(b)
            case Binary(op=BinaryOp.MUL, lhs=a, rhs=b):
                if not isinstance(a, Const) and not isinstance(b, Const):
                    raise bad("a product needs a constant factor")
                walk(a)
                walk(b)
            case Binary(op=BinaryOp.FLOORDIV | BinaryOp.MOD, lhs=a, rhs=b):
                if not isinstance(b, Const) or b.value <= 0:
                    raise bad("// and % need a positive constant on the right")
                walk(a)
            case Unary(op=UnaryOp.NEG, x=a):
                walk(a)
            case _:
                raise bad(
                    "only index variables, constants, dimensions, +, -, *, //, % and i32 tensor reads are allowed"
                )

    walk(e)
