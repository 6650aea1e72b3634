"""What the accelerator can run, recognized in a (scheduled) loop nest by meaning, not by loop names.

    kernel  = group+                                   one program section per group, in order
    group   = init contraction epilogue*               all writing one tensor C
    init    = C[..] = 0 | C[..] = c | C[..] = D[..]    (D: a bias row b[j], a matrix, C itself, ...)
    contraction = C[..] = C[..] + A[..] * B[..]        indices affine in the loops
    epilogue    = C[..] = f(C[..])                     f: relu, exp, neg, + - * / max with a constant,
                                                       a scalar parameter or a row vector v[j]

Each statement's loop nest is read by nest.py (split loops merged into axes, accesses as flat DRAM
offsets `const + sum(coef[axis] * axis)`); the contraction's axes take the roles the matrix unit needs:

    j      the matrix unit's columns: in C and B, not in A            (none: N = 1, a matvec)
    k      the reduction fed to the array: in A and B
    i      accumulator rows: in C and A, not in B                     (none: M = 1)
    batch  C's other axes: one GEMM after another
    i2     one of them in A and C, not B (an image row): a tile stacks several whole i ranges into
           one set of accumulator rows, so one preload of B serves them all
    slice  other reduced axes (a convolution's r, s): K-slices accumulated into the same tile

Among the assignments, the one that fills the array best wins (`_fit`).  A tile (A: i x k, B: k x j,
C: i x j) whose columns are not contiguous in DRAM moves by a transposing DMA (A = Xᵀ in a GEMM
`C[i, j] += A[k, i] * B[k, j]`, an NCHW convolution's pixels as accumulator rows).

Any other statement runs on the vector unit alone (vector_match.py: maps, broadcasts, reductions),
or is an `Unsupported` error (a ScheduleError) "the accelerator backend cannot map <statement>: <why>".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kcomp.dtypes import DType
from kcomp.errors import Unsupported
from kcomp.expr import (
    Binary,
    BinaryOp,
    Buffer,
    Cast,
    Const,
    Expr,
    Load,
    Param,
    Unary,
    UnaryOp,
    loads,
)
from kcomp.loops import Alloc, LoopNest, Stmt
from kcomp.printer import format_expr, symbol_names
from kcomp.targets.accel.compiler.nest import (
    Access,
    Axis,
    Nest,
    access_of,
    arg_nest,
    cannot,
    find_axes,
    is_own,
    perfect,
    target_dims,
)
from kcomp.targets.accel.compiler.stream import MAX_STEP
from kcomp.targets.accel.compiler.vector_match import VectorStmt, vector_stmt
from kcomp.targets.accel.machine.config import AccelConfig

DEFAULT = AccelConfig()  # the packaged machine, for matching without one
DTYPES = {DType.F32: "f32", DType.I8: "i8", DType.I32: "i32"}  # what DRAM buffers may hold


@dataclass(frozen=True)
class VectorOp:
    """One epilogue operation on the accumulator tile: `acc = op(acc, operand)`; operand: an f32
    immediate (`imm`), a scalar parameter (`param`, a row of copies in the scratchpad) or a row
    vector over j (`vector`)."""

    op: str  # add, sub, mul, max, exp
    imm: float | None = None
    param: str | None = None
    vector: Access | None = None


RELU = VectorOp("max", imm=0.0)


@dataclass(eq=False)
class Contraction:
    """One group: C = init; C += A * B over the reduced axes; C = epilogue(C)."""

    text: str  # the update statement as `--emit loops` prints it
    C: Access
    A: Access
    B: Access
    i: Axis | None
    j: Axis | None
    k: Axis
    batch: tuple[Axis, ...]
    slices: tuple[Axis, ...]
    dims: tuple[Axis, ...]  # the axis of each dimension of C
    init: Access | None = None  # None: the first mma overwrites (zero start)
    epilogue: list[VectorOp] = field(default_factory=list)
    i2: Axis | None = None  # a split output axis of A and C, not B: its tile stacks whole i ranges
    stack: Axis | None = None  # the output axis that could (i2, or the nearest such batch axis)

    @property
    def relu_store(self) -> bool:
        """The last epilogue op is relu: dma.store applies it on the way out."""
        return bool(self.epilogue) and self.epilogue[-1] == RELU

    def role(self, name: str) -> Axis | None:
        return {"i": self.i, "j": self.j, "k": self.k}[name]

    def extent(self, name: str) -> int:
        axis = self.role(name)
        return axis.extent if axis is not None else 1

    @property
    def tensors(self) -> dict[str, str]:
        """Operand role -> tensor name."""
        return {"A": self.A.buffer.name, "B": self.B.buffer.name, "C": self.C.buffer.name}


@dataclass(frozen=True)
class Kernel:
    """What the backend maps: contraction groups in order, the statements the vector unit runs alone
    (vector_match.py) among them in `sections`, and the kernel's temporaries (DRAM)."""

    groups: tuple[Contraction, ...]
    temps: tuple[Buffer, ...]
    sections: tuple[Contraction | VectorStmt, ...] = ()  # groups and vector statements, in program order


