"""Text to `syntax.Module` with lark; syntax errors become `SourceError`s at the offending token.

A `schedule KERNEL for TARGET { steps }` block reaches lark as one token; its steps are read by
`kcomp.schedule.parse_schedule` at their place in the file, so a bad step is reported at its own
`file:line:col`.  The module-level rules (a block names a kernel of the file, at most one block per
kernel and target) are checked here, once every item is read.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path

import lark

from kcomp import syntax as S
from kcomp.errors import SourceError, Span, UsageError
from kcomp.schedule import parse_schedule

# What a person should read instead of lark's terminal names.
_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "DTYPE": "a type (f32, f64, i32, i64, f16, bf16, i8)",
    "ASSIGN": "an assignment (=, +=, *=, max=, min=, argmax=, argmin=)",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "EQUAL": "'='",
    "__ANON_0": "'->'",
    "MULOP": "an operator",
    "ADDOP": "an operator",
    "CMP": "a comparison",
    "MINUS": "'-'",
    "LESSTHAN": "'<'",
    "KERNEL": "'kernel'",
    "DIM": "'dim'",
    "WHERE": "'where'",
    "PAD": "'pad'",
    "SCHEDULE": "'schedule'",
    "FOR": "'for'",
    "SCHEDULE_BODY": "'{' and the schedule steps",
    "$END": "end of file",
}


@cache
def _parser() -> lark.Lark:
    grammar = resources.files("kcomp").joinpath("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def read_source(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not a UTF-8 text file") from None


def parse(text: str, path: str = "<string>") -> S.Module:
    lines = text.splitlines()

    def span(line: int, col: int, length: int = 1) -> Span:
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        return Span(path, line, col, src.expandtabs(1) if src else "", length)

    try:
        tree = _parser().parse(text)
    except lark.UnexpectedCharacters as e:
        raise SourceError(f"unexpected character {text[e.pos_in_stream]!r}", span(e.line, e.column)) from None
    except lark.UnexpectedToken as e:
        tok = e.token
        if tok.type == "LBRACE" and e.expected == {"SCHEDULE_BODY"}:
            raise SourceError(
                "schedule block is never closed: expected '}'", span(tok.line, tok.column)
            ) from None
        if tok.type == "$END":
            line = max(1, len(lines))
            col = len(lines[-1]) + 1 if lines else 1
            raise SourceError(
                f"unexpected end of file, expected {_expected(e.expected)}", span(line, col)
            ) from None
        word = "{" if tok.type == "SCHEDULE_BODY" else str(tok.value)  # not a whole block of steps
        raise SourceError(
            f"unexpected {word!r}, expected {_expected(e.expected)}", span(tok.line, tok.column, len(word))
        ) from None
    except lark.UnexpectedEOF as e:
        line = max(1, len(lines))
        col = len(lines[-1]) + 1 if lines else 1
        raise SourceError(
            f"unexpected end of file, expected {_expected(e.expected)}", span(line, col)
        ) from None
    return _Builder(span, path, text).module(tree)


def _expected(terminals: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(t, t.lower()) for t in terminals})
    if len(words) > 6:
        words = [*words[:6], "..."]
    return " or ".join(words) if len(words) <= 2 else ", ".join(words[:-1]) + " or " + words[-1]


def _check_schedule_blocks(blocks: list[S.ScheduleBlock], kernels: list[str]) -> None:
    """Each block names a kernel of this file, and no kernel has two blocks for one target."""
    seen: dict[tuple[str, str], S.ScheduleBlock] = {}
    for b in blocks:
        if b.kernel not in kernels:
            close = difflib.get_close_matches(b.kernel, kernels, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else f"the file defines {', '.join(kernels) or 'no kernel'}"
            )
            raise SourceError(f"schedule block for unknown kernel '{b.kernel}'; {hint}", b.span)
        first = seen.setdefault((b.kernel, b.target), b)
        if first is not b:
            raise SourceError(
                f"a second schedule block for kernel '{b.kernel}' on target '{b.target}' "
                f"(the first is at line {first.span.line})",
                b.span,
            )


class _Builder:
    """Walks lark's tree into `syntax` nodes, attaching a Span to each."""

    def __init__(self, span, path: str, text: str):
        self.span = span
        self.path = path
        self.text = text

    def at(self, item) -> Span:
        if isinstance(item, lark.Token):
            return self.span(item.line, item.column, len(item.value))
        meta = item.meta
        length = meta.end_column - meta.column if meta.line == meta.end_line else 1
        return self.span(meta.line, meta.column, max(1, length))

    def module(self, tree: lark.Tree) -> S.Module:
        dims: list[S.DimBind] = []
        kernels: list[S.Kernel] = []
        blocks: list[S.ScheduleBlock] = []
        for item in tree.children:
            if item.data == "dim_decl":
                for b in item.children:
                    name, value = b.children
                    dims.append(S.DimBind(str(name), self.expr(value), self.at(name)))
            elif item.data == "schedule_block":
                blocks.append(self.schedule_block(item))
            else:
                kernels.append(self.kernel(item))
        _check_schedule_blocks(blocks, [k.name for k in kernels])
        return S.Module(self.path, self.text, tuple(dims), tuple(kernels), tuple(blocks))

    def schedule_block(self, t: lark.Tree) -> S.ScheduleBlock:
        name, target, body = t.children
        # The steps start just after the '{'; lark's columns are 1-based, like Span's.
        try:
            schedule = parse_schedule(body.value[1:-1], self.path, body.line, body.column + 1)
        except SourceError as e:
            if e.span is None:
                raise
            # NOTE: parse_schedule sees only the block's text; show the whole source line under the caret.
            raise SourceError(e.message, self.span(e.span.line, e.span.col, e.span.length)) from None
        return S.ScheduleBlock(str(name), str(target), schedule, self.at(name))

    def kernel(self, t: lark.Tree) -> S.Kernel:
        name, *rest = t.children
        body = rest[-1]
        outputs = rest[-2]
        inputs = [self.decl(d) for d in rest[:-2] if d is not None]
        outs = [self.decl(d) for d in outputs.children]
        stmts = [self.stmt(s) for s in body.children]
        return S.Kernel(str(name), tuple(inputs), tuple(outs), tuple(stmts), self.at(name))

    def decl(self, t: lark.Tree) -> S.Decl:
        name, dtype, shape, sparse, default = t.children
        dims = None
        if shape is not None:
            dims = tuple(self.expr(c) for c in shape.children if c is not None)
        dflt = self.expr(default) if default is not None else None
        fmt = None
        if sparse is not None:
            kind, n = sparse.children
            fmt = str(kind) + (f":{n}" if n is not None else "")
            return S.Decl(str(name), str(dtype), dims, dflt, self.at(name), fmt, self.at(kind))
        return S.Decl(str(name), str(dtype), dims, dflt, self.at(name))

    def stmt(self, t: lark.Tree) -> S.Stmt:
        target, op, value, scan, where = t.children
        tname, *idx = target.children
        index = tuple(S.Name(str(i), self.at(i)) for i in idx if i is not None)
        ranges: tuple[tuple[S.Name, S.Node], ...] = ()
        if where is not None:
            ranges = tuple(
                (S.Name(str(r.children[0]), self.at(r.children[0])), self.expr(r.children[1]))
                for r in where.children
            )
        scanned = None
        if scan is not None:
            *mods, var = scan.children
            words = {str(m) for m in mods}
            scanned = S.Scan(S.Name(str(var), self.at(var)), "reverse" in words, "exclusive" in words)
        return S.Stmt(
            str(tname), index, str(op), self.expr(value), ranges, self.at(tname), self.at(op), scanned
        )

    def expr(self, t) -> S.Node:
        if isinstance(t, lark.Token):  # a bare terminal inlined by '?' rules
            raise AssertionError(f"unexpected token {t!r}")
        kind = t.data
        c = t.children
        if kind == "int_lit":
            return S.Num(int(c[0]), False, self.at(c[0]))
        if kind == "float_lit":
            return S.Num(float(c[0]), True, self.at(c[0]))
        if kind == "name":
            return S.Name(str(c[0]), self.at(c[0]))
        if kind == "call":
            args = tuple(self.expr(a) for a in c[1:] if a is not None)
            return S.Call(str(c[0]), args, self.at(c[0]))
        if kind == "access":
            *index, pad = c[1:]
            return S.Access(
                str(c[0]),
                tuple(self.expr(i) for i in index),
                self.expr(pad) if pad is not None else None,
                self.at(c[0]),
            )
        if kind == "scalar_access":  # a rank-0 tensor: `total[]`
            return S.Access(str(c[0]), (), None, self.at(c[0]))
        if kind in ("bin_op", "cmp_op"):
            return S.Bin(str(c[1]), self.expr(c[0]), self.expr(c[2]), self.at(c[1]))
        if kind in ("or_op", "and_op"):
            return S.Bin(kind[:-3], self.expr(c[0]), self.expr(c[1]), self.at(t))
        if kind == "neg":
            return S.Un("-", self.expr(c[0]), self.at(t))
        if kind == "not_op":
            return S.Un("not", self.expr(c[0]), self.at(t))
        raise AssertionError(f"unknown tree {kind}")
