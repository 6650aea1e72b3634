"""C source from a LoopNest: one exported `kc_<name>` function plus the prelude of numeric helpers.

    /* kcomp-signature: {...} */            <- read back by build (targets/cpu/signature.py)
    <prelude.h>
    int kc_abi_version(void);  void kc_set_threads(int);
    void kc_matmul(const float* restrict A, const float* restrict B, float* restrict C) {
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < 64; ++i) ...
    }

Statements map one to one onto C (loop kinds through `LOOP_PRAGMA`, a table a CUDA emitter
overrides); expressions come from `CExpr`.  Symbols are identity-compared objects whose names may
collide, so every Var, Param and Buffer gets its own C identifier in order of appearance: equal
nests print equal C text, which is what makes the library cache hit.  docs/abi.md is the contract.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import ClassVar

from kcomp.affine import const, simplify
from kcomp.errors import UsageError
from kcomp.expr import BinaryOp, Buffer, Expr, Param, Scope, Var, free_vars, loads, substitute
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import map_exprs
from kcomp.loops.dependence import reduction_updates
from kcomp.targets.cpu import cexpr, simd
from kcomp.targets.cpu.cexpr import CExpr, check_supported, store_cast
from kcomp.targets.cpu.signature import Signature
from kcomp.targets.cpu.vector import Promotion, Unvectorizable, VectorLoop

PRELUDE = resources.files("kcomp.targets.cpu").joinpath("prelude.h").read_text()

_KEYWORDS_TEXT = """
auto break case char const continue default do double else enum extern float for goto if inline int
long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while bool true false
"""
# Names visible in the kernel body: types, object-like macros of the included headers and gcc's gnu11
# predefines (`linux`, `unix`), and the functions the emitter calls.
_GLOBALS_TEXT = """
int8_t int32_t int64_t uint32_t uint64_t size_t NULL EOF NAN INFINITY BUFSIZ errno stdin stdout
stderr linux unix i386 math_errhandling free kc_alloc main
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


