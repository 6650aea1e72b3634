"""The accelerator's instruction set: one table, `OPS`, read by the assembler, simulator, backend and docs.

    instr = MNEMONIC NAME=VALUE ... [wait=tI,tJ,...] [signal=tK,...]
    word  = 128 bits, little-endian: opcode[0:8] | wait mask[8:16] | signal mask[16:24] | operands[24:128]

Each entry gives the mnemonic, its opcode, the queue that runs it, its operand fields (packed from bit
24 upward in table order, unused high bits reserved as zero), its numpy semantics on a `Machine`, the
memory rows it touches (`Footprint`, for range checks, races and bank conflicts) and its cycle cost
(`cycles`: how long it occupies its unit; `latency`: how much later its results are visible).
docs/accel-isa.md is this table in prose.

A `Program` is the instruction stream plus the DRAM buffer table that `dma.*` instructions index.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

import numpy as np

from kcomp.expr import BinaryOp, UnaryOp
from kcomp.semantics import UNARY
from kcomp.targets.accel.machine import semantics as sem
from kcomp.targets.accel.machine.errors import EncodingError
from kcomp.targets.accel.machine.isa_fields import (  # noqa: F401 (re-exported: the ISA's one import)
    _DMA_COST,
    _VEC_COST,
    ACC,
    ACT,
    AXIS,
    BUF,
    CMP,
    COLS,
    DST,
    DTYPES,
    FILL,
    HEADER_BITS,
    IMM,
    IMMI,
    LEAD,
    MAX_BUFFERS,
    MMA_FIELDS,
    NUM_TOKENS,
    OFF,
    PAD_COLS,
    PAD_ROWS,
    PAD_STRIDE,
    ROWS,
    SCAN_FIELDS,
    SEL_FIELDS,
    SLOT,
    SP,
    STEP,
    STRIDE,
    WORD_BITS,
    WORD_BYTES,
    B,
    Field,
    Footprint,
    OpSpec,
    Q,
    Queue,
    Unit,
    _dma_acc_in,
    _dma_acc_out,
    _dma_load,
    _mma,
    _nothing,
    _one,
    _u,
    _vcycles,
    _vector,
    _viota,
    _vlat,
    _vred_lat,
    _vscan,
    _vsel,
    _xfer,
    _zero,
)

# NOTE: opcodes are the binary format; never renumber an entry, only add.
_TABLE = (
    OpSpec(
        "dma.load", 0x01, Queue.LOAD, Unit.DMA, (SP, BUF, OFF, ROWS, COLS, STRIDE),
        "scratchpad rows sp..sp+rows-1 = DRAM region (rows x cols, row stride `stride`); columns past cols = 0",
        sem.dma_load, _dma_load, lambda cfg, a: _xfer(cfg, a[3], a[4], cfg.input_bytes),
        lambda cfg: cfg.dma_latency, _DMA_COST,
    ),
    OpSpec(
        "dma.load.acc", 0x02, Queue.LOAD, Unit.DMA, (ACC, BUF, OFF, ROWS, COLS, STRIDE),
        "accumulator rows acc..acc+rows-1 = DRAM region (a bias with stride 0, or a C tile to accumulate on)",
        sem.dma_load_acc, _dma_acc_in, lambda cfg, a: _xfer(cfg, a[3], a[4], 4), lambda cfg: cfg.dma_latency,
        _DMA_COST,
    ),
    OpSpec(
        "dma.load.pad", 0x04, Queue.LOAD, Unit.DMA, (SP, BUF, OFF, PAD_ROWS, PAD_COLS, PAD_STRIDE, LEAD, FILL),
        "scratchpad rows sp..sp+rows-1 = fill, columns lead..lead+cols-1 the DRAM region (a halo: padded reads)",
        sem.dma_load_pad, _dma_load, lambda cfg, a: _xfer(cfg, a[3], a[4], cfg.input_bytes),
        lambda cfg: cfg.dma_latency, _DMA_COST,
    ),
    OpSpec(
        "dma.load.acc.pad", 0x05, Queue.LOAD, Unit.DMA, (ACC, BUF, OFF, PAD_ROWS, PAD_COLS, PAD_STRIDE, LEAD, FILL),
        "accumulator rows acc..acc+rows-1 = fill, columns lead..lead+cols-1 the DRAM region",
        sem.dma_load_acc_pad, _dma_acc_in, lambda cfg, a: _xfer(cfg, a[3], a[4], 4), lambda cfg: cfg.dma_latency,
        _DMA_COST,
    ),
    OpSpec(
        "dma.load.acc.t", 0x06, Queue.LOAD, Unit.DMA, (ACC, BUF, OFF, ROWS, COLS, STRIDE),
        "accumulator row acc+r, column c = DRAM[off + c*stride + r] (a transposing load: `cols` DRAM runs of"
        " `rows` contiguous elements, `stride` apart); columns past cols = 0",
        sem.dma_load_acc_t, _dma_acc_in, lambda cfg, a: a[4] * _xfer(cfg, a[3], 1, 4), lambda cfg: cfg.dma_latency,
        "cols*ceil(rows*4 / dma_bytes_per_cycle) on the DRAM channel (a burst per column); + dma_latency",
    ),
    OpSpec(
        "dma.load.t", 0x0C, Queue.LOAD, Unit.DMA, (SP, BUF, OFF, PAD_ROWS, COLS, PAD_STRIDE, STEP),
        "scratchpad row sp+r, column c = DRAM[off + c*stride + r*step] (a transposing load: `cols` DRAM runs"
        " of `rows` elements `step` apart, `stride` apart); columns past cols = 0",
        sem.dma_load_t, _dma_load, lambda cfg, a: a[4] * _xfer(cfg, (a[3] - 1) * a[6] + 1, 1, cfg.input_bytes),
        lambda cfg: cfg.dma_latency,
        "cols*ceil(((rows-1)*step+1)*elem_bytes / dma_bytes_per_cycle) on the DRAM channel (a burst per"
        " column over the span its rows cover); + dma_latency",
    ),
    OpSpec(
        "dma.store.t", 0x0D, Queue.STORE, Unit.DMA, (ACC, BUF, OFF, ROWS, COLS, STRIDE, ACT),
        "DRAM[off + c*stride + r] = act(accumulator row acc+r, column c) for r < rows, c < cols (a transposing"
        " store: a C tile whose rows run along DRAM's contiguous axis); into an i32 buffer rounded as dma.store",
        sem.dma_store_t, _dma_acc_out, lambda cfg, a: a[4] * _xfer(cfg, a[3], 1, 4), lambda cfg: cfg.dma_latency,
        "cols*ceil(rows*4 / dma_bytes_per_cycle) on the DRAM channel (a burst per column); + dma_latency",
    ),
    OpSpec(
        "dma.fill", 0x09, Queue.LOAD, Unit.DMA, (IMM,),
        "the DMA engine's fill register = imm: what later loads with fill=reg write outside their region",
        sem.dma_fill, _nothing, _zero, _zero, "0; the DMA engine's register, no DRAM traffic",
    ),
    OpSpec(
        "dma.fill.i", 0x0A, Queue.LOAD, Unit.DMA, (IMMI,),
        "the fill register = the i32 imm: what later loads of i32 buffers with fill=reg write outside their region",
        sem.dma_fill, _nothing, _zero, _zero, "0; the DMA engine's register, no DRAM traffic",
    ),
    OpSpec(
        "dma.store.i", 0x0B, Queue.STORE, Unit.DMA, (ACC, BUF, OFF, ROWS, COLS, STRIDE),
        "i32 DRAM region = the accumulator words of rows acc..acc+rows-1, first cols columns, as they are"
        " (integer results; dma.store rounds f32 values instead)",
        sem.dma_store_words, _dma_acc_out, lambda cfg, a: _xfer(cfg, a[3], a[4], 4), lambda cfg: cfg.dma_latency,
        _DMA_COST,
    ),
    OpSpec(
        "dma.load.idx", 0x07, Queue.LOAD, Unit.DMA,
        (SLOT, BUF, OFF, _u("rows", 9, "indices to load", lo=1), _u("limit", 32, "indices at or past it are out of range")),
        "index buffer entries slot..slot+rows-1 = the i32 DRAM elements off..off+rows-1 (a gather's indices);"
        " one outside 0..limit-1 is marked out of range",
        sem.dma_load_idx, _nothing, lambda cfg, a: _xfer(cfg, 1, a[3], 4), lambda cfg: cfg.dma_latency,
        "ceil(rows*4 / dma_bytes_per_cycle) on the DRAM channel; + dma_latency",
    ),
    OpSpec(
        "dma.load.acc.g", 0x08, Queue.LOAD, Unit.DMA, (ACC, BUF, OFF, PAD_ROWS, COLS, PAD_STRIDE, SLOT, FILL),
        "accumulator row acc+r = DRAM[off + index[slot+r]*stride ...], cols elements (a gather; the index"
        " buffer from an earlier dma.load.idx), or `fill` for an index out of range; columns past cols = 0",
        sem.dma_load_acc_gather, _dma_acc_in, lambda cfg, a: a[3] * _xfer(cfg, 1, a[4], 4),
        lambda cfg: cfg.dma_latency,
        "rows*ceil(cols*4 / dma_bytes_per_cycle) on the DRAM channel (a burst per row); + dma_latency",
    ),
    OpSpec(
        "dma.store", 0x03, Queue.STORE, Unit.DMA, (ACC, BUF, OFF, ROWS, COLS, STRIDE, ACT),
        "DRAM region = act(accumulator rows acc..acc+rows-1, first cols columns); into an i32 buffer from f32"
        " accumulators each value is rounded to the nearest integer (ties to even), saturated, NaN as 0",
        sem.dma_store, _dma_acc_out, lambda cfg, a: _xfer(cfg, a[3], a[4], 4), lambda cfg: cfg.dma_latency,
        _DMA_COST,
    ),
    OpSpec(
        "mma", 0x10, Queue.COMPUTE, Unit.MATRIX, MMA_FIELDS,
        "acc[acc+i] (+)= sum_j sp[a+i][j] * sp[b+j] for i < m, j < k: an m x k by k x dim product",
        sem.mma, _mma, lambda cfg, a: a[3], lambda cfg: cfg.dim,
        "ws: dim (preload, only when B's rows differ from the weights held) + m; os: k per dim-row block"
        " (+ dim to drain a held block first); + dim (fill/drain)",
    ),
    _vector("vadd", 0x20, "binary", sem.binary(np.add), "acc[dst+i] = acc[src+i] + bmem[b + i*bstep]"),
    _vector("vsub", 0x21, "binary", sem.binary(np.subtract), "acc[dst+i] = acc[src+i] - bmem[b + i*bstep]"),
    _vector("vmul", 0x22, "binary", sem.binary(np.multiply), "acc[dst+i] = acc[src+i] * bmem[b + i*bstep]"),
    _vector("vmax", 0x23, "binary", sem.binary(np.maximum), "acc[dst+i] = max(acc[src+i], bmem[b + i*bstep])"),
    _vector("vadds", 0x28, "scalar", sem.scalar(np.add), "acc[dst+i] = acc[src+i] + imm"),
    _vector("vmuls", 0x29, "scalar", sem.scalar(np.multiply), "acc[dst+i] = acc[src+i] * imm"),
    _vector("vmaxs", 0x2A, "scalar", sem.scalar(np.maximum), "acc[dst+i] = max(acc[src+i], imm)  (relu: imm=0)"),
    _vector("vmin", 0x24, "binary", sem.binary(np.minimum), "acc[dst+i] = min(acc[src+i], bmem[b + i*bstep])"),
    _vector("vmins", 0x2B, "scalar", sem.scalar(np.minimum), "acc[dst+i] = min(acc[src+i], imm)"),
    _vector("vexp", 0x30, "slow", sem.unary(np.exp), "acc[dst+i] = exp(acc[src+i])  (f32 accumulators only)"),
    _vector("vrecip", 0x31, "slow", sem.unary(np.reciprocal), "acc[dst+i] = 1 / acc[src+i]  (f32 only)"),
    _vector("vlog", 0x32, "slow", sem.unary(np.log), "acc[dst+i] = log(acc[src+i])  (f32 only)"),
    _vector("vsqrt", 0x33, "slow", sem.unary(np.sqrt), "acc[dst+i] = sqrt(acc[src+i])  (f32 only)"),
    _vector("vrsqrt", 0x34, "slow", sem.unary(UNARY[UnaryOp.RSQRT]), "acc[dst+i] = 1 / sqrt(acc[src+i])  (f32 only)"),
    _vector("vtanh", 0x35, "slow", sem.unary(np.tanh), "acc[dst+i] = tanh(acc[src+i])  (f32 only)"),
    _vector("verf", 0x36, "slow", sem.unary(UNARY[UnaryOp.ERF]), "acc[dst+i] = erf(acc[src+i])  (f32 only)"),
    _vector("vsigmoid", 0x37, "slow", sem.unary(UNARY[UnaryOp.SIGMOID]), "acc[dst+i] = 1 / (1 + exp(-acc[src+i]))  (f32 only)"),
    _vector("vabs", 0x3A, "unary", sem.unary(np.abs), "acc[dst+i] = |acc[src+i]|"),
    _vector("vredsum", 0x38, "reduce", sem.reduce(np.add), "every element of acc[dst+i] = sum of acc[src+i]"),
    _vector("vredmax", 0x39, "reduce", sem.reduce(np.maximum), "every element of acc[dst+i] = max of acc[src+i]"),
    _vector("vredargmax", 0x3B, "reduce", sem.argmax, "every element of acc[dst+i] = the column of the first maximum of acc[src+i] (a NaN is the largest)"),
    _vector("vcmp", 0x2C, "compare", sem.compare(False), "acc[dst+i] = 1.0 where acc[src+i] cmp bmem[b + i*bstep], else 0.0"),
    _vector("vcmps", 0x2D, "compares", sem.compare(True), "acc[dst+i] = 1.0 where acc[src+i] cmp imm, else 0.0"),
    OpSpec(
        "vsel", 0x2E, Queue.COMPUTE, Unit.VECTOR, SEL_FIELDS,
        "acc[dst+i] = acc[a + i*astep] where acc[src + i*sstep] != 0, else acc[b + i*bstep]",
        sem.select, _vsel, _vcycles(_one), _vlat, _VEC_COST,
    ),
    OpSpec(
        "vscan", 0x3C, Queue.COMPUTE, Unit.VECTOR, SCAN_FIELDS,
        "acc[dst+i][j] = fn over acc[src+i] columns 0..j (fwd) or j..dim-1 (rev), combined with row c+i's"
        " column dim-1 (fwd) or 0 (rev) when cin=carry: a prefix scan along the lanes, chained chunk by chunk",
        sem.scan, _vscan, _vcycles(_one), _vred_lat,
        "rows*ceil(dim/vector_lanes); + vector_latency + ceil(log2(vector_lanes)) (a scan tree, as a reduction)",
    ),
    OpSpec(
        "viota", 0x2F, Queue.COMPUTE, Unit.VECTOR, (DST, ROWS, AXIS, IMM),
        "acc[dst+i][c] = imm + (0, c or i by axis): a constant row, column numbers or row numbers",
        sem.iota, _viota, lambda cfg, a: a[1] * cfg.vector_row_cycles, _vlat, _VEC_COST,
    ),
    # integer words: the vector unit's i32 operations, on the accumulator's 32-bit words (an i32 buffer
    # lands there as its bit patterns; vitof / vftoi convert), with the language's integer rules
    _vector("viadd", 0x40, "binary", sem.ibinary(BinaryOp.ADD), "i32 words: acc[dst+i] = acc[src+i] + bmem[b + i*bstep] (wraps)"),
    _vector("visub", 0x41, "binary", sem.ibinary(BinaryOp.SUB), "i32 words: acc[dst+i] = acc[src+i] - bmem[b + i*bstep] (wraps)"),
    _vector("vimul", 0x42, "binary", sem.ibinary(BinaryOp.MUL), "i32 words: acc[dst+i] = acc[src+i] * bmem[b + i*bstep] (wraps)"),
    _vector("vimax", 0x43, "binary", sem.ibinary(BinaryOp.MAX), "i32 words: acc[dst+i] = max(acc[src+i], bmem[b + i*bstep])"),
    _vector("vimin", 0x44, "binary", sem.ibinary(BinaryOp.MIN), "i32 words: acc[dst+i] = min(acc[src+i], bmem[b + i*bstep])"),
    _vector("vidiv", 0x45, "binary", sem.ibinary(BinaryOp.DIV), "i32 words: acc[dst+i] = acc[src+i] / bmem[b + i*bstep], toward zero (by 0: 0)"),
    _vector("vifdiv", 0x46, "binary", sem.ibinary(BinaryOp.FLOORDIV), "i32 words: acc[dst+i] = acc[src+i] // bmem[b + i*bstep], floor (by 0: 0)"),
    _vector("vimod", 0x47, "binary", sem.ibinary(BinaryOp.MOD), "i32 words: acc[dst+i] = acc[src+i] % bmem[b + i*bstep], floor modulo (by 0: 0)"),
    _vector("vicmp", 0x48, "compare", sem.icompare, "acc[dst+i] = 1.0 where the i32 words acc[src+i] cmp bmem[b + i*bstep], else 0.0"),
    _vector("viabs", 0x49, "unary", sem.iabs, "i32 words: acc[dst+i] = |acc[src+i]| (wraps at the least i32)"),
    _vector("viredsum", 0x4A, "reduce", sem.ireduce(np.add), "every i32 word of acc[dst+i] = sum of acc[src+i] (wraps)"),
    _vector("viredmax", 0x4B, "reduce", sem.ireduce(np.maximum), "every i32 word of acc[dst+i] = max of acc[src+i]"),
    _vector("viredmin", 0x4C, "reduce", sem.ireduce(np.minimum), "every i32 word of acc[dst+i] = min of acc[src+i]"),
    _vector("vitof", 0x4D, "unary", sem.to_float, "acc[dst+i] = the f32 nearest each i32 word of acc[src+i]"),
    _vector("vftoi", 0x4E, "unary", sem.to_int, "acc[dst+i] = each f32 of acc[src+i] as an i32 word, toward zero"),
    OpSpec(
        "viscan", 0x50, Queue.COMPUTE, Unit.VECTOR, SCAN_FIELDS,
        "vscan on i32 words (a sum or product wraps)",
        sem.scan_int, _vscan, _vcycles(_one), _vred_lat,
        "rows*ceil(dim/vector_lanes); + vector_latency + ceil(log2(vector_lanes)) (as vscan)",
    ),
    OpSpec(
        "viota.i", 0x4F, Queue.COMPUTE, Unit.VECTOR, (DST, ROWS, AXIS, IMMI),
        "i32 words acc[dst+i][c] = imm + (0, c or i by axis): an integer constant row, column or row numbers",
        sem.iota_int, _viota, lambda cfg, a: a[1] * cfg.vector_row_cycles, _vlat, _VEC_COST,
    ),
    OpSpec(
        "fence", 0x3E, None, Unit.CONTROL, (Q,),
        "queue q issues nothing more until every earlier instruction of q has retired",
        None, _nothing, _zero, _zero, "0; issues when queue q has drained",
    ),
    OpSpec(
        "halt", 0x3F, None, Unit.CONTROL, (),
        "end of the program; the program is done when every queue has drained",
        None, _nothing, _zero, _zero, "0",
    ),
)  # fmt: skip

OPS: dict[str, OpSpec] = {spec.mnemonic: spec for spec in _TABLE}
FLOAT_ONLY = frozenset({"vexp", "vrecip", "vlog", "vsqrt", "vrsqrt", "vtanh", "verf", "vsigmoid"})
BY_OPCODE: dict[int, OpSpec] = {spec.opcode: spec for spec in OPS.values()}


# -- instructions and programs ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction: `args` are the raw field values in the table's order (an f32 as its bits);
    `wait` / `signal` the tokens (0..NUM_TOKENS-1) it waits on before issue / signals at retirement."""

    op: str
    args: tuple[int, ...]
    wait: tuple[int, ...] = ()
    signal: tuple[int, ...] = ()

    @property
    def spec(self) -> OpSpec:
        return OPS[self.op]

    def operand(self, name: str) -> int | float | str:
        """The value of operand `name` as written in text (enum name, float, int)."""
        for f, raw in zip(self.spec.fields, self.args, strict=True):
            if f.name == name:
                return field_value(f, raw)
        raise KeyError(f"{self.op} has no operand {name!r}")

    def queue(self) -> Queue | None:
        spec = self.spec
        return Queue(self.args[0]) if spec.mnemonic == "fence" else spec.queue


