"""Default-scheduler rule for a multiply-accumulate whose contiguous operand is gathered: its rows
are picked by a data-dependent index, its columns run along the output's contiguous dimension.

    Yv[v, i, n] += Wv[v, p, i, j] * X[col[v, p, j], n]       (a packed sparse weight, kcomp/sparse)
    Y[t, n]     += S[t, e] * E[ids[t, e], n]                 (a weighted embedding bag)

The GEMM rule's classifier wants plain loop indices, so such a nest used to get only a vector loop
with the output reloaded and stored for every product.  The register tile here is the same idea
with nothing assumed about the gathered rows: a few output rows (the small spatial loops that do
not index the gathered operand, unrolled) times up to the accumulator budget of vectors along n,
kept in registers across every reduction loop (and started from zero there: `cache_write ... init`,
kcomp.autoschedule.fold_inits), the gathered row loaded once per reduction step and shared by the rows of
the tile, the broadcast operand one element per row.  Threads share the outermost spatial loop.
"""

from __future__ import annotations

from kcomp.affine import affine
from kcomp.expr import Binary, BinaryOp, Load, Var, free_vars, loads
from kcomp.loops import Loop, Store
from kcomp.printer import symbol_names
from kcomp.schedule import CacheWrite, Parallel, Reorder, Split, Unroll, Vectorize

TILE_ROWS = 8  # spatial loops up to this extent may be register-tile rows
MAX_VECTORS = 8  # vectors per tile row


def gathered_mac(chain: list[Loop]) -> tuple[Store, Loop, list[Loop], list[Loop], list[Loop]] | None:
    """(store, n, tile rows, other spatial loops, reductions) when `chain` is such a nest."""
    if len(chain) < 2 or len(chain[-1].body) != 1 or not isinstance(chain[-1].body[0], Store):
        return None
    s = chain[-1].body[0]
    by_var = {lp.var: lp for lp in chain}
    if s.buffer.dtype.value != "f32" or not s.index or not all(isinstance(e, Var) for e in s.index):
        return None
    v = s.value
    if not (isinstance(v, Binary) and v.op is BinaryOp.ADD and isinstance(v.lhs, Load)):
        return None
    if v.lhs.buffer is not s.buffer or v.lhs.index != s.index:
        return None
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
    return s, by_var[n], rows, others, reductions


def schedule_gathered(b, chain: list[Loop], names: dict, width: int, cores: int, budget: int, work: int) -> bool:
    """Rule above on the builder `b` (kcomp.autofuse.Builder); False (nothing kept) if it does not fit."""
    found = gathered_mac(chain) if width > 1 else None
    if found is None:
        return False
    store, n, rows, others, reductions = found
    tile_rows = rows[0].extent if rows else 1
    # NOTE: a divisor of the row's vectors, so no tile has a remainder to guard; eight vectors
    # of partial sums already hide the multiply-add latency
    total = -(-n.extent // width)
    most = max(1, min(budget // tile_rows, MAX_VECTORS))
    vectors = max(d for d in range(1, most + 1) if total % d == 0)
    t = min(n.extent, vectors * width)
    before = (b.nest, b.steps)
    nn = names[n.var]
    inner, at = nn, None
    if t < n.extent:
        if not b.try_step(Split(nn, t)):
            return False
        inner, at = f"{nn}_i", f"{nn}_o"
    outer = [names[lp.var] for lp in others]
    order = (*outer, *([at] if at else []), *(names[lp.var] for lp in reductions))
    order += (*(names[lp.var] for lp in rows), inner)
    ok = b.try_step(Reorder(order)) and b.try_step(Vectorize(inner))
    if not ok:
        b.nest, b.steps = before
        return False
    if rows and rows[0].extent > 1:
        b.try_step(Unroll(names[rows[0].var]))
    tile_at = at or (outer[-1] if outer else None)
    if tile_at is not None:
        b.try_step(CacheWrite(symbol_names(b.nest)[store.buffer], tile_at))
    if cores > 1 and work >= 1 << 15 and outer:
        b.try_step(Parallel(outer[0]))
    return True
