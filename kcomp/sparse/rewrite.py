"""The sparse rewrite: a program that reads a sparse weight, with the weight's values given at compile
time, becomes a dense program over the packed form (kcomp/sparse/plan.py), which every target then
lowers and schedules like any other.

    Y[m, n] += W[m, k] * X[k, n]       W sparse, packed with virtual rows v of P blocks of H x W
      ->
    Yv[v, i, n] += W_val[v, p, i, j] * X[W_col[v, p, j], n]          reduce p < P, j < W
    Y[m, n] = Yv[W_vrow[m, 0], W_vpos[m, 0], n] + .. + Yv[W_vrow[m, Q-1], W_vpos[m, Q-1], n]

(the row map: a sum over q < Q as a reduction instead when Q > UNROLL_Q; `+=` when Y was written
before).  Weight dimensions a block spans whole (a filter's taps as 1x9 groups) stay loops, and
only the leading column is gathered.

The first statement multiplies only stored blocks; its gather of X needs no bounds check, since the
column indices were checked when they were packed.  The row map undoes the rearrangement's row
permutation and sums split rows; where it would be the identity the first statement writes Y itself.
The rearrangement's column permutation lives in W_col.  The packed tensors are inputs whose values
the program carries (`Program.bound`), so callers never pass them.

A statement qualifies when the weight is a factor of a `+=` product, its first index is a plain
variable of the target (the rows) used nowhere else, and its other indices are distinct reduced
variables spanning their dimensions (the columns, flattened).  A sparse weight read any other way
stays a dense input with the values given; `notes` say which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Expr, Load, Var, free_vars, loads, rewrite
from kcomp.program import Program, Reduce, Statement, product_factors
from kcomp.sparse.format import Format, as_matrix, block_count
from kcomp.sparse.plan import Packed, pack
from kcomp.sparse.rearrange import rearrange

UNROLL_Q = 8  # up to this many partial sums per row are added in one expression


@dataclass(frozen=True)
class SparseReport:
    """What the rewrite did with one weight (for `kcomp compile` notes and `kcomp bench sparse`)."""

    name: str
    format: str
    nonzeros: int
    blocks_before: int  # nonzero blocks in the given order
    blocks: int  # after rearrangement (= before without it)
    explicit_zeros: int
    slots: int  # block slots including padding
    rearranged: bool
    direct: bool
    note: str

    def line(self) -> str:
        return (
            f"sparse {self.name} ({self.format}): {self.nonzeros} nonzeros in {self.blocks} blocks"
            f" (given order: {self.blocks_before}), {self.explicit_zeros} explicit zeros, {self.slots} slots;"
            f" {self.note}"
        )


def sparsify(program: Program, rearranged: bool = True) -> tuple[Program, tuple[SparseReport, ...]]:
    """`program` with each qualifying read of a sparse weight over its packed form (module docstring)."""
    if not program.sparse:
        return program, ()
    statements: list[Statement] = []
    inputs = [b for b in program.inputs]
    temps = list(program.temps)
    bound = dict(program.bound)
    reports = []
    taken = {b.name for b in (*program.tensors,)} | {p.name for p in program.params}
    dense_reads: set[str] = set()
    for st in program.statements:
        weight = _sparse_factor(program, st)
        if weight is None:
            dense_reads.update(b.name for b in st.reads if b.name in program.sparse)
            statements.append(st)
            continue
        fmt: Format = program.sparse[weight.name]
        mat = as_matrix(program.bound[weight.name])
        order = rearrange(mat, fmt.block) if rearranged and fmt.block != (1, 1) else None
        if order is not None and order.identity:
            order = None
        turned = _turned_operand(st, weight, taken)
        if turned is not None:  # the weight's rows are the output's contiguous dimension
            st, transpose, operand_t = turned
            statements.append(transpose)
            temps.append(operand_t)
        packed = pack(mat, fmt.block, order, direct_ok=turned is None)
        new, extra, temp = _rewrite(st, weight, packed, taken, turned is not None)
        statements.extend(new)
        for buf, arr in extra:
            inputs.append(buf)
            bound[buf.name] = arr
        if temp is not None:
            temps.append(temp)
        how = "one pass" if packed.direct else f"rows mapped back in a second pass (Q={packed.q})"
        reports.append(
            SparseReport(
                weight.name,
                fmt.name,
                int(np.count_nonzero(mat)),
                block_count(mat, fmt.block),
                packed.blocks,
                packed.explicit_zeros,
                packed.slots,
                order is not None,
                packed.direct,
                f"{packed.values.shape[1]} blocks per virtual row, {how}",
            )
        )
    reports.extend(kept_dense(program, "read where its zeros matter: kept dense", dense_reads))
    still = dense_reads | {b.name for st in statements for b in st.reads}
    inputs = [b for b in inputs if b.name not in program.sparse or b.name in still]
    bound = {k: v for k, v in bound.items() if k in {b.name for b in inputs}}
    out = replace(program, inputs=tuple(inputs), temps=tuple(temps), statements=tuple(statements),
                  bound=bound, sparse={})
    return out, tuple(reports)


def kept_dense(program: Program, why: str, names: set[str] | None = None) -> tuple[SparseReport, ...]:
    """Reports for sparse weights left dense (all of them, or `names`), saying `why`."""
    out = []
    for name, fmt in program.sparse.items():
        if names is not None and name not in names:
            continue
        mat = as_matrix(program.bound[name])
        blocks = block_count(mat, fmt.block)
        out.append(SparseReport(name, fmt.name, int(np.count_nonzero(mat)), blocks, blocks, 0, 0, False, False, why))
    return tuple(out)


def _sparse_factor(program: Program, st: Statement) -> Buffer | None:
    """The sparse weight this statement can read packed (module docstring), or None."""
    if st.op is not Reduce.ADD:
        return None
    reads = [ld for ld in loads(st.value) if ld.buffer.name in program.sparse]
    if len(reads) != 1 or not any(f is reads[0] for f in product_factors(st.value)):
        return None
    ld = reads[0]
    row, *cols = ld.index
    if not isinstance(row, Var) or row not in st.index or st.index.count(row) != 1:
        return None
    if st.extent(row) != ld.buffer.shape[0]:
        return None
    if any(not isinstance(c, Var) or c not in st.reduce for c in cols) or len(set(cols)) != len(cols):
        return None
    if any(st.extent(c) != n for c, n in zip(cols, ld.buffer.shape[1:], strict=True)):
        return None
    rest = rewrite(st.value, lambda e: Const(1.0, DType.F32) if isinstance(e, Load) and e.buffer is ld.buffer else None)
    if row in free_vars(rest):
        return None
    return ld.buffer


def _turned_operand(st: Statement, weight: Buffer, taken: set[str]):
    """`Y[b, o] += X[b, i] * W[o, i]` (a linear layer: the weight's rows are the output's contiguous
    dimension): the statement reading `X_t[i, b]` instead, the transpose that fills it, and X_t.
    With the partial sums laid out `[v, bi, b]` the packed product is then the one the gathered
    rule tiles (rows of X_t gathered, vectors along b); the transposes cost a pass over X and one
    over Y.  None when the row is not the output's last index or no single operand carries the
    output's other last dimension n as a plain index."""
    ld = next(e for e in loads(st.value) if e.buffer is weight)
    row = ld.index[0]
    if len(st.index) < 2 or st.index[-1] is not row:
        return None
    n = st.index[-2]
    users = [e for e in loads(st.value) if e.buffer is not weight and any(n in free_vars(i) for i in e.index)]
    if len(users) != 1 or users[0].pad is not None:
        return None
    x = users[0]
    if sum(1 for e in loads(st.value) if e.buffer is x.buffer) != 1:
        return None
    at = [d for d, i in enumerate(x.index) if n in free_vars(i)]
    if len(at) != 1 or x.index[at[0]] is not n or at[0] == len(x.index) - 1:
        return None
    order = [d for d in range(len(x.index)) if d != at[0]] + [at[0]]
    shape = tuple(x.buffer.shape[d] for d in order)
    turned = Buffer(_fresh(taken, f"{x.buffer.name}_t"), x.buffer.dtype, shape)
    ivars = tuple(Var(f"i{k}") for k in range(len(order)))
    src = tuple(ivars[order.index(d)] for d in range(len(order)))
    transpose = Statement(turned, ivars, Reduce.ASSIGN, Load(x.buffer, src), (), shape, False, st.span)
    index = tuple(x.index[d] for d in order)
    value = rewrite(st.value, lambda e: Load(turned, index) if isinstance(e, Load) and e.buffer is x.buffer else None)
    return replace(st, value=value), transpose, turned