def match(nest: LoopNest, cfg: AccelConfig | None = None) -> Kernel:
    """The groups of `nest` (see the module docstring); ScheduleError for anything else.  With the
    machine's `cfg`, a product the matrix unit would run one accumulator row per mma and faster on the
    vector unit (a depthwise convolution) runs there (`_vector_faster`)."""
    names = symbol_names(nest)
    temps: list[Buffer] = []
    nests = _nests(_statements(nest.body, temps), names)
    groups: list[Contraction] = []
    sections: list[Contraction | VectorStmt] = []
    pending: Nest | None = None  # an init waiting for its contraction or reduction
    for n in nests:
        find_axes(n, names)
        if n.arg is not None:  # NOTE: its own section, after what waits before it
            if pending is not None:
                sections.append(vector_stmt(pending))
                pending = None
            sections.append(vector_stmt(n))
            continue
        value = n.store.value
        own = Load(n.store.buffer, n.store.index)
        g = _matrix_group(n, pending, cfg) if _is_contraction(value, own) else None
        if isinstance(g, Unsupported):  # NOTE: the vector unit's reason would hide the matrix unit's
            init = pending if pending is not None and _is_init(pending, n) else None
            try:
                if pending is not None and init is None:
                    sections.append(vector_stmt(pending))
                sections.append(vector_stmt(n, init))
            except Unsupported:
                raise g from None
            pending = None
            continue
        if (
            g is not None
            and cfg is not None
            and _vector_faster(g, cfg)
            and (pending is None or _is_init(pending, n))
        ):
            try:
                sections.append(vector_stmt(n, pending))
                pending = None
                continue
            except Unsupported:
                pass  # NOTE: the matrix unit, slow as it is here
        if g is not None:
            if pending is None:
                g.init = g.C  # no initialisation: accumulate onto what C holds (an earlier group's result)
            groups.append(g)
            sections.append(g)
            pending = None
            continue
        if pending is None and groups and sections[-1] is groups[-1] and _epilogue_of(groups[-1], n):
            continue
        if _reads_itself(value, n) and pending is not None and _is_init(pending, n):
            stmt = vector_stmt(n, pending)
            if stmt.init is None:  # NOTE: not folded in (a map, or a scan that reads it): it stores
                sections.append(vector_stmt(pending))
            sections.append(stmt)
            pending = None
            continue
        if pending is not None:
            sections.append(vector_stmt(pending))
            pending = None
        if _reads_itself(value, n):
            sections.append(vector_stmt(n))
        else:
            pending = n
    if pending is not None:
        sections.append(vector_stmt(pending))
    return Kernel(tuple(groups), tuple(temps), tuple(sections))


def _vector_faster(g: Contraction, cfg: AccelConfig) -> bool:
    """Whether the vector unit out-runs the matrix unit on `g`: without an i role each mma streams one
    row after a dim-cycle preload (k * dim / (dim + 1) MACs a cycle, k at most dim), where the vector
    unit multiplies and adds a row of dim elements in 2 * vector_row_cycles cycles."""
    k = min(g.extent("k"), cfg.dim)
    return g.i is None and k * cfg.dim / (cfg.dim + 1) < cfg.dim / (2 * cfg.vector_row_cycles)


