"""One contraction group and its mapping -> accelerator instructions (a program section).

The tile loops run here, in Python, in the mapping's order (batch axes outermost, K-slices such as a
convolution's r, s innermost); each *step* multiplies one A tile (TM x TK) by one B tile (TK x TN)
into one C tile's accumulator rows.  A step loads only what changed: an operand tile equal to the
previous step's stays resident (order `i j` with one k tile keeps A, `j i` keeps B).  A C tile is
*opened* by its first step (the first mma overwrites, or a `dma.load.acc` brings its initial value:
a bias row with stride 0, a matrix, C itself) and *closed* by its last one (the epilogue on the
vector unit, then `dma.store`, relu fused into the store when it is the last op).

On-chip layout: A tiles as TK/dim column panels of TM rows, B tiles as TN/dim panels of TK rows, C
tiles as TN/dim panels of TM accumulator rows; double-buffered operands alternate between two
slots (each slot on its own bank when they fit that way); epilogue operands (scalar parameters as
rows of copies, row vectors v[j]) sit at the top of the scratchpad for the whole section.

Tokens (counting semaphores; every signal has exactly one consumer, so a section ends balanced):
    t0 DATA        load -> compute   a step's DMAs landed (its last DMA signals)
    t1 A_FREE      compute -> load   the mma that last reads an A slot retired
    t2 ACC_READY   compute -> store  a C tile is final (its last mma or epilogue op signals)
    t3 ACC_FREE    store -> compute  a C slot is stored; its next tile starts with an overwriting mma

Without vector epilogue ops, and when a C slot's consecutive tiles have the same panels, t2/t3 (and
t5) count *panels* instead of tiles: a panel's store starts when its last mma retires and the next
tile's first mma on that panel waits only for that panel's store, so a single-buffered C tile's
store overlaps the matrix work on its other panels instead of stalling the unit for the whole store.
    t4 B_FREE      compute -> load   the mma that last reads a B slot retired
    t5 ACC_LOADABLE store -> load    a C slot is stored; its next tile's initial value is a DMA
    t6 SECTION     store -> load     the previous section's results are in DRAM
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping as Values
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcomp.errors import ScheduleError
from kcomp.targets.accel.compiler.mapping import (
    Mapping,
    batch_axes,
    counts,
    footprint,
    i_rows,
    slice_count,
    stack_axis,
)
from kcomp.targets.accel.compiler.match import Contraction, VectorOp, transposed
from kcomp.targets.accel.compiler.nest import Access
from kcomp.targets.accel.compiler.sparse import live_rows, runs, zero_tile
from kcomp.targets.accel.compiler.stream import Item, Stream, load_tile, row_stride, signal, wait
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Instr, make

DATA, A_FREE, ACC_READY, ACC_FREE, B_FREE, ACC_LOADABLE, SECTION = range(7)
_BINARY = {"add": "vadd", "sub": "vsub", "mul": "vmul", "max": "vmax"}
_SCALAR = {"add": "vadds", "mul": "vmuls", "max": "vmaxs"}
RUN_GAP = 4  # zero rows of a sparse A tile streamed rather than split into another mma
Runs = tuple[tuple[int, int], ...]


@dataclass
class _Step:
    vals: dict  # batch and slice axis values
    i0: int
    rows: int
    j0: int
    cols: int
    k0: int
    depth: int
    a_off: int
    b_off: int
    c_off: int
    blocks: int = 1  # whole i ranges stacked (values of the stack axis from vals[stack] on)
    slice_no: int = 0  # which K-slice of a B tile that holds them all (Mapping.hold_b)
    b_key: int = 0  # B's offset without the slices when a B tile holds them all, else b_off
    new_a: bool = False
    new_b: bool = False
    a_no: int = 0  # which A load (0, 1, ...) this step reads
    b_no: int = 0
    c_no: int = 0  # which C tile (in opening order) this step updates
    opens: bool = False
    closes: bool = False

    @property
    def m(self) -> int:
        """Accumulator rows the step's mmas stream: its stacked blocks of rows."""
        return self.rows * self.blocks


