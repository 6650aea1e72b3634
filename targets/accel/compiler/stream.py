"""Instructions under construction for one program section, with their tokens added afterwards
(codegen.py's contraction sections and vector_codegen.py's vector sections)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kcomp.errors import ScheduleError
from kcomp.targets.accel.compiler.nest import Access, Axis, inside
from kcomp.targets.accel.machine.errors import EncodingError
from kcomp.targets.accel.machine.isa import OPS, Instr

MAX_STRIDE = (1 << 24) - 1
MAX_PAD_ROWS = (1 << 10) - 1  # dma.load.pad's rows field
MAX_STEP = (1 << 8) - 1  # dma.load.t's step field
MAX_PAD_STRIDE = (1 << 22) - 1  # dma.load.pad's and dma.load.t's stride field

Item = list  # [mnemonic, raw operands, waits, signals]


class Stream:
    """Instructions under construction, in program order (each queue keeps its own order within
    it); tokens are added to an item after it is made, and `instrs` checks every field and freezes."""

    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, op: str, *args: int) -> Item:
        item = [op, args, (), ()]
        self.items.append(item)
        return item

    def instrs(self) -> list[Instr]:
        out = []
        for op, args, wait, signal in self.items:
            for f, v in zip(OPS[op].fields, args, strict=True):
                if not f.lo <= v <= f.hi:
                    raise EncodingError(
                        f"{op}: {f.name}={v} is out of range {f.lo}..{f.hi} ({f.bits}-bit field)"
                    )
            out.append(Instr(op, args, tuple(sorted(wait)), tuple(sorted(signal))))
        return out


def wait(item: Item, token: int) -> None:
    item[2] += (token,)


def signal(item: Item, token: int) -> None:
    item[3] += (token,)


def row_stride(access: Access, axis: Axis | None, rows: int) -> int:
    """The DRAM stride of `access`'s rows along `axis` (0 for one row); ScheduleError past 24 bits."""
    stride = access.stride(axis)
    if rows > 1 and stride > MAX_STRIDE:
        raise ScheduleError(
            f"{access.buffer.name}'s rows are {stride} elements apart; a DMA stride has 24 bits (at most {MAX_STRIDE})"
        )
    return stride if rows > 1 else 0


def load_region(
    out: Stream,
    op: str,
    row: int,
    buf: int,
    access: Access,
    at: dict[Axis, int],
    rows: tuple[Axis | None, int],
    cols: tuple[Axis | None, int],
    fill: int = 0,
) -> list[Item]:
    """The DMAs (`op`: dma.load or dma.load.acc) that bring `access`'s region (`rows`, `cols`: (axis,
    count) from `at`) to on-chip rows row..; a padded read's rows and columns outside the tensor, and
    the columns past the region, hold `fill` (`op`.pad's: 0 zero, 1 -inf, 2 inf; rows outside in
    loads of no DRAM bytes)."""
    (row_axis, n_rows), (_, n_cols) = rows, cols
    stride = row_stride(access, row_axis, n_rows)
    if not access.padded and not fill:
        return [out.add(op, row, buf, access.at(at), n_rows, n_cols, stride)]
    bounds = inside(access, at, rows, cols)
    if bounds is None:  # NOTE: each row has its own halo
        items = []
        for r in range(n_rows):
            values = at if row_axis is None else at | {row_axis: at.get(row_axis, 0) + r}
            items += load_region(out, op, row + r, buf, access, values, (row_axis, 1), cols, fill)
        return items
    r_lo, r_hi, c_lo, c_hi = bounds
    if c_lo == c_hi:
        r_lo = r_hi = 0
    items = []
    for r, count, data in _row_runs(r_lo, r_hi, n_rows):
        if not data:
            items.append(out.add(f"{op}.pad", row + r, buf, 0, count, 0, 0, 0, fill))
        else:
            values = dict(at)
            for axis, by in ((row_axis, r), (cols[0], c_lo)):
                if axis is not None:
                    values[axis] = values.get(axis, 0) + by
            items.append(out.add(f"{op}.pad", row + r, buf, access.at(values), count, c_hi - c_lo,
                                 row_stride(access, row_axis, count), c_lo, fill))  # fmt: skip
    return items


