"""CUDA source from a LoopNest: one `__global__` kernel per top-level statement, and a host entry.

    /* kcomp-signature: {...} */
    #ifdef KC_EMULATED ... #else #include <cuda_runtime.h> + the access macros as plain indexing #endif
    <numeric helpers, __host__ __device__>
    __global__ void kc_softmax_k0(const float* __restrict__ X, float* __restrict__ Y) {
        const int64_t n_o = blockIdx.x;              <- `bind n_o blockIdx.x`: the kernel's prefix
        { const int64_t n_i = threadIdx.x; ...       <- `bind n_i threadIdx.x`: this thread's iteration
    }
    extern "C" int kc_softmax(const float* X, float* Y) {   <- device pointers (docs/cuda.md)
        KC_LAUNCH(kc_softmax_k0, dim3(32, 1, 1), dim3(128, 1, 1), X, Y);
        return (int)cudaGetLastError();
    }

The loop IR is sequential; a launch is not.  Three rules keep them equal:
  - bound loops are independent (passes/bind.py checks it), so blocks and threads may run in any order;
  - inside a block, a statement outside every thread loop is block-level work: a nest of independent
    loops is shared by the block's threads (each takes every `nthreads`-th iteration, a cooperative
    copy into shared memory is one), anything else runs on thread 0;
  - between two block-level statements of a block where one writes a buffer the other touches, and at
    the end of a block-level loop whose body writes what it also touches, `__syncthreads()`.
Inside a thread loop there is no barrier, so there the emitter checks instead: every bound loop is
still independent (a later step, `fuse` of a bound loop say, may have made it carry a dependence);
code that writes shared or global memory outside a loop bound to some axis of the block runs on the
threads at index 0 of that axis only (the others would write the same values at once: a race); two
statements of one thread loop that run on different threads and share memory one of them writes,
or a per-thread array around a thread loop (each thread would get its own copy), are refused.
Allocations at block level are `__shared__` (the block's threads share them); inside a thread loop,
per-thread arrays (registers or local memory).  Global temporaries between kernels are allocated by
the host entry, stream-ordered.  Every read and write of a global or shared array goes through
`KC_LDG/KC_STG/KC_LDS/KC_STS`: plain indexing for nvcc, bounds- and race-checked accesses in the
emulation (emu.h), which is how a missing barrier is caught without a GPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from importlib import resources
from typing import ClassVar

from kcomp.dtypes import DType
from kcomp.errors import ScheduleError, Unsupported
from kcomp.expr import Buffer, Param, Var, loads
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.dependence import carried
from kcomp.passes.bind import LIMITS, thread_reduction
from kcomp.targets.cfamily.cexpr import CExpr, check_supported
from kcomp.targets.cfamily.emit import CEmitter
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cuda.model import Tally, to_comment
from kcomp.targets.cuda.reduce import BLOCK_REDUCE, reduce_loop
from kcomp.targets.cuda.vector import vector_loop

NUMERIC = resources.files("kcomp.targets.cfamily").joinpath("numeric.h").read_text()
DTYPES = frozenset({DType.F32, DType.F64, DType.F16, DType.I32, DType.I64, DType.I8, DType.BOOL})
MAX_THREADS = 1024  # threads per block
SHARED_LIMIT_BYTES = 48 * 1024  # static __shared__ memory per block
LOCAL_LIMIT_BYTES = 16 * 1024  # a per-thread array beyond this spills to local memory anyway: refuse

SHELL = """\
#ifdef KC_EMULATED
/* the emulation build force-includes emu.h: fibers for threads, checked accesses */
#define KC_ALLOC(p, n) cudaMalloc((void**)&(p), (n))
#define KC_FREE(p) cudaFree(p)
#define __align__(n) __attribute__((aligned(n)))
typedef _Float16 kc_half;
#define KC_VLOAD(M, b, i, n, w, dst) do { for (int kc_l = 0; kc_l < (w); ++kc_l) (dst)[kc_l] = M(b, (i) + kc_l, n); } while (0)
#define KC_VSTORE(M, b, i, n, w, src) do { for (int kc_l = 0; kc_l < (w); ++kc_l) M(b, (i) + kc_l, n, (src)[kc_l]); } while (0)
#define KC_LDGV(b, i, n, w, dst) KC_VLOAD(KC_LDG, b, i, n, w, dst)
#define KC_LDSV(b, i, n, w, dst) KC_VLOAD(KC_LDS, b, i, n, w, dst)
#define KC_STGV(b, i, n, w, src) KC_VSTORE(KC_STG, b, i, n, w, src)
#define KC_STSV(b, i, n, w, src) KC_VSTORE(KC_STS, b, i, n, w, src)
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>
typedef __half kc_half;
#include <math.h>
#define KC_LAUNCH(kernel, grid, block, ...) kernel<<<grid, block>>>(__VA_ARGS__)
#define KC_LDG(b, i, n) (b)[i]
#define KC_STG(b, i, n, v) ((b)[i] = (v))
#define KC_LDS(b, i, n) (b)[i]
#define KC_STS(b, i, n, v) ((b)[i] = (v))
/* w consecutive floats, 16- (w = 4) or 8-byte (w = 2) aligned, in one access (emit.py checks the
 * alignment of the index; arrays are aligned by cudaMalloc and `__align__`) */
