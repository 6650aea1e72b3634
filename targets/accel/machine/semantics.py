"""What each instruction does to the data, in numpy: the functional half of the simulator.

`Machine` is the state: the scratchpad (`sp_rows x dim` inputs, f32 or i8 held as i32), the
accumulator (`acc_rows x dim`, f32 or i32) and DRAM (one flat view per buffer of the caller's arrays,
written in place).  Each function here is the `semantics` of an entry of isa.py's table and takes the
instruction's raw operands in table order.  They trust their operands: the simulator has checked
ranges and buffers before any runs.

Memories start out poisoned (NaN for f32, -128 / 0x40000000 for integers), so a program that reads
rows it never wrote produces a visibly wrong result instead of a lucky zero.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from kcomp import semantics as lang
from kcomp.dtypes import DType
from kcomp.expr import BinaryOp
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.errors import SimError

Semantics = Callable[["Machine", tuple[int, ...]], None]
SP_POISON = {"f32": np.nan, "i8": -128}
ACC_POISON = {"f32": np.nan, "i8": 0x40000000}
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
INDEX_ENTRIES = 256  # isa.py's index buffer
INDEX_POISON = -(2**40)  # an entry no dma.load.idx wrote: every gather through it leaves its buffer
INDEX_OUT = -1  # an index dma.load.idx found out of range: the gathered row is the fill
CMPS = (np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal)  # isa.CMP's order


class Machine:
    """The functional state of one run."""

    def __init__(self, cfg: AccelConfig, dram: list[np.ndarray]):
        self.cfg = cfg
        self.floating = cfg.dtype == "f32"
        dtype = np.float32 if self.floating else np.int32
        self.sp = np.full((cfg.sp_rows, cfg.dim), SP_POISON[cfg.dtype], dtype=dtype)
        self.acc = np.full((cfg.acc_rows, cfg.dim), ACC_POISON[cfg.dtype], dtype=dtype)
        self.dram = dram  # flat, C-contiguous views, indexed by buffer id
        self.index = np.full(INDEX_ENTRIES, INDEX_POISON, dtype=np.int64)  # the DMA engine's index buffer
        self.fill = 0x7FC00000  # the DMA engine's fill register (dma.fill, dma.fill.i): 32 bits, NaN


def region(flat: np.ndarray, off: int, rows: int, cols: int, stride: int) -> np.ndarray:
    """The rows x cols view of `flat` whose row i starts at element off + i*stride (writes go through)."""
    size = flat.itemsize
    return np.ndarray((rows, cols), flat.dtype, flat, off * size, (stride * size, size))


def dma_load(m: Machine, a: tuple[int, ...]) -> None:
    row, buf, off, rows, cols, stride = a
    dst = m.sp[row : row + rows]
    dst[:, :cols] = region(m.dram[buf], off, rows, cols, stride)
    if cols < m.cfg.dim:
        dst[:, cols:] = 0


FILLS = (0.0, float("-inf"), float("inf"))  # dma.load.pad's fill operand (3: the fill register)
REG = len(FILLS)


def words(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """`dst` as the type `src` is: an i32 buffer lands in f32 memory as its bit patterns (the words the
    integer vector ops read), anything else as it is."""
    return dst.view(np.int32) if src.dtype == np.int32 and dst.dtype == np.float32 else dst


def _padded(dst: np.ndarray, m: Machine, a: tuple[int, ...]) -> None:
    """dst (rows x dim) = the fill, with columns lead..lead+cols-1 the DRAM region (none when cols = 0)."""
    _, buf, off, rows, cols, stride, lead, fill = a
    dst = words(dst, m.dram[buf])
    dst[:] = fill_value(m, fill, dst.dtype)
    if cols:
        dst[:, lead : lead + cols] = region(m.dram[buf], off, rows, cols, stride)


def dma_load_pad(m: Machine, a: tuple[int, ...]) -> None:
    _padded(m.sp[a[0] : a[0] + a[3]], m, a)


def dma_load_acc_pad(m: Machine, a: tuple[int, ...]) -> None:
    _padded(m.acc[a[0] : a[0] + a[3]], m, a)


def dma_load_acc_t(m: Machine, a: tuple[int, ...]) -> None:
    """acc[row + r][c] = DRAM[off + c*stride + r]: a transposed region, zeros past cols."""
    row, buf, off, rows, cols, stride = a
    dst = words(m.acc[row : row + rows], m.dram[buf])
    dst[:, :cols] = region(m.dram[buf], off, cols, rows, stride).T
    if cols < m.cfg.dim:
        dst[:, cols:] = 0


def strided(flat: np.ndarray, off: int, rows: int, cols: int, step: int, stride: int) -> np.ndarray:
    """The rows x cols view of `flat` whose element (r, c) is flat[off + r*step + c*stride]: a
    transposed region when step is 1 (writes go through)."""
    size = flat.itemsize
    return np.ndarray((rows, cols), flat.dtype, flat, off * size, (step * size, stride * size))


def dma_load_t(m: Machine, a: tuple[int, ...]) -> None:
    """sp[row + r][c] = DRAM[off + c*stride + r*step]: a transposed region, zeros past cols."""
    row, buf, off, rows, cols, stride, step = a
    dst = m.sp[row : row + rows]
    dst[:, :cols] = strided(m.dram[buf], off, rows, cols, step, stride)
    if cols < m.cfg.dim:
        dst[:, cols:] = 0


def dma_store_t(m: Machine, a: tuple[int, ...]) -> None:
    """DRAM[off + c*stride + r] = act(acc[row + r][c]): the tile stored transposed, rounded into i32
    buffers as dma.store does."""
    row, buf, off, rows, cols, stride, act = a
    dma_store_into(m, m.acc[row : row + rows, :cols], strided(m.dram[buf], off, rows, cols, 1, stride), act)


def dma_load_acc(m: Machine, a: tuple[int, ...]) -> None:
    row, buf, off, rows, cols, stride = a
    dst = words(m.acc[row : row + rows], m.dram[buf])
    dst[:, :cols] = region(m.dram[buf], off, rows, cols, stride)
    if cols < m.cfg.dim:
        dst[:, cols:] = 0


def fill_value(m: Machine, fill: int, dtype: np.dtype | None = None) -> np.generic | float:
    """What `fill` writes into memory of `dtype`: a fixed value, or the fill register's 32 bits as
    that type (an f32, or an i32 for integer words)."""
    if fill != REG:
        return FILLS[fill]
    word = np.array([m.fill], np.uint32)
    return word.view(np.int32 if dtype is not None and dtype.kind == "i" else np.float32)[0]


def dma_fill(m: Machine, a: tuple[int, ...]) -> None:
    m.fill = a[0]  # NOTE: the imm's raw bits (an f32 for dma.fill, an i32 for dma.fill.i)


def dma_load_idx(m: Machine, a: tuple[int, ...]) -> None:
    slot, buf, off, rows, limit = a
    got = m.dram[buf][off : off + rows].astype(np.int64)
    m.index[slot : slot + rows] = np.where((got >= 0) & (got < limit), got, INDEX_OUT)


def dma_load_acc_gather(m: Machine, a: tuple[int, ...]) -> None:
    """acc[row + r][:cols] = DRAM[off + index[slot + r]*stride ...], the fill for an index out of range;
    SimError for an entry never loaded or a row outside the buffer."""
    row, buf, off, rows, cols, stride, slot, fill = a
    flat = m.dram[buf]
    index = m.index[slot : slot + rows]
    out = index == INDEX_OUT
    starts = off + np.where(out, 0, index) * stride
    bad = np.flatnonzero((index < INDEX_OUT) | (starts < 0) | (starts + cols > flat.size))
    if bad.size:
        r = int(bad[0])
        if index[r] < INDEX_OUT:
            raise SimError(f"gather row {r}: index buffer entry {slot + r} was never loaded (dma.load.idx)")
        raise SimError(
            f"gather row {r}: index {int(m.index[slot + r])} (entry {slot + r}) reaches elements"
            f" {int(starts[r])}..{int(starts[r]) + cols - 1} of a buffer of {flat.size}"
        )
    dst = words(m.acc[row : row + rows], flat)
    data = flat[starts[:, None] + np.arange(cols)]
    dst[:, :cols] = np.where(out[:, None], np.asarray(fill_value(m, fill, dst.dtype), dst.dtype), data)
    if cols < m.cfg.dim:
        dst[:, cols:] = 0


def dma_store(m: Machine, a: tuple[int, ...]) -> None:
    row, buf, off, rows, cols, stride, act = a
    dma_store_into(m, m.acc[row : row + rows, :cols], region(m.dram[buf], off, rows, cols, stride), act)


def dma_store_into(m: Machine, src: np.ndarray, dst: np.ndarray, act: int) -> None:
    """dst (a DRAM view) = act(src), rounded and saturated into an i32 buffer from f32 accumulators."""
    if act:
        src = np.maximum(src, 0)
    if m.floating and dst.dtype.kind == "i":  # NOTE: an index or count computed in f32 (argmax)
        src = np.clip(np.rint(np.nan_to_num(src, nan=0.0)), I32_MIN, I32_MAX)
    dst[...] = src


def dma_store_words(m: Machine, a: tuple[int, ...]) -> None:
    """The accumulator words, as they are, into an i32 buffer (integer results)."""
    row, buf, off, rows, cols, stride = a
    region(m.dram[buf], off, rows, cols, stride)[...] = m.acc[row : row + rows, :cols].view(np.int32)


def mma(m: Machine, a: tuple[int, ...]) -> None:
    acc, arow, brow, rows, k, mode = a
    product = m.sp[arow : arow + rows, :k] @ m.sp[brow : brow + k]
    if mode:
        m.acc[acc : acc + rows] += product
    else:
        m.acc[acc : acc + rows] = product


def binary(fn: np.ufunc) -> Semantics:
    """acc[dst+i] = fn(acc[src+i], bmem[b + i*bstep])."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows, b, bmem, bstep = a
        mem = m.acc if bmem else m.sp
        other = mem[b : b + rows] if bstep else mem[b : b + 1]
        fn(m.acc[src : src + rows], other, out=m.acc[dst : dst + rows])

    return run


