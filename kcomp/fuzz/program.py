"""Generated programs as data: expression trees and `GenProgram`, rendered to `.kc` text.

The generator (`kcomp.fuzz.generate`) builds these and the shrinker (`kcomp.fuzz.shrink`) edits them:
dropping a statement, replacing an expression node by a same-typed child or lowering a dimension is a
change of data, and `GenProgram.render()` prints the program again.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

FLOAT_LITERALS = ("0.5", "2.0", "1.5", "0.25", "3.0")

# ------------------------------------------------------------------------------------ expression trees
# An expression is a tuple:
#   ("read", tensor, (index text, ...), pad text or None)    ("lit", text)    ("name", text)
#   ("bin", op, a, b)    ("call", fn, (args...))    ("neg", x)    ("select", cond, a, b)
#   ("safe", form, (args...))   a guarded form from SAFE (exp of a bounded argument, ...)
#   ("cmp", op, a, b)    ("and" | "or", a, b)    ("not", a)          conditions
# Index variables, parameters and dimensions are ("name", text).

Expr = tuple

SAFE = {
    "exp_tanh": "exp(tanh({0}))",
    "exp_neg": "exp(-abs({0}))",
    "sqrt": "sqrt(abs({0}) + 1.0)",
    "log": "log(abs({0}) + 1.0)",
    "rsqrt": "rsqrt(abs({0}) + 1.0)",
    "pow": "pow(abs({0}) + 1.0, tanh({1}) + 1.5)",
    "div": "({0} / (abs({1}) + 1.0))",
    "factor": "(1.0 + 0.5 * tanh({0}))",  # a `*=` factor in [0.5, 1.5]
}
SAME_TYPE_CALLS = frozenset({"tanh", "sigmoid", "erf", "relu", "abs", "max", "min"})


def render(e: Expr) -> str:
    match e[0]:
        case "read":
            idx = ", ".join(e[2])
            return f"{e[1]}[{idx}{', pad=' + e[3] if e[3] is not None else ''}]"
        case "lit" | "name":
            return e[1]
        case "bin" | "cmp":
            return f"({render(e[2])} {e[1]} {render(e[3])})"
        case "and" | "or":
            return f"({render(e[1])} {e[0]} {render(e[2])})"
        case "not":
            return f"(not {render(e[1])})"
        case "call":
            return f"{e[1]}({', '.join(render(a) for a in e[2])})"
        case "neg":
            return f"(-{render(e[1])})"
        case "select":
            return f"select({render(e[1])}, {render(e[2])}, {render(e[3])})"
        case "safe":
            return SAFE[e[1]].format(*(render(a) for a in e[2]))
    raise ValueError(f"not an expression: {e!r}")


def subexprs(e: Expr) -> list[Expr]:
    """Every direct subexpression, in the order `rebuild` takes them."""
    match e[0]:
        case "bin" | "cmp":
            return [e[2], e[3]]
        case "and" | "or":
            return [e[1], e[2]]
        case "not" | "neg":
            return [e[1]]
        case "call" | "safe":
            return list(e[2])
        case "select":
            return [e[1], e[2], e[3]]
    return []


def rebuild(e: Expr, kids: list[Expr]) -> Expr:
    match e[0]:
        case "bin" | "cmp":
            return (e[0], e[1], kids[0], kids[1])
        case "and" | "or":
            return (e[0], kids[0], kids[1])
        case "not" | "neg":
            return (e[0], kids[0])
        case "call" | "safe":
            return (e[0], e[1], tuple(kids))
        case "select":
            return ("select", kids[0], kids[1], kids[2])
    return e


def same_type_children(e: Expr) -> list[Expr]:
    """Subexpressions with `e`'s type, that the shrinker may put in its place."""
    match e[0]:
        case "bin" if e[1] in ("+", "-", "*"):
            return [e[2], e[3]]
        case "bin":
            return [e[2]]  # `a // 3`, `a % 4`
        case "call" if e[1] in SAME_TYPE_CALLS:
            return list(e[2])
        case "neg":
            return [e[1]]
        case "select":
            return [e[2], e[3]]
        case "safe":
            return list(e[2])
    return []


def reads(e: Expr) -> list[Expr]:
    """Every tensor read in `e`, conditions included, outermost first."""
    out = [e] if e[0] == "read" else []
    for c in subexprs(e):
        out += reads(c)
    return out


def names(e: Expr) -> set[str]:
    """Every name `e` mentions: tensors (also inside index texts), variables, parameters, dimensions."""
    found: set[str] = set()
    text = render(e)
    found |= set(re.findall(r"[A-Za-z_]\w*", text))
    return found