#define KC_VEC4 float4
#define KC_VEC2 float2
#define KC_LDGV(b, i, n, w, dst) (*reinterpret_cast<KC_VEC##w*>(dst) = *reinterpret_cast<const KC_VEC##w*>(&(b)[i]))
#define KC_LDSV(b, i, n, w, dst) KC_LDGV(b, i, n, w, dst)
#define KC_STGV(b, i, n, w, src) (*reinterpret_cast<KC_VEC##w*>(&(b)[i]) = *reinterpret_cast<const KC_VEC##w*>(src))
#define KC_STSV(b, i, n, w, src) KC_STGV(b, i, n, w, src)
#define KC_ALLOC(p, n) cudaMallocAsync((void**)&(p), (n), 0)
#define KC_FREE(p) cudaFreeAsync((p), 0)
#endif
#define KC_ABI_VERSION 1
#define KC_INLINE static __host__ __device__ inline
"""


class CudaExpr(CExpr):
    """C expressions whose reads of global and shared arrays go through the access macros."""

    def __init__(self, emitter: CudaEmitter):
        super().__init__(emitter.names)
        self.emitter = emitter

    def element(self, buf: Buffer, flat: str) -> str:
        macro = {"global": "KC_LDG", "shared": "KC_LDS"}.get(self.emitter.space.get(buf, "global"))
        if macro is None:
            return super().element(buf, flat)
        return f"{macro}({self.name(buf)}, {flat}, {buf.size})"


class Kernel:
    """One `__global__` function: the top-level statement, its grid (the prefix of block loops) and
    its block (the largest extent bound to each thread axis)."""

    def __init__(self, name: str, stmt: Stmt):
        self.name = name
        self.grid = {"x": 1, "y": 1, "z": 1}
        self.prefix: list[Loop] = []
        body: tuple[Stmt, ...] = (stmt,)
        while len(body) == 1 and isinstance(body[0], Loop) and body[0].kind.is_block:
            self.prefix.append(body[0])
            self.grid[body[0].kind.axis] = body[0].extent
            body = body[0].body
        self.body = body
        self.block = {"x": 1, "y": 1, "z": 1}
        for s in walk_stmts(body):
            if isinstance(s, Loop) and s.kind.is_block:
                raise ScheduleError(
                    f"kernel {name}: a loop bound to {s.kind.value} is not in the kernel's prefix of block"
                    " loops (bind block loops outermost, perfectly nested)"
                )
            if isinstance(s, Loop) and s.kind.is_thread:
                self.block[s.kind.axis] = max(self.block[s.kind.axis], s.extent)
        for s in walk_stmts((stmt,)):
            if isinstance(s, Loop) and (s.kind.is_block or s.kind.is_thread):
                if s.extent > LIMITS[s.kind.value]:
                    raise ScheduleError(
                        f"kernel {name}: a loop of {s.extent} iterations bound to {s.kind.value} exceeds"
                        f" CUDA's limit of {LIMITS[s.kind.value]}"
                    )
                reduction = s.kind is LoopKind.THREAD_X and not isinstance(thread_reduction(s), str)
                if s.extent > 1 and not reduction and (why := carried(s)) is not None:  # bind .. reduce
                    raise ScheduleError(
                        f"kernel {name}: a loop bound to {s.kind.value} is no longer independent: {why}"
                    )
        self.threads = math.prod(self.block.values())
        if self.threads > MAX_THREADS:
            raise ScheduleError(
                f"kernel {name}: {self.threads} threads per block ({self.block['x']} x {self.block['y']}"
                f" x {self.block['z']}) exceed CUDA's {MAX_THREADS}"
            )

    @staticmethod
    def dim3(d: dict[str, int]) -> str:
        return f"dim3({d['x']}, {d['y']}, {d['z']})"


class CudaEmitter(CEmitter):
    """The C family's emitter with kernels, launches, thread bindings, shared memory and barriers."""

    RUNTIME_DECLS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, nest: LoopNest):
        super().__init__(nest)
        self.expr = CudaExpr(self)
        self.space: dict[Buffer, str] = {b: "global" for b in nest.inputs + nest.outputs}
        self.kernels: list[tuple[Kernel, list[Buffer]]] = []  # with the temporaries it sees
        self.kernel: Kernel | None = None
        self.shared_bytes = 0
        self.tallies: dict[str, Tally] = {}  # the proxy model's figures per kernel (model.py)
        self.trips = 1  # how often the statement being written runs in the launch
        self.lane: Var | None = None  # the variable that differs between a warp's lanes there
        self.chain: list[Loop] = []  # the thread loops around the code being written
        self.in_leaf = False  # writing a statement of a thread loop that holds no thread loop
        self.reduces = False  # a reduction across threads was written (its helper is needed)

    def argument(self, a: Buffer | Param, writable: bool) -> str:
        return super().argument(a, writable).replace("* restrict ", "* __restrict__ ")

    def prototype(self) -> str:
        return 'extern "C" int' + super().prototype().removeprefix("void")

    # -- the source ----------------------------------------------------------------------------
    def emit(self) -> str:
        for a in self.nest.arguments:
            check_supported(a.dtype)
            if a.dtype not in DTYPES:
                raise Unsupported(f"the cuda target does not lower {a.dtype.value} yet")
        host = self.host(self.nest.body, 1, [])
        kernels = [line for k, temps in self.kernels for line in self.kernel_source(k, temps)]
        code = "\n".join(
            [
                *kernels,
                'extern "C" int kc_abi_version(void) { return KC_ABI_VERSION; }',
                f"{self.prototype()} {{",
                *host,
                f"{self.INDENT}return (int)cudaGetLastError();",
                "}",
                "",
            ]
        )
        # NOTE: f16 is C's _Float16 in the C family's text; nvcc has no such type (its codegen fails on
        # it), so the kernels name `kc_half`: _Float16 for g++, cuda_fp16.h's __half for nvcc
        code = code.replace(DType.F16.c_type, "kc_half")
        head = [Signature.of(self.nest, self.entry).to_comment(), to_comment(self.tallies), SHELL, NUMERIC]
        return "\n".join([*head, *([BLOCK_REDUCE] if self.reduces else []), code])

    def host(self, body: tuple[Stmt, ...], depth: int, temps: list[Buffer]) -> list[str]:
        """The host entry's statements: global temporaries allocated around the launches they serve."""
        pad, out = self.INDENT * depth, []
        for s in body:
            if isinstance(s, Alloc):
                buf = s.buffer
                check_supported(buf.dtype)
                self.space[buf] = "global"
                name, ctype = self.names(buf), buf.dtype.c_type
                out += [
                    f"{pad}{ctype}* {name} = nullptr;",
                    f"{pad}if (KC_ALLOC({name}, {max(buf.size, 1) * buf.dtype.itemsize}) != cudaSuccess) return 2;",
                    *self.host(s.body, depth, [*temps, buf]),
                    f"{pad}KC_FREE({name});",
                ]
                continue
            k = Kernel(f"{self.entry}_k{len(self.kernels)}", s)
            self.kernels.append((k, list(temps)))
            args = ", ".join(self.names(a) for a in (*self.nest.arguments, *temps))
            out.append(f"{pad}KC_LAUNCH({k.name}, {k.dim3(k.grid)}, {k.dim3(k.block)}, {args});")
        return out

    def kernel_source(self, k: Kernel, temps: list[Buffer]) -> list[str]:
        self.kernel, self.shared_bytes = k, 0
        self.tallies[k.name] = Tally()
        self.trips, self.lane = math.prod(k.grid.values()), None
        written = {s.buffer for s in walk_stmts(self.nest.body) if isinstance(s, Store)}
        params = [self.argument(a, a not in self.nest.inputs or a in written) for a in self.nest.arguments]
        params += [self.argument(t, True) for t in temps]
        pad = self.INDENT
        head = [f'extern "C" __global__ void __launch_bounds__({k.threads}) {k.name}({", ".join(params)}) {{']
        if k.threads > 1:
            head.append(
                f"{pad}const int64_t kc_tid = threadIdx.x + {k.block['x']} * (threadIdx.y + {k.block['y']} * threadIdx.z);"
            )
        head += [f"{pad}const int64_t {self.names(lp.var)} = blockIdx.{lp.kind.axis};" for lp in k.prefix]
        body = self.block_level(k.body, 1)
        return [*head, *body, "}", ""]

    # -- block level: statements every thread of the block runs ---------------------------------
    def block_level(self, body: tuple[Stmt, ...], depth: int) -> list[str]:
        pad, out = self.INDENT * depth, []
        assert self.kernel is not None
        for n, s in enumerate(body):
            if n and self.kernel.threads > 1 and _conflict(body[n - 1], s, self.space):
                out.append(f"{pad}__syncthreads();")
            out += self.block_stmt(s, depth)
        return out

    def block_stmt(self, s: Stmt, depth: int) -> list[str]:
        pad = self.INDENT * depth
        k = self.kernel
        assert k is not None
        match s:
            case Loop() if s.kind.is_thread:
                return self.loop(s, depth, False)
            case Alloc():
                return self.shared(s, depth)
            case Loop() | Guard() if k.threads > 1 and _has_threads(s):
                if isinstance(s, Guard):
                    head = f"{pad}if ({self.expr.value(s.cond)}) {{"
                    return [head, *self.block_level(s.body, depth + 1), f"{pad}}}"]
                var = self.names(s.var)
                with self.repeated(s.extent):
                    inner = self.block_level(s.body, depth + 1)
                if _conflict(s, s, self.space):  # the next iteration's first statement vs this one's last
                    inner.append(f"{pad}{self.INDENT}__syncthreads();")
                return [f"{pad}for (int64_t {var} = 0; {var} < {s.extent}; ++{var}) {{", *inner, f"{pad}}}"]
        if k.threads == 1:
            return self.stmt(s, depth, True)
        return self.shared_work(s, depth)

    def shared_work(self, s: Stmt, depth: int) -> list[str]:
        """Block-level work outside thread loops: independent loops split among the block's threads
        (each takes every `threads`-th of their flattened iterations), anything else on thread 0."""
        pad, k = self.INDENT * depth, self.kernel
        assert k is not None
        chain: list[Loop] = []
        node = s
        while isinstance(node, Loop) and node.extent > 1 and carried(node) is None:
            chain.append(node)
            if len(node.body) != 1:
                break
            node = node.body[0]
        if not chain:
            return [f"{pad}if (kc_tid == 0) {{", *self.stmt(s, depth + 1, True), f"{pad}}}"]
        total = math.prod(lp.extent for lp in chain)
        inner = chain[-1].body
        flat = self.names.fresh("kc_f")
        lines = [f"{pad}for (int64_t {flat} = kc_tid; {flat} < {total}; {flat} += {k.threads}) {{"]
        stride = total
        for lp in chain:
            stride //= lp.extent
            value = f"{flat} / {stride}" if stride > 1 else flat
            if stride * lp.extent < total:
                value = f"({value}) % {lp.extent}"
            lines.append(f"{pad}{self.INDENT}const int64_t {self.names(lp.var)} = {value};")
        with self.repeated(total, chain[-1].var):
            lines += self.block(inner, depth + 1, True)
        return [*lines, f"{pad}}}"]

    def shared(self, s: Alloc, depth: int) -> list[str]:
        """A block-level allocation: `__shared__`, so every thread of the block sees the same array."""
        pad, buf = self.INDENT * depth, s.buffer
        check_supported(buf.dtype)
        self.allocated.add(buf)
        self.space[buf] = "shared"
        self.shared_bytes += buf.size * buf.dtype.itemsize
        if self.shared_bytes > SHARED_LIMIT_BYTES:
            raise ScheduleError(
                f"kernel {self.kernel.name if self.kernel else ''}: shared memory {self.shared_bytes} bytes"
                f" (with {buf.name}) exceeds the {SHARED_LIMIT_BYTES} bytes of static shared memory per block"
            )
        decl = f"{pad}{self.INDENT}__shared__ __align__(16) {buf.dtype.c_type} {self.names(buf)}[{max(buf.size, 1)}];"
        return [f"{pad}{{", decl, *self.block_level(s.body, depth + 1), f"{pad}}}"]

    # -- thread level: one thread's code ---------------------------------------------------------
    def loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        """A thread loop is this thread's index along its axis (guarded where the block is wider)."""
        if s.kind.is_block:
            raise ScheduleError(f"a loop bound to {s.kind.value} inside a kernel's body")
        if s.kind is LoopKind.VECTOR and (vectorized := vector_loop(self, s, depth)) is not None:
            return vectorized
        if not s.kind.is_thread:
            return super().loop(s, depth, in_parallel)
        assert self.kernel is not None
        if s.extent > 1 and carried(s) is not None:  # bound with `reduce` (Kernel refuses the rest)
            return reduce_loop(self, s, depth)
        if not self.chain:
            _check_thread_loop(s, self.kernel, self.space, self.names)
        if any(lp.kind is s.kind for lp in self.chain):
            raise ScheduleError(
                f"loop {self.names(s.var)} is bound to {s.kind.value} inside a loop bound to it"
            )
        pad, var = self.INDENT * depth, self.names(s.var)
        lines = [f"{pad}{{", f"{pad}{self.INDENT}const int64_t {var} = threadIdx.{s.kind.axis};"]
        guarded = s.extent < self.kernel.block[s.kind.axis]
        self.chain.append(s)
        try:
            with self.repeated(s.extent, s.var if s.kind.axis == "x" else self.lane):
                inner = self.block(s.body, depth + 1 + guarded, True)
        finally:
            self.chain.pop()
        if guarded:
            return [
                *lines,
                f"{pad}{self.INDENT}if ({var} < {s.extent}) {{",
                *inner,
                f"{pad}{self.INDENT}}}",
                f"{pad}}}",
            ]
        return [*lines, *inner, f"{pad}}}"]

    def plain_loop(self, s: Loop, depth: int, in_parallel: bool) -> list[str]:
        """CPU loop kinds (parallel, vector) run as plain loops in a thread."""
        pad, var = self.INDENT * depth, self.names(s.var)
        with self.repeated(s.extent):
            inner = self.block(s.body, depth + 1, in_parallel)
        return [f"{pad}for (int64_t {var} = 0; {var} < {s.extent}; ++{var}) {{", *inner, f"{pad}}}"]

    @contextlib.contextmanager
    def repeated(self, times: int, lane: Var | bool | None = False) -> Iterator[None]:
        """Statements written inside run `times` times as often (`lane`: the lane variable there)."""
        saved = self.trips, self.lane
        self.trips *= times
        if lane is not False:
            self.lane = lane  # type: ignore[assignment]
        try:
            yield
        finally:
            self.trips, self.lane = saved

    def stmt(self, s: Stmt, depth: int, in_parallel: bool) -> list[str]:
        """Inside thread loops, code without thread loops that writes shared or global memory runs on
        the threads at index 0 of the block's axes its thread loops do not bind (module docstring)."""
        if isinstance(s, Store) and self.kernel is not None:
            self.tallies[self.kernel.name].store(s, self.trips, self.lane, self.space)
        if isinstance(s, Guard) and len(s.body) == 1 and _reduces_across_threads(s.body[0]):
            # NOTE: every thread reaches a cross-thread reduction's barriers: a tail guard around it
            # moves inside, bounding the thread's contributions and the combined value's write
            inner = s.body[0]
            assert isinstance(inner, Loop)
            return self.stmt(
                Loop(inner.var, inner.extent, inner.kind, (Guard(s.cond, inner.body),)), depth, in_parallel
            )
        if not self.chain or self.in_leaf or _has_threads(s):
            return super().stmt(s, depth, in_parallel)
        assert self.kernel is not None
        idle = _idle_axes(self.kernel, self.chain) if _writes_shared(s, self.space) else []
        self.in_leaf = True
        try:
            if not idle:
                return super().stmt(s, depth, in_parallel)
            pad, cond = self.INDENT * depth, " && ".join(f"threadIdx.{a} == 0" for a in idle)
            return [f"{pad}if ({cond}) {{", *super().stmt(s, depth + 1, in_parallel), f"{pad}}}"]
        finally:
            self.in_leaf = False

    def alloc(self, s: Alloc, depth: int, in_parallel: bool) -> list[str]:
        """Inside a thread: a per-thread array; outside every thread loop of a one-thread kernel: the
        same (its one thread owns it)."""
        pad, buf = self.INDENT * depth, s.buffer
        check_supported(buf.dtype)
        nbytes = buf.size * buf.dtype.itemsize
        if nbytes > LOCAL_LIMIT_BYTES:
            raise ScheduleError(
                f"{buf.name}: {nbytes} bytes per thread exceed {LOCAL_LIMIT_BYTES} (a per-thread buffer lives in"
                " registers or local memory); stage it at a block-level loop (shared) or tile it smaller"
            )
        self.allocated.add(buf)
        self.space[buf] = "local"
        decl = f"{pad}{self.INDENT}{buf.dtype.c_type} {self.names(buf)}[{max(buf.size, 1)}];"
        return [f"{pad}{{", decl, *self.block(s.body, depth + 1, in_parallel), f"{pad}}}"]

    def assignment(self, buf: Buffer, flat: str, value: str) -> str:
        macro = {"global": "KC_STG", "shared": "KC_STS"}.get(self.space.get(buf, "global"))
        if macro is None:
            return super().assignment(buf, flat, value)
        return f"{macro}({self.names(buf)}, {flat}, {buf.size}, {value})"