def _whole_trailing(dims: tuple[int, ...], pk: Packed) -> int | None:
    """t when a block's W columns are exactly the weight's dimensions t.. (a filter's 3 x 3 taps as
    1x9 groups), stored in order: they are then loops of the packed statement (affine reads of the
    operand, as in the dense form) instead of gathered one by one.  None otherwise."""
    w = pk.values.shape[3]
    size = 1
    for t in range(len(dims) - 1, 0, -1):
        size *= dims[t]
        if size == w:
            live = pk.values.reshape(*pk.values.shape[:2], -1).any(axis=2)
            runs = pk.cols - pk.cols[:, :, :1]
            return t if (runs[live] == np.arange(w)).all() and (pk.cols[:, :, 0][live] % w == 0).all() else None
        if size > w:
            return None
    return None


def _fresh(taken: set[str], name: str) -> str:
    out, n = name, 1
    while out in taken:
        out, n = f"{name}{n}", n + 1
    taken.add(out)
    return out


def _rewrite(st: Statement, weight: Buffer, pk: Packed, taken: set[str], turned: bool = False):
    """The statements over the packed weight, the bound inputs they add, and the temporary (if any).
    `turned`: the partial sums are laid out virtual row first (`Y_part[v, bi, b]` for `Y[b, o]`), so
    that the output's other dimension is their contiguous one (`_turned_operand`)."""
    ld = next(e for e in loads(st.value) if e.buffer is weight)
    row, *cols = ld.index
    nv, p, h, w = pk.values.shape
    v, i, s, j = Var("v"), Var("bi"), Var("p"), Var("bj")
    val = Buffer(_fresh(taken, f"{weight.name}_val"), DType.F32, pk.values.shape)
    col = Buffer(_fresh(taken, f"{weight.name}_col"), DType.I32, pk.cols.shape)
    dims = weight.shape[1:]
    t = _whole_trailing(dims, pk)
    loops = cols[t:] if t is not None else []  # weight dimensions a block spans whole: loops again
    flat: Expr = Load(col, (v, s, j))
    if loops:
        flat = Binary(BinaryOp.FLOORDIV, Load(col, (v, s, Const(0, DType.I32))), Const(w, DType.I32))
    # the (leading) columns flattened: c0 = f // (d1*d2..), c1 = (f // (d2..)) % d1, .., last = f % d_last
    mapping: dict[Var, Expr] = {}
    stride = 1
    for c, d in reversed(list(zip(cols[: len(cols) - len(loops)], dims, strict=False))):
        e = flat if stride == 1 else Binary(BinaryOp.FLOORDIV, flat, Const(stride, DType.I32))
        if c is not cols[0]:
            e = Binary(BinaryOp.MOD, e, Const(d, DType.I32))
        mapping[c] = e
        stride *= d
    inner: Expr = j
    if loops:  # the block's column j is the trailing dimensions' row-major position
        inner, step = Const(0, DType.I32), 1
        for c, d in reversed(list(zip(loops, dims[t:], strict=True))):
            term = c if step == 1 else Binary(BinaryOp.MUL, c, Const(step, DType.I32))
            inner = term if isinstance(inner, Const) else Binary(BinaryOp.ADD, term, inner)
            step *= d
    row_in_block = i if not pk.direct else Const(0, DType.I32)
    packed_read = Load(val, (v, s, row_in_block, inner))

    def swap(e: Expr) -> Expr | None:
        if isinstance(e, Load) and e.buffer is weight:  # (rebuilt: its index was rewritten first)
            return packed_read
        if isinstance(e, Var) and e in mapping:
            return mapping[e]
        return None

    value = rewrite(st.value, swap)
    others = tuple(r for r in st.reduce if r not in cols)
    block_loops = tuple(loops) if loops else (j,)
    reduce = (s, *block_loops, *others)
    red_ext = (p, *(dims[t:] if loops else (w,)), *tuple(st.extent(r) for r in others))
    extra: list[tuple[Buffer, np.ndarray]] = [(val, pk.values), (col, pk.cols)]
    if pk.direct:
        index = tuple(v if x is row else x for x in st.index)
        extents = tuple(st.extent(x) for x in st.index) + red_ext
        first = Statement(st.target, index, Reduce.ADD, value, reduce, extents, st.accumulate, st.span)
        return [first], extra, None
    at = st.index.index(row)
    vidx = (*st.index[:at], v, i, *st.index[at + 1:])
    vshape = (*st.target.shape[:at], nv, h, *st.target.shape[at + 1:])
    if turned:
        vidx = (v, i, *st.index[:at], *st.index[at + 1:])
        vshape = (nv, h, *st.target.shape[:at], *st.target.shape[at + 1:])
    part = Buffer(_fresh(taken, f"{st.target.name}_part"), st.target.dtype, vshape)
    vext = tuple(nv if x is v else h if x is i else st.extent(x) for x in vidx)
    first = Statement(part, vidx, Reduce.ADD, value, reduce, vext + red_ext, False, st.span)
    vrow = Buffer(_fresh(taken, f"{weight.name}_vrow"), DType.I32, pk.vrow.shape)
    vpos = Buffer(_fresh(taken, f"{weight.name}_vpos"), DType.I32, pk.vpos.shape)
    extents = tuple(st.extent(x) for x in st.index)

    def part_at(q: Expr) -> Load:
        where = (Load(vrow, (row, q)), Load(vpos, (row, q)))
        if turned:
            return Load(part, (*where, *st.index[:at], *st.index[at + 1:]))
        return Load(part, (*st.index[:at], *where, *st.index[at + 1:]))

    if pk.q <= UNROLL_Q:
        # a row's Q partial sums added in one expression: no initialisation, no reduction loop
        total: Expr = part_at(Const(0, DType.I32))
        for k in range(1, pk.q):
            total = Binary(BinaryOp.ADD, total, part_at(Const(k, DType.I32)))
        op = Reduce.ADD if st.accumulate else Reduce.ASSIGN
        second = Statement(st.target, st.index, op, total, (), extents, st.accumulate, st.span)
    else:
        q = Var("q")
        second = Statement(
            st.target, st.index, Reduce.ADD, part_at(q), (q,), (*extents, pk.q), st.accumulate, st.span
        )
    extra += [(vrow, pk.vrow), (vpos, pk.vpos)]
    return [first, second], extra, part