def field_value(f: Field, raw: int) -> int | float | str:
    if f.kind == "enum":
        return f.choices[raw] if 0 <= raw < len(f.choices) else raw  # raw: an error message shows it
    if f.kind == "f32":
        return struct.unpack("<f", struct.pack("<I", raw))[0]
    if f.kind == "i32":
        return raw - (1 << 32) if raw >> 31 else raw
    return raw


def f32_bits(x: float) -> int:
    """The bits of `x` as an f32 (an `imm` operand's raw value); OverflowError past the f32 range."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def field_raw(op: str, f: Field, value: int | float | str) -> int:
    """The raw field value of `value`; EncodingError when it does not fit the field."""
    if type(value) is int and f.kind not in ("f32", "i32") and f.lo <= value <= f.hi:
        return value  # the common case first: make() builds programs of a million instructions
    if f.kind == "enum":
        if isinstance(value, str):
            if value not in f.choices:
                raise EncodingError(f"{op}: {f.name}={value} is not one of {', '.join(f.choices)}")
            return f.choices.index(value)
    elif f.kind == "f32":
        if isinstance(value, (str, bool)):
            raise EncodingError(f"{op}: {f.name} must be a number, not {value!r}")
        try:
            return f32_bits(float(value))
        except OverflowError:
            raise EncodingError(f"{op}: {f.name}={value} does not fit in an f32") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodingError(f"{op}: {f.name} must be an integer, not {value!r}")
    if f.kind == "i32":
        if not -(1 << 31) <= value < 1 << 31:
            raise EncodingError(f"{op}: {f.name}={value} does not fit in an i32")
        return value & 0xFFFFFFFF
    if not f.lo <= value <= f.hi:
        raise EncodingError(f"{op}: {f.name}={value} is out of range {f.lo}..{f.hi} ({f.bits}-bit field)")
    return value


def tokens(op: str, what: str, values: object) -> tuple[int, ...]:
    """Sorted unique token numbers; EncodingError for anything outside 0..NUM_TOKENS-1."""
    if values == ():
        return ()
    items = (values,) if isinstance(values, int) else tuple(values)  # type: ignore[arg-type]
    for t in items:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < NUM_TOKENS:
            raise EncodingError(f"{op}: {what} token {t!r} is not one of t0..t{NUM_TOKENS - 1}")
    return tuple(sorted(set(items)))


def make(op: str, *, wait: object = (), signal: object = (), **operands: int | float | str) -> Instr:
    """An instruction by operand name, every operand given: `make("mma", acc=0, a=0, b=64, m=16, k=16,
    mode="accumulate", wait=0, signal=(1,))`.  Enum operands by name, `buf` by buffer index, tokens
    as an int or a sequence of ints.  EncodingError for unknown names or values that do not fit."""
    spec = OPS.get(op)
    if spec is None:
        raise EncodingError(f"unknown instruction {op!r}; known: {', '.join(OPS)}")
    if len(operands) == len(spec.fields) and all(f.name in operands for f in spec.fields):
        args = tuple([field_raw(op, f, operands[f.name]) for f in spec.fields])
        return Instr(op, args, tokens(op, "wait", wait), tokens(op, "signal", signal))
    names = [f.name for f in spec.fields]
    unknown = sorted(set(operands) - set(names))
    if unknown:
        raise EncodingError(f"{op}: unknown operand {unknown[0]!r}; {op} takes {', '.join(names) or 'none'}")
    missing = [n for n in names if n not in operands]
    raise EncodingError(f"{op}: missing operand {missing[0]!r}; {op} takes {', '.join(names)}")


def encode_word(ins: Instr) -> int:
    """The 128-bit word of `ins` (as an int; `encode` in asm.py writes it little-endian).  EncodingError
    for an `Instr` built directly whose operands do not fit (make() checks them when building)."""
    spec = OPS.get(ins.op)
    if spec is None or len(ins.args) != len(spec.fields):
        raise EncodingError(f"{ins.op}: not an instruction with {len(ins.args)} operands")
    word = (
        spec.opcode
        | _mask(tokens(ins.op, "wait", ins.wait)) << 8
        | _mask(tokens(ins.op, "signal", ins.signal)) << 16
    )
    shift = HEADER_BITS
    for f, raw in zip(spec.fields, ins.args, strict=True):
        if type(raw) is not int or not f.lo <= raw <= f.hi:
            raise EncodingError(
                f"{ins.op}: {f.name}={raw!r} is out of range {f.lo}..{f.hi} ({f.bits}-bit field)"
            )
        word |= raw << shift
        shift += f.bits
    return word


def decode_word(word: int, index: int) -> Instr:
    """The instruction in `word`; EncodingError naming word `index` for an unknown opcode, reserved
    bits set or a field value outside its range."""
    opcode = word & 0xFF
    spec = BY_OPCODE.get(opcode)
    if spec is None:
        raise EncodingError(f"word {index}: unknown opcode 0x{opcode:02x}")
    shift, args = HEADER_BITS, []
    for f in spec.fields:
        raw = word >> shift & ((1 << f.bits) - 1)
        if not f.lo <= raw <= f.hi:
            raise EncodingError(
                f"word {index} ({spec.mnemonic}): {f.name}={raw} is out of range {f.lo}..{f.hi}"
            )
        args.append(raw)
        shift += f.bits
    if word >> shift:
        raise EncodingError(
            f"word {index} ({spec.mnemonic}): reserved bits {shift}..{WORD_BITS - 1} are not zero"
        )
    wait = tuple(t for t in range(NUM_TOKENS) if word >> (8 + t) & 1)
    signal = tuple(t for t in range(NUM_TOKENS) if word >> (16 + t) & 1)
    return Instr(spec.mnemonic, tuple(args), wait, signal)


def _mask(toks: tuple[int, ...]) -> int:
    mask = 0
    for t in toks:
        mask |= 1 << t
    return mask


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Buffer:
    """A DRAM tensor, row-major; `dma.*` instructions address it by element offset."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise EncodingError(f"buffer name {self.name!r} is not an identifier")
        if self.dtype not in DTYPES:
            raise EncodingError(f"buffer {self.name}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not self.shape or any(not isinstance(d, int) or d <= 0 for d in self.shape):
            raise EncodingError(f"buffer {self.name}: shape {self.shape} must be positive integers")
        # NOTE: the program file holds a u8 rank, u32 dimensions and a u16 name length
        if len(self.shape) > 0xFF or max(self.shape) > 0xFFFFFFFF or len(self.name) > 0xFFFF:
            raise EncodingError(
                f"buffer {self.name[:40]}: shape {self.shape} does not fit the program file"
                " (at most 255 dimensions of at most 4294967295 elements)"
            )

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * DTYPES[self.dtype]


@dataclass(frozen=True, slots=True)
class Program:
    """An instruction stream and the DRAM buffers its `buf` operands index (at most MAX_BUFFERS)."""

    buffers: tuple[Buffer, ...]
    instrs: tuple[Instr, ...]

    def __post_init__(self) -> None:
        names = [b.name for b in self.buffers]
        if len(names) > MAX_BUFFERS:
            raise EncodingError(f"{len(names)} buffers; a program has at most {MAX_BUFFERS}")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise EncodingError(f"buffer {dup!r} is declared twice")

    def buffer_id(self, name: str) -> int:
        for i, b in enumerate(self.buffers):
            if b.name == name:
                return i
        raise KeyError(name)