def scalar(fn: np.ufunc) -> Semantics:
    """acc[dst+i] = fn(acc[src+i], imm); on i32 accumulators computed in f64, rounded half to even and
    saturated to the i32 range (the requantization rule)."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows, bits = a
        imm = struct.unpack("<f", struct.pack("<I", bits))[0]
        x = m.acc[src : src + rows]
        if m.floating:
            fn(x, np.float32(imm), out=m.acc[dst : dst + rows])
        else:
            m.acc[dst : dst + rows] = np.clip(np.rint(fn(x.astype(np.float64), imm)), I32_MIN, I32_MAX)

    return run


def unary(fn: Callable[[np.ndarray], np.ndarray]) -> Semantics:
    """acc[dst+i] = fn(acc[src+i]) (f32 accumulators; the simulator refuses these on i32)."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows = a
        m.acc[dst : dst + rows] = fn(m.acc[src : src + rows])

    return run


def reduce(fn: np.ufunc) -> Semantics:
    """Every element of acc[dst+i] = fn reduced over acc[src+i]."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows = a
        m.acc[dst : dst + rows] = fn.reduce(m.acc[src : src + rows], axis=1, keepdims=True)

    return run


def argmax(m: Machine, a: tuple[int, ...]) -> None:
    """Every element of acc[dst+i] = the column of the first maximum of acc[src+i] (NaN the largest)."""
    dst, src, rows = a
    m.acc[dst : dst + rows] = np.argmax(m.acc[src : src + rows], axis=1, keepdims=True)


SCAN_FNS = (np.add, np.multiply, np.maximum, np.minimum)


def scan(m: Machine, a: tuple[int, ...], words: bool = False) -> None:
    """acc[dst+i][j] = fn over acc[src+i][0..j] (fwd) or [j..dim-1] (rev), then combined with the
    carry row's edge column (its last for fwd, its first for rev) when cin is set; on i32 `words`."""
    dst, src, rows, c, fn_no, rev, cin = a
    fn = SCAN_FNS[fn_no]
    acc = m.acc.view(np.int32) if words else m.acc
    x = acc[src : src + rows]
    out = (
        fn.accumulate(x[:, ::-1], axis=1, dtype=x.dtype)[:, ::-1]
        if rev
        else fn.accumulate(x, axis=1, dtype=x.dtype)
    )
    if cin:
        edge = acc[c : c + rows, 0 if rev else -1]
        out = fn(edge[:, None], out)
    acc[dst : dst + rows] = out