# ------------------------------------------------------------------------------------------ programs


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[str, ...]  # dimension names
    sparse: str | None = None  # a sparse format (docs/sparse.md): its weight comes from the case's seed


@dataclass(frozen=True)
class Stmt:
    target: str
    dtype: str  # the target's element type
    lhs: tuple[str, ...]  # index variables on the left
    op: str  # "=", "+=", "*=", "max=", "min=", "argmax=", "argmin="
    value: Expr
    ranges: tuple[tuple[str, str], ...]  # every variable's range, as a dimension name
    where: tuple[str, ...] = ()  # the variables whose range is written out (`where v < D`)
    scan: str = ""  # a scan clause (`scan reverse i0`), or none

    def text(self) -> str:
        used = names(self.value) | set(self.lhs)
        ranges = dict(self.ranges)
        where = ", ".join(f"{v} < {ranges[v]}" for v in self.where if v in used)
        head = f"{self.target}[{', '.join(self.lhs)}] {self.op} {render(self.value)}"
        head += f" {self.scan}" if self.scan else ""
        return f"{head} where {where}" if where else head


@dataclass(frozen=True)
class GenProgram:
    """A generated program as data.  `dims` holds base dimensions (name, value) and derived ones
    (name, expression text).  A written tensor is an output when no later statement reads it, or
    when it is named in `keep`; otherwise it is an intermediate."""

    element: str  # the program's element type
    dims: tuple[tuple[str, int | str], ...]
    inputs: tuple[Tensor, ...]
    params: tuple[tuple[str, str, str | None], ...]  # (name, dtype, default or None)
    stmts: tuple[Stmt, ...]
    keep: frozenset[str] = frozenset()
    name: str = "fz"

    def written(self) -> dict[str, Tensor]:
        """Tensors the statements create, with the shape and dtype of their first writer."""
        out: dict[str, Tensor] = {}
        for s in self.stmts:
            if s.target not in out:
                ranges = dict(s.ranges)
                out[s.target] = Tensor(s.target, s.dtype, tuple(ranges[v] for v in s.lhs))
        return out

    def dim_values(self) -> dict[str, int]:
        env: dict[str, int] = {}
        for name, value in sorted(self.dims, key=lambda d: isinstance(d[1], str)):
            env[name] = value if isinstance(value, int) else _eval_dim(value, env)
        return env

    def outputs(self) -> list[Tensor]:
        written = self.written()
        read_later: set[str] = set()
        out: set[str] = set()
        for s in reversed(self.stmts):
            if s.target not in read_later or s.target in self.keep:
                out.add(s.target)
            read_later |= names(s.value)
        return [t for n, t in written.items() if n in out]

    def render(self) -> str:
        body = [s.text() for s in self.stmts]
        mentioned: set[str] = set()
        for s in self.stmts:
            mentioned |= names(s.value)
        ins = [t for t in self.inputs if t.name in mentioned]
        params = [p for p in self.params if p[0] in mentioned]
        decls = [
            f"{t.name}: {t.dtype}[{', '.join(t.shape)}]" + (f" sparse({t.sparse})" if t.sparse else "") for t in ins
        ]
        decls += [f"{n}: {d}" + (f" = {v}" if v is not None else "") for n, d, v in params]
        out_decls = [f"{t.name}: {t.dtype}[{', '.join(t.shape)}]" for t in self.outputs()]
        used = set(re.findall(r"[A-Za-z_]\w*", "\n".join([*body, *decls, *out_decls])))
        for name, value in self.dims:  # derived dimensions need their bases
            if name in used and isinstance(value, str):
                used |= set(re.findall(r"[A-Za-z_]\w*", value))
        dims = [(n, v) for n, v in self.dims if n in used]
        lines = [f"dim {', '.join(f'{n} = {v}' for n, v in dims)}"] if dims else []
        lines.append(f"kernel {self.name}({', '.join(decls)}) -> ({', '.join(out_decls)}) {{")
        lines += [f"    {b}" for b in body]
        lines.append("}")
        return "\n".join(lines) + "\n"


def _eval_dim(text: str, env: dict[str, int]) -> int:
    """A derived dimension's value: integers, dimension names, + - * // and parentheses."""
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}
    ops[ast.FloorDiv] = lambda a, b: a // b

    def value(node: ast.AST) -> int:
        match node:
            case ast.Constant(value=int(v)):
                return v
            case ast.Name(id=n):
                return env[n]
            case ast.BinOp(left=a, op=op, right=b) if type(op) in ops:
                return ops[type(op)](value(a), value(b))
        raise ValueError(f"not a dimension expression: {text!r}")

    return value(ast.parse(text, mode="eval").body)