class CpuEmitter:
    """Emits one LoopNest.  Subclasses (CUDA) override the tables and the `function` shell."""

    LOOP_PRAGMA: ClassVar[dict[LoopKind, str]] = {
        LoopKind.PARALLEL: "#pragma omp parallel for schedule(static)",
        LoopKind.VECTOR: "#pragma omp simd",
        LoopKind.UNROLLED: "#pragma GCC unroll {n}",
    }
    STACK_SCOPES = frozenset({Scope.LOCAL, Scope.ACCUMULATOR, Scope.SCRATCHPAD, Scope.SHARED})
    STACK_LIMIT_BYTES = 32 * 1024  # larger "local" buffers go to the heap: OpenMP threads have small stacks
    INDENT = "    "

    PROMOTE_LIMIT_BYTES = 2048  # local tiles up to this size may live in vector registers

    def __init__(self, nest: LoopNest, vector_bits: int = 0):
        self.nest = nest
        self.names = Namer()
        self.expr = CExpr(self.names)
        self.entry = self.entry_name(nest.name)
        self.width = simd.lanes(vector_bits)
        self.promotions: dict[Buffer, Promotion] = {}
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
                "int kc_abi_version(void);",
                "void kc_set_threads(int n);",
                f"{self.prototype()};",
                "",
                f"#endif /* {guard} */",
                "",
            ]
        )

    def emit(self) -> str:
        proto = self.prototype()
        body = self.block(self.nest.body, 1, in_parallel=False)
        uses_simd = self.width > 1 and any(
            isinstance(s, Loop) and s.kind is LoopKind.VECTOR for s in walk_stmts(self.nest.body)
        )
        lines = [
            Signature.of(self.nest, self.entry).to_comment(),
            PRELUDE,
            *([simd.prelude(self.width)] if uses_simd else []),
            "int kc_abi_version(void) { return KC_ABI_VERSION; }",
            "void kc_set_threads(int n) { omp_set_num_threads(n); }",
            "",
            f"{proto} {{",
            *body,
            "}",
            "",
        ]
        return "\n".join(lines)

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
                return [f"{pad}{self.names(s.buffer)}[{flat}] = {value};"]
            case Guard():
                self.touch(s.cond)
                head = f"{pad}if ({self.expr.value(s.cond)}) {{"
                return [head, *self.block(s.body, depth + 1, in_parallel), f"{pad}}}"]
            case Loop():
                return self.loop(s, depth, in_parallel)
            case Alloc():
                return self.alloc(s, depth, in_parallel)
        raise TypeError(f"not a statement: {s!r}")

    def touch(self, *items: Expr | Buffer) -> None:
        """Scalar code is about to access these: a register-promoted buffer among them cannot stay so."""
        if not self.promotions:
            return
        for item in items:
            bufs = [item] if isinstance(item, Buffer) else [n.buffer for n in loads(item)]
            for b in bufs:
                if b in self.promotions:
                    self.promotions[b].failed = True

    def unrolled_copy(self, s: Loop, k: int) -> tuple[Stmt, ...]:
        """The body of `s` for iteration `k`, indices folded (so register tiles get constant offsets)."""
        body = map_exprs(s.body, lambda e: simplify(substitute(e, {s.var: const(k)})))
        return body

    def loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        pad = self.INDENT * depth
        if s.kind is LoopKind.UNROLLED or (s.extent == 1 and s.kind is not LoopKind.PARALLEL):
            out = []
            for k in range(s.extent):
                copy = self.unrolled_copy(s, k)
                out += [f"{pad}{{", *self.block(copy, depth + 1, in_parallel), f"{pad}}}"]
            return out
        if s.kind is LoopKind.VECTOR and self.width > 1:
            try:
                return VectorLoop(self, s, self.width).emit(depth)
            except Unvectorizable as e:
                pad_comment = f"{pad}/* vector {self.names(s.var)}: scalar code ({e}) */"
                return [pad_comment, *self._plain_loop(s, depth, in_parallel)]
        return self._plain_loop(s, depth, in_parallel)

    def _plain_loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        pad = self.INDENT * depth
        pragma = self.pragma(s, in_parallel)
        var = self.names(s.var)
        inner = self.block(s.body, depth + 1, in_parallel or s.kind is LoopKind.PARALLEL)
        head = f"{pad}for (int64_t {var} = 0; {var} < {s.extent}; ++{var}) {{"
        return [*([pad + pragma] if pragma else []), head, *inner, f"{pad}}}"]

    def pragma(self, s: Loop, in_parallel: bool) -> str:
        """The loop's pragma, dropped where it would be wrong or wasteful (said in a comment)."""
        if s.kind is LoopKind.PARALLEL and in_parallel:
            return "/* parallel: inside a parallel loop already, runs serially */"
        if s.kind is LoopKind.PARALLEL and (ops := reduction_updates(s)):
            # `parallel k reduce`: OpenMP gives each thread a private, identity-initialised copy,
            # which needs an array: a reduced register tile stays in memory
            self.touch(*ops)
            sections = " ".join(
                f"reduction({'+' if op is BinaryOp.ADD else '*'}: {self.names(b)}[0:{b.size}])"
                for b, op in ops.items()
            )
            return f"{self.LOOP_PRAGMA[LoopKind.PARALLEL]} {sections}"
        if s.kind is LoopKind.VECTOR and not self.is_simd_safe(s):
            return "/* vector: stores not indexed by the loop or nested pragmas; left to gcc */"
        template = self.LOOP_PRAGMA.get(s.kind, "")
        return template.format(n=min(s.extent, 65534))

    @staticmethod
    def is_simd_safe(s: Loop) -> bool:
        """`omp simd` promises independent iterations; only claim it when every store is indexed by
        the loop variable (a store to one place per iteration would be a reduction) and no nested
        loop carries an OpenMP pragma of its own."""
        for inner in walk_stmts(s.body):
            if isinstance(inner, Loop) and inner.kind in (LoopKind.PARALLEL, LoopKind.VECTOR):
                return False
            if isinstance(inner, Store) and not any(s.var in free_vars(i) for i in inner.index):
                return False
        return True

    def alloc(self, s: Alloc, depth: int, in_parallel: bool) -> list[str]:
        pad, buf = self.INDENT * depth, s.buffer
        check_supported(buf.dtype)
        self.allocated.add(buf)
        name, ctype = self.names(buf), buf.dtype.c_type
        nbytes = buf.size * buf.dtype.itemsize
        if (
            self.width > 1
            and buf.scope is Scope.LOCAL
            and buf.dtype in simd.VECTOR_DTYPES
            and nbytes <= self.PROMOTE_LIMIT_BYTES
        ):
            promo = self.promotions[buf] = Promotion(buf)
            inner = self.block(s.body, depth + 1, in_parallel)
            del self.promotions[buf]
            if not promo.failed and promo.slots:
                vtype = simd.VTYPE[buf.dtype]
                decl = f"{pad}{self.INDENT}{vtype} {', '.join(promo.slots[o] for o in sorted(promo.slots))};"
                return [f"{pad}{{ /* {name}: kept in registers */", decl, *inner, f"{pad}}}"]
        inner = self.block(s.body, depth + 1, in_parallel)
        if buf.scope in self.STACK_SCOPES and nbytes <= self.STACK_LIMIT_BYTES:
            decl = f"{pad}{self.INDENT}{ctype} {name}[{max(buf.size, 1)}] __attribute__((aligned(64)));"
            return [f"{pad}{{", decl, *inner, f"{pad}}}"]
        decl = f"{pad}{self.INDENT}{ctype}* restrict {name} = ({ctype}*)kc_alloc({nbytes});"
        return [f"{pad}{{", decl, *inner, f"{pad}{self.INDENT}free({name});", f"{pad}}}"]


def emit(nest: LoopNest, vector_bits: int = 0) -> str:
    """The C source of `nest` (ABI: docs/abi.md); `vector` loops use `vector_bits`-wide SIMD."""
    return CpuEmitter(nest, vector_bits).emit()


def emit_header(nest: LoopNest) -> str:
    """A C header declaring the kernel's entry point, for linking the library from C."""
    return CpuEmitter(nest).header()
