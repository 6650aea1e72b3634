"""Semantic analysis: a parsed kernel plus a dimension binding becomes a typed `Program`.

Resolves names (tensor, scalar parameter, dimension, or else an index variable), infers each index
variable's range from the tensor dimensions it indexes directly (`A[i, k]` gives `i` the first
dimension of A) or from `where r < 3`, types every expression (constants and dimensions adapt to the
other operand; everything else must match exactly), and decides which reads may fall outside their
tensor (those read the pad value).  Every error is a `SourceError` at the offending token.
"""

from __future__ import annotations

import difflib
import math

from kcomp import syntax as S
from kcomp.dims import MAX_EXTENT, DimEnv
from kcomp.dtypes import DType
from kcomp.errors import SourceError, UsageError
from kcomp.expr import Buffer, Param
from kcomp.program import Program, Reduce, Scan, Statement
from kcomp.sparse.format import parse_format
from kcomp.typecheck import ExprChecker, Scope

_OPS = {r.value: r for r in Reduce}
_RESERVED = {"inf", "nan", "select", "pad", "where", "scan"}


def check(module: S.Module, kernel: S.Kernel, shapes: dict[str, int] | None = None) -> Program:
    """Build the Program of `kernel` with dimensions bound by `shapes` (overriding the file's)."""
    return _KernelChecker(module, kernel, DimEnv(module, kernel, shapes)).run()


def param_defaults(kernel: S.Kernel) -> dict[str, float | int]:
    """Default values of scalar parameters (`eps: f32 = 1e-5`)."""
    out: dict[str, float | int] = {}
    for d in kernel.inputs:
        if d.shape is None and d.default is not None:
            out[d.name] = _constant(d.default)
    return out


def _constant(e: S.Node) -> float | int:
    match e:
        case S.Num(value=v):
            return v
        case S.Name(id="inf"):
            return math.inf
        case S.Name(id="nan"):
            return math.nan
        case S.Un(op="-", x=x):
            return -_constant(x)
    raise SourceError("expected a constant number", e.span)