def _matrix_group(n: Nest, init: Nest | None, cfg: AccelConfig | None) -> Contraction | Unsupported:
    """The contraction group of `n` on the matrix unit, or why its operands do not fit the array's
    roles or types (it then runs on the vector unit, as any reduction, if it can there)."""
    try:
        g = _contraction(n, init, cfg if cfg is not None else DEFAULT)
    except Unsupported as e:
        return e
    problem = dtype_problem(g, cfg) if cfg is not None else None
    return Unsupported(problem) if problem else g


def dtype_problem(g: Contraction, cfg: AccelConfig) -> str | None:
    """Why the matrix unit of `cfg` cannot take `g`'s tensors (its input and accumulator types)."""
    operands = [(g.A.buffer, cfg.dtype), (g.B.buffer, cfg.dtype), (g.C.buffer, cfg.acc_dtype)]
    if g.init is not None:
        operands.append((g.init.buffer, cfg.acc_dtype))
    operands += [(op.vector.buffer, cfg.acc_dtype) for op in g.epilogue if op.vector is not None]
    for buffer, want in operands:
        if DTYPES.get(buffer.dtype) != want:
            return (
                f"the accelerator backend cannot map {g.text}: {buffer.name} is {buffer.dtype.value}, and the"
                f" {cfg.name} accelerator multiplies {cfg.dtype} inputs into {cfg.acc_dtype} accumulators"
            )
    return None


def _nests(stmts: list[Stmt], names: dict) -> list[Nest]:
    """Each statement's perfect nest; an arg-reduction's statements as one (nest.arg_nest)."""
    out, at = [], 0
    while at < len(stmts):
        found = arg_nest(stmts, at, names)
        if found is not None:
            out.append(found[0])
            at += found[1]
        else:
            out.append(perfect(stmts[at], names))
            at += 1
    return out


