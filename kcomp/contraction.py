"""Which loops of a nest play which part in a contraction, read from its accesses alone.

    C[b, i, j] += A[b, i, k] * B[b, j, k]        batch b, rows i, columns j, reduction k

A perfect nest whose innermost body is `C[..] = C[..] + X[..] * Y[..]` (f32; C indexed by plain loop
variables, each operand by affine indices that share no loop: `Q[i, 64*h + k]`, `A[0, i, k]`; factors
the loops do not vary, such as a scale, may join the product) is a contraction, whatever the order of
its loops and of the operands' dimensions: the
loops indexing C are spatial, the others reduce.  The *column* loop j is the one indexing C's last
(contiguous) dimension: the register tile vectorizes it, so the operand that it indexes is the
*panel* (B above; it gets packed into contiguous j-blocks when j is not its last dimension, or to
keep its blocks in cache anyway), and the other operand is *broadcast* one element at a time.  The
*row* loop i indexes C and the broadcast operand only; batch loops index C and both operands.

This is the access-pattern classification the default scheduler's GEMM rule and the fusion rules
use instead of matching the textbook layout `A[i, k] * B[k, j]` (a GEMM with a transposed operand
is the same computation with a different panel to pack, not a different kernel).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kcomp.affine import affine
from kcomp.expr import Binary, BinaryOp, Expr, Load, Var, free_vars
from kcomp.loops import Loop, Store


@dataclass(frozen=True)
class Contraction:
    store: Store
    rows: Loop  # i: indexes C and the broadcast operand
    cols: Loop  # j: indexes C's last dimension and the panel
    reduce: Loop  # k: the reduction loop
    batch: tuple[Loop, ...]  # index C and both operands
    panel: Load  # the operand j indexes (vector loads along j)
    broadcast: Load  # the operand i indexes (one element per row of the tile)

    @property
    def panel_dim(self) -> int:
        """The panel's dimension that j indexes (the one to block when packing)."""
        dim = _unit_dim(self.panel, self.cols.var)
        assert dim is not None
        return dim


def classify(chain: list[Loop]) -> Contraction | None:
    """The roles of `chain`'s loops when its innermost body is one f32 multiply-accumulate of two
    tensors indexed by plain loop variables (None otherwise, or when the roles are ambiguous)."""
    s = accumulation(chain) if len(chain) >= 3 else None
    by_var = {lp.var: lp for lp in chain}
    if s is None or len(s.index) < 2 or not _plain(s.index, by_var):
        return None
    value = s.value
    assert isinstance(value, Binary)
    factors = list(_factors(value.rhs))
    ops = [f for f in factors if free_vars(f) & set(by_var)]
    if len(ops) != 2 or len(factors) > 4:
        return None  # NOTE: constant factors (a scale) may ride along; they stay in the product
    if not all(isinstance(x, Load) and x.pad is None and x.buffer.dtype.value == "f32" for x in ops):
        return None
    x, y = ops  # type: ignore[misc]
    if s.buffer in (x.buffer, y.buffer) or not (_affine(x.index, by_var) and _affine(y.index, by_var)):
        return None
    xv, yv = _vars(x), _vars(y)
    out = set(s.index)
    reductions = [lp for lp in chain if lp.var not in out]
    if len(reductions) != 1 or any(lp.var not in xv or lp.var not in yv for lp in reductions):
        return None  # NOTE: a reduction indexing one operand only is a sum first, not a GEMM
    j = s.index[-1]
    panel, broadcast = (x, y) if j in xv and j not in yv else (y, x)
    if _unit_dim(panel, j) is None or j in _vars(broadcast):
        return None  # NOTE: the panel is packed along the dimension j steps through one by one
    rows = [v for v in s.index if v in _vars(broadcast) and v not in _vars(panel)]
    if len(rows) != 1 or any(v not in xv and v not in yv for v in s.index):
        return None
    batch = tuple(by_var[v] for v in s.index if v in xv and v in yv)
    if len(batch) + 2 != len(s.index):
        return None
    return Contraction(s, by_var[rows[0]], by_var[j], reductions[-1], batch, panel, broadcast)


def accumulation(chain: list[Loop]) -> Store | None:
    """The innermost body of `chain` when it is one f32 update `C[idx] = C[idx] + v` (else None)."""
    if not chain or len(chain[-1].body) != 1 or not isinstance(chain[-1].body[0], Store):
        return None
    s = chain[-1].body[0]
    v = s.value
    if s.buffer.dtype.value != "f32" or not (isinstance(v, Binary) and v.op is BinaryOp.ADD):
        return None
    if not isinstance(v.lhs, Load) or v.lhs.buffer is not s.buffer or v.lhs.index != s.index:
        return None
    return s


def _factors(e: Expr) -> Iterator[Expr]:
    """The factors of a product (`e` itself when it is not one)."""
    if isinstance(e, Binary) and e.op is BinaryOp.MUL:
        yield from _factors(e.lhs)
        yield from _factors(e.rhs)
    else:
        yield e


def _unit_dim(load: Load, v: Var) -> int | None:
    """The dimension of `load` whose index steps by 1 with `v` (`j`, `64*h + j`), or None."""
    for n, e in enumerate(load.index):
        form = affine(e)
        if form is not None and form.get(v) == 1:
            return n
    return None


def _vars(load: Load) -> set[Var]:
    return {v for e in load.index for v in free_vars(e)}


def _affine(index: tuple, by_var: dict[Var, Loop]) -> bool:
    """Every index affine in the chain's loops, no loop in two of them: a loop variable, a constant
    (`A[0, i, k]`: a slice), or a sum of scaled loops and a constant (`Q[i, 64*h + k]`: attention heads
    cut out of one projection)."""
    seen: set[Var] = set()
    for e in index:
        form = affine(e)
        if form is None or any(v is not None and v not in by_var for v in form):
            return False
        loops = {v for v in form if v is not None and form[v]}
        if loops & seen:
            return False
        seen |= loops
    return True


def _plain(index: tuple, by_var: dict[Var, Loop]) -> bool:
    """Every index a distinct loop variable of the chain (the result's index)."""
    return all(isinstance(e, Var) and e in by_var for e in index) and len(set(index)) == len(index)