class _KernelChecker:
    def __init__(self, module: S.Module, kernel: S.Kernel, dims: DimEnv):
        self.module = module
        self.kernel = kernel
        self.dims = dims
        self.inputs: dict[str, Buffer] = {}
        self.outputs: dict[str, Buffer] = {}
        self.temps: dict[str, Buffer] = {}
        self.params: dict[str, Param] = {}
        self.decl_span: dict[str, object] = {}
        self.sparse: dict[str, object] = {}

    def run(self) -> Program:
        for d in self.kernel.inputs:
            self._declare(d, output=False)
        for d in self.kernel.outputs:
            self._declare(d, output=True)
        written: set[str] = set()
        statements = [self._statement(s, written) for s in self.kernel.body]
        for d in self.kernel.outputs:
            if d.name not in written:
                raise SourceError(f"output '{d.name}' is never written", d.span)
        used = {n: self.dims.value(n, None) for n in sorted(self.dims.used)}
        return Program(
            self.kernel.name,
            tuple(self.inputs.values()),
            tuple(self.outputs.values()),
            tuple(self.params.values()),
            tuple(self.temps.values()),
            tuple(statements),
            tuple(used.items()),
            sparse=dict(self.sparse),
        )

    def _declare(self, d: S.Decl, output: bool) -> None:
        if d.name in self.decl_span or d.name in _RESERVED:
            raise SourceError(
                f"'{d.name}' is declared twice"
                if d.name in self.decl_span
                else f"'{d.name}' is a reserved name",
                d.span,
            )
        if d.name in self.dims.names:
            raise SourceError(f"'{d.name}' is already a dimension name", d.span)
        self.decl_span[d.name] = d.span
        dtype = DType(d.dtype)
        if d.shape is None:
            if output:
                raise SourceError(
                    f"output '{d.name}' must be a tensor: give it a shape, e.g. {d.dtype}[N]", d.span
                )
            if d.default is not None and not dtype.is_float and isinstance(_constant(d.default), float):
                raise SourceError(
                    f"default of '{d.name}' must be an integer: it is {d.dtype}", d.default.span
                )
            self.params[d.name] = Param(d.name, dtype)
            return
        if d.default is not None:
            raise SourceError(f"tensor '{d.name}' cannot have a default value", d.default.span)
        shape = tuple(self.dims.eval(e) for e in d.shape)
        for e, n in zip(d.shape, shape, strict=True):
            if n <= 0:
                raise SourceError(f"dimension of '{d.name}' evaluates to {n}; it must be positive", e.span)
            if n > MAX_EXTENT:
                raise SourceError(
                    f"dimension of '{d.name}' evaluates to {n}; it must be at most {MAX_EXTENT}", e.span
                )
        if d.sparse is not None:
            self._sparse(d, dtype, output, len(shape))
        (self.outputs if output else self.inputs)[d.name] = Buffer(d.name, dtype, shape)

    def _sparse(self, d: S.Decl, dtype: DType, output: bool, rank: int) -> None:
        """A `sparse(...)` declaration: a float input of rank 2 or more in a known format."""
        span = d.sparse_span or d.span
        if output:
            raise SourceError(f"output '{d.name}' cannot be sparse: only inputs (weights) are", span)
        if not dtype.is_float:
            raise SourceError(f"sparse tensor '{d.name}' must hold floats, not {d.dtype}", span)
        if rank < 2:
            raise SourceError(f"sparse tensor '{d.name}' needs 2 or more dimensions (rows x columns)", span)
        try:
            self.sparse[d.name] = parse_format(d.sparse or "")
        except UsageError as e:
            raise SourceError(str(e), span) from None

    def tensor(self, name: str) -> Buffer | None:
        return self.inputs.get(name) or self.outputs.get(name) or self.temps.get(name)

    def unknown_tensor(self, name: str, span) -> SourceError:
        names = list(self.inputs) + list(self.outputs) + list(self.temps)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return SourceError(f"unknown tensor '{name}'{hint}", span)

    def _statement(self, s: S.Stmt, written: set[str]) -> Statement:
        op = _OPS[s.op]
        if s.target in self.inputs:
            raise SourceError(f"cannot write input '{s.target}': inputs are read-only", s.span)
        if s.target in self.params:
            raise SourceError(f"cannot write scalar parameter '{s.target}'", s.span)
        if s.target in self.dims.names or s.target in _RESERVED:
            raise SourceError(f"cannot write '{s.target}': it is not a tensor", s.span)
        target = self.tensor(s.target)
        if target is not None and len(s.target_index) != len(target.shape):
            raise SourceError(
                f"'{s.target}' has rank {len(target.shape)} but is written with {len(s.target_index)} indices",
                s.span,
            )
        seen: set[str] = set()
        for n in s.target_index:
            if n.id in seen:
                raise SourceError(f"index '{n.id}' appears twice on the left-hand side", n.span)
            if n.id in self.params or n.id in self.dims.names or self.tensor(n.id) or n.id in _RESERVED:
                raise SourceError(
                    f"'{n.id}' is not an index variable: the left-hand side takes index names", n.span
                )
            seen.add(n.id)

        scope = Scope(self, written)
        if target is not None:
            for k, (n, extent) in enumerate(zip(s.target_index, target.shape, strict=True)):
                scope.set_range(n.id, extent, n.span, f"dimension {k} of {s.target}")
        for name, bound in s.where:
            if name.id in self.params or name.id in self.dims.names or self.tensor(name.id):
                raise SourceError(f"'{name.id}' is not an index variable", name.span)
            extent = self.dims.eval(bound)
            if extent <= 0:
                raise SourceError(f"range of '{name.id}' is {extent}; it must be positive", bound.span)
            if extent > MAX_EXTENT:
                raise SourceError(
                    f"range of '{name.id}' is {extent}; it must be at most {MAX_EXTENT}", bound.span
                )
            scope.set_range(name.id, extent, name.span, "where clause")
            scope.declared.add(name.id)
        checker = ExprChecker(scope)
        checker.infer_ranges(s.value)
        lhs = [n.id for n in s.target_index]
        checker.check_names(set(lhs) | {n.id for n, _ in s.where})
        for n in s.target_index:
            scope.var(n.id)  # lhs names are index variables even when unused on the right
        for n in s.target_index:
            if n.id not in scope.ranges:
                raise SourceError(
                    f"cannot infer the range of index '{n.id}': use it to index a tensor directly or add `where {n.id} < N`",
                    n.span,
                )

        if op in (Reduce.ARGMAX, Reduce.ARGMIN):
            expected = None
            if target is not None and target.dtype not in (DType.I32, DType.I64):
                raise SourceError(
                    f"{s.op} stores an index: '{s.target}' must be i32 or i64, not {target.dtype}", s.op_span
                )
            if s.target in written:
                raise SourceError(
                    f"{s.op} must write a fresh tensor, but '{s.target}' was written before", s.op_span
                )
        else:
            expected = target.dtype if target is not None else None
        value = checker.expr(s.value, expected)
        if expected is not None and value.dtype is not expected:
            raise SourceError(
                f"dtype mismatch: the right-hand side is {value.dtype} but '{s.target}' is {expected}"
                f" (cast with {expected}(...))",
                _span(s.value),
            )
        if value.dtype is DType.BOOL:
            raise SourceError(
                "a statement must store a number, not a comparison (use select(...))", _span(s.value)
            )

        for name, _ in s.where:
            if name.id not in scope.used and name.id not in lhs:
                raise SourceError(f"index '{name.id}' is declared in `where` but never used", name.span)
        reduce_names = [n for n in scope.order if n not in lhs]
        for n in scope.order:
            if n not in scope.ranges:
                raise SourceError(
                    f"cannot infer the range of index '{n}': it only appears inside index expressions; add `where {n} < N`",
                    scope.first_use[n],
                )
        if op is Reduce.ASSIGN and reduce_names:
            n = reduce_names[0]
            raise SourceError(
                f"'=' cannot reduce: index '{n}' appears only on the right-hand side; use +=, *=, max=, min=, argmax= or argmin=",
                scope.first_use[n],
            )
        if op in (Reduce.ARGMAX, Reduce.ARGMIN) and len(reduce_names) != 1:
            raise SourceError(
                f"{s.op} needs exactly one reduced index, found {len(reduce_names)}"
                + (f" ({', '.join(reduce_names)})" if reduce_names else ""),
                s.op_span,
            )
        checker.check_self_reads(s, lhs, op)
        scan = self._scan(s, lhs, op, reduce_names, written) if s.scan is not None else None

        if target is None:
            dtype = DType.I32 if op in (Reduce.ARGMAX, Reduce.ARGMIN) else value.dtype
            target = Buffer(s.target, dtype, tuple(scope.ranges[n][0] for n in lhs))
            self.temps[s.target] = target
        accumulate = op is not Reduce.ASSIGN and s.target in written
        written.add(s.target)
        index = tuple(scope.var(n) for n in lhs)
        red = tuple(scope.var(n) for n in reduce_names)
        extents = tuple(scope.ranges[v.name][0] for v in index + red)
        if scan is not None:
            scan = Scan(scope.var(s.scan.var.id), s.scan.reverse, s.scan.exclusive)  # type: ignore[union-attr]
        return Statement(target, index, op, value, red, extents, accumulate, s.span, scan)

    def _scan(self, s: S.Stmt, lhs: list[str], op: Reduce, reduced: list[str], written: set[str]) -> bool:
        """Check a `scan` clause (its statement's rules: docs/language.md, "Scans")."""
        assert s.scan is not None
        var = s.scan.var
        if op not in (Reduce.ADD, Reduce.MUL, Reduce.MAX, Reduce.MIN):
            raise SourceError(f"a scan combines with +=, *=, max= or min=, not {s.op}", s.op_span)
        if var.id not in lhs:
            raise SourceError(f"the scanned index '{var.id}' must index the left-hand side", var.span)
        if reduced:
            raise SourceError(
                f"a scan reduces along '{var.id}' only, but '{reduced[0]}' appears only on the right-hand side",
                s.op_span,
            )
        if s.target in written:
            raise SourceError(
                f"a scan must write a fresh tensor, but '{s.target}' was written before", s.op_span
            )
        return True


def _span(e: S.Node):
    return e.span
