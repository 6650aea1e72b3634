"""The C-family emitter: a LoopNest as one C function, statement by statement, from tables.

    CEmitter(nest).emit()      the function, after `preamble()`; loop kinds through `LOOP_PRAGMA`
    CEmitter(nest).header()    a header declaring it (`prototype()` is shared, so they cannot disagree)

Targets that write C-like code subclass it and override entries: the CPU target (targets/cpu/emit.py)
adds OpenMP pragmas, SIMD vector loops and register tiles; a CUDA target overrides the function shell,
the loop kinds it binds to threads and its prelude.  Scalar expressions come from `CExpr`
(cexpr.py, also tables).  Symbols are identity-compared objects whose names may collide, so every
Var, Param and Buffer gets its own C identifier in order of appearance (`Namer`): equal nests print
equal text, which is what makes a build cache hit.
"""

from __future__ import annotations

import re
from typing import ClassVar

from kcomp.affine import const, simplify
from kcomp.errors import UsageError
from kcomp.expr import Buffer, Expr, Param, Scope, Var, substitute
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.carry import carried
from kcomp.loops.common import map_exprs
from kcomp.targets.cfamily import cexpr
from kcomp.targets.cfamily.cexpr import CExpr, check_supported, store_cast

_KEYWORDS_TEXT = """
auto break case char const continue default do double else enum extern float for goto if inline int
long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while bool true false
"""
# Names visible in the kernel body: types, object-like macros of the included headers and gcc's gnu11
# predefines (`linux`, `unix`), and the functions the emitter calls.
_GLOBALS_TEXT = """
int8_t int32_t int64_t uint32_t uint64_t size_t NULL EOF NAN INFINITY BUFSIZ errno stdin stdout
stderr linux unix i386 math_errhandling free kc_alloc kc_free main
"""
C_KEYWORDS = frozenset(_KEYWORDS_TEXT.split())
C_GLOBALS = frozenset(_GLOBALS_TEXT.split())


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", text))


# A symbol named `expf` or `int32_t` must not shadow what a template calls or the body names.
RESERVED = (
    C_KEYWORDS
    | C_GLOBALS
    | {
        name
        for table in (
            cexpr.BINARY_TEMPLATE,
            cexpr.FLOAT_BINARY_TEMPLATE,
            cexpr.INT_BINARY_TEMPLATE,
            cexpr.FLOAT_UNARY_TEMPLATE,
            cexpr.INT_UNARY_TEMPLATE,
        )
        for template in table.values()
        for suffix in ("f", "")
        for name in _identifiers(re.sub(r"\{\w+\}", " ", template.replace("{f}", suffix)))
    }
)


class Namer:
    """Unique, valid C identifiers for symbols, assigned in order of first use."""

    def __init__(self) -> None:
        self._names: dict[Var | Param | Buffer, str] = {}
        self._used: set[str] = set()

    def __call__(self, sym: Var | Param | Buffer) -> str:
        if sym not in self._names:
            self._names[sym] = self.fresh(sym.name)
        return self._names[sym]

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint, flags=re.ASCII) or "v"
        if base[0].isdigit():
            base = "v" + base
        name = base if self._acceptable(base) else base + "_"
        n = 1
        while name in self._used:
            name, n = f"{base}_{n}", n + 1
        self._used.add(name)
        return name

    @staticmethod
    def _acceptable(name: str) -> bool:
        """Not reserved, not in the implementation's namespace, not shaped like a header macro."""
        if name in RESERVED or name.startswith(("_", "kc_", "omp_")):
            return False
        return not (name.isupper() and "_" in name)  # INT32_MAX, M_PI, FP_NAN, ...