def scan_int(m: Machine, a: tuple[int, ...]) -> None:
    scan(m, a, words=True)


def compare(with_imm: bool) -> Semantics:
    """acc[dst+i] = 1 where acc[src+i] cmp (bmem[b + i*bstep] or imm), else 0."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows = a[:3]
        if with_imm:
            other = np.float32(struct.unpack("<f", struct.pack("<I", a[3]))[0])
        else:
            b, bmem, bstep = a[3:6]
            mem = m.acc if bmem else m.sp
            other = mem[b : b + rows] if bstep else mem[b : b + 1]
        m.acc[dst : dst + rows] = CMPS[a[-1]](m.acc[src : src + rows], other)

    return run


def select(m: Machine, a: tuple[int, ...]) -> None:
    dst, mask, rows, x, y, sstep, astep, bstep = a
    pick = m.acc[mask : mask + (rows if sstep else 1)] != 0
    acc = _ints(m.acc)  # NOTE: the words as they are: f32 values and i32 words alike
    acc[dst : dst + rows] = np.where(
        pick, acc[x : x + (rows if astep else 1)], acc[y : y + (rows if bstep else 1)]
    )


def iota(m: Machine, a: tuple[int, ...]) -> None:
    """acc[dst+i][c] = imm (+ c for axis col, + i for axis row)."""
    dst, rows, axis, bits = a
    imm = struct.unpack("<f", struct.pack("<I", bits))[0]
    out = m.acc[dst : dst + rows]
    out[:] = imm
    if axis == 1:
        out += np.arange(m.cfg.dim, dtype=out.dtype)
    elif axis == 2:
        out += np.arange(rows, dtype=out.dtype)[:, None]


# -- integer words: the vector unit's i32 operations (on the accumulator's 32-bit words) --------------
def _ints(mem: np.ndarray) -> np.ndarray:
    return mem.view(np.int32)


def ibinary(op: BinaryOp) -> Semantics:
    """acc[dst+i] = op(acc[src+i], bmem[b + i*bstep]) on i32 words, with the language's integer rules
    (wrapping, floor division and modulo, division by zero giving 0: kcomp.semantics)."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows, b, bmem, bstep = a
        mem = _ints(m.acc if bmem else m.sp)
        other = mem[b : b + rows] if bstep else mem[b : b + 1]
        acc = _ints(m.acc)
        acc[dst : dst + rows] = lang.binary(op, acc[src : src + rows], other).astype(np.int32)

    return run


