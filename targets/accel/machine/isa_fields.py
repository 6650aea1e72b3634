"""The pieces the instruction table (isa.py) is built from: operand fields, footprints (the memory rows
an instruction touches) and cycle costs, and the vector-unit entry maker.  Kept apart so the table
itself stays one screenful per unit."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from kcomp.targets.accel.machine import semantics as sem
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.semantics import Machine

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
HEADER_BITS = 24  # opcode 8 + wait mask 8 + signal mask 8
NUM_TOKENS = 8
DTYPES = {"f32": 4, "i8": 1, "i32": 4}  # DRAM buffer dtypes and their element bytes
MAX_BUFFERS = 64  # `buf` is a 6-bit field


class Queue(IntEnum):
    """The three decoupled instruction queues, each in order; tokens order them against each other."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2


class Unit(IntEnum):
    DMA = 0
    MATRIX = 1
    VECTOR = 2
    CONTROL = 3


@dataclass(frozen=True, slots=True)
class Field:
    """An operand: `bits` wide; kind "uint" (lo..2**bits-1), "enum" (one of `choices`, stored as its
    index), "buf" (a DRAM buffer id, written as the buffer's name), "f32" (stored as its bits) or
    "i32" (a signed 32-bit integer, stored in two's complement)."""

    name: str
    bits: int
    kind: str = "uint"
    choices: tuple[str, ...] = ()
    lo: int = 0
    doc: str = ""
    hi: int = field(init=False, repr=False, compare=False)  # the largest raw value

    def __post_init__(self) -> None:
        object.__setattr__(self, "hi", len(self.choices) - 1 if self.kind == "enum" else (1 << self.bits) - 1)


Rows = tuple[tuple[int, int], ...]  # (first row, row count) ranges


