"""How a contraction is laid onto the accelerator: tile sizes, tile order, double buffering.

A `Mapping` is what the accelerator schedule of a contraction says:

    tile i j k TM TN TK      C tiles of TM x TN, reduced in TK-deep steps (TN, TK: multiples of the
                             matrix unit's width, or the whole extent; TM: any size)
    tile h i j k TH ...      with the group's stack axis h (match.py's i2): TH whole i ranges stacked
                             as one tile of accumulator rows, one preload of B streaming them all
    reorder j_o i_o k_o      the order of the tile loops: which operand stays resident
    double_buffer [T...]     two on-chip buffers per tile (of every operand, or the named ones)

`mapping_of` reads it back from a scheduled nest (tile sizes are the loops' extents inside the
outer tile loops, the order is theirs) and the schedule (double buffering).  `check_fits` says
which memory overflows and by how much.  A B tile of a product with K-slices (a convolution's
r, s) holds every slice when one B tile serves the whole product and it fits (`hold_weights`, a
rule): the weights are then loaded once.  Without tiles, `default_mapping` chooses (rule-based):
the tiles that fit with double buffering whose estimated cycles (`estimate`: the matrix unit's
preload + streaming against the DRAM channel's bytes) are fewest, the accumulator tile resident
over k.  `naive_mapping` is the baseline (DIM-sized tiles, one buffer each); `mapping_schedule`
writes mappings as schedule steps (the tuner's decisions are in tuning.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping as Mapping_
from dataclasses import dataclass, field, replace
from typing import Any

from kcomp.errors import ScheduleError
from kcomp.loops import LoopNest
from kcomp.passes import apply
from kcomp.schedule import DoubleBuffer, Reorder, Schedule, Step, Tile
from kcomp.targets.accel.compiler.match import Contraction, match, span
from kcomp.targets.accel.compiler.nest import Axis
from kcomp.targets.accel.compiler.sparse import DENSE, Liveness
from kcomp.targets.accel.machine.config import AccelConfig

OPERANDS = ("A", "B", "C")
ALL = frozenset(OPERANDS)


@dataclass(frozen=True)
class Mapping:
    """Tiles (clamped to the extents), the tile loops' order (roles present, outermost first) and
    which operands get two buffers."""

    tm: int
    tn: int
    tk: int
    order: tuple[str, ...] = ("i", "j", "k")
    double_buffer: frozenset[str] = field(default=ALL)
    depth: int = 2  # slots of a buffered A or B (3: the DMA runs two steps ahead, `default_mapping`)
    th: int = 1  # whole i ranges of the stack axis per tile (match.py's i2)
    hold_b: bool = False  # a B tile holds every K-slice (`hold_weights`)

    def describe(self, g: Contraction) -> str:
        roles = [r for r in ("i", "j", "k") if g.role(r) is not None]
        names = " ".join(base_name(g, r) for r in roles)
        sizes = " ".join(str(self.tile(r)) for r in roles)
        stack = stack_axis(g, self)
        if stack is not None:
            names, sizes = f"{_loop_name(stack)} {names}", f"{self.th} {sizes}"
        return f"tile {names} {sizes}"

    def tile(self, role: str) -> int:
        return {"i": self.tm, "j": self.tn, "k": self.tk}[role]


def base_name(g: Contraction, role: str) -> str:
    """The name a schedule's `tile` step gives the role's loop (the split loop's name)."""
    axis = g.role(role)
    assert axis is not None
    return _loop_name(axis)


def _loop_name(axis: Axis) -> str:
    return axis.name[:-2] if axis.tile is not None and axis.name.endswith("_o") else axis.name


def stack_axis(g: Contraction, m: Mapping) -> Axis | None:
    """The axis whose values `m` stacks into one tile (m.th of them), or None."""
    return (g.i2 or g.stack) if m.th > 1 else None


def batch_axes(g: Contraction, m: Mapping) -> tuple[Axis, ...]:
    """The axes whose values run one product after another under `m` (a split i2 that stacks
    nothing among them)."""
    stack = stack_axis(g, m)
    extra = (g.i2,) if g.i2 is not None and stack is None else ()
    return tuple(a for a in (*extra, *g.batch) if a is not stack)


def i_rows(g: Contraction, m: Mapping) -> tuple[int, int]:
    """(accumulator rows of one product, rows of one i tile): with a stack axis, its values' whole i
    ranges one after another."""
    rows, stack = g.extent("i"), stack_axis(g, m)
    if stack is None:
        return rows, min(m.tm, rows)
    return stack.extent * rows, min(m.th, stack.extent) * rows


def slice_count(g: Contraction) -> int:
    return math.prod(a.extent for a in g.slices)


# -- sizes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """On-chip rows one tile of each operand takes, and how many tiles of C are live at once."""

    a_rows: int
    b_rows: int
    c_rows: int
    live: int  # C tiles open at once (1 when the reduction is the innermost tile loop)

    def buffers(self, m: Mapping) -> dict[str, int]:
        return {op: (m.depth if op != "C" else 2) if op in m.double_buffer else 1 for op in OPERANDS}


def counts(g: Contraction, m: Mapping) -> dict[str, int]:
    """Tiles per role."""
    rows, tile = i_rows(g, m)
    return {"i": math.ceil(rows / tile)} | {r: math.ceil(g.extent(r) / m.tile(r)) for r in ("j", "k")}


def footprint(g: Contraction, m: Mapping, cfg: AccelConfig) -> Footprint:
    dim = cfg.dim
    tm, tn, tk = i_rows(g, m)[1], min(m.tn, g.extent("j")), min(m.tk, g.extent("k"))
    n = counts(g, m)
    live = 1
    if n["k"] > 1 and "k" in m.order:
        for r in m.order[m.order.index("k") + 1 :]:
            live *= n[r]
    b_rows = tk * math.ceil(tn / dim) * (slice_count(g) if m.hold_b else 1)
    return Footprint(tm * math.ceil(tk / dim), b_rows, tm * math.ceil(tn / dim), live)


def _kib(nbytes: int) -> str:
    kib = nbytes / 1024
    return f"{kib:g} KiB" if kib == int(kib) or kib >= 10 else f"{kib:.1f} KiB"


def check_fits(g: Contraction, m: Mapping, cfg: AccelConfig, reserved_rows: int = 0) -> None:
    """ScheduleError unless the mapping is legal and its tiles fit the scratchpad and accumulator."""
    dim = cfg.dim
    for role in ("j", "k"):
        size, extent = m.tile(role), g.extent(role)
        if g.role(role) is not None and size % dim and size < extent:
            raise ScheduleError(
                f"{m.describe(g)}: the {base_name(g, role)} tile {size} must be a multiple of {dim} (the matrix"
                f" unit's width) or the whole extent {extent}"
            )
    if min(m.tm, m.tn, m.tk, m.th) < 1:
        raise ScheduleError(f"{m.describe(g)}: tile sizes must be positive")
    if m.th > 1 and (g.stack is None or m.tm < g.extent("i")):
        raise ScheduleError(
            f"{m.describe(g)}: only whole {base_name(g, 'i')} ranges stack (tile {base_name(g, 'i')} by"
            f" {g.extent('i')})"
            if g.stack is not None
            else f"{m.describe(g)}: no output loop of A and C outside B to stack"
        )
    f, nbuf = footprint(g, m, cfg), footprint(g, m, cfg).buffers(m)
    row = dim * cfg.input_bytes
    need = (f.a_rows * nbuf["A"] + f.b_rows * nbuf["B"] + reserved_rows) * row
    if need > cfg.sp_rows * row:
        doubled = [op for op in "AB" if nbuf[op] > 1]
        parts = f"A {_kib(f.a_rows * row)} + B {_kib(f.b_rows * row)}"
        if len(doubled) == 2:
            parts += f", x{m.depth} for double buffering"
        elif doubled:
            parts += f", {doubled[0]} x{m.depth} for double buffering"
        if reserved_rows:
            parts += f", + {_kib(reserved_rows * row)} of epilogue operands"
        raise ScheduleError(
            f"{m.describe(g)} needs {_kib(need)} of scratchpad ({parts}); this accelerator has"
            f" {_kib(cfg.sp_rows * row)} ({_kib(need - cfg.sp_rows * row)} too much): use smaller tiles"
        )
    acc_row = dim * 4
    need = f.c_rows * f.live * nbuf["C"] * acc_row
    if need > cfg.acc_rows * acc_row:
        parts = f"C {_kib(f.c_rows * acc_row)}"
        if f.live > 1:
            parts += f" x{f.live} tiles live across the reduction (order {' '.join(m.order)})"
        if nbuf["C"] == 2:
            parts += ", x2 for double buffering"
        raise ScheduleError(
            f"{m.describe(g)} needs {_kib(need)} of accumulator ({parts}); this accelerator has"
            f" {_kib(cfg.acc_rows * acc_row)} ({_kib(need - cfg.acc_rows * acc_row)} too much): use smaller"
            " tiles" + (" or put the reduction innermost" if f.live > 1 else "")
        )


def fits(g: Contraction, m: Mapping, cfg: AccelConfig, reserved_rows: int = 0) -> bool:
    try:
        check_fits(g, m, cfg, reserved_rows)
    except ScheduleError:
        return False
    return True


# -- reading a mapping from a schedule ----------------------------------------------------------------
def mapping_of(g: Contraction, doubled: frozenset[str] | None) -> Mapping | None:
    """The mapping a scheduled nest spells for `g`: tiles from its split axes (an unsplit axis is one
    whole tile), the order of the outer loops; None when nothing is tiled (the default applies).
    `doubled`: the operands the schedule double-buffers; None: unknown (every one that fits)."""
    roles = [r for r in ("i", "j", "k") if g.role(r) is not None]
    if all(g.role(r).tile is None for r in roles) and g.i2 is None:  # type: ignore[union-attr]
        return None
    tiles = {r: (g.role(r).tile or g.extent(r)) if g.role(r) is not None else 1 for r in ("i", "j", "k")}  # type: ignore[union-attr]
    order = tuple(sorted(roles, key=lambda r: g.role(r).position))  # type: ignore[union-attr]
    th = (g.i2.tile or 1) if g.i2 is not None else 1
    return Mapping(tiles["i"], tiles["j"], tiles["k"], order, ALL if doubled is None else doubled, th=th)


def doubled_operands(g: Contraction, schedule: Schedule | None) -> frozenset[str] | None:
    """The operands (A, B, C) the schedule's double_buffer steps name for `g`; None without a schedule."""
    if schedule is None:
        return None
    out: set[str] = set()
    by_tensor = {name: op for op, name in g.tensors.items()}
    for step in schedule.steps:
        if isinstance(step, DoubleBuffer):
            out |= {by_tensor[t] for t in step.tensors if t in by_tensor} if step.tensors else ALL
    return frozenset(out)


def fit_buffers(g: Contraction, m: Mapping, cfg: AccelConfig, reserved_rows: int = 0) -> Mapping:
    """`m` double-buffering as many of its operands as fit twice (A and B, whose loads overlap the
    matrix unit, before C, whose stores do)."""
    for keep in ("ABC", "AB", "AC", "BC", "A", "B", "C"):
        if set(keep) <= m.double_buffer and fits(
            g, candidate := replace(m, double_buffer=frozenset(keep)), cfg, reserved_rows
        ):
            return candidate
    return replace(m, double_buffer=frozenset())


# -- choosing -----------------------------------------------------------------------------------
def estimate(g: Contraction, m: Mapping, cfg: AccelConfig, live: Liveness = DENSE) -> float:
    """Estimated cycles: matrix-unit work (weight-stationary: a preload of dim cycles per mma, then
    one row a cycle; output-stationary: a drain per block visit, then k cycles per chunk)
    against the DRAM channel's bytes, overlapped when double-buffered.  `live`: the shares of A that
    are not all zero (a sparse weight's; codegen skips the rest: compiler/sparse.py)."""
    dim, n = cfg.dim, counts(g, m)
    batches = math.prod(a.extent for a in batch_axes(g, m))
    slices = slice_count(g)
    (M, TM), N, K = i_rows(g, m), g.extent("j"), g.extent("k")
    panels = sum(math.ceil(min(m.tn, N - j0) / dim) for j0 in range(0, N, m.tn))
    chunks = sum(math.ceil(min(m.tk, K - k0) / dim) for k0 in range(0, K, m.tk))
    if cfg.dataflow == "os":
        # each block of dim rows: drained per step that visits it, k cycles per live chunk
        blocks = sum(math.ceil(min(TM, M - i0) / dim) for i0 in range(0, M, TM))
        per_panel = blocks * (n["k"] * dim * live.steps + K * live.tiles)
    else:
        # a preload per live chunk of each i tile, its live rows streamed; the first chunk of a C tile whole
        per_panel = chunks * (n["i"] * dim * live.chunks + M * live.rows) + M * (1 - live.rows) / slices
    compute = batches * slices * panels * per_panel
    inner = [r for r in reversed(m.order) if n[r] > 1]
    innermost = inner[0] if inner and slices == 1 else None
    ib = cfg.input_bytes
    a_bytes = M * K * ib * (1 if innermost == "j" else n["j"]) * live.rows * span(g.A, g.i, g.k)
    b_bytes = K * N * ib * (1 if innermost == "i" else n["i"]) * live.chunks * span(g.B, g.k, g.j)
    c_bytes = M * N * 4 * (2 if g.init is not None else 1)
    b_loads = batches * slices * b_bytes
    once = m.hold_b and _one_b_tile(g, m)
    if once:
        b_loads = slices * K * N * ib * span(g.B, g.k, g.j)  # NOTE: one B tile, loaded once
    dma = (batches * (slices * a_bytes + c_bytes) + b_loads) / cfg.dma_bytes_per_cycle
    tiles = batches * n["i"] * n["j"]
    first = (
        (TM * min(m.tk, K) + min(m.tk, K) * min(m.tn, N) * (slices if m.hold_b else 1))
        * ib
        / cfg.dma_bytes_per_cycle
    )
    store, lat = TM * min(m.tn, N) * 4 / cfg.dma_bytes_per_cycle, cfg.dma_latency
    steps = max(1.0, batches * slices * n["i"] * n["j"] * n["k"] * live.steps)
    per_step = (dma - batches * c_bytes / cfg.dma_bytes_per_cycle) / steps  # operand loads of a step
    if "A" in m.double_buffer and ("B" in m.double_buffer or once):
        # NOTE: with two buffers the loader runs one step ahead; a C tile's store takes the channel
        # when a tile closes, delaying the step after next: the compute stalls unless a step's
        # matrix work covers the store plus that step's loads and their latency.  A step's loads are
        # issued when the step before it starts, so a step lasts at least its loads plus their latency.
        total = max(compute, dma, steps * (per_step + lat)) + tiles * max(
            0.0, store + per_step + lat - compute / steps
        )
    else:
        total = compute + dma
    # A C slot serves again once its tile's matrix work, the drain, the store and (for an initial
    # value loaded by DMA) the next tile's load are done; with one slot the next tile's operand
    # loads also queue behind the store.
    recycle = compute / tiles + dim + store + lat + (store + lat if g.init is not None else 0)
    if "C" in m.double_buffer:
        recycle /= 2
    elif len(g.epilogue) == (1 if g.relu_store else 0):
        # no vector ops: the slot is handed over panel by panel (codegen), so only the last panel's
        # store (and initial load) is exposed
        c_panels = math.ceil(min(m.tn, N) / dim)
        recycle = compute / tiles + dim + (store + lat) / c_panels + lat * (g.init is not None)
    else:
        recycle += per_step + lat
    return max(total, tiles * recycle) + first + lat


def tile_candidates(extent: int, dim: int, any_size: bool) -> list[int]:
    """Tile sizes to try: dim times powers of two below the extent, and the extent itself."""
    out = {extent}
    size = dim
    while size < extent:
        out.add(size)
        size *= 2
    if any_size:
        out |= {s for s in (dim // 2, dim // 4) if 0 < s < extent}
    return sorted(out)


def default_mapping(
    g: Contraction, cfg: AccelConfig, reserved_rows: int = 0, constants: Mapping_[str, Any] | None = None
) -> Mapping:
    """The rule-based choice: among tiles that fit (double-buffered where they can be), the fewest
    estimated cycles with the accumulator tile resident over k (k the innermost tile loop); ties go to
    fewer, larger tiles.  With A's values held (`constants`, a sparse weight), the work counts only
    its tiles that are not all zero."""
    best: tuple[float, int, Mapping] | None = None

    @functools.cache
    def shares(tm: int, tk: int) -> Liveness:
        return Liveness.of(g, constants or {}, min(tm, g.extent("i")), min(tk, g.extent("k")), cfg.dim)

    for th, tm in _i_tiles(g, cfg, constants):
        for tn in tile_candidates(g.extent("j"), cfg.dim, False):
            for tk in tile_candidates(g.extent("k"), cfg.dim, False):
                live = shares(tm, tk)
                for order in (("i", "j", "k"), ("j", "i", "k")):
                    m = Mapping(tm, tn, tk, present(g, order), th=th)
                    m = hold_weights(g, fit_buffers(g, m, cfg, reserved_rows), cfg, reserved_rows, constants)
                    if not fits(g, m, cfg, reserved_rows):
                        continue
                    n = counts(g, m)
                    key = (estimate(g, m, cfg, live), n["i"] * n["j"] * n["k"], m)
                    if best is None or key[:2] < best[:2]:
                        best = key
    if best is None:
        return naive_mapping(g, cfg)  # nothing fits: the smallest tiles say why in check_fits
    return deepen(g, best[2], cfg, reserved_rows, constants)


def _i_tiles(g: Contraction, cfg: AccelConfig, constants: Mapping_[str, Any] | None) -> list[tuple[int, int]]:
    """(th, tm) candidates: i tiles alone, or whole i ranges stacked along the stack axis (not for a
    held operand, whose zero tiles are skipped row by row)."""
    out = [(1, tm) for tm in tile_candidates(g.extent("i"), cfg.dim, True)]
    if g.stack is not None and not held_operand(g, constants):
        out += [(th, g.extent("i")) for th in tile_candidates(g.stack.extent, 1, False) if th > 1]
    return out


def _one_b_tile(g: Contraction, m: Mapping) -> bool:
    """Whether one B tile serves every step of `m`: one j and one k tile, B the same in every batch."""
    n = counts(g, m)
    return n["j"] * n["k"] == 1 and not any(g.B.stride(a) for a in batch_axes(g, m))


def held_operand(g: Contraction, constants: Mapping_[str, Any] | None) -> bool:
    """Whether the compiler holds A's or B's values (a sparse weight, whose zero tiles it skips)."""
    return bool(constants) and any(t.buffer.name in constants for t in (g.A, g.B))  # type: ignore[operator]


def hold_weights(
    g: Contraction,
    m: Mapping,
    cfg: AccelConfig,
    reserved_rows: int = 0,
    constants: Mapping_[str, Any] | None = None,
) -> Mapping:
    """`m` with its B tile holding every K-slice when one B tile serves the whole product (a
    convolution's weights, then loaded once instead of slice by slice for every tile of C) and it
    fits, single-buffered (it is loaded once: a second slot would only take rows from A's slots,
    which then share a bank with each other and conflict)."""
    if not g.slices or held_operand(g, constants) or not _one_b_tile(g, m):
        return m
    held = replace(m, hold_b=True, double_buffer=m.double_buffer - {"B"})
    return held if fits(g, held, cfg, reserved_rows) else m


def deepen(
    g: Contraction,
    m: Mapping,
    cfg: AccelConfig,
    reserved_rows: int = 0,
    constants: Mapping_[str, Any] | None = None,
) -> Mapping:
    """`m` with three slots for A and B when whole zero tiles or TM x dim chunks of A are skipped (a
    sparse weight; zero rows alone change a step's work too little) and they fit: the work per step then varies, and a third slot lets the DMA run through the short steps
    ahead (bsr16x16 at 90%, 1024x1024x128: 114,556 -> 110,904 cycles).  Dense products keep two."""
    live = Liveness.of(g, constants or {}, min(m.tm, g.extent("i")), min(m.tk, g.extent("k")), cfg.dim)
    deeper = replace(m, depth=3)
    if (
        min(live.steps, live.chunks) < 1.0
        and {"A", "B"} <= m.double_buffer
        and fits(g, deeper, cfg, reserved_rows)
    ):
        return deeper
    return m


def naive_mapping(g: Contraction, cfg: AccelConfig) -> Mapping:
    """The baseline: dim x dim x dim tiles (clamped), one buffer each, C resident over k."""
    sizes = (min(cfg.dim, g.extent(r)) for r in ("i", "j", "k"))
    return Mapping(*sizes, order=present(g, ("i", "j", "k")), double_buffer=frozenset())


def present(g: Contraction, order: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r for r in order if g.role(r) is not None)


# -- schedules and the search space ---------------------------------------------------------------
def group_steps(g: Contraction, m: Mapping) -> list[Step]:
    """The schedule steps that spell mapping `m` for group `g` of an unscheduled nest."""
    roles = present(g, ("i", "j", "k"))
    names = tuple(base_name(g, r) for r in roles)
    sizes = tuple(min(m.tile(r), g.extent(r)) for r in roles)
    stack = stack_axis(g, m)
    if stack is not None:
        names, sizes = (_loop_name(stack), *names), (min(m.th, stack.extent), *sizes)
    steps: list[Step] = [Tile(names, sizes)]
    if m.order != roles:
        steps.append(Reorder(tuple(f"{base_name(g, r)}_o" for r in m.order)))
    if m.double_buffer == ALL:
        steps.append(DoubleBuffer())
    elif m.double_buffer:
        steps.append(DoubleBuffer(tuple(g.tensors[op] for op in OPERANDS if op in m.double_buffer)))
    return steps


def mapping_schedule(nest: LoopNest, choose: Callable[[Contraction], Mapping], cfg: AccelConfig) -> Schedule:
    """A schedule for every group of the unscheduled `nest` on machine `cfg`: `choose(group) ->
    Mapping`.  Groups are scheduled in order; each tile renames the loops of the nests after it, so
    names are read anew."""
    steps: list[Step] = []
    current = nest
    for n in range(len(match(nest, cfg).groups)):
        g = match(current, cfg).groups[n]
        more = group_steps(g, choose(g))
        try:
            current = apply(current, Schedule(tuple(more)))
        except ScheduleError:  # NOTE: whole tiles leave no tile loop for double_buffer to pipeline
            more = [step for step in more if not isinstance(step, DoubleBuffer)]
            current = apply(current, Schedule(tuple(more)))
        steps += more
    return Schedule(tuple(steps))


def describe_mapping(g: Contraction, m: Mapping, text: str | None = None) -> str:
    """One line: the statement (`text`: as the unscheduled nest prints it), tiles, order, buffering."""
    sizes = " x ".join(str(min(m.tile(r), g.extent(r))) for r in ("i", "j", "k") if g.role(r) is not None)
    stack = stack_axis(g, m)
    if stack is not None:
        sizes = f"({min(m.th, stack.extent)} {stack.name} x {g.extent('i')}) x {sizes.split(' x ', 1)[1]}"
    doubled = " ".join(sorted(m.double_buffer)) or "none"
    depth = f" ({m.depth} slots for A and B)" if m.depth != 2 else ""
    depth += ", B holds every slice" if m.hold_b else ""
    return (
        f"{text or g.text}: tiles {sizes}, tile order {' '.join(m.order)}, double-buffered: {doubled}{depth}"
    )