def icompare(m: Machine, a: tuple[int, ...]) -> None:
    """acc[dst+i] = 1 where the i32 words acc[src+i] cmp bmem[b + i*bstep], else 0 (a mask as vcmp's)."""
    dst, src, rows, b, bmem, bstep, c = a
    mem = _ints(m.acc if bmem else m.sp)
    other = mem[b : b + rows] if bstep else mem[b : b + 1]
    m.acc[dst : dst + rows] = CMPS[c](_ints(m.acc)[src : src + rows], other)


def iabs(m: Machine, a: tuple[int, ...]) -> None:
    dst, src, rows = a
    acc = _ints(m.acc)
    acc[dst : dst + rows] = np.abs(acc[src : src + rows])


def ireduce(fn: np.ufunc) -> Semantics:
    """Every word of acc[dst+i] = fn over the i32 words of acc[src+i] (a sum wraps)."""

    def run(m: Machine, a: tuple[int, ...]) -> None:
        dst, src, rows = a
        acc = _ints(m.acc)
        acc[dst : dst + rows] = fn.reduce(acc[src : src + rows], axis=1, keepdims=True, dtype=np.int32)

    return run


def to_float(m: Machine, a: tuple[int, ...]) -> None:
    """acc[dst+i] = the f32 nearest each i32 word of acc[src+i]."""
    dst, src, rows = a
    m.acc[dst : dst + rows] = _ints(m.acc)[src : src + rows].astype(np.float32)


def to_int(m: Machine, a: tuple[int, ...]) -> None:
    """acc[dst+i] = each f32 of acc[src+i] as an i32 word, as the language casts (toward zero)."""
    dst, src, rows = a
    _ints(m.acc)[dst : dst + rows] = lang.cast(m.acc[src : src + rows], DType.I32)


def iota_int(m: Machine, a: tuple[int, ...]) -> None:
    """The i32 words acc[dst+i][c] = imm (+ c for axis col, + i for axis row)."""
    dst, rows, axis, raw = a
    out = _ints(m.acc)[dst : dst + rows]
    out[:] = np.array([raw], np.uint32).view(np.int32)[0]
    if axis == 1:
        out += np.arange(m.cfg.dim, dtype=np.int32)
    elif axis == 2:
        out += np.arange(rows, dtype=np.int32)[:, None]
