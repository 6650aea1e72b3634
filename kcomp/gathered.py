"""Default-scheduler rule for a multiply-accumulate whose contiguous operand is gathered: its rows
are picked by a data-dependent index, its columns run along the output's contiguous dimension.

    Yv[v, i, n] += Wv[v, p, i, j] * X[col[v, p, j], n]       (a packed sparse weight, kcomp/sparse)
    Y[t, n]     += S[t, e] * E[ids[t, e], n]                 (a weighted embedding bag)

The GEMM rule's classifier wants plain loop indices, so such a nest used to get only a vector loop
with the output reloaded and stored for every product.  The register tile here is the same idea
with nothing assumed about the gathered rows: a few output rows (the small spatial loops that do
not index the gathered operand, unrolled) times up to the accumulator budget of vectors along n,
kept in registers across every reduction loop (and started from zero there: `cache_write ... init`,
kcomp.fold_inits), the gathered row loaded once per reduction step and shared by the rows of
the tile, the broadcast operand one element per row.  Threads share the outermost spatial loop.
When the gathered operand is larger than a core's share of L2, its column slabs (t columns, the
tile's width) go outermost, t narrowed (to no fewer than two vectors) until a slab fits three
quarters of the core's L2, and a slab past SLAB_BUDGET is packed contiguous first.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcomp.affine import affine
from kcomp.contraction import accumulation
from kcomp.expr import Binary, Load, Var, free_vars, loads
from kcomp.loops import Loop, Store
from kcomp.printer import symbol_names
from kcomp.schedule import CacheWrite, Pack, Parallel, Reorder, Split, Unroll, Vectorize

TILE_ROWS = 8  # spatial loops up to this extent may be register-tile rows
MAX_VECTORS = 8  # vectors per tile row
# NOTE: bytes of the gathered operand one column slab may take and stay in a core's L2 (half of a
# Zen 4 core's, all of a Zen 3 core's): past it the slab loop goes outermost, so the rows a slab
# gathers are reused from L2 by every output row instead of streamed from L3 once per row
SLAB_BUDGET = 512 << 10


@dataclass(frozen=True)
class GatheredMac:
    store: Store
    n: Loop  # the output's contiguous loop: vectors
    rows: list[Loop]  # the register tile's rows (at most one loop)
    others: list[Loop]  # the other spatial loops, outermost first
    reductions: list[Loop]
    panel: Load  # the gathered operand


def gathered_mac(chain: list[Loop]) -> GatheredMac | None:
    """The roles of `chain`'s loops when it is such a nest."""
    s = accumulation(chain) if len(chain) >= 2 else None
    by_var = {lp.var: lp for lp in chain}
    if s is None or not s.index or not all(isinstance(e, Var) for e in s.index):
        return None
    v = s.value
    assert isinstance(v, Binary)
    n = s.index[-1]
    if n not in by_var:
        return None
    reads = [ld for ld in loads(v.rhs) if ld.buffer.dtype.value == "f32"]
    panel = [ld for ld in reads if ld.index and ld.index[-1] is n]
    if len(panel) != 1 or any(n in free_vars(e) for e in panel[0].index[:-1]):
        return None
    gathered = any(affine(e) is None for e in panel[0].index[:-1])
    if not gathered or any(n in free_vars(e) for ld in reads if ld is not panel[0] for e in ld.index):
        return None
    out = set(s.index)
    panel_vars = set().union(*(free_vars(e) for e in panel[0].index[:-1]))
    spatial = [lp for lp in chain if lp.var in out and lp.var is not n]
    reductions = [lp for lp in chain if lp.var not in out]
    if not reductions:
        return None
    rows = [lp for lp in spatial if lp.var not in panel_vars and lp.extent <= TILE_ROWS][-1:]
    others = [lp for lp in spatial if lp not in rows]
    return GatheredMac(s, by_var[n], rows, others, reductions, panel[0])


def schedule_gathered(
    b, chain: list[Loop], names: dict, width: int, cores: int, budget: int, work: int, l2: int = SLAB_BUDGET
) -> bool:
    """Rule above on the builder `b` (kcomp.autofuse.Builder); False (nothing kept) if it does not fit."""
    found = gathered_mac(chain) if width > 1 else None
    if found is None:
        return False
    store, n, rows, others, reductions = found.store, found.n, found.rows, found.others, found.reductions
    tile_rows = rows[0].extent if rows else 1
    # NOTE: a divisor of the row's vectors, so no tile has a remainder to guard; eight vectors
    # of partial sums already hide the multiply-add latency
    total = -(-n.extent // width)
    most = max(1, min(budget // tile_rows, MAX_VECTORS))
    divisors = [d for d in range(1, most + 1) if total % d == 0]
    vectors = max(divisors)
    panel = found.panel.buffer
    if panel.size * panel.dtype.itemsize > SLAB_BUDGET:
        # NOTE: the widest slab that stays in this core's L2 with room for the rest (the bench's
        # 3072-row gathered operand: 64 columns, 768 KiB, on a 1 MiB L2: 8% faster than 128)
        row = panel.size // n.extent * panel.dtype.itemsize * width  # bytes of one vector's column
        vectors = max([d for d in divisors if d >= 2 and d * row <= l2 * 3 // 4], default=vectors)
    t = min(n.extent, vectors * width)
    before = (b.nest, b.steps)
    nn = names[n.var]
    inner, at = nn, None
    if t < n.extent:
        if not b.try_step(Split(nn, t)):
            return False
        inner, at = f"{nn}_i", f"{nn}_o"
    outer = [names[lp.var] for lp in others]
    slab_outside = at is not None and panel.size * panel.dtype.itemsize > SLAB_BUDGET
    if slab_outside:
        outer = [at, *outer]
    order = (*outer, *([at] if at and not slab_outside else []), *(names[lp.var] for lp in reductions))
    order += (*(names[lp.var] for lp in rows), inner)
    ok = b.try_step(Reorder(order)) and b.try_step(Vectorize(inner))
    if not ok:
        b.nest, b.steps = before
        return False
    if rows and rows[0].extent > 1:
        b.try_step(Unroll(names[rows[0].var]))
    if slab_outside and panel.size // n.extent * t * panel.dtype.itemsize > SLAB_BUDGET:
        # NOTE: even one slab's rows overflow L2: copy the slab contiguous (rows t wide), so the
        # gathered rows are whole cache lines in few pages instead of pieces of long rows
        pname = symbol_names(b.nest)[panel]
        dim = len(found.panel.index) - 1
        if b.try_step(Pack(pname, at, dim, t)):
            b.try_step(Vectorize(f"{pname}_pack_{dim + 1}"))
            if cores > 1:  # the copy is memory-bound: both cores, row by row of the gathered dimension
                any(b.try_step(Parallel(f"{pname}_pack_{d}")) for d in range(1, dim + 1))
    spatial = (*outer, *([at] if at and not slab_outside else []))
    tile_at = spatial[-1] if spatial else None
    if tile_at is not None:
        b.try_step(CacheWrite(symbol_names(b.nest)[store.buffer], tile_at))
    shared = [names[lp.var] for lp in others]  # the threads share rows, never a slab
    if cores > 1 and work >= 1 << 15 and shared:
        b.try_step(Parallel(shared[0]))
    return True
