"""C source from a LoopNest: one exported `kc_<name>` function plus the prelude of numeric helpers.

    /* kcomp-signature: {...} */            <- read back by build (targets/cfamily/signature.py)
    <prelude.h>
    int kc_abi_version(void);  void kc_set_threads(int);
    void kc_matmul(const float* restrict A, const float* restrict B, float* restrict C) {
        #pragma omp parallel for schedule(static) num_threads(KC_THREADS)
        for (int64_t i = 0; i < 64; ++i) ...
    }

Statements and expressions are the C family's (targets/cfamily: `CEmitter`, `CExpr`); this
subclass adds what the CPU has: OpenMP pragmas (`LOOP_PRAGMA`, with reduction clauses and checks
of where a pragma is safe), explicit SIMD vector loops (vector.py) and register tiles (local
buffers kept in vector registers).  docs/abi.md is the contract.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

from kcomp.expr import BinaryOp, Buffer, Expr, Scope, free_vars, loads
from kcomp.loops import Alloc, Loop, LoopKind, LoopNest, Store, walk_stmts
from kcomp.loops.dependence import reduction_updates
from kcomp.targets.cfamily.emit import CEmitter
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cpu import simd
from kcomp.targets.cpu.vector import Promotion, Unvectorizable, VectorLoop

PRELUDE = (
    resources.files("kcomp.targets.cpu").joinpath("prelude.h").read_text()
    + "\n"
    + resources.files("kcomp.targets.cfamily").joinpath("numeric.h").read_text()
)


class CpuEmitter(CEmitter):
    """The C family's emitter with OpenMP threads, SIMD vector loops of `vector_bits` and register tiles."""

    LOOP_PRAGMA: ClassVar[dict[LoopKind, str]] = {
        LoopKind.PARALLEL: "#pragma omp parallel for schedule(static) num_threads(KC_THREADS)",
        LoopKind.VECTOR: "#pragma omp simd",
        LoopKind.UNROLLED: "#pragma GCC unroll {n}",
    }
    RUNTIME_DECLS: ClassVar[tuple[str, ...]] = ("int kc_abi_version(void);", "void kc_set_threads(int n);")
    PROMOTE_LIMIT_BYTES = 2048  # local tiles up to this size may live in vector registers

    def __init__(self, nest: LoopNest, vector_bits: int = 0):
        super().__init__(nest)
        self.width = simd.lanes(vector_bits)
        self.promotions: dict[Buffer, Promotion] = {}

    def preamble(self) -> list[str]:
        uses_simd = self.width > 1 and any(
            isinstance(s, Loop) and s.kind is LoopKind.VECTOR for s in walk_stmts(self.nest.body)
        )
        return [
            Signature.of(self.nest, self.entry).to_comment(),
            PRELUDE,
            *([simd.prelude(self.width)] if uses_simd else []),
            "int kc_abi_version(void) { return KC_ABI_VERSION; }",
            # NOTE: the library's own count, not OpenMP's per-thread setting, which every library
            # in the process shares (torch sets it too): each parallel loop names it
            "static int kc_threads;",
            "#define KC_THREADS (kc_threads > 0 ? kc_threads : omp_get_max_threads())",
            "void kc_set_threads(int n) { kc_threads = n; }",
        ]

    def touch(self, *items: Expr | Buffer) -> None:
        """Scalar code is about to access these: a register-promoted buffer among them cannot stay so."""
        if not self.promotions:
            return
        for item in items:
            bufs = [item] if isinstance(item, Buffer) else [n.buffer for n in loads(item)]
            for b in bufs:
                if b in self.promotions:
                    self.promotions[b].failed = True

    def loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        """A `vector` loop as explicit SIMD (vector.py) where it can be, else the C family's loop."""
        if s.kind is LoopKind.VECTOR and self.width > 1 and s.extent != 1:
            try:
                return VectorLoop(self, s, self.width).emit(depth)
            except Unvectorizable as e:
                pad_comment = f"{self.INDENT * depth}/* vector {self.names(s.var)}: scalar code ({e}) */"
                return [pad_comment, *self.plain_loop(s, depth, in_parallel)]
        return super().loop(s, depth, in_parallel)

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
        return super().pragma(s, in_parallel)

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
        """A small local f32/i32 tile kept in vector registers when every access to it is a vector
        access at a constant offset; otherwise the C family's stack or heap buffer."""
        buf = s.buffer
        nbytes = buf.size * buf.dtype.itemsize
        if (
            self.width > 1
            and buf.scope is Scope.LOCAL
            and buf.dtype in simd.VECTOR_DTYPES
            and nbytes <= self.PROMOTE_LIMIT_BYTES
        ):
            pad = self.INDENT * depth
            self.allocated.add(buf)
            promo = self.promotions[buf] = Promotion(buf)
            inner = self.block(s.body, depth + 1, in_parallel)
            del self.promotions[buf]
            if not promo.failed and promo.slots:
                vtype = simd.VTYPE[buf.dtype]
                decl = f"{pad}{self.INDENT}{vtype} {', '.join(promo.slots[o] for o in sorted(promo.slots))};"
                return [f"{pad}{{ /* {self.names(buf)}: kept in registers */", decl, *inner, f"{pad}}}"]
        return super().alloc(s, depth, in_parallel)


def emit(nest: LoopNest, vector_bits: int = 0) -> str:
    """The C source of `nest` (ABI: docs/abi.md); `vector` loops use `vector_bits`-wide SIMD."""
    return CpuEmitter(nest, vector_bits).emit()


def emit_header(nest: LoopNest) -> str:
    """A C header declaring the kernel's entry point, for linking the library from C."""
    return CpuEmitter(nest).header()
