"""Which loops of a nest play which part in a contraction, read from its accesses alone.

    C[b, i, j] += A[b, i, k] * B[b, j, k]        batch b, rows i, columns j, reduction k

A perfect nest whose innermost body is `C[..] = C[..] + X[..] * Y[..]` (f32, every index a plain loop
variable; factors the loops do not vary, such as a scale, may join the product) is a contraction, whatever the order of its loops and of the operands' dimensions: the
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

from kcomp.expr import Binary, BinaryOp, Const, Expr, Load, Var, free_vars
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
        return self.panel.index.index(self.cols.var)


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
    if s.buffer in (x.buffer, y.buffer) or not (
        _plain(x.index, by_var, True) and _plain(y.index, by_var, True)
    ):
        return None
    out = set(s.index)
    reductions = [lp for lp in chain if lp.var not in out]
    if len(reductions) != 1 or any(lp.var not in x.index or lp.var not in y.index for lp in reductions):
        return None  # NOTE: a reduction indexing one operand only is a sum first, not a GEMM
    j = s.index[-1]
    panel, broadcast = (x, y) if j in x.index and j not in y.index else (y, x)
    if j not in panel.index or j in broadcast.index:
        return None
    rows = [v for v in s.index if v in broadcast.index and v not in panel.index]
    if len(rows) != 1 or any(v not in x.index and v not in y.index for v in s.index):
        return None
    batch = tuple(by_var[v] for v in s.index if v in x.index and v in y.index)
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


def _plain(index: tuple, by_var: dict[Var, Loop], constants: bool = False) -> bool:
    """Every index a distinct loop variable of the chain (`constants`: or an integer constant, as an
    operand's leading dimension of size 1 is read: `A[0, i, k]`)."""
    loops = [e for e in index if not (constants and isinstance(e, Const) and isinstance(e.value, int))]
    return all(isinstance(e, Var) and e in by_var for e in loops) and len(set(loops)) == len(loops)