def _row_runs(r_lo: int, r_hi: int, n_rows: int):
    """(first row, rows, inside) runs of a region whose rows r_lo..r_hi-1 are inside the tensor, each
    at most one dma.load.pad long."""
    for first, end, data in ((0, r_lo, False), (r_lo, r_hi, True), (r_hi, n_rows, False)):
        for r in range(first, end, MAX_PAD_ROWS):
            yield r, min(MAX_PAD_ROWS, end - r), data


def load_tile(
    out: Stream,
    row: int,
    buf: int,
    access: Access,
    at: dict[Axis, int],
    rows: tuple[Axis | None, int],
    cols: tuple[Axis | None, int],
) -> list[Item]:
    """The DMAs that bring an operand tile to scratchpad rows row..: `load_region` when its columns
    are contiguous in DRAM, else transposing loads (dma.load.t, its rows `step` apart), whose rows
    outside a padded tensor are zeros (match.py refuses a padded column axis there)."""
    (row_axis, n_rows), (col_axis, n_cols) = rows, cols
    if col_axis is None or access.stride(col_axis) == 1:
        return load_region(out, "dma.load", row, buf, access, at, rows, cols)
    step = access.stride(row_axis) if n_rows > 1 else 1
    stride = access.stride(col_axis) if n_cols > 1 else 0
    if stride > MAX_PAD_STRIDE:
        raise ScheduleError(
            f"{access.buffer.name}'s tile columns are {stride} elements apart; dma.load.t's stride has 22 bits"
        )
    r_lo, r_hi = 0, n_rows
    if access.padded:
        bounds = inside(access, at, rows, cols)
        if bounds is None:  # NOTE: each row has its own halo
            return [
                item
                for r in range(n_rows)
                for item in load_tile(out, row + r, buf, access, at | {row_axis: at.get(row_axis, 0) + r}, (row_axis, 1), cols)
            ]  # fmt: skip
        r_lo, r_hi, c_lo, c_hi = bounds
        if c_lo == c_hi:
            r_lo = r_hi = 0
        elif (c_lo, c_hi) != (0, n_cols):
            raise ScheduleError(f"{access.buffer.name}'s tile leaves the tensor along its columns")
    items = []
    for r, count, data in _row_runs(r_lo, r_hi, n_rows):
        if not data:
            items.append(out.add("dma.load.pad", row + r, buf, 0, count, 0, 0, 0, 0))
        else:
            values = at if row_axis is None else at | {row_axis: at.get(row_axis, 0) + r}
            items.append(out.add("dma.load.t", row + r, buf, access.at(values), count, n_cols, stride, step))
    return items


def gather_rows(
    out: Stream, row: int, buf: dict[str, int], access: Access, at: dict[Axis, int], rows: Axis | None, n: int,
    cols: int, fill: int,
) -> list[Item]:  # fmt: skip
    """The DMAs that bring `n` rows of `cols` elements of a gathered read (`E[ids[t], d]`, one data-
    dependent dimension) to accumulator rows row..: the indices into the DMA engine's index buffer
    (dma.load.idx), then the rows through them (dma.load.acc.g; an index out of range reads `fill`).
    Rows whose indices are contiguous and whose offsets move only through them take one pair."""
    (g,) = access.gathers
    name, idx = buf[access.buffer.name], buf[g.index.buffer.name]
    if n == 1 or (g.index.stride(rows) == 1 and access.stride(rows) == 0):
        return [
            out.add("dma.load.idx", 0, idx, g.index.at(at), n, g.size),
            out.add("dma.load.acc.g", row, name, access.at(at), n, cols, g.stride, 0, fill),
        ]
    items = []
    for r in range(n):
        values = at | {rows: at.get(rows, 0) + r} if rows is not None else at
        items.append(out.add("dma.load.idx", r, idx, g.index.at(values), 1, g.size))
        items.append(out.add("dma.load.acc.g", row + r, name, access.at(values), 1, cols, g.stride, r, fill))
    return items


@dataclass
class Val:
    """A value in accumulator rows: `row` its first, `shared` when one row serves every row."""

    row: int
    shared: bool = False


@dataclass
class Step:
    ops: list[Item] = field(default_factory=list)
    loads: list[Item] = field(default_factory=list)