def _reduces_across_threads(s: Stmt) -> bool:
    """Whether `s` is a thread loop bound with `reduce` (the block's threads combine its updates)."""
    return isinstance(s, Loop) and s.kind.is_thread and s.extent > 1 and carried(s) is not None


def _has_threads(s: Stmt) -> bool:
    return any(isinstance(x, Loop) and x.kind.is_thread for x in walk_stmts((s,)))


def _idle_axes(k: Kernel, chain: list[Loop]) -> list[str]:
    """The axes of the block that no loop of `chain` binds: code inside `chain` runs on all of them."""
    bound = {lp.kind.axis for lp in chain}
    return [a for a in "xyz" if k.block[a] > 1 and a not in bound]


def _writes_shared(s: Stmt, space: dict[Buffer, str]) -> bool:
    return any(space.get(b, "global") != "local" for b in _touched(s)[0])


def _check_thread_loop(top: Loop, k: Kernel, space: dict[Buffer, str], names: Callable[[Var], str]) -> None:
    """Refuse what a thread loop cannot run without a barrier inside it (module docstring): statements
    of `top` on different threads (other thread loops around them, or one guarded to index 0 of an
    axis and the other not) where one writes shared or global memory the other touches, and per-thread
    arrays around thread loops."""
    leaves: list[tuple[Stmt, tuple[Loop, ...]]] = []

    def visit(body: tuple[Stmt, ...], chain: tuple[Loop, ...]) -> None:
        for s in body:
            if not _has_threads(s):
                leaves.append((s, chain))
            elif isinstance(s, Loop) and s.kind.is_thread:
                visit(s.body, (*chain, s))
            elif isinstance(s, Alloc):
                raise ScheduleError(
                    f"kernel {k.name}: {s.buffer.name} would be a per-thread array around thread loops, one"
                    " copy per thread; allocate it inside the innermost thread loop or at block level (shared)"
                )
            else:
                visit(s.body, chain)

    visit(top.body, (top,))
    where = [(chain, bool(_idle_axes(k, list(chain))) and _writes_shared(s, space)) for s, chain in leaves]
    for n, (a, wa) in enumerate(zip(leaves, where, strict=True)):
        for b, wb in zip(leaves[n + 1 :], where[n + 1 :], strict=True):
            if wa != wb and _conflict(a[0], b[0], space):
                raise ScheduleError(
                    f"kernel {k.name}: two statements inside thread loop {names(top.var)} run on different"
                    " threads and share memory one of them writes; they need a barrier, which cannot be"
                    " inside a thread loop (bind them alike, or make them block-level statements)"
                )


def _touched(s: Stmt) -> tuple[set[Buffer], set[Buffer]]:
    """(written, read) buffers of `s`, its own allocations excluded."""
    private = {x.buffer for x in walk_stmts((s,)) if isinstance(x, Alloc)}
    written, read = set(), set()
    for x in walk_stmts((s,)):
        exprs = []
        if isinstance(x, Store):
            written.add(x.buffer)
            exprs = [*x.index, x.value]
        elif isinstance(x, Guard):
            exprs = [x.cond]
        read |= {ld.buffer for e in exprs for ld in loads(e)}
    return written - private, read - private


def _conflict(a: Stmt, b: Stmt, space: dict[Buffer, str]) -> bool:
    """Whether `b` may touch what `a` wrote or write what `a` read, in memory the threads share."""
    wa, ra = _touched(a)
    wb, rb = _touched(b)
    shared = {buf for buf in (wa & (rb | wb)) | (ra & wb) if space.get(buf, "global") != "local"}
    return bool(shared)


def emit(nest: LoopNest) -> str:
    """The CUDA source of `nest` (ABI: docs/cuda.md)."""
    return CudaEmitter(nest).emit()
