"""Small hand-built loop nests and constants shared by the CPU target's test files."""

from __future__ import annotations

from pathlib import Path

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Var
from kcomp.loops import Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.targets.cpu.target import CpuTarget

F32, F64, I32, I8, F16, BOOL = DType.F32, DType.F64, DType.I32, DType.I8, DType.F16, DType.BOOL
N = 257  # not a multiple of any vector width
ROOT = Path(__file__).resolve().parents[1]


def run(target: CpuTarget, nest: LoopNest, *args: object) -> str:
    """Emit, build and run `nest`; returns the C source (for assertions about its shape)."""
    source = target.emit(nest)
    target.run(target.build(source), list(args))
    return source


def b(op: BinaryOp, x: Expr, y: Expr) -> Binary:
    return Binary(op, x, y)


def c32(v: int) -> Const:
    return Const(v, I32)


def map1(name: str, ins: tuple[Buffer, ...], out: Buffer, value, params=(), kind=LoopKind.SERIAL) -> LoopNest:
    """out[i] = value(i) over a 1-D output."""
    i = Var("i")
    body: tuple[Stmt, ...] = (Loop(i, out.shape[0], kind, (Store(out, (i,), value(i)),)),)
    return LoopNest(name, ins, (out,), params, body)


def binary_nest(op: BinaryOp, dtype: DType, n: int) -> tuple[LoopNest, Buffer, Buffer, Buffer]:
    a, bb, out = Buffer("a", dtype, (n,)), Buffer("b", dtype, (n,)), Buffer("out", dtype, (n,))
    nest = map1(f"bin_{op.name}", (a, bb), out, lambda i: b(op, Load(a, (i,)), Load(bb, (i,))))
    return nest, a, bb, out


def cpu_target(isa: str, cores: int, vector_bits: int | None = None) -> CpuTarget:
    """A CPU target of ISA level `isa` as if it had `cores` cores and threads (and `vector_bits`-wide
    vectors, when given), whatever this machine has: what the search space, the cost model and the
    default scheduler read."""
    target = CpuTarget(isa=isa, threads=cores)
    target.cores = cores
    if vector_bits is not None:
        target.vector_bits = vector_bits
    return target