class CEmitter:
    """Emits one LoopNest as a C function.  Subclasses override the tables and the hooks
    (`preamble`, `runtime`, `touch`, `loop`, `pragma`, `alloc`)."""

    LOOP_PRAGMA: ClassVar[dict[LoopKind, str]] = {}  # a loop kind's pragma line, `{n}`: its extent
    RUNTIME_DECLS: ClassVar[tuple[str, ...]] = ("int kc_abi_version(void);",)  # the header's extras
    STACK_SCOPES = frozenset({Scope.LOCAL, Scope.ACCUMULATOR, Scope.SCRATCHPAD, Scope.SHARED})
    STACK_LIMIT_BYTES = 32 * 1024  # larger "local" buffers go to the heap: threads have small stacks
    INDENT = "    "

    def __init__(self, nest: LoopNest):
        self.nest = nest
        self.names = Namer()
        self.expr = CExpr(self.names)
        self.entry = self.entry_name(nest.name)
        self.allocated: set[Buffer] = set()

    @staticmethod
    def entry_name(name: str) -> str:
        base = re.sub(r"\W", "_", name, flags=re.ASCII)
        if base in ("set_threads", "abi_version"):
            base += "_kernel"
        return f"kc_{base}"

    def prototype(self) -> str:
        """`void kc_name(args)`: shared by the definition and the header so they cannot disagree."""
        args = self.nest.arguments
        if len(set(args)) != len(args):
            raise UsageError(f"kernel {self.nest.name}: a buffer appears twice among its arguments")
        written = {s.buffer for s in walk_stmts(self.nest.body) if isinstance(s, Store)}
        params = [self.argument(a, a not in self.nest.inputs or a in written) for a in args]
        return f"void {self.entry}({', '.join(params) or 'void'})"

    def header(self) -> str:
        guard = f"KCOMP_{self.entry.upper()}_H"
        return "\n".join(
            [
                f"/* {self.nest.name}: generated by kcomp; ABI in docs/abi.md (inputs, outputs, scalar params). */",
                f"#ifndef {guard}",
                f"#define {guard}",
                "#include <stdint.h>",
                "",
                *self.RUNTIME_DECLS,
                f"{self.prototype()};",
                "",
                f"#endif /* {guard} */",
                "",
            ]
        )

    def preamble(self) -> list[str]:
        """What precedes the function: includes, the numeric helpers the expressions call, runtime
        entry points (none in the base)."""
        return []

    def emit(self) -> str:
        proto = self.prototype()
        body = self.block(self.nest.body, 1, in_parallel=False)
        return "\n".join([*self.preamble(), "", f"{proto} {{", *body, "}", ""])

    def argument(self, a: Buffer | Param, writable: bool) -> str:
        check_supported(a.dtype)
        if isinstance(a, Param):
            ctype = "float" if a.dtype.c_type == "_Float16" else a.dtype.c_type  # see docs/abi.md
            return f"{ctype} {self.names(a)}"
        const = "" if writable else "const "
        return f"{const}{a.dtype.c_type}* restrict {self.names(a)}"

    # -- statements ------------------------------------------------------------------------------
    def block(self, body: tuple[Stmt, ...], depth: int, in_parallel: bool) -> list[str]:
        return [line for s in body for line in self.stmt(s, depth, in_parallel)]

    def stmt(self, s: Stmt, depth: int, in_parallel: bool) -> list[str]:
        pad = self.INDENT * depth
        match s:
            case Store():
                self.touch(s.buffer, *s.index, s.value)
                flat = self.expr.flat(s.buffer, s.index)
                value = store_cast(self.expr.value(s.value), s.value.dtype, s.buffer.dtype)
                return [f"{pad}{self.assignment(s.buffer, flat, value)};"]
            case Guard():
                self.touch(s.cond)
                head = f"{pad}if ({self.expr.value(s.cond)}) {{"
                return [head, *self.block(s.body, depth + 1, in_parallel), f"{pad}}}"]
            case Loop():
                return self.loop(s, depth, in_parallel)
            case Alloc():
                return self.alloc(s, depth, in_parallel)
        raise TypeError(f"not a statement: {s!r}")

    def assignment(self, buf: Buffer, flat: str, value: str) -> str:
        """The store of `value` into `buf` at the flat offset `flat` (a CUDA emitter wraps it)."""
        return f"{self.names(buf)}[{flat}] = {value}"

    def touch(self, *items: Expr | Buffer) -> None:
        """Scalar code is about to access these (a subclass that keeps buffers in registers hears of it)."""

    def unrolled_copy(self, s: Loop, k: int) -> tuple[Stmt, ...]:
        """The body of `s` for iteration `k`, indices folded (so register tiles get constant offsets)."""
        return map_exprs(s.body, lambda e: simplify(substitute(e, {s.var: const(k)})))

    def loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        """Unrolled loops (and single iterations) written out; every other kind a `for` loop."""
        pad = self.INDENT * depth
        if s.extent > 1 and (in_register := carried(s)) is not None:  # a scan's previous element
            return self.block(in_register, depth, in_parallel)
        if s.kind is LoopKind.UNROLLED or (s.extent == 1 and s.kind is not LoopKind.PARALLEL):
            out = []
            for k in range(s.extent):
                copy = self.unrolled_copy(s, k)
                out += [f"{pad}{{", *self.block(copy, depth + 1, in_parallel), f"{pad}}}"]
            return out
        return self.plain_loop(s, depth, in_parallel)

    def plain_loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        pad = self.INDENT * depth
        pragma = self.pragma(s, in_parallel)
        var = self.names(s.var)
        inner = self.block(s.body, depth + 1, in_parallel or s.kind is LoopKind.PARALLEL)
        head = f"{pad}for (int64_t {var} = 0; {var} < {s.extent}; ++{var}) {{"
        return [*([pad + pragma] if pragma else []), head, *inner, f"{pad}}}"]

    def pragma(self, s: Loop, in_parallel: bool) -> str:
        """The loop kind's pragma from the table (none: empty)."""
        return self.LOOP_PRAGMA.get(s.kind, "").format(n=min(s.extent, 65534))

    def alloc(self, s: Alloc, depth: int, in_parallel: bool) -> list[str]:
        """A temporary on the stack when its scope is local and it is small, else on the heap."""
        pad, buf = self.INDENT * depth, s.buffer
        check_supported(buf.dtype)
        self.allocated.add(buf)
        inner = self.block(s.body, depth + 1, in_parallel)
        name, ctype = self.names(buf), buf.dtype.c_type
        nbytes = buf.size * buf.dtype.itemsize
        if buf.scope in self.STACK_SCOPES and nbytes <= self.STACK_LIMIT_BYTES:
            decl = f"{pad}{self.INDENT}{ctype} {name}[{max(buf.size, 1)}] __attribute__((aligned(64)));"
            return [f"{pad}{{", decl, *inner, f"{pad}}}"]
        decl = f"{pad}{self.INDENT}{ctype}* restrict {name} = ({ctype}*)kc_alloc({nbytes});"
        return [f"{pad}{{", decl, *inner, f"{pad}{self.INDENT}kc_free({name});", f"{pad}}}"]
