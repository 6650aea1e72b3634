"""One printer for every IR level, as readable pseudo-code, plus the canonical text behind hashes.

    kernel matmul(A: f32[64, 32], B: f32[32, 16], C: f32[64, 16] out)
      for i in 0..64:
        parallel for j in 0..16:
          C[i, j] = C[i, j] + A[i, k] * B[k, j]

Naming rule (schedules address loops by these names, so it is part of the interface): symbols are
visited in order of appearance -- arguments in argument order, then a pre-order walk of the body
where a Loop shows its variable and an Alloc its buffer before their bodies, and a Store or Guard
the symbols of its expressions left to right.  The first symbol with a given name keeps it; each
later one gets the smallest suffix `name1`, `name2`, ... not taken yet.  Loop variables form one
namespace, buffers and parameters another.  In a Program each statement is its own variable scope.
`symbol_names` returns the mapping; `format_*` and error messages use it.

`canonical(nest)` renames loop variables to v0, v1, ... and allocated buffers to b0, b1, ...
(arguments and parameters keep their names, constants carry their dtype), so structurally equal
nests print the same text; `structural_hash` is its sha256 -- the stable cache and database key
(Python's `hash()` is salted per process).  `canonical_program`/`program_hash` do the same for the
tensor IR, shapes and dtypes included.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

from kcomp.expr import (
    COMPARISONS,
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
    walk,
)
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.program import Program, Statement

Names = dict[object, str]

# Binding strength of infix operators (higher binds tighter), as in the language grammar.
_PREC = {BinaryOp.OR: 1, BinaryOp.AND: 2, **dict.fromkeys(COMPARISONS, 4)}
_PREC |= {
    BinaryOp.ADD: 5,
    BinaryOp.SUB: 5,
    BinaryOp.MUL: 6,
    BinaryOp.DIV: 6,
    BinaryOp.FLOORDIV: 6,
    BinaryOp.MOD: 6,
}
_NOT_PREC, _NEG_PREC, _ATOM = 3, 7, 9


# ---------------------------------------------------------------- expressions


def format_expr(e: Expr, names: Names | None = None, typed: bool = False) -> str:
    """`e` as source-like text; `names` overrides symbol names, `typed` suffixes constants with dtypes."""
    return _fmt(e, names or {}, typed)[0]


def _fmt(e: Expr, names: Names, typed: bool) -> tuple[str, int]:
    """Text and precedence of `e`."""
    match e:
        case Const(value=v, dtype=dt):
            text = _const(v)
            if typed:
                return f"{text}:{dt}", _ATOM
            return text, (_NEG_PREC if text.startswith("-") else _ATOM)
        case Var() | Param():
            return names.get(e, e.name), _ATOM
        case Load(buffer=b, index=idx, pad=pad):
            parts = [_fmt(i, names, typed)[0] for i in idx]
            if pad is not None:
                parts.append(f"pad={_const(pad)}")
            return f"{names.get(b, b.name)}[{', '.join(parts)}]", _ATOM
        case Unary(op=UnaryOp.NEG, x=x):
            inner = _wrap(x, _NEG_PREC, names, typed)
            return f"-({inner})" if inner.startswith("-") else f"-{inner}", _NEG_PREC
        case Unary(op=UnaryOp.NOT, x=x):
            return f"not {_wrap(x, _NOT_PREC, names, typed)}", _NOT_PREC
        case Unary(op=op, x=x):
            return f"{op.value}({_fmt(x, names, typed)[0]})", _ATOM
        case Cast(dtype=dt, x=x):
            return f"{dt}({_fmt(x, names, typed)[0]})", _ATOM
        case Select(cond=c, then=t, other=o):
            args = ", ".join(_fmt(k, names, typed)[0] for k in (c, t, o))
            return f"select({args})", _ATOM
        case Binary(op=op, lhs=a, rhs=b) if op in _PREC:
            p = _PREC[op]
            # left-associative: the right operand needs parentheses at equal precedence; comparisons
            # do not chain in the language, so both of their operands do
            left = _wrap(a, p + (1 if op in COMPARISONS else 0), names, typed)
            return f"{left} {op.value} {_wrap(b, p + 1, names, typed)}", p
        case Binary(op=op, lhs=a, rhs=b):
            return f"{op.value}({_fmt(a, names, typed)[0]}, {_fmt(b, names, typed)[0]})", _ATOM
    raise TypeError(f"not an expression: {e!r}")


def _wrap(e: Expr, need: int, names: Names, typed: bool) -> str:
    text, prec = _fmt(e, names, typed)
    return text if prec >= need else f"({text})"


def _const(v: float | int | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return repr(v)


def _type(b: Buffer) -> str:
    return f"{b.dtype}[{', '.join(map(str, b.shape))}]"


# ---------------------------------------------------------------- naming


def _unique(symbols: Iterator[object], names: Names, taken: set[str]) -> None:
    for s in symbols:
        if s in names:
            continue
        base = s.name  # type: ignore[attr-defined]
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}{k}"
        taken.add(name)
        names[s] = name


def _expr_symbols(e: Expr) -> Iterator[object]:
    for n in walk(e):
        if isinstance(n, Var | Param):
            yield n
        elif isinstance(n, Load):
            yield n.buffer


def _stmt_symbols(body: tuple[Stmt, ...]) -> Iterator[object]:
    for s in body:
        match s:
            case Loop():
                yield s.var
            case Alloc():
                yield s.buffer
            case Guard():
                yield from _expr_symbols(s.cond)
            case Store():
                yield s.buffer
                for e in (*s.index, s.value):
                    yield from _expr_symbols(e)
        if not isinstance(s, Store):
            yield from _stmt_symbols(s.body)


def symbol_names(nest: LoopNest) -> Names:
    """Unique display names of every Var, Buffer and Param of `nest` (the module docstring's rule)."""
    order = [*nest.arguments, *_stmt_symbols(nest.body)]
    names: Names = {}
    _unique((s for s in order if isinstance(s, Var)), names, set())
    _unique((s for s in order if not isinstance(s, Var)), names, set())
    return names


# ---------------------------------------------------------------- loop IR


def format_nest(nest: LoopNest, names: Names | None = None) -> str:
    names = names if names is not None else symbol_names(nest)
    return "\n".join(_nest_lines(nest, names, typed=False)) + "\n"


def format_stmt(s: Stmt, names: Names | None = None, indent: int = 0) -> str:
    """One statement (and its body) of the loop IR; names default to the symbols' own names."""
    return "\n".join(_stmt_lines(s, names or {}, indent, typed=False)) + "\n"


def _nest_lines(nest: LoopNest, names: Names, typed: bool) -> list[str]:
    args = [f"{names.get(b, b.name)}: {_type(b)}" for b in nest.inputs]
    args += [f"{names.get(b, b.name)}: {_type(b)} out" for b in nest.outputs]
    args += [f"{names.get(p, p.name)}: {p.dtype}" for p in nest.params]
    lines = [f"kernel {nest.name}({', '.join(args)})"]
    for s in nest.body:
        lines += _stmt_lines(s, names, 1, typed)
    return lines


def _stmt_lines(s: Stmt, names: Names, depth: int, typed: bool) -> list[str]:
    pad = "  " * depth
    match s:
        case Loop(var=v, extent=n, kind=kind):
            prefix = "" if kind is LoopKind.SERIAL else f"{kind.value} "
            head = f"{pad}{prefix}for {names.get(v, v.name)} in 0..{n}:"
        case Alloc(buffer=b):
            head = f"{pad}alloc {names.get(b, b.name)}: {_type(b)} {b.scope.value}"
        case Guard(cond=c):
            head = f"{pad}if {format_expr(c, names, typed)}:"
        case Store(buffer=b, index=idx, value=val):
            target = format_expr(Load(b, idx), names, typed)
            return [f"{pad}{target} = {format_expr(val, names, typed)}"]
        case _:
            raise TypeError(f"not a statement: {s!r}")
    lines = [head]
    for c in s.body:
        lines += _stmt_lines(c, names, depth + 1, typed)
    return lines


def canonical(nest: LoopNest) -> str:
    """Text equal for structurally equal nests: loop vars v0.., allocated buffers b0.., typed constants."""
    names: Names = {p: p.name for p in nest.arguments}
    counts = {"v": 0, "b": 0}
    for s in _stmt_symbols(nest.body):
        if s not in names:
            prefix = "v" if isinstance(s, Var) else "b"
            names[s] = f"{prefix}{counts[prefix]}"
            counts[prefix] += 1
    return "\n".join(_nest_lines(nest, names, typed=True)) + "\n"


def structural_hash(nest: LoopNest) -> str:
    return hashlib.sha256(canonical(nest).encode()).hexdigest()


# ---------------------------------------------------------------- tensor IR


def format_program(program: Program) -> str:
    """The kernel as einsum-like statements under a declaration of its tensors."""
    return _program_text(program, canonical=False)


def format_statement(st: Statement, names: Names | None = None) -> str:
    names = dict(names or {})
    _unique(iter(st.vars), names, set())
    return _statement_text(st, names, typed=False)


def canonical_program(program: Program) -> str:
    """Text equal for structurally equal programs (shapes and dtypes included, variables renamed)."""
    return _program_text(program, canonical=True)


def program_hash(program: Program) -> str:
    return hashlib.sha256(canonical_program(program).encode()).hexdigest()


def _program_text(program: Program, canonical: bool) -> str:
    names: Names = {}
    _unique(iter((*program.inputs, *program.params, *program.outputs, *program.temps)), names, set())
    ins = [f"{names[b]}: {_type(b)}" for b in program.inputs]
    ins += [f"{names[p]}: {p.dtype}" for p in program.params]
    outs = [f"{names[b]}: {_type(b)}" for b in program.outputs]
    lines = [f"kernel {program.name}({', '.join(ins)}) -> ({', '.join(outs)})"]
    lines += [f"  temp {names[t]}: {_type(t)}" for t in program.temps]
    if program.bound:
        # values the compiler was given: their pattern is part of the workload
        lines.append(
            f"  bound {', '.join(names[b] for b in program.inputs if b.name in program.bound)}"
            f" pattern {program.bound_digest()}"
        )
    for st in program.statements:
        local = dict(names)
        if canonical:
            local |= {v: f"v{n}" for n, v in enumerate(st.vars)}
        else:
            _unique(iter(st.vars), local, set())
        lines.append("  " + _statement_text(st, local, typed=canonical))
    return "\n".join(lines) + "\n"


def _statement_text(st: Statement, names: Names, typed: bool) -> str:
    target = format_expr(Load(st.target, st.index), names, typed)
    text = f"{target} {st.op.value} {format_expr(st.value, names, typed)}"
    if st.scan is not None:
        mods = " reverse" * st.scan.reverse + " exclusive" * st.scan.exclusive
        text += f" scan{mods} {names.get(st.scan.var, st.scan.var.name)}"
    notes = []
    if st.reduce:
        ranges = ", ".join(f"{names.get(v, v.name)}<{st.extent(v)}" for v in st.reduce)
        notes.append(f"reduce {ranges}")
    if typed and st.index:
        notes.append("over " + ", ".join(f"{names.get(v, v.name)}<{st.extent(v)}" for v in st.index))
    if st.accumulate:
        notes.append("accumulate")
    return f"{text}  # {'; '.join(notes)}" if notes else text


__all__ = [
    "canonical",
    "canonical_program",
    "format_expr",
    "format_nest",
    "format_program",
    "format_statement",
    "format_stmt",
    "program_hash",
    "structural_hash",
    "symbol_names",
]