def _statements(body: tuple[Stmt, ...] | list[Stmt], temps: list[Buffer]) -> list[Stmt]:
    """The top-level statements, with the temporaries' allocations (anywhere among them) taken out
    into `temps`: every temporary lives in DRAM for the whole kernel."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Alloc):
            temps.append(s.buffer)
            out += _statements(s.body, temps)
        else:
            out.append(s)
    return out


def _epilogue_of(g: Contraction, n: Nest) -> bool:
    """Whether `n` joins group `g` as an epilogue op (else it runs as a vector section of its own)."""
    if not _reads_itself(n.store.value, n) or g.C.buffer is not n.store.buffer:
        return False
    if len(n.axes) > len(n.store.buffer.shape):
        return False
    try:
        _epilogue(g, n)
    except Unsupported:
        return False
    return True


def _is_init(init: Nest, n: Nest) -> bool:
    return init.store.buffer is n.store.buffer and isinstance(init.store.value, Const)


# -- statements -----------------------------------------------------------------------------------
def _is_contraction(value: Expr, own: Load) -> bool:
    return (
        isinstance(value, Binary)
        and value.op is BinaryOp.ADD
        and is_own(value.lhs, own)
        and isinstance(value.rhs, Binary)
        and value.rhs.op is BinaryOp.MUL
        and _factor(value.rhs.lhs, own) is not None
        and _factor(value.rhs.rhs, own) is not None
    )


def _factor(e: Expr, own: Load) -> Load | None:
    """A product operand: a tensor read, or one widened to the result's type (`i32(A[i, k])`: the
    matrix unit multiplies i8 inputs into i32 accumulators)."""
    if isinstance(e, Cast) and e.dtype is own.buffer.dtype:
        e = e.x
    return e if isinstance(e, Load) else None


def _reads_itself(value: Expr, n: Nest) -> bool:
    return any(ld.buffer is n.store.buffer for ld in loads(value))


def _contraction(n: Nest, init: Nest | None, cfg: AccelConfig) -> Contraction:
    value = n.store.value
    assert isinstance(value, Binary) and isinstance(value.rhs, Binary)
    dims = target_dims(n)
    C = access_of(n, n.store.buffer, n.store.index)
    own = Load(n.store.buffer, n.store.index)
    x, y = _factor(value.rhs.lhs, own), _factor(value.rhs.rhs, own)
    assert x is not None and y is not None
    if x.buffer is n.store.buffer or y.buffer is n.store.buffer:
        raise cannot(n.text, "an operand of the product is the tensor being written")
    for ld in (x, y):
        _zero_padding(n, ld)
    ops = [access_of(n, ld.buffer, ld.index, ld.pad is not None) for ld in (x, y)]
    for ld, acc in zip((x, y), ops, strict=True):
        if not acc.regular:
            raise cannot(
                n.text,
                f"{ld.buffer.name}'s index divides a loop or reads a tensor; the matrix unit's operands need"
                " affine indices",
            )
    out_axes = [a for a in n.axes if C.stride(a)]
    red_axes = [a for a in n.axes if not C.stride(a)]
    best, why = None, ""
    for A, B in ((ops[0], ops[1]), (ops[1], ops[0])):
        roles, fit = _roles(C, A, B, out_axes, red_axes, cfg)
        if roles is not None and (best is None or fit > best[0]):
            best = (fit, A, B, roles)
        why = why or fit
    if best is None:
        raise cannot(n.text, why)
    _, A, B, (i, j, k) = best
    if any(s < 0 for acc in (A, B, C) for s in acc.coef.values()):
        raise cannot(n.text, "an index runs backwards (a negative DRAM stride)")
    rest = [a for a in out_axes if a not in (i, j)]
    stackable = [a for a in rest if i is not None and A.stride(a) and not B.stride(a)]
    i2 = next((a for a in stackable if a.tile is not None), None)
    batch = tuple(a for a in rest if a is not i2)
    slices = tuple(a for a in red_axes if a is not k)
    text = f"{format_expr(Load(n.store.buffer, n.store.index), n.names)} += {format_expr(value.rhs, n.names)}"
    g = Contraction(text, C, A, B, i, j, k, batch, slices, tuple(dims), i2=i2)
    g.stack = i2 or min(stackable, key=C.stride, default=None)
    for a in (*batch, *slices):
        if a.tile is not None:
            raise cannot(
                n.text, f"loop {a.name} is split, but only the contraction's i, j, k loops are tiled"
            )
    if init is not None:
        _init(g, init, dims)
    return g


def _zero_padding(n: Nest, ld: Load) -> None:
    """A padded read maps when its pad is zero: the DMA zero-fills the halo (dma.load.pad)."""
    if ld.pad is not None and ld.pad != 0:
        raise cannot(n.text, f"{ld.buffer.name} is padded with {ld.pad}; the DMA fills the halo with zeros")


def _roles(C: Access, A: Access, B: Access, out_axes: list[Axis], red_axes: list[Axis], cfg: AccelConfig):
    """The best (i, j, k) for operands A and B (`_fit`), or None and why none can be loaded."""
    ks = [a for a in red_axes if A.stride(a) and B.stride(a)]
    if not ks:
        return None, "no reduced index is in both operands of the product"
    best, why = None, ""
    for j in [a for a in out_axes if B.stride(a) and not A.stride(a)] + [None]:
        for i in [a for a in out_axes if a is not j and A.stride(a) and not B.stride(a)] + [None]:
            for k in ks:
                fit, problem = _fit(C, A, B, (i, j, k), (out_axes, red_axes), cfg)
                if fit is not None and (best is None or fit > best[0]):
                    best = (fit, (i, j, k))
                why = why or problem
    return (best[1], best[0]) if best is not None else (None, why)


def transposed(acc: Access, cols: Axis | None) -> bool:
    """Whether a tile of `acc` whose columns run along `cols` moves by a transposing DMA (dma.load.t,
    dma.load.acc.t, dma.store.t): its columns are not contiguous in DRAM."""
    return cols is not None and acc.stride(cols) != 1


def _fit(
    C: Access, A: Access, B: Access, roles: tuple, axes: tuple[list[Axis], list[Axis]], cfg: AccelConfig
):
    """How well roles (i, j, k) use the matrix unit, or None and why they cannot be loaded.

    A tile is rows x columns: A i x k, B k x j, C i x j.  A tile whose columns are not contiguous in
    DRAM moves by a transposing DMA, its rows `step` elements apart (a burst per column over the span
    they cover: cheap when the rows are contiguous, a gather otherwise); a stored C tile needs one of
    its axes contiguous.  The fit: the share of the array's rows, columns and time (a preload of dim
    cycles per m streamed rows) the product fills, times the share of time the DRAM channel keeps up
    (`_dma_share`), a tenth less per transposed operand, so a plain layout wins a near tie."""
    i, j, k = roles
    for acc, rows, cols in ((A, i, k), (B, k, j)):
        if not transposed(acc, cols):
            continue
        if rows is not None and acc.stride(rows) > MAX_STEP:
            return None, f"{acc.buffer.name}'s tile rows are {acc.stride(rows)} elements apart"
        if acc.padded and _may_leave(acc, cols):
            return None, f"{acc.buffer.name} is padded along {cols.name}, which a transposing DMA cannot fill"
    if transposed(C, j) and i is not None and C.stride(i) != 1:
        return None, f"{C.buffer.name} has no contiguous index among the product's output loops"
    dim = cfg.dim
    M, N, K = (a.extent if a is not None else 1 for a in (i, j, k))
    use = K / (-(-K // dim) * dim) * N / (-(-N // dim) * dim) * M / (M + dim)
    use *= 0.9 ** sum(transposed(acc, cols) for acc, cols in ((A, k), (B, j), (C, j)))
    present = sum(r is not None for r in (i, j))  # NOTE: a role of extent 1 rather than none
    return (use * _dma_share(C, A, B, roles, axes, cfg), present, -C.stride(i)), ""


def _dma_share(
    C: Access, A: Access, B: Access, roles: tuple, axes: tuple[list[Axis], list[Axis]], cfg: AccelConfig
) -> float:
    """A rough share of the time the DRAM channel keeps the matrix unit fed under roles (i, j, k):
    A is read once per group of four column panels, B once when every slice of it fits in half the
    scratchpad (else once per 256 rows of i), C written once; a transposing load reads the whole span
    its rows cover."""
    i, j, k = roles
    dim, bw, ib = cfg.dim, cfg.dma_bytes_per_cycle, cfg.input_bytes
    M, N, K = (a.extent if a is not None else 1 for a in (i, j, k))
    batch = math.prod(a.extent for a in axes[0] if a not in (i, j))
    slices = math.prod(a.extent for a in axes[1] if a is not k)
    compute = batch * slices * -(-N // dim) * -(-K // dim) * (M + dim)
    a = batch * slices * M * K * ib * span(A, i, k) * -(-N // (4 * dim))
    b = slices * K * N * ib * span(B, k, j)
    if slices * K * N * ib > cfg.sp_rows * cfg.sp_row_bytes // 2:
        b *= batch * -(-M // 256)
    c = batch * M * N * 4
    return min(1.0, compute * bw / (a + b + c))


def span(acc: Access, rows: Axis | None, cols: Axis | None) -> int:
    """How many elements the DMA reads per element it keeps of a tile of `acc` (rows along `rows`,
    columns along `cols`): a transposing load bursts over the span its rows cover, `step` apart."""
    return acc.stride(rows) if transposed(acc, cols) and rows is not None else 1


def _may_leave(acc: Access, axis: Axis) -> bool:
    """Whether some dimension of `acc` that `axis` moves can index outside the tensor."""
    for d in acc.dims:
        if axis not in d.coef:
            continue
        lo = d.const + sum(min(0, c * (a.extent - 1)) for a, c in d.coef.items())
        hi = d.const + sum(max(0, c * (a.extent - 1)) for a, c in d.coef.items())
        if lo < 0 or hi >= d.size * d.div:
            return True
    return False


def _translate(n: Nest, access: Access, to: dict[Axis, Axis]) -> Access:
    if any(a not in to for a in access.coef):
        raise cannot(n.text, f"{access.buffer.name} is indexed by a loop that is not one of the output's")
    if not access.regular:
        raise cannot(
            n.text,
            f"{access.buffer.name}'s index divides a loop or reads a tensor; an epilogue operand needs affine"
            " indices",
        )
    return Access(access.buffer, {to[a]: c for a, c in access.coef.items()}, access.const, access.padded)


def _dim_map(n: Nest, dims: list[Axis]) -> dict[Axis, Axis]:
    return dict(zip(target_dims(n), dims, strict=True))


def _init(g: Contraction, n: Nest, dims: list[Axis]) -> None:
    if n.store.buffer is not g.C.buffer:
        raise cannot(n.text, "an initialisation must be followed by a contraction into the same tensor")
    to = _dim_map(n, dims)
    value = n.store.value
    if isinstance(value, Const):
        if value.value != 0:
            g.epilogue.insert(0, VectorOp("add", imm=float(value.value)))
        return
    if isinstance(value, Load) and not value.pad:
        access = _translate(n, access_of(n, value.buffer, value.index), to)
        if transposed(access, g.j) and g.i is not None and access.stride(g.i) != 1:
            raise cannot(
                n.text,
                f"{value.buffer.name} is contiguous along neither {g.j.name} nor {g.i.name} (a DMA moves"
                " runs of contiguous elements)",
            )
        if any(s < 0 for s in access.coef.values()):
            raise cannot(n.text, "an index runs backwards (a negative DRAM stride)")
        g.init = access
        return
    raise cannot(n.text, "the initial value must be a constant or a tensor read (a bias b[j], a matrix)")


def _epilogue(g: Contraction, n: Nest) -> None:
    to = _dim_map(n, list(g.dims))
    g.epilogue.extend(_vector_ops(n, n.store.value, Load(n.store.buffer, n.store.index), g, to))


def _vector_ops(n: Nest, e: Expr, own: Load, g: Contraction, to: dict[Axis, Axis]) -> list[VectorOp]:
    """The ops that turn the accumulator into `e`, which holds `own` exactly once."""
    if is_own(e, own):
        return []
    uses = sum(1 for ld in loads(e) if ld.buffer is own.buffer)
    if uses != 1:
        raise cannot(n.text, f"the epilogue reads {own.buffer.name} {uses} times; it must read it once")
    if isinstance(e, Unary):
        op = {UnaryOp.RELU: RELU, UnaryOp.EXP: VectorOp("exp"), UnaryOp.NEG: VectorOp("mul", imm=-1.0)}
        if e.op not in op:
            raise cannot(n.text, f"{e.op.value} has no vector-unit instruction")
        return [*_vector_ops(n, e.x, own, g, to), op[e.op]]
    if isinstance(e, Binary):
        inside_lhs = any(ld.buffer is own.buffer for ld in loads(e.lhs))
        x, other = (e.lhs, e.rhs) if inside_lhs else (e.rhs, e.lhs)
        head = _vector_ops(n, x, own, g, to)
        operand = _operand(n, other, g, to)
        match e.op, inside_lhs:
            case (BinaryOp.ADD | BinaryOp.MUL | BinaryOp.MAX, _):
                return [*head, VectorOp(e.op.name.lower(), **operand)]
            case (BinaryOp.SUB, True):
                if "imm" in operand:
                    return [*head, VectorOp("add", imm=-operand["imm"])]
                return [*head, VectorOp("sub", **operand)]
            case (BinaryOp.SUB, False):
                return [*head, VectorOp("mul", imm=-1.0), VectorOp("add", **operand)]
            case (BinaryOp.DIV, True) if "imm" in operand and operand["imm"] != 0:
                return [*head, VectorOp("mul", imm=1.0 / operand["imm"])]
        raise cannot(n.text, f"`{e.op.value}` with the accumulator has no vector-unit instruction here")
    raise cannot(n.text, "the epilogue must be arithmetic on the contraction's result")


def _operand(n: Nest, e: Expr, g: Contraction, to: dict[Axis, Axis]) -> dict:
    if isinstance(e, Const) and e.dtype.is_float:
        return {"imm": float(e.value)}
    if isinstance(e, Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return {"imm": float(e.value)}
    if isinstance(e, Param) and e.dtype is DType.F32:
        return {"param": e.name}
    if isinstance(e, Load) and not e.pad:
        access = _translate(n, access_of(n, e.buffer, e.index), to)
        if g.j is not None and set(access.coef) == {g.j} and access.coef[g.j] == 1:
            return {"vector": access}
        if not access.coef:
            raise cannot(n.text, f"{e.buffer.name} is one element: pass it as a scalar parameter")
    raise cannot(
        n.text,
        f"{format_expr(e)} cannot combine with the accumulator: use a constant, an f32 parameter or a row"
        " vector v[j] along the output's last axis",
    )
