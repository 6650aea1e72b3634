"""Binding dimension names to sizes.

A dimension gets its value, first match wins, from the caller (`--shape M=512`, or the shapes of the
arrays passed to a compiled kernel), then from the file's `dim M = ...` default, which may be an
expression of other dimensions (`dim OH = (H - 1) // 2 + 1`), so overriding `H` moves `OH` with it.
"""

from __future__ import annotations

from kcomp import syntax as S
from kcomp.errors import SourceError, UsageError

MAX_EXTENT = 2**31 - 1  # index variables are i32 values, so no dimension or range may exceed this


def kernel_dims(module: S.Module, kernel: S.Kernel) -> list[str]:
    """Dimension names a kernel's tensor shapes use, in order of first appearance."""
    seen: dict[str, None] = {}
    for d in kernel.inputs + kernel.outputs:
        for e in d.shape or ():
            for n in _names(e):
                seen[n] = None
    return list(seen)


def all_dim_names(module: S.Module, kernel: S.Kernel) -> set[str]:
    return {b.name for b in module.dims} | set(kernel_dims(module, kernel))


def free_dims(module: S.Module, kernel: S.Kernel) -> list[str]:
    """Dimensions with no default in the file: the caller must bind them."""
    defaults = {b.name for b in module.dims}
    out = []
    for name in kernel_dims(module, kernel):
        if name in defaults:
            out.extend(n for n in _deps(module, name) if n not in defaults and n not in out)
        elif name not in out:
            out.append(name)
    return out


def _deps(module: S.Module, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
    binds = {b.name: b for b in module.dims}
    if name not in binds or name in seen:
        return [name]
    out: list[str] = []
    for n in _names(binds[name].value):
        out.extend(_deps(module, n, seen | {name}))
    return out


def _names(e: S.Node) -> list[str]:
    match e:
        case S.Name(id=n):
            return [n]
        case S.Bin(lhs=a, rhs=b):
            return _names(a) + _names(b)
        case S.Un(x=x):
            return _names(x)
        case S.Call(args=args):
            return [n for a in args for n in _names(a)]
    return []


class DimEnv:
    """Resolves dimension names of one kernel under a caller's overrides."""

    def __init__(self, module: S.Module, kernel: S.Kernel, shapes: dict[str, int] | None):
        self.module = module
        self.kernel = kernel
        self.binds = {}
        for b in module.dims:
            if b.name in self.binds:
                raise SourceError(f"dimension '{b.name}' is bound twice", b.span)
            self.binds[b.name] = b
        self.overrides = dict(shapes or {})
        known = all_dim_names(module, kernel)
        for name, value in self.overrides.items():
            if name not in known:
                listing = ", ".join(sorted(known)) or "none"
                raise UsageError(
                    f"--shape {name}={value}: kernel '{kernel.name}' has no dimension '{name}' (its dimensions: {listing})"
                )
            if not isinstance(value, int) or value <= 0:
                raise UsageError(f"dimension {name}={value}: a dimension must be a positive integer")
            if value > MAX_EXTENT:
                raise UsageError(f"dimension {name}={value}: a dimension must be at most {MAX_EXTENT}")
        self.names = known
        self._cache: dict[str, int] = {}
        self.used: set[str] = set()  # names the kernel asked for: the binding its Program records

    def value(self, name: str, span, stack: tuple[str, ...] = ()) -> int:
        if not stack:
            self.used.add(name)
        if name in self.overrides:
            return self.overrides[name]
        if name in self._cache:
            return self._cache[name]
        if name in stack:
            raise SourceError(
                f"dimension '{name}' is defined in terms of itself ({' -> '.join((*stack, name))})", span
            )
        bind = self.binds.get(name)
        if bind is None:
            raise SourceError(
                f"unbound dimension '{name}': give it a default with `dim {name} = ...` or pass --shape {name}=VALUE",
                span,
            )
        v = self.eval(bind.value, (*stack, name))
        if v <= 0:
            raise SourceError(f"dimension '{name}' evaluates to {v}; dimensions must be positive", bind.span)
        if v > MAX_EXTENT:
            raise SourceError(
                f"dimension '{name}' evaluates to {v}; dimensions must be at most {MAX_EXTENT}", bind.span
            )
        self._cache[name] = v
        return v

    def eval(self, e: S.Node, stack: tuple[str, ...] = ()) -> int:
        """An integer expression over dimensions and integer constants."""
        match e:
            case S.Num(value=v, is_float=False):
                return v
            case S.Num():
                raise SourceError("dimensions must be integers", e.span)
            case S.Name(id=n):
                return self.value(n, e.span, stack)
            case S.Un(op="-", x=x):
                return -self.eval(x, stack)
            case S.Bin(op=op, lhs=a, rhs=b) if op in _DIM_OPS:
                x, y = self.eval(a, stack), self.eval(b, stack)
                if op in ("//", "%") and y == 0:
                    raise SourceError("division by zero in a dimension expression", e.span)
                return _DIM_OPS[op](x, y)
        raise SourceError(
            "dimension expressions may only use integers, dimensions, +, -, *, // and %", e.span
        )


_DIM_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
}
