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
    t4 B_FREE      compute -> load   the mma that last reads a B slot retired
    t5 ACC_LOADABLE store -> load    a C slot is stored; its next tile's initial value is a DMA
    t6 SECTION     store -> load     the previous section's results are in DRAM
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from kcomp.errors import ScheduleError
from kcomp.targets.accel.config import AccelConfig
from kcomp.targets.accel.isa import Instr, make
from kcomp.targets.accel.mapping import Mapping, counts, footprint
from kcomp.targets.accel.match import Access, Contraction, VectorOp

DATA, A_FREE, ACC_READY, ACC_FREE, B_FREE, ACC_LOADABLE, SECTION = range(7)
MAX_STRIDE = (1 << 24) - 1
_BINARY = {"add": "vadd", "sub": "vsub", "mul": "vmul", "max": "vmax"}
_SCALAR = {"add": "vadds", "mul": "vmuls", "max": "vmaxs"}


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
    new_a: bool = False
    new_b: bool = False
    a_no: int = 0  # which A load (0, 1, ...) this step reads
    b_no: int = 0
    c_no: int = 0  # which C tile (in opening order) this step updates
    opens: bool = False
    closes: bool = False


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
) -> list[Instr]:
    """The instructions of group `g` under mapping `m` (which `check_fits` accepted).  `buf` maps
    DRAM buffer names to ids; `after_section`: wait for the previous section's stores first;
    `before_section`: signal SECTION when the last store retires."""
    dim = cfg.dim
    f = footprint(g, m, cfg)
    nbuf = f.buffers(m)
    tm, tk = min(m.tm, g.extent("i")), min(m.tk, g.extent("k"))
    steps = _steps(g, m)
    slots_c = f.live * nbuf["C"]
    operands = _operands(g, cfg)
    top = cfg.sp_rows - sum(rows for _, rows in operands.values())
    a_slots, b_slots = _place(cfg, [f.a_rows] * nbuf["A"], [f.b_rows] * nbuf["B"], top)
    c_slots = [n * f.c_rows for n in range(slots_c)]
    n_a, n_b = steps[-1].a_no + 1, steps[-1].b_no + 1
    n_c = steps[-1].c_no + 1
    load_init = g.init is not None
    store_act = "relu" if g.relu_store else "none"
    epilogue = g.epilogue[:-1] if g.relu_store else g.epilogue
    rows_of: dict[tuple, int] = {}
    out: list[Instr] = []

    prologue: list[Instr] = []
    at = top
    for key, (op, rows) in operands.items():
        rows_of[key] = at
        if op.param is not None:
            prologue.append(make("dma.load", sp=at, buf=buf[op.param], off=0, rows=1, cols=dim, stride=0))
        else:
            assert op.vector is not None
            prologue += _vector_loads(op.vector, at, g.extent("j"), dim, buf)
        at += rows

    for n, s in enumerate(steps):
        nxt = steps[n + 1] if n + 1 < len(steps) else None
        a_slot, b_slot = a_slots[s.a_no % nbuf["A"]], b_slots[s.b_no % nbuf["B"]]
        c_slot = c_slots[s.c_no % slots_c]
        loads: list[Instr] = prologue if n == 0 else []
        if s.opens and load_init:
            assert g.init is not None
            init = _tile_loads(g.init, g, s, c_slot, tm, dim, buf)
            loads += _first(init, wait=ACC_LOADABLE if s.c_no >= slots_c else None)
        if s.new_a:
            panels = [
                make("dma.load", sp=a_slot + kb // dim * tm, buf=buf[g.A.buffer.name], off=s.a_off + kb,
                     rows=s.rows, cols=min(dim, s.depth - kb), stride=_stride(g.A, g.i, s.rows))
                for kb in range(0, s.depth, dim)
            ]  # fmt: skip
            loads += _first(panels, wait=A_FREE if s.a_no >= nbuf["A"] else None)
        if s.new_b:
            panels = [
                make("dma.load", sp=b_slot + nb // dim * tk, buf=buf[g.B.buffer.name],
                     off=s.b_off + nb * g.B.stride(g.j), rows=s.depth, cols=min(dim, s.cols - nb),
                     stride=_stride(g.B, g.k, s.depth))
                for nb in range(0, s.cols, dim)
            ]  # fmt: skip
            loads += _first(panels, wait=B_FREE if s.b_no >= nbuf["B"] else None)
        if loads and n == 0 and after_section:
            loads[0] = _with(loads[0], wait=(SECTION,))
        if loads:
            loads[-1] = _with(loads[-1], signal=(DATA,))
        overwrite = s.opens and not load_init
        computes = [
            make("mma", acc=c_slot + nb // dim * tm, a=a_slot + kb // dim * tm, b=b_slot + nb // dim * tk + kb,
                 m=s.rows, k=min(dim, s.depth - kb), mode="overwrite" if overwrite and kb == 0 else "accumulate")
            for nb in range(0, s.cols, dim)
            for kb in range(0, s.depth, dim)
        ]  # fmt: skip
        waits = ((DATA,) if loads else ()) + ((ACC_FREE,) if overwrite and s.c_no >= slots_c else ())
        computes[0] = _with(computes[0], wait=waits)
        frees = ()
        if (nxt is None or nxt.a_no != s.a_no) and s.a_no + nbuf["A"] < n_a:
            frees += (A_FREE,)
        if (nxt is None or nxt.b_no != s.b_no) and s.b_no + nbuf["B"] < n_b:
            frees += (B_FREE,)
        computes[-1] = _with(computes[-1], signal=frees)
        stores: list[Instr] = []
        if s.closes:
            for op in epilogue:
                computes += _vector(op, s, c_slot, tm, dim, rows_of)
            computes[-1] = _with(computes[-1], signal=(ACC_READY,))
            stores = [
                make("dma.store", acc=c_slot + nb // dim * tm, buf=buf[g.C.buffer.name], off=s.c_off + nb,
                     rows=s.rows, cols=min(dim, s.cols - nb), stride=_stride(g.C, g.i, s.rows), act=store_act)
                for nb in range(0, s.cols, dim)
            ]  # fmt: skip
            stores[0] = _with(stores[0], wait=(ACC_READY,))
            if s.c_no + slots_c < n_c:
                stores[-1] = _with(stores[-1], signal=(ACC_LOADABLE if load_init else ACC_FREE,))
            if nxt is None and before_section:
                stores[-1] = _with(stores[-1], signal=(SECTION,))
        out += loads + computes + stores
    return out