def reserved_rows(g: Contraction, cfg: AccelConfig) -> int:
    """Scratchpad rows the epilogue operands take: one per scalar parameter, a row vector's rows."""
    return sum(rows for _, rows in _operands(g, cfg).values())


def _operands(g: Contraction, cfg: AccelConfig) -> dict[tuple, tuple[VectorOp, int]]:
    out: dict[tuple, tuple[VectorOp, int]] = {}
    for op in g.epilogue:
        if op.param is not None:
            out.setdefault(("param", op.param), (op, 1))
        elif op.vector is not None:
            key = ("vector", op.vector.buffer.name, op.vector.const)
            out.setdefault(key, (op, math.ceil(g.extent("j") / cfg.dim)))
    return out


def emit_section(
    g: Contraction,
    m: Mapping,
    cfg: AccelConfig,
    buf: dict[str, int],
    *,
    after_section: bool,
    before_section: bool,
    constants: Values[str, Any] | None = None,
) -> list[Instr]:
    """The instructions of group `g` under mapping `m` (which `check_fits` accepted).  `buf` maps
    DRAM buffer names to ids; `after_section`: wait for the previous section's stores first;
    `before_section`: signal SECTION when the last store retires; `constants`: operand values the
    compiler holds, whose zero tiles are skipped (compiler/sparse.py)."""
    dim = cfg.dim
    f = footprint(g, m, cfg)
    nbuf = f.buffers(m)
    tm, tk = i_rows(g, m)[1], min(m.tk, g.extent("k"))
    stack = stack_axis(g, m)
    steps = _steps(g, m, constants or {})
    per_slice = f.b_rows // (slice_count(g) if m.hold_b else 1)  # B rows of one K-slice
    slots_c = f.live * nbuf["C"]
    operands = _operands(g, cfg)
    top = cfg.sp_rows - sum(rows for _, rows in operands.values())
    a_slots, b_slots = _place(cfg, [f.a_rows] * nbuf["A"], [f.b_rows] * nbuf["B"], top)
    c_slots = [n * f.c_rows for n in range(slots_c)]
    n_a, n_b = steps[-1].a_no + 1, steps[-1].b_no + 1
    n_c = steps[-1].c_no + 1
    opening_a = {s.a_no for s in steps if s.opens}
    block = dim if cfg.dataflow == "os" else 1  # an output-stationary array streams whole blocks of rows
    lives = [_live_chunks(g, s, dim, constants or {}, s.a_no in opening_a, block) for s in steps]
    b_rows = _b_ranges(steps, lives, dim)
    cols_of = {s.c_no: s.cols for s in steps}
    act = 1 if g.relu_store else 0  # dma.store's act: none, relu
    epilogue = g.epilogue[:-1] if g.relu_store else g.epilogue
    rows_of: dict[tuple, int] = {}
    ids = (buf[g.A.buffer.name], buf[g.B.buffer.name], buf[g.C.buffer.name])
    out = Stream()

    def panelled(c_no: int) -> bool:
        """Whether C tile `c_no` hands its slot to the next tile panel by panel (module docstring)."""
        return not epilogue and cols_of[c_no] == cols_of.get(c_no + slots_c)

    prologue: list[Item] = []
    at = top
    for key, (op, rows) in operands.items():
        rows_of[key] = at
        if op.param is not None:
            prologue.append(out.add("dma.load", at, buf[op.param], 0, 1, dim, 0))
        else:
            assert op.vector is not None
            prologue += _vector_loads(out, op.vector, at, g.extent("j"), dim, buf)
        at += rows

    for n, s in enumerate(steps):
        nxt = steps[n + 1] if n + 1 < len(steps) else None
        a_slot, b_slot = a_slots[s.a_no % nbuf["A"]], b_slots[s.b_no % nbuf["B"]]
        c_slot = c_slots[s.c_no % slots_c]
        loads: list[Item] = prologue if n == 0 else []
        live = lives[n]
        if s.new_a:
            first = len(loads)
            for c, b in itertools.product(live, range(s.blocks)):
                for r0, count in c.runs:
                    at = s.vals | {g.k: s.k0 + c.kb} | ({g.i: s.i0 + r0} if g.i is not None else {})
                    if stack is not None:
                        at[stack] += b
                    loads += load_tile(out, a_slot + c.kb // dim * tm + b * s.rows + r0, ids[0], g.A, at,
                                       (g.i, count), (g.k, min(dim, s.depth - c.kb)))  # fmt: skip
            if s.a_no >= nbuf["A"]:
                wait(loads[first], A_FREE)
        if s.new_b:
            first = len(loads)
            held = list(enumerate(_slice_values(g))) if m.hold_b else [(0, {})]
            for (q, svals), nb in itertools.product(held, range(0, s.cols, dim)):
                for k0, depth in b_rows[s.b_no]:
                    at = s.vals | svals | {g.k: s.k0 + k0} | ({g.j: s.j0 + nb} if g.j is not None else {})
                    loads += load_tile(out, b_slot + q * per_slice + nb // dim * tk + k0, ids[1], g.B, at,
                                       (g.k, depth), (g.j, min(dim, s.cols - nb)))  # fmt: skip
            if s.b_no >= nbuf["B"]:
                wait(loads[first], B_FREE)
        if s.opens and g.init is not None:
            init = g.init
            off, stride, step = _offset(init, g, s), row_stride(init, g.i, s.rows), init.stride(g.j)
            op, stride = ("dma.load.acc.t", step) if transposed(init, g.j) else ("dma.load.acc", stride)
            per_panel = [
                [out.add(op, c_slot + nb // dim * tm + b * s.rows, buf[init.buffer.name],
                         off + nb * step + b * init.stride(stack), s.rows, min(dim, s.cols - nb), stride)
                 for b in range(s.blocks)]
                for nb in range(0, s.cols, dim)
            ]  # fmt: skip
            loads += [item for panel in per_panel for item in panel]
            if s.c_no >= slots_c:
                for panel in per_panel if panelled(s.c_no - slots_c) else per_panel[:1]:
                    wait(panel[0], ACC_LOADABLE)
        if loads and n == 0 and after_section:
            wait(loads[0], SECTION)  # NOTE: the first load; the prologue's when there is one
        if loads:
            signal(loads[-1], DATA)
        overwrite = s.opens and g.init is None
        panels = [
            [
                out.add("mma", c_slot + nb // dim * tm + r0, a_slot + c.kb // dim * tm + r0,
                        b_slot + s.slice_no * per_slice + nb // dim * tk + c.kb, count, min(dim, s.depth - c.kb), 0 if overwrite and fresh else 1)
                for c, (r0, count, fresh) in _mma_order(live, s.m, block)
            ]
            for nb in range(0, s.cols, dim)
        ]  # fmt: skip
        mmas = [mma for panel in panels for mma in panel]
        if loads:
            wait(mmas[0], DATA)
        if overwrite and s.c_no >= slots_c:
            for panel in panels if panelled(s.c_no - slots_c) else panels[:1]:
                wait(panel[0], ACC_FREE)
        if (nxt is None or nxt.a_no != s.a_no) and s.a_no + nbuf["A"] < n_a:
            signal(mmas[-1], A_FREE)
        if (nxt is None or nxt.b_no != s.b_no) and s.b_no + nbuf["B"] < n_b:
            signal(mmas[-1], B_FREE)
        if not s.closes:
            continue
        by_panel = not epilogue
        if by_panel:
            for panel in panels:
                signal(panel[-1], ACC_READY)
        else:
            last = mmas[-1]
            for op in epilogue:
                last = _vector(out, op, s, c_slot, tm, dim, rows_of) or last
            signal(last, ACC_READY)
        step = g.C.stride(g.j)
        op, stride = (
            ("dma.store.t", step) if transposed(g.C, g.j) else ("dma.store", row_stride(g.C, g.i, s.rows))
        )
        stores = [
            [out.add(op, c_slot + nb // dim * tm + b * s.rows, ids[2], s.c_off + nb * step + b * g.C.stride(stack),
                     s.rows, min(dim, s.cols - nb), stride, act)
             for b in range(s.blocks)]
            for nb in range(0, s.cols, dim)
        ]  # fmt: skip
        for panel in stores if by_panel else stores[:1]:
            wait(panel[0], ACC_READY)
        if s.c_no + slots_c < n_c:
            freed = ACC_LOADABLE if g.init is not None else ACC_FREE
            for panel in stores if panelled(s.c_no) else stores[-1:]:
                signal(panel[-1], freed)
        if nxt is None and before_section:
            signal(stores[-1][-1], SECTION)
    return out.instrs()


def _steps(g: Contraction, m: Mapping, constants: Values[str, Any]) -> list[_Step]:
    """Every step in execution order, with what it loads, opens and closes; a step whose operand
    tile is all zero in `constants` is left out (compiler/sparse.py)."""
    tiles = {
        r: [(s, min(m.tile(r), g.extent(r) - s), 0, 1) for s in range(0, g.extent(r), m.tile(r))]
        for r in "jk"
    }
    stack, rows = stack_axis(g, m), g.extent("i")
    if stack is None:
        tiles["i"] = [(s, min(m.tm, rows - s), 0, 1) for s in range(0, rows, m.tm)]
    else:  # NOTE: whole i ranges, th of them a tile
        tiles["i"] = [(0, rows, h, min(m.th, stack.extent - h)) for h in range(0, stack.extent, m.th)]
    order = list(m.order) + [r for r in "ijk" if r not in m.order]
    batch = batch_axes(g, m)
    steps: list[_Step] = []
    for bvals in itertools.product(*(range(a.extent) for a in batch)):
        for tile in itertools.product(*(tiles[r] for r in order)):
            at = dict(zip(order, tile, strict=True))
            (i0, rows, h0, blocks), (j0, cols, _, _), (k0, depth, _, _) = at["i"], at["j"], at["k"]
            for q, svals in enumerate(_slice_values(g)):
                vals = (
                    dict(zip(batch, bvals, strict=True)) | svals | ({stack: h0} if stack is not None else {})
                )
                b_off = g.B.at(vals) + g.B.stride(g.k) * k0 + g.B.stride(g.j) * j0
                steps.append(
                    _Step(
                        vals, i0, rows, j0, cols, k0, depth,
                        a_off=g.A.at(vals) + g.A.stride(g.i) * i0 + g.A.stride(g.k) * k0,
                        b_off=b_off,
                        c_off=g.C.at(vals) + g.C.stride(g.i) * i0 + g.C.stride(g.j) * j0,
                        blocks=blocks,
                        slice_no=q if m.hold_b else 0,
                        b_key=b_off - (g.B.at(svals) - g.B.const) if m.hold_b else b_off,  # slices out
                    )
                )  # fmt: skip
    if constants:
        steps = _live_steps(g, steps, constants)
    _link(steps)
    return steps


@dataclass(frozen=True)
class _Chunk:
    """One dim-deep chunk of a step's A tile: the row runs its DMA moves and the (first row, rows,
    fresh) parts its mmas stream, `fresh` rows touched first in this tile (an opening mma overwrites
    them)."""

    kb: int
    runs: Runs
    parts: tuple[tuple[int, int, bool], ...]


def _mma_order(live: list[_Chunk], rows: int, block: int) -> list[tuple[_Chunk, tuple[int, int, bool]]]:
    """A panel's mmas: chunk by chunk, each its parts (weight-stationary: B's chunk stays preloaded
    over its rows), or block by block of `block` rows, each its chunks (output-stationary: the block
    stays in the array while the chunks stream)."""
    if block == 1:
        return [(c, part) for c in live for part in c.parts]
    out = []
    for rb in range(0, rows, block):
        for c in live:
            for r0, count, fresh in c.parts:
                lo, hi = max(r0, rb), min(r0 + count, rb + block)
                if lo < hi:
                    out.append((c, (lo, hi - lo, fresh)))
    return out


def _slice_values(g: Contraction) -> list[dict]:
    """Every combination of the K-slice axes' values, in the order the steps visit them."""
    return [
        dict(zip(g.slices, v, strict=True)) for v in itertools.product(*(range(a.extent) for a in g.slices))
    ]


def _live_chunks(
    g: Contraction, s: _Step, dim: int, constants: Values[str, Any], opening: bool, block: int = 1
) -> list[_Chunk]:
    """The step's chunks whose A tile is not all zero, each streaming only its rows that hold a
    nonzero (compiler/sparse.py); the first chunk when every chunk is zero.  `opening`: some step
    reading this A tile opens a C tile, so every accumulator row must be overwritten once: the rows
    zero in the whole tile join the first chunk's, and a row's first part overwrites.  A function of
    the A tile alone, so a resident A tile has the rows the step that loaded it loaded.  `block`:
    rows are live in aligned blocks of that many (an output-stationary array streams whole blocks)."""
    chunks = range(0, s.depth, dim)
    if g.A.buffer.name not in constants:
        return [_Chunk(kb, ((0, s.rows),), ((0, s.m, kb == 0),)) for kb in chunks]
    masks = {}
    for kb in chunks:
        rows = live_rows(constants, g.A, s.a_off + kb * g.A.stride(g.k), (s.rows, g.A.stride(g.i)),
                         (min(dim, s.depth - kb), g.A.stride(g.k)))  # fmt: skip
        assert rows is not None
        if rows.any():
            masks[kb] = _blocks(rows, block)
    if not masks:
        masks[0] = np.zeros(s.rows, bool)
    if opening:
        first = next(iter(masks))
        masks[first] = masks[first] | ~np.logical_or.reduce(list(masks.values()))
    touched = np.zeros(s.rows, bool)
    out = []
    for kb, mask in masks.items():
        spans = runs(mask, RUN_GAP)
        parts = []
        for r0, count in spans:
            seen = touched[r0 : r0 + count]
            cuts = [0, *(np.flatnonzero(seen[1:] != seen[:-1]) + 1).tolist(), count]
            parts += [(r0 + a, b - a, not seen[a]) for a, b in itertools.pairwise(cuts)]
            touched[r0 : r0 + count] = True
        out.append(_Chunk(kb, spans, tuple(parts)))
    return out


def _blocks(live: np.ndarray, block: int) -> np.ndarray:
    """`live` with every aligned block of `block` rows live where one of its rows is."""
    if block == 1:
        return live
    padded = np.zeros(-(-live.size // block) * block, bool)
    padded[: live.size] = live
    return np.repeat(padded.reshape(-1, block).any(axis=1), block)[: live.size]


def _b_ranges(steps: list[_Step], lives: list[list[_Chunk]], dim: int) -> dict[int, Runs]:
    """Per B load, the (first row, rows) ranges it moves: the chunks some step reading it multiplies
    (all of them unless A's values are held and some of its chunks are zero in every such step)."""
    chunks: dict[int, set[int]] = {}
    for s, live in zip(steps, lives, strict=True):
        chunks.setdefault(s.b_no, set()).update(c.kb for c in live)
    out: dict[int, Runs] = {}
    for s in steps:
        if s.b_no in out:
            continue
        ranges: list[list[int]] = []
        for kb in sorted(chunks[s.b_no]):
            if ranges and ranges[-1][0] + ranges[-1][1] == kb:
                ranges[-1][1] += dim
            else:
                ranges.append([kb, dim])
        out[s.b_no] = tuple((k0, min(n, s.depth - k0)) for k0, n in ranges)
    return out


def _live_steps(g: Contraction, steps: list[_Step], constants: Values[str, Any]) -> list[_Step]:
    """The steps that multiply no all-zero operand tile, plus the first step of each C tile that
    has none (it zeroes or initialises the accumulator, so the tile is still stored)."""

    def dead(s: _Step) -> bool:
        a = zero_tile(constants, g.A, s.a_off, (s.rows, g.A.stride(g.i)), (s.depth, g.A.stride(g.k)))
        return a or zero_tile(constants, g.B, s.b_off, (s.depth, g.B.stride(g.k)), (s.cols, g.B.stride(g.j)))

    flags = [dead(s) for s in steps]
    live_tiles = {(s.c_off, s.rows, s.cols) for s, d in zip(steps, flags, strict=True) if not d}
    out, seen = [], set()
    for s, d in zip(steps, flags, strict=True):
        key = (s.c_off, s.rows, s.cols)
        if not d or (key not in live_tiles and key not in seen):
            out.append(s)
        seen.add(key)
    return out


def _link(steps: list[_Step]) -> None:
    """Number the loads and the C tiles; mark opening and closing steps."""
    last: dict[tuple, int] = {}
    tile_no: dict[tuple, int] = {}
    prev_a = prev_b = None
    a_no = b_no = -1
    for n, s in enumerate(steps):
        a_key, b_key, c_key = (
            (s.a_off, s.rows, s.blocks, s.depth),
            (s.b_key, s.depth, s.cols),
            (s.c_off, s.rows, s.blocks, s.cols),
        )
        if a_key != prev_a:
            a_no, s.new_a, prev_a = a_no + 1, True, a_key
        if b_key != prev_b:
            b_no, s.new_b, prev_b = b_no + 1, True, b_key
        s.a_no, s.b_no = a_no, b_no
        if c_key not in tile_no:
            tile_no[c_key] = len(tile_no)
            s.opens = True
        s.c_no = tile_no[c_key]
        last[c_key] = n
    for n in last.values():
        steps[n].closes = True
    closing = [steps[n].c_no for n in sorted(last.values())]
    if closing != sorted(closing):  # NOTE: slot reuse waits on the tile opened S tiles earlier
        raise ScheduleError("the tile order closes C tiles in another order than it opens them")


def _offset(access: Access, g: Contraction, s: _Step) -> int:
    return access.at(s.vals) + access.stride(g.i) * s.i0 + access.stride(g.j) * s.j0


def _vector_loads(out: Stream, v: Access, at: int, n: int, dim: int, buf: dict) -> list[Item]:
    """Row vector v[0..n) into scratchpad rows at.. (dim elements a row, the last one partial)."""
    items, b = [], buf[v.buffer.name]
    if n // dim:
        items.append(out.add("dma.load", at, b, v.const, n // dim, dim, dim))
    if n % dim:
        items.append(out.add("dma.load", at + n // dim, b, v.const + n // dim * dim, 1, n % dim, 0))
    return items


def _vector(out: Stream, op: VectorOp, s: _Step, slot: int, tm: int, dim: int, rows_of: dict) -> Item | None:
    """One epilogue op on each panel of the C tile in accumulator rows slot..; the last item."""
    item = None
    for nb in range(0, s.cols, dim):
        row = slot + nb // dim * tm
        if op.op == "exp":
            ins = make("vexp", dst=row, src=row, rows=s.m)
        elif op.imm is not None and op.op in _SCALAR:
            ins = make(_SCALAR[op.op], dst=row, src=row, rows=s.m, imm=op.imm)
        else:
            if op.param is not None:
                b = rows_of[("param", op.param)]
            else:
                assert op.vector is not None
                b = rows_of[("vector", op.vector.buffer.name, op.vector.const)] + (s.j0 + nb) // dim
            ins = make(_BINARY[op.op], dst=row, src=row, rows=s.m, b=b, bmem="sp", bstep=0)
        item = out.add(ins.op, *ins.args)
    return item


def _place(cfg: AccelConfig, a: list[int], b: list[int], top: int) -> tuple[list[int], list[int]]:
    """Scratchpad bases of the A and B slots below row `top`: each on a bank boundary when they all
    fit that way (a DMA into one slot never conflicts with the matrix unit reading another), else packed."""
    sizes, bases, at = a + b, [], 0
    for size in sizes:
        bases.append(at)
        at = math.ceil((at + size) / cfg.bank_rows) * cfg.bank_rows
    if bases and bases[-1] + sizes[-1] > top:
        bases = [sum(sizes[:n]) for n in range(len(sizes))]
    return bases[: len(a)], bases[len(a) :]


def check_counts(g: Contraction, m: Mapping) -> None:
    """NOTE: a sanity check kept cheap: the number of steps the loops will generate."""
    n = counts(g, m)
    total = n["i"] * n["j"] * n["k"] * math.prod(a.extent for a in (*batch_axes(g, m), *g.slices))
    if total > 5_000_000:
        raise ScheduleError(f"{m.describe(g)}: {total} tile steps; use larger tiles")