@dataclass(frozen=True, slots=True)
class Footprint:
    """The scratchpad and accumulator rows one instruction reads and writes."""

    sp_read: Rows = ()
    sp_write: Rows = ()
    acc_read: Rows = ()
    acc_write: Rows = ()


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One instruction.  `queue` None: the `q` operand picks it (fence) or none (halt)."""

    mnemonic: str
    opcode: int
    queue: Queue | None
    unit: Unit
    fields: tuple[Field, ...]
    doc: str
    semantics: Callable[[Machine, tuple[int, ...]], None] | None  # None: no data moves (fence, halt)
    footprint: Callable[[tuple[int, ...]], Footprint]
    cycles: Callable[[AccelConfig, tuple[int, ...]], int]  # cycles its unit is busy
    latency: Callable[[AccelConfig], int]  # cycles from the unit finishing to the results being visible
    cost_doc: str


# -- operand fields -----------------------------------------------------------------------------
def _u(name: str, bits: int, doc: str, lo: int = 0) -> Field:
    return Field(name, bits, "uint", (), lo, doc)


SP = _u("sp", 16, "first scratchpad row")
ACC = _u("acc", 16, "first accumulator row")
BUF = Field("buf", 6, "buf", doc="DRAM buffer (its name in text, its index in the buffer table in binary)")
OFF = _u("off", 32, "element offset of the region's first element in the buffer")
ROWS = _u("rows", 16, "rows to transfer / to process", lo=1)
COLS = _u("cols", 8, "elements per row, at most dim; a load zero-fills the row past them", lo=1)
STRIDE = _u("stride", 24, "elements between consecutive rows in DRAM (0: every row reads the same one)")
PAD_ROWS = _u("rows", 10, "rows to transfer", lo=1)
PAD_COLS = _u("cols", 8, "elements per row from DRAM (0: the rows are all zeros)")
LEAD = _u("lead", 8, "the column the first element lands in")
PAD_STRIDE = _u("stride", 22, "elements between consecutive rows in DRAM")
STEP = _u(
    "step", 8, "elements between consecutive rows' first elements in DRAM (1: a transposed region)", lo=1
)
FILL = Field(
    "fill", 2, "enum", ("zero", "-inf", "inf", "reg"),
    doc="the value of every element outside the region (reg: the fill register dma.fill sets)",
)  # fmt: skip
ACT = Field("act", 2, "enum", ("none", "relu"), doc="activation applied on the way to DRAM")
DST = _u("dst", 16, "first accumulator row written")
SRC = _u("src", 16, "first accumulator row read")
B = _u("b", 16, "first row of the second operand")
BMEM = Field("bmem", 1, "enum", ("sp", "acc"), doc="memory of the second operand")
BSTEP = _u("bstep", 1, "0: row b is broadcast to every row; 1: row b+i pairs with row src+i")
IMM = Field("imm", 32, "f32", doc="scalar (an f32; on i32 accumulators the result is rounded)")
IMMI = Field("imm", 32, "i32", doc="an i32 constant (two's complement)")
Q = Field("q", 2, "enum", ("load", "compute", "store"), doc="queue the fence waits in")
AXIS = Field(
    "axis", 2, "enum", ("none", "col", "row"), doc="what is added to imm: nothing, the column, the row"
)
CMP = Field(
    "cmp", 3, "enum", ("lt", "le", "gt", "ge", "eq", "ne"), doc="the comparison (1.0 when it holds, else 0.0)"
)
SEL_FIELDS = (
    DST,
    _u("src", 16, "first accumulator row of the mask (nonzero: take a)"),
    ROWS,
    _u("a", 16, "first accumulator row of the value where the mask is nonzero"),
    _u("b", 16, "first accumulator row of the value where the mask is zero"),
    _u("sstep", 1, "0: mask row src is broadcast to every row; 1: row src+i pairs with row dst+i"),
    _u("astep", 1, "as sstep, for a"),
    _u("bstep", 1, "as sstep, for b"),
)
SCAN_FIELDS = (
    DST,
    SRC,
    ROWS,
    _u("c", 16, "first accumulator row of the carry (the previous chunk's result)"),
    Field("fn", 2, "enum", ("add", "mul", "max", "min"), doc="the combining operation"),
    Field("dir", 1, "enum", ("fwd", "rev"), doc="fwd: column j combines columns 0..j; rev: j..dim-1"),
    Field(
        "cin",
        1,
        "enum",
        ("none", "carry"),
        doc="carry: also combine row c+i's last (fwd) or first (rev) column",
    ),
)
SLOT = _u("slot", 8, "first entry of the DMA engine's index buffer")
MMA_FIELDS = (
    ACC,
    _u("a", 16, "first scratchpad row of A (m rows, first k columns used)"),
    _u("b", 16, "first scratchpad row of B (k rows of dim columns)"),
    _u("m", 16, "rows of A streamed, and accumulator rows written", lo=1),
    _u("k", 8, "reduction length, at most dim", lo=1),
    Field("mode", 1, "enum", ("overwrite", "accumulate"), doc="acc = A×B, or acc += A×B"),
)


# -- footprints and costs -----------------------------------------------------------------------
def _xfer(cfg: AccelConfig, rows: int, cols: int, elem_bytes: int) -> int:
    return math.ceil(rows * cols * elem_bytes / cfg.dma_bytes_per_cycle)


def _dma_load(a: tuple[int, ...]) -> Footprint:
    return Footprint(sp_write=((a[0], a[3]),))


def _dma_acc_in(a: tuple[int, ...]) -> Footprint:
    return Footprint(acc_write=((a[0], a[3]),))


def _dma_acc_out(a: tuple[int, ...]) -> Footprint:
    return Footprint(acc_read=((a[0], a[3]),))


def _mma(a: tuple[int, ...]) -> Footprint:
    acc, arow, brow, m, k, mode = a
    return Footprint(
        sp_read=((arow, m), (brow, k)), acc_read=((acc, m),) if mode else (), acc_write=((acc, m),)
    )


def _vbinary(a: tuple[int, ...]) -> Footprint:
    dst, src, rows, b, bmem, bstep = a
    other = ((b, rows if bstep else 1),)
    if bmem == 0:
        return Footprint(sp_read=other, acc_read=((src, rows),), acc_write=((dst, rows),))
    return Footprint(acc_read=((src, rows), *other), acc_write=((dst, rows),))


def _vunary(a: tuple[int, ...]) -> Footprint:
    return Footprint(acc_read=((a[1], a[2]),), acc_write=((a[0], a[2]),))


def _vsel(a: tuple[int, ...]) -> Footprint:
    dst, mask, rows, x, y, sstep, astep, bstep = a
    reads = tuple((row, rows if step else 1) for row, step in ((mask, sstep), (x, astep), (y, bstep)))
    return Footprint(acc_read=reads, acc_write=((dst, rows),))


def _vscan(a: tuple[int, ...]) -> Footprint:
    dst, src, rows, c, _fn, _dir, cin = a
    reads = ((src, rows), (c, rows)) if cin else ((src, rows),)
    return Footprint(acc_read=reads, acc_write=((dst, rows),))


def _viota(a: tuple[int, ...]) -> Footprint:
    return Footprint(acc_write=((a[0], a[1]),))


def _nothing(a: tuple[int, ...]) -> Footprint:
    return Footprint()


def _vcycles(factor: Callable[[AccelConfig], int]) -> Callable[[AccelConfig, tuple[int, ...]], int]:
    return lambda cfg, a: a[2] * cfg.vector_row_cycles * factor(cfg)


def _one(cfg: AccelConfig) -> int:
    return 1


def _slow(cfg: AccelConfig) -> int:
    return cfg.vector_slow_op_cycles


def _vlat(cfg: AccelConfig) -> int:
    return cfg.vector_latency


def _vred_lat(cfg: AccelConfig) -> int:
    return cfg.vector_latency + math.ceil(math.log2(cfg.vector_lanes))


def _zero(*_: object) -> int:
    return 0


_DMA_COST = "ceil(rows*cols*elem_bytes / dma_bytes_per_cycle) on the DRAM channel; + dma_latency"
_VEC_COST = "rows*ceil(dim/vector_lanes); + vector_latency"


def _vector(mnemonic: str, opcode: int, kind: str, run: sem.Semantics, doc: str) -> OpSpec:
    """A vector-unit entry; `kind` picks the operands and the cost: binary (a second row operand),
    scalar (an immediate), compare / compares (binary / scalar with a `cmp`: a 1.0 / 0.0 mask), unary,
    slow (unary at vector_slow_op_cycles), reduce (a row to a scalar)."""
    fields = {
        "binary": (DST, SRC, ROWS, B, BMEM, BSTEP),
        "scalar": (DST, SRC, ROWS, IMM),
        "compare": (DST, SRC, ROWS, B, BMEM, BSTEP, CMP),
        "compares": (DST, SRC, ROWS, IMM, CMP),
    }.get(kind, (DST, SRC, ROWS))
    foot = (lambda a: _vbinary(a[:6])) if kind in ("binary", "compare") else _vunary
    cycles, latency, cost = _vcycles(_one), _vlat, _VEC_COST
    if kind == "slow":
        cycles, cost = _vcycles(_slow), "rows*ceil(dim/vector_lanes)*vector_slow_op_cycles; + vector_latency"
    if kind == "reduce":
        latency, cost = _vred_lat, "rows*ceil(dim/vector_lanes); + vector_latency + ceil(log2(vector_lanes))"
    return OpSpec(mnemonic, opcode, Queue.COMPUTE, Unit.VECTOR, fields, doc, run, foot, cycles, latency, cost)
