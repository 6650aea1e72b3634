"""A statement's perfect loop nest read by meaning: split loops merged back into axes, and every
tensor access as a flat DRAM offset `const + sum(coef[axis] * axis)` (match.py's contraction groups
and vector_match.py's vector statements both start here).

Lowering makes one loop nest per statement and passes keep it so.  Loops that `split`/`tile` made
are merged back into *axes*: `i_o * 64 + i_i` is one axis whose tile is 64 (its extent comes from
the split's guard, else from the loops' product).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kcomp.affine import affine
from kcomp.errors import ScheduleError, Unsupported
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Expr, Load, Var, children, conjuncts, loads
from kcomp.loops import Guard, Loop, Stmt, Store
from kcomp.printer import format_expr, format_stmt


@dataclass(eq=False)
class Axis:
    """One index of a statement: its loops outermost first (several after a split) and their scales."""

    name: str  # printed name of its outermost loop
    loops: tuple[Var, ...]
    scales: tuple[int, ...]  # value of one step of each loop, in axis units
    extent: int
    position: int  # where its outermost loop sits in the nest (outer loops first)

    @property
    def tile(self) -> int | None:
        """The extent inside the outermost loop when the axis is split, else None."""
        return self.scales[0] if len(self.loops) > 1 else None


@dataclass(frozen=True, eq=False)
class Dim:
    """One dimension of an access: index `(const + sum(coef[axis] * axis value)) // div` into `size`,
    then `% mod` when mod is set (floor division and modulo, the language's)."""

    coef: dict[Axis, int]
    const: int
    size: int
    div: int = 1
    mod: int = 0

    def value(self, values: dict[Axis, int]) -> int:
        v = (self.const + sum(c * values.get(a, 0) for a, c in self.coef.items())) // self.div
        return v % self.mod if self.mod else v

    @property
    def regular(self) -> bool:
        """Whether the index is affine (no division, no modulo)."""
        return self.div == 1 and not self.mod


@dataclass(frozen=True, eq=False)
class Gather:
    """A dimension indexed by an i32 tensor's element (`E[ids[t], d]`): where that element is read
    (`index`, affine), the dimension's element stride and size (an index outside it reads the pad)."""

    index: Access
    stride: int
    size: int


@dataclass(eq=False)
class Access:
    """A tensor read or written at flat element offset `const + sum(coef[axis] * axis value)`, plus
    the dimensions whose index divides (`c // 8`: `divided`, each with its element stride); `dims`
    per dimension (where a padded read leaves the tensor)."""

    buffer: Buffer
    coef: dict[Axis, int]
    const: int
    padded: bool = False  # reads outside the tensor (pad=0) may happen
    dims: tuple[Dim, ...] = ()
    divided: tuple[tuple[Dim, int], ...] = ()
    gathers: tuple[Gather, ...] = ()  # dimensions indexed by data; `coef` and `const` leave them out

    def at(self, values: dict[Axis, int]) -> int:
        flat = self.const + sum(c * values.get(a, 0) for a, c in self.coef.items())
        return flat + sum(d.value(values) * stride for d, stride in self.divided)

    @property
    def irregular(self) -> frozenset[Axis]:
        """The axes a dividing or data-dependent index uses: along them the offset is not `stride(axis)`
        a step."""
        found = {a for d, _ in self.divided for a in d.coef} | {a for g in self.gathers for a in g.index.coef}
        return frozenset(found)

    @property
    def regular(self) -> bool:
        """Whether the offset is `at`: affine in the axes, no dividing or data-dependent index."""
        return not self.divided and not self.gathers

    def stride(self, axis: Axis | None) -> int:
        return self.coef.get(axis, 0) if axis is not None else 0


@dataclass(eq=False)
class Nest:
    """One statement's perfect loop nest, with its axes."""

    loops: list[Loop]
    guards: list[Expr]
    store: Store
    text: str
    names: dict
    axes: list[Axis] = field(default_factory=list)
    of: dict[Var, tuple[Axis, int]] = field(default_factory=dict)  # loop var -> (axis, scale)
    arg: str | None = None  # "max" / "min": an arg-reduction (`arg_nest`); store.value is what it compares
    position: Var | None = None  # an arg-reduction's reduced loop, whose value it stores


def cannot(text: str, why: str) -> ScheduleError:
    return Unsupported(f"the accelerator backend cannot map {text}: {why}")


# -- loop nests and axes ------------------------------------------------------------------------------
def perfect(s: Stmt, names: dict) -> Nest:
    loops: list[Loop] = []
    guards: list[Expr] = []
    while not isinstance(s, Store):
        if isinstance(s, Loop):
            loops.append(s)
        elif isinstance(s, Guard):
            guards.append(s.cond)
        else:
            raise Unsupported(f"the accelerator backend cannot map buffer {names.get(s.buffer, '?')}: "
                                "only kernel tensors live in DRAM (no cache_write/cache_read/pack)")  # fmt: skip
        if len(s.body) != 1:
            first = format_stmt(s, names).splitlines()[0].strip()
            raise cannot(
                f"`{first}`",
                "its loop holds several statements (a peeled split, cache_write or a fused nest); the"
                " accelerator mapping needs one perfect loop nest per statement (tile with guard tails)",
            )
        s = s.body[0]
    text = f"{format_expr(Load(s.buffer, s.index), names)} = {format_expr(s.value, names)}"
    return Nest(loops, guards, s, text, names)


def _inner(s: Stmt) -> tuple[list[Loop], tuple[Stmt, ...]]:
    """The loops around `s`'s body (while each holds one loop) and the statements of the innermost."""
    loops: list[Loop] = []
    body: tuple[Stmt, ...] = (s,)
    while len(body) == 1 and isinstance(body[0], Loop):
        loops.append(body[0])
        body = tuple(body[0].body)
    return loops, body


def arg_nest(stmts: list[Stmt], at: int, names: dict) -> tuple[Nest, int] | None:
    """The arg-reduction kcomp/lower.py makes from stmts[at] on (`best = -inf; T = 0`, then `if v >
    best: best = v; T = d`) as one Nest that stores the compared value into T, with `arg` max or min,
    and how many statements it took; None when they are not that pattern."""
    _, fills = _inner(stmts[at])
    taken = 2
    if len(fills) == 1 and at + 2 < len(stmts):  # NOTE: a rank-0 result: the two fills stand alone
        fills, taken = (stmts[at], stmts[at + 1]), 3
    if len(fills) != 2 or at + taken - 1 >= len(stmts):
        return None
    loops, body = _inner(stmts[at + taken - 1])
    guard = body[0] if len(body) == 1 else None
    if not (isinstance(guard, Guard) and len(guard.body) == 2 and isinstance(guard.cond, Binary)):
        return None
    set_best, set_pos = guard.body
    fill_best, fill_pos = fills
    if not all(isinstance(x, Store) for x in (set_best, set_pos, fill_best, fill_pos)):
        return None
    assert isinstance(set_best, Store) and isinstance(set_pos, Store) and isinstance(fill_best, Store)
    assert isinstance(fill_pos, Store)
    cond, pos = guard.cond, set_pos.value.x if isinstance(set_pos.value, Cast) else set_pos.value
    arg = {BinaryOp.GT: "max", BinaryOp.LT: "min"}.get(cond.op)
    if (
        arg is None
        or (fill_best.buffer, fill_pos.buffer) != (set_best.buffer, set_pos.buffer)
        or not isinstance(fill_best.value, Const)
        or cond.lhs != set_best.value
        or cond.rhs != Load(set_best.buffer, set_best.index)
        or not isinstance(pos, Var)
    ):
        return None
    store = Store(set_pos.buffer, set_pos.index, set_best.value)
    text = (
        f"{format_expr(Load(store.buffer, store.index), names)} arg{arg}= {format_expr(store.value, names)}"
    )
    return Nest(loops, [], store, text, names, arg=arg, position=pos), taken


def find_axes(n: Nest, names: dict) -> None:
    """Merge split loops into axes (`o * ext(i) + i` everywhere: one axis), with extents from guards."""
    ext = {loop.var: loop.extent for loop in n.loops}
    order = {loop.var: p for p, loop in enumerate(n.loops)}
    exprs = list(n.store.index) + [e for ld in loads(n.store.value) for e in ld.index]
    forms = []
    for e in exprs:
        if isinstance(e, Load):
            continue  # NOTE: a gather (access_of); loads() lists its own index among the reads
        form = _index_form(e)
        if form is None:
            raise cannot(n.text, f"index {format_expr(e, names)} is not affine in the loops")
        forms.append(form[0])
    sig = {v: tuple(f.get(v, 0) for f in forms) for v in ext}
    valued = _valued(n.store.value)  # NOTE: `select(j <= i, ...)` uses j and i as values
    parent: dict[Var, Var] = {}
    for v in ext:
        if not any(sig[v]):
            if ext[v] > 1 and v not in valued:
                raise cannot(n.text, f"loop {names[v]} is used by no index (it would repeat the statement)")
            continue
        scaled = tuple(c * ext[v] for c in sig[v])
        outer = [o for o in ext if o is not v and sig[o] == scaled and order[o] < order[v]]
        if outer:
            parent[v] = outer[0]
    if len(set(parent.values())) != len(parent):
        raise cannot(n.text, "its split loops cannot be told apart (two loops split from one?)")
    inner_of = {o: v for v, o in parent.items()}
    for v in ext:
        if v in parent or not (any(sig[v]) or v in valued):
            continue  # an inner part of a split axis, or an unused loop of extent 1
        chain = [v]
        while chain[-1] in inner_of:
            chain.append(inner_of[chain[-1]])
        n.axes.append(Axis(names[v], tuple(chain), (), 0, order[v]))
    _fix_scales(n, ext)
    _extents(n, names)


def _valued(e: Expr) -> set[Var]:
    """The loop variables `e` uses as values (outside the indices of its reads)."""
    if isinstance(e, Var):
        return {e}
    if isinstance(e, Load):
        return set()
    return set().union(*(_valued(k) for k in children(e)))


def _fix_scales(n: Nest, ext: dict[Var, int]) -> None:
    """Scales from the innermost loop (scale 1) outwards, the extent as their product (guards may lower
    it); record loop -> (axis, scale)."""
    for a in n.axes:
        scales, s = [], 1
        for v in reversed(a.loops):
            scales.append(s)
            s *= ext[v]
        a.scales = tuple(reversed(scales))
        a.extent = s
        for v, sc in zip(a.loops, a.scales, strict=True):
            n.of[v] = (a, sc)


def _extents(n: Nest, names: dict) -> None:
    """A guard `o * T + i < E` bounds an axis to E; any other guard is not a tiling remainder."""
    for cond in n.guards:
        for part in conjuncts(cond):
            form = affine(part.rhs) if isinstance(part, Binary) and part.op is BinaryOp.LT else None
            lhs = affine(part.lhs) if form is not None else None
            axis = _axis_of_form(n, lhs) if lhs is not None and set(form) <= {None} else None
            if axis is None:
                raise cannot(n.text, f"guard {format_expr(part, names)} is not the remainder of a split loop")
            axis.extent = min(axis.extent, form.get(None, 0))


def _axis_of_form(n: Nest, form: dict) -> Axis | None:
    if form.get(None, 0) != 0:
        return None
    for a in n.axes:
        if {v: c for v, c in form.items() if v is not None} == dict(zip(a.loops, a.scales, strict=True)):
            return a
    return None


def _index_form(e: Expr) -> tuple[dict, int, int] | None:
    """An index as (affine form, divisor, modulus): `affine` itself (divisor 1, no modulus), an affine
    form floor-divided by a positive constant (`c // 8`), either taken modulo a positive constant
    (`(i + k - 1) % 3`); None otherwise."""
    mod = 0
    if isinstance(e, Binary) and e.op is BinaryOp.MOD and isinstance(e.rhs, Const):
        if not (isinstance(e.rhs.value, int) and e.rhs.value > 0):
            return None
        e, mod = e.lhs, e.rhs.value
    form = affine(e)
    if form is not None:
        return form, 1, mod
    if isinstance(e, Binary) and e.op is BinaryOp.FLOORDIV and isinstance(e.rhs, Const):
        lhs = affine(e.lhs)
        if lhs is not None and isinstance(e.rhs.value, int) and e.rhs.value > 0:
            return lhs, e.rhs.value, mod
    return None


def _dim_forms(n: Nest, index: tuple[Expr, ...]) -> list[tuple[dict[Axis, int], int, int, int]]:
    """Each index as (coefficient per axis, constant, divisor, modulus); ScheduleError when it splits
    an axis unevenly."""
    out = []
    for e in index:
        form, div, mod = _index_form(e) or ({}, 1, 0)
        coef: dict[Axis, int] = {}
        for v, c in form.items():
            if v is None:
                continue
            axis, scale = n.of[v]
            per_axis = c // scale if c % scale == 0 else None
            if per_axis is None or coef.setdefault(axis, per_axis) != per_axis:
                raise cannot(n.text, "an index uses the parts of a split loop unevenly")
        for axis in coef:
            if any(form.get(v, 0) != coef[axis] * s for v, s in zip(axis.loops, axis.scales, strict=True)):
                raise cannot(n.text, "an index uses the parts of a split loop unevenly")
        out.append(({a: c for a, c in coef.items() if c}, form.get(None, 0), div, mod))
    return out


def access_of(n: Nest, buffer: Buffer, index: tuple[Expr, ...], padded: bool = False) -> Access:
    coef: dict[Axis, int] = {}
    const, stride = 0, 1
    dims = tuple(
        Dim(dc, k, size, div, mod)
        for (dc, k, div, mod), size in zip(_dim_forms(n, index), buffer.shape, strict=True)
    )
    divided, gathers = [], []
    for d, e in zip(reversed(dims), reversed(index), strict=True):
        if isinstance(e, Load):
            inner = access_of(n, e.buffer, e.index)
            if not inner.regular:
                raise cannot(
                    n.text, f"{e.buffer.name}, read in an index, is itself read through a computed index"
                )
            gathers.append(Gather(inner, stride, d.size))
        elif not d.regular:
            divided.append((d, stride))
        else:
            for a, c in d.coef.items():
                coef[a] = coef.get(a, 0) + c * stride
            const += d.const * stride
        stride *= d.size
    return Access(
        buffer, {a: c for a, c in coef.items() if c}, const, padded, dims, tuple(divided), tuple(gathers)
    )


def inside(
    access: Access, at: dict[Axis, int], rows: tuple[Axis | None, int], cols: tuple[Axis | None, int]
) -> tuple[int, int, int, int] | None:
    """(first row, end row, first column, end column) of the elements inside the tensor, of the
    region whose element (r, c) is `access` at `at` with the rows axis advanced r and the columns
    axis c (rows and cols: (axis, count)); the rows outside it read zeros, as do the columns.
    None when one dimension moves with both (a diagonal halo is not a rectangle: one row at a time)."""
    (row_axis, n_rows), (col_axis, n_cols) = rows, cols
    r_lo, r_hi, c_lo, c_hi = 0, n_rows, 0, n_cols
    for d in access.dims:
        base = d.const + sum(c * at.get(a, 0) for a, c in d.coef.items())
        step_r = d.coef.get(row_axis, 0) if row_axis is not None and n_rows > 1 else 0
        step_c = d.coef.get(col_axis, 0) if col_axis is not None and n_cols > 1 else 0
        if step_r and step_c:
            return None
        if step_r:
            lo, hi = _span(base, step_r, d.size * d.div)
            r_lo, r_hi = max(r_lo, lo), min(r_hi, hi)
        elif step_c:
            lo, hi = _span(base, step_c, d.size * d.div)
            c_lo, c_hi = max(c_lo, lo), min(c_hi, hi)
        elif not 0 <= base < d.size * d.div:
            r_hi = r_lo  # every row is outside
    return r_lo, max(r_lo, r_hi), c_lo, max(c_lo, c_hi)


def _span(base: int, step: int, size: int) -> tuple[int, int]:
    """The x with 0 <= base + step * x < size, as [lo, hi) (step > 0)."""
    return -(base // step), -((base - size) // step)


def target_dims(n: Nest) -> list[Axis]:
    """The axis of each dimension of the stored tensor: C[a, b, c] with whole axes covering it."""
    dims = []
    for (coef, k, div, mod), size in zip(_dim_forms(n, n.store.index), n.store.buffer.shape, strict=True):
        if (
            k != 0
            or div != 1
            or mod
            or len(coef) != 1
            or next(iter(coef.values())) != 1
            or next(iter(coef)).extent != size
        ):
            raise cannot(n.text, "the stored tensor must be indexed by one whole loop per dimension")
        dims.append(next(iter(coef)))
    return dims


def same_index(a: tuple[Expr, ...], b: tuple[Expr, ...]) -> bool:
    return len(a) == len(b) and all(affine(x) == affine(y) for x, y in zip(a, b, strict=True))


def is_own(e: Expr, own: Load) -> bool:
    return isinstance(e, Load) and e.buffer is own.buffer and same_index(e.index, own.index)