def _steps(g: Contraction, m: Mapping) -> list[_Step]:
    """Every step in execution order, with what it loads, opens and closes."""
    tiles = {
        r: [(s, min(m.tile(r), g.extent(r) - s)) for s in range(0, g.extent(r), m.tile(r))] for r in "ijk"
    }
    order = list(m.order) + [r for r in "ijk" if r not in m.order]
    steps: list[_Step] = []
    for bvals in itertools.product(*(range(a.extent) for a in g.batch)):
        for tile in itertools.product(*(tiles[r] for r in order)):
            at = dict(zip(order, tile, strict=True))
            (i0, rows), (j0, cols), (k0, depth) = at["i"], at["j"], at["k"]
            for svals in itertools.product(*(range(a.extent) for a in g.slices)):
                vals = dict(zip(g.batch, bvals, strict=True)) | dict(zip(g.slices, svals, strict=True))
                steps.append(
                    _Step(
                        vals, i0, rows, j0, cols, k0, depth,
                        a_off=g.A.at(vals) + g.A.stride(g.i) * i0 + k0,
                        b_off=g.B.at(vals) + g.B.stride(g.k) * k0 + g.B.stride(g.j) * j0,
                        c_off=g.C.at(vals) + g.C.stride(g.i) * i0 + g.C.stride(g.j) * j0,
                    )
                )  # fmt: skip
    _link(steps)
    return steps


def _link(steps: list[_Step]) -> None:
    """Number the loads and the C tiles; mark opening and closing steps."""
    last: dict[tuple, int] = {}
    tile_no: dict[tuple, int] = {}
    prev_a = prev_b = None
    a_no = b_no = -1
    for n, s in enumerate(steps):
        a_key, b_key, c_key = (
            (s.a_off, s.rows, s.depth),
            (s.b_off, s.depth, s.cols),
            (s.c_off, s.rows, s.cols),
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


def _tile_loads(
    src: Access, g: Contraction, s: _Step, base: int, tm: int, dim: int, buf: dict
) -> list[Instr]:
    """A C-shaped tile (rows x cols) of `src` into accumulator rows base.., panel by panel."""
    off = _offset(src, g, s)
    return [
        make("dma.load.acc", acc=base + nb // dim * tm, buf=buf[src.buffer.name], off=off + nb * src.stride(g.j),
             rows=s.rows, cols=min(dim, s.cols - nb), stride=_stride(src, g.i, s.rows))
        for nb in range(0, s.cols, dim)
    ]  # fmt: skip


def _vector_loads(v: Access, at: int, n: int, dim: int, buf: dict) -> list[Instr]:
    """Row vector v[0..n) into scratchpad rows at.. (dim elements a row, the last one partial)."""
    out = []
    if n // dim:
        out.append(
            make("dma.load", sp=at, buf=buf[v.buffer.name], off=v.const, rows=n // dim, cols=dim, stride=dim)
        )
    if n % dim:
        out.append(
            make("dma.load", sp=at + n // dim, buf=buf[v.buffer.name], off=v.const + n // dim * dim, rows=1,
                 cols=n % dim, stride=0)
        )  # fmt: skip
    return out


def _vector(op: VectorOp, s: _Step, slot: int, tm: int, dim: int, rows_of: dict) -> list[Instr]:
    """One epilogue op on each panel of the C tile in accumulator rows slot.."""
    out = []
    for nb in range(0, s.cols, dim):
        row = slot + nb // dim * tm
        if op.op == "exp":
            out.append(make("vexp", dst=row, src=row, rows=s.rows))
        elif op.imm is not None and op.op in _SCALAR:
            out.append(make(_SCALAR[op.op], dst=row, src=row, rows=s.rows, imm=op.imm))
        else:
            if op.param is not None:
                b = rows_of[("param", op.param)]
            else:
                assert op.vector is not None
                b = rows_of[("vector", op.vector.buffer.name, op.vector.const)] + (s.j0 + nb) // dim
            out.append(make(_BINARY[op.op], dst=row, src=row, rows=s.rows, b=b, bmem="sp", bstep=0))
    return out


def _stride(access: Access, axis, rows: int) -> int:  # type: ignore[no-untyped-def]
    stride = access.stride(axis)
    if rows > 1 and stride > MAX_STRIDE:
        raise ScheduleError(
            f"{access.buffer.name}'s rows are {stride} elements apart; a DMA stride has 24 bits (at most {MAX_STRIDE})"
        )
    return stride if rows > 1 else 0


def _first(instrs: list[Instr], *, wait: int | None) -> list[Instr]:
    if instrs and wait is not None:
        instrs[0] = _with(instrs[0], wait=(wait,))
    return instrs


def _with(ins: Instr, *, wait: tuple[int, ...] = (), signal: tuple[int, ...] = ()) -> Instr:
    return Instr(ins.op, ins.args, tuple(sorted({*ins.wait, *wait})), tuple(sorted({*ins.signal, *signal})))


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
    total = n["i"] * n["j"] * n["k"] * math.prod(a.extent for a in (*g.batch, *g.slices))
    if total > 5_000_000:
        raise ScheduleError(f"{m.describe(g)}: {total} tile steps; use larger tiles")
