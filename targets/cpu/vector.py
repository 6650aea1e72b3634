"""Explicit SIMD for `vector` loops: the loop runs in chunks of `W` lanes, each statement once per chunk.

    vector for j in 0..20:  Y[i, j] = X[i, j] * a          for c in 0..2: kc_store_f32(&Y[i*20 + c*8], kc_load_f32(&X[..]) * kc_splat_f32(a))
                                                           tail (4 lanes): kc_storen_f32(&Y[i*20 + 16], ..., 4)

Inside the loop an expression is *uniform* (does not depend on the loop variable: emitted as scalar C
and broadcast where it meets a vector) or *varying*.  A load or store whose flat offset grows by 1 per
iteration is one contiguous vector access (aligned when provably so); by 0, a scalar; anything else
is gathered/scattered lane by lane.  Operations without a vector form (libm functions, integer
division, ...) are applied lane by lane with the scalar templates, so semantics never differ.

Remainders: a final partial chunk uses masked loads and stores.  A guard `e < N` whose `e` grows by 1
per iteration (what `split` leaves around the inner loop) becomes a lane count: full chunks run the
plain code, the chunk that straddles `N` runs masked code.  A body that stores into one place every
iteration (`vectorize j reduce`) keeps one partial result per lane and combines them after the loop.
A loop this module cannot handle raises `Unvectorizable`; the emitter then writes a scalar loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcomp.affine import affine, const, simplify
from kcomp.dtypes import DType
from kcomp.expr import (
    COMPARISONS,
    Binary,
    BinaryOp,
    Buffer,
    Cast,
    Const,
    Expr,
    Load,
    Scope,
    Select,
    Unary,
    UnaryOp,
    Var,
    conjuncts,
    free_vars,
    substitute,
    walk,
)
from kcomp.loops import Alloc, Guard, Loop, LoopKind, Stmt, Store
from kcomp.targets.cpu.simd import CTYPE, VECTOR_DTYPES, VTYPE
from kcomp.targets.cpu.vector_loads import padded_load, stride2_load
from kcomp.targets.cpu.vector_parts import Promotion, Unvectorizable, V, flat_expr, lane_coef  # noqa: F401 (Promotion: emit.py)

if TYPE_CHECKING:
    from kcomp.targets.cpu.emit import CpuEmitter

CHUNKS_UNROLLED = 4  # at most this many full chunks are written out instead of looped
IDENTITY = {BinaryOp.ADD: "0", BinaryOp.MUL: "1", BinaryOp.MAX: "-INFINITY", BinaryOp.MIN: "INFINITY"}
INT_IDENTITY = {BinaryOp.ADD: "0", BinaryOp.MUL: "1", BinaryOp.MAX: "INT32_MIN", BinaryOp.MIN: "INT32_MAX"}
INFIX = {BinaryOp.ADD: "+", BinaryOp.SUB: "-", BinaryOp.MUL: "*"}
FLOAT_INFIX = {**INFIX, BinaryOp.DIV: "/"}
MASK_INFIX = {BinaryOp.AND: "&", BinaryOp.OR: "|", BinaryOp.EQ: "==", BinaryOp.NE: "!="}
HELPER = {BinaryOp.MAX: "kc_vmax", BinaryOp.MIN: "kc_vmin"}
RUNNING = {BinaryOp.MAX: "kc_rmax", BinaryOp.MIN: "kc_rmin"}  # accumulators that are never NaN
HORIZONTAL = {BinaryOp.ADD: "kc_hsum_f32", BinaryOp.MAX: "kc_hmax_f32", BinaryOp.MIN: "kc_hmin_f32"}
ACCUMULATORS = 4  # partial vector accumulators of a long reduction: covers an add's latency
VECTOR_MATH = {
    UnaryOp.EXP: "kc_vexp_f32",
    UnaryOp.LOG: "kc_vlog_f32",
    UnaryOp.SIGMOID: "kc_vsigmoid_f32",
    UnaryOp.TANH: "kc_vtanh_f32",
    UnaryOp.ERF: "kc_verf_f32",
}


class VectorLoop:
    """Emits one `vector` loop; `em` is the enclosing CpuEmitter (names, scalar expressions, indents)."""

    def __init__(self, em: CpuEmitter, loop: Loop, width: int):
        self.em = em
        self.loop = loop
        self.v = loop.var
        self.w = width
        self._tmp = 0
        self._check(loop.body)

    # -- whole loop ------------------------------------------------------------------------------
    def emit(self, depth: int) -> list[str]:
        pad = self.em.INDENT * depth
        n_full, tail = divmod(self.loop.extent, self.w)
        reduction = self._reduction()
        lines: list[str] = [
            f"{pad}{{ /* vector loop {self.v.name}: {self.loop.extent} = {n_full} x {self.w} + {tail} */"
        ]
        inner = depth + 1
        if reduction is not None:
            lines += self._reduce_prologue(reduction, inner)
        if n_full > CHUNKS_UNROLLED and reduction is not None:
            lines += self._reduce_loop(reduction, n_full, inner)
        elif n_full > CHUNKS_UNROLLED:
            c = Var(f"{self.v.name}_c")
            cname = self.em.names(c)
            base = Binary(BinaryOp.MUL, c, const(self.w))
            lines.append(f"{pad}{self.em.INDENT}for (int64_t {cname} = 0; {cname} < {n_full}; ++{cname}) {{")
            lines += self.chunk(base, None, inner + 1, reduction)
            lines.append(f"{pad}{self.em.INDENT}}}")
        else:
            for k in range(n_full):
                lines += self.chunk(const(k * self.w), None, inner, reduction)
        if tail:
            lines += self.chunk(const(n_full * self.w), str(tail), inner, reduction)
        if reduction is not None:
            lines += self._reduce_epilogue(reduction, inner)
        lines.append(f"{pad}}}")
        return lines

    def _check(self, body: tuple[Stmt, ...]) -> None:
        for s in body:
            match s:
                case Alloc():
                    raise Unvectorizable("allocation inside a vector loop")
                case Loop(kind=LoopKind.PARALLEL | LoopKind.VECTOR):
                    raise Unvectorizable("nested parallel or vector loop")
                case Loop() | Guard():
                    if isinstance(s, Guard):
                        self._check_expr(s.cond)
                    self._check(s.body)
                case Store():
                    if s.buffer.dtype not in VECTOR_DTYPES:
                        raise Unvectorizable(f"{s.buffer.dtype} stores")
                    for e in (*s.index, s.value):
                        self._check_expr(e)

    def _check_expr(self, e: Expr) -> None:
        for n in walk(e):
            if not isinstance(n, Var) and _storage(n.dtype) not in VECTOR_DTYPES and self.v in free_vars(n):
                raise Unvectorizable(f"{n.dtype} values")

    # -- one chunk -------------------------------------------------------------------------------
    def chunk(self, base: Expr, n: str | None, depth: int, reduction=None) -> list[str]:
        """The body for lanes `base .. base+W-1`; `n` is the active lane count (None: all W)."""
        self.base, self.n = base, n
        if reduction is not None:
            return self._reduce_chunk(reduction, depth)
        return self.block(self.loop.body, depth)

    def block(self, body: tuple[Stmt, ...], depth: int) -> list[str]:
        return [line for s in body for line in self.stmt(s, depth)]

    def stmt(self, s: Stmt, depth: int) -> list[str]:
        pad = self.em.INDENT * depth
        match s:
            case Store():
                return [pad + self.store(s)]
            case Loop():
                var = self.em.names(s.var)
                if s.kind is LoopKind.UNROLLED:
                    out = []
                    for k in range(s.extent):
                        out += [f"{pad}{{", *self.block(self.em.unrolled_copy(s, k), depth + 1), f"{pad}}}"]
                    return out
                head = f"{pad}for (int64_t {var} = 0; {var} < {s.extent}; ++{var}) {{"
                return [head, *self.block(s.body, depth + 1), f"{pad}}}"]
            case Guard():
                return self.guard(s, depth)
        raise Unvectorizable(f"statement {type(s).__name__}")

    def guard(self, s: Guard, depth: int) -> list[str]:
        pad = self.em.INDENT * depth
        uniform, bounds = [], []
        for c in conjuncts(s.cond):
            if self.v not in free_vars(c):
                uniform.append(c)
                continue
            bound = self._lane_bound(c)
            if bound is None:
                raise Unvectorizable("a guard that is not a lane bound")
            bounds.append(bound)
        lines: list[str] = []
        close = 0
        if uniform:
            cond = " && ".join(self.em.expr.value(c) for c in uniform)
            lines.append(f"{pad}if ({cond}) {{")
            close += 1
        if not bounds:
            lines += self.block(s.body, depth + close)
        else:
            p2 = self.em.INDENT * (depth + close)
            name = self.em.names.fresh("kc_n")
            limit = self.n or str(self.w)
            lines.append(f"{p2}{{ int64_t {name} = {limit};")
            for b in bounds:
                lines.append(f"{p2}if ({b} < {name}) {name} = {b};")
            saved = self.n
            if saved is None:
                lines.append(f"{p2}if ({name} >= {self.w}) {{")
                lines += self.block(s.body, depth + close + 1)
                lines.append(f"{p2}}} else if ({name} > 0) {{")
            else:
                lines.append(f"{p2}if ({name} > 0) {{")
            self.n = name
            lines += self.block(s.body, depth + close + 1)
            self.n = saved
            lines.append(f"{p2}}} }}")
        for k in range(close):
            lines.append(f"{self.em.INDENT * (depth + close - 1 - k)}}}")
        return lines

    def _lane_bound(self, c: Expr) -> str | None:
        """For `e < N` / `e <= N` with e growing by 1 per lane: lanes allowed from this chunk's base."""
        if not isinstance(c, Binary) or c.op not in (BinaryOp.LT, BinaryOp.LE):
            return None
        e, limit = c.lhs, c.rhs
        if lane_coef(e, self.v) != 1 or self.v in free_vars(limit):
            return None
        start = self.em.expr.index(simplify(substitute(e, {self.v: self.base})))
        extra = " + 1" if c.op is BinaryOp.LE else ""
        return f"((int64_t){self.em.expr.value(limit)}{extra} - ({start}))"

    # -- stores ----------------------------------------------------------------------------------
    def store(self, s: Store) -> str:
        buf = s.buffer
        flat = flat_expr(buf, s.index)
        coef = lane_coef(flat, self.v)
        value = self.vec(self.value(s.value), _storage(buf.dtype))
        if coef == 1:
            at = simplify(substitute(flat, {self.v: self.base}))
            promo = self.em.promotions.get(buf)
            if promo is not None:
                if not isinstance(at, Const):
                    promo.failed = True
                    return "/* unpromotable */;"
                return f"{promo.slot(int(at.value), self.w, self.em.names(buf), self.n)} = {value.text};"
            ptr = f"&{self.em.names(buf)}[{self.em.expr.index(at)}]"
            s_ = "f32" if buf.dtype is DType.F32 else "i32"
            if self.n is not None:
                return f"kc_storen_{s_}({ptr}, {value.text}, {self.n});"
            kind = "astore" if self._aligned(buf, at) else "store"
            return f"kc_{kind}_{s_}({ptr}, {value.text});"
        if coef == 0:
            raise Unvectorizable(f"every iteration stores to the same {buf.name} element")
        if buf in self.em.promotions:
            self.em.promotions[buf].failed = True
        # scatter: one lane at a time
        t = self._fresh()
        parts = [f"{{ {VTYPE[value.dtype]} {t} = {value.text};"]
        for lane in range(self.w):
            idx = tuple(simplify(substitute(i, {self.v: self._lane(lane)})) for i in s.index)
            elem = f"{t}[{lane}]"
            if buf.dtype is DType.BOOL:
                elem = f"({elem} != 0)"
            stmt = f"{self.em.names(buf)}[{self.em.expr.flat(buf, idx)}] = ({CTYPE[buf.dtype] if buf.dtype is not DType.BOOL else 'bool'}){elem};"
            parts.append(stmt if self.n is None else f"if ({lane} < {self.n}) {stmt}")
        parts.append("}")
        return " ".join(parts)

    def _aligned(self, buf: Buffer, at: Expr) -> bool:
        """Local buffers are 64-byte aligned; an offset that is a multiple of W in every term is too."""

        if buf.scope is Scope.GLOBAL and buf not in self.em.allocated:
            return False
        a = affine(at)
        return a is not None and all(c % self.w == 0 for c in a.values())

    def _lane(self, lane: int) -> Expr:
        return Binary(BinaryOp.ADD, self.base, const(lane))

    def _fresh(self) -> str:
        self._tmp += 1
        return self.em.names.fresh("kc_l")

    # -- expressions -----------------------------------------------------------------------------
    def value(self, e: Expr) -> V:
        if self.v not in free_vars(e):
            self.em.touch(e)
            return V(self.em.expr.value(e), False, _storage(e.dtype))
        match e:
            case Var():
                return V(
                    f"(kc_iota() + kc_splat_i32((int32_t)({self.em.expr.index(self.base)})))", True, DType.I32
                )
            case Load():
                return self.load(e)
            case Binary(op=op, lhs=a, rhs=b):
                return self.binary(e, op, self.value(a), self.value(b))
            case Unary(op=op, x=x):
                return self.unary(e, op, self.value(x))
            case Select(cond=c, then=t, other=o):
                m = self.vec(self.value(c), DType.BOOL)
                a, b = self.value(t), self.value(o)
                dt = e.dtype.compute if e.dtype is not DType.BOOL else DType.BOOL
                s = "f32" if dt is DType.F32 else "i32"
                return V(f"kc_blend_{s}({m.text}, {self.vec(a, dt).text}, {self.vec(b, dt).text})", True, dt)
            case Cast(dtype=dt, x=x):
                return self.cast(self.value(x), dt)
        return self.lanewise(e)

    def vec(self, x: V, dtype: DType) -> V:
        """`x` as a vector of `dtype` (broadcasting a uniform value)."""
        if x.vector:
            return x
        if dtype is DType.BOOL:
            return V(f"kc_splat_i32(-(int32_t)({x.text}))", True, DType.BOOL)
        s = "f32" if dtype is DType.F32 else "i32"
        return V(f"kc_splat_{s}({x.text})", True, dtype)

    def load(self, e: Load) -> V:
        buf = e.buffer
        dt = buf.dtype.compute if buf.dtype is not DType.BOOL else DType.BOOL
        if e.pad is None and buf.dtype in VECTOR_DTYPES:
            flat = flat_expr(buf, e.index)
            if lane_coef(flat, self.v) == 1:
                at = simplify(substitute(flat, {self.v: self.base}))
                promo = self.em.promotions.get(buf)
                if promo is not None:
                    if isinstance(at, Const):
                        return V(promo.slot(int(at.value), self.w, self.em.names(buf), self.n), True, dt)
                    promo.failed = True
                ptr = f"&{self.em.names(buf)}[{self.em.expr.index(at)}]"
                s = "f32" if buf.dtype is DType.F32 else "i32"
                if self.n is not None:
                    text = f"kc_loadn_{s}({ptr}, {self.n})"
                else:
                    text = f"kc_{'aload' if self._aligned(buf, at) else 'load'}_{s}({ptr})"
                if buf.dtype is DType.BOOL:
                    text = f"(-{text})"
                return V(text, True, dt)
        if buf in self.em.promotions:
            self.em.promotions[buf].failed = True
        padded = padded_load(self, e)
        if padded is None:
            padded = stride2_load(self, e)
        return padded if padded is not None else self.lanewise(e)

    def binary(self, e: Binary, op: BinaryOp, a: V, b: V) -> V:
        dt = _common(a.dtype, b.dtype)
        if dt is DType.F32:
            if op is BinaryOp.DIV and a.vector and not b.vector and b.dtype is DType.F32:
                return V(f"kc_divu_f32({a.text}, {b.text})", True, dt)
            if op in FLOAT_INFIX:
                return V(f"({self.vec(a, dt).text} {FLOAT_INFIX[op]} {self.vec(b, dt).text})", True, dt)
            if op in HELPER:
                return V(f"{HELPER[op]}_f32({self.vec(a, dt).text}, {self.vec(b, dt).text})", True, dt)
            if op in COMPARISONS:
                sym = op.value
                return V(f"({self.vec(a, dt).text} {sym} {self.vec(b, dt).text})", True, DType.BOOL)
        if dt is DType.I32:
            if op in INFIX:
                return V(f"({self.vec(a, dt).text} {INFIX[op]} {self.vec(b, dt).text})", True, dt)
            if op in HELPER:
                return V(f"{HELPER[op]}_i32({self.vec(a, dt).text}, {self.vec(b, dt).text})", True, dt)
            if op in COMPARISONS:
                return V(f"({self.vec(a, dt).text} {op.value} {self.vec(b, dt).text})", True, DType.BOOL)
        if dt is DType.BOOL and op in MASK_INFIX:
            return V(f"({self.vec(a, dt).text} {MASK_INFIX[op]} {self.vec(b, dt).text})", True, DType.BOOL)
        return self.lanewise(e)

    def unary(self, e: Unary, op: UnaryOp, x: V) -> V:
        if op is UnaryOp.NEG and x.dtype in (DType.F32, DType.I32):
            return V(f"(-{x.text})", True, x.dtype)
        if op is UnaryOp.NOT and x.dtype is DType.BOOL:
            return V(f"(~{x.text})", True, DType.BOOL)
        if op in VECTOR_MATH and x.dtype is DType.F32:
            return V(f"{VECTOR_MATH[op]}({x.text})", True, x.dtype)
        if op is UnaryOp.RELU and x.dtype is DType.F32:
            return V(f"kc_vmax_f32({x.text}, kc_splat_f32(0.0f))", True, x.dtype)
        if op is UnaryOp.RELU and x.dtype is DType.I32:
            return V(f"kc_vmax_i32({x.text}, kc_splat_i32(0))", True, x.dtype)
        return self.lanewise(e)

    def cast(self, x: V, dt: DType) -> V:
        target = dt.compute if dt is not DType.BOOL else DType.BOOL
        if x.dtype is target:
            return x
        if target is DType.BOOL:
            zero = "kc_splat_f32(0.0f)" if x.dtype is DType.F32 else "kc_splat_i32(0)"
            return V(f"({x.text} != {zero})", True, DType.BOOL)
        src = x.text if x.dtype is not DType.BOOL else f"(-{x.text})"
        return V(f"__builtin_convertvector({src}, {VTYPE[target]})", True, target)

    def lanewise(self, e: Expr) -> V:
        """`e` computed one lane at a time with the scalar templates (loop variable = base + lane)."""
        if isinstance(e, Load) and e.buffer in self.em.promotions:
            self.em.promotions[e.buffer].failed = True
        dt = e.dtype.compute if e.dtype is not DType.BOOL else DType.BOOL
        if dt not in VECTOR_DTYPES:
            raise Unvectorizable(f"{dt} values")
        t = self._fresh()
        parts = [f"({{ {VTYPE[dt]} {t} = {{0}};"]
        for lane in range(self.w):
            scalar = simplify(substitute(e, {self.v: self._lane(lane)}))
            text = self.em.expr.value(scalar)
            if dt is DType.BOOL:
                text = f"-(int32_t)({text})"
            stmt = f"{t}[{lane}] = {text};"
            parts.append(stmt if self.n is None or not _may_fault(e) else f"if ({lane} < {self.n}) {stmt}")
        parts.append(f"{t}; }})")
        return V(" ".join(parts), True, dt)

    # -- reductions (vectorize ... reduce) --------------------------------------------------------
    def _reduction(self) -> tuple[Store, BinaryOp, str] | None:
        body = self.loop.body
        if len(body) != 1 or not isinstance(body[0], Store):
            return None
        s = body[0]
        if any(self.v in free_vars(i) for i in s.index):
            return None
        value = s.value
        if not isinstance(value, Binary) or not isinstance(value.lhs, Load):
            raise Unvectorizable("reduction of an unexpected shape")
        if s.buffer.dtype not in (DType.F32, DType.I32):
            raise Unvectorizable(f"{s.buffer.dtype} reduction")
        full = self.loop.extent // self.w
        count = ACCUMULATORS if full > CHUNKS_UNROLLED else 1
        return s, value.op, [self.em.names.fresh("kc_acc") for _ in range(count)]

    def _reduce_prologue(self, red, depth: int) -> list[str]:
        s, op, accs = red
        table = IDENTITY if s.buffer.dtype is DType.F32 else INT_IDENTITY
        sfx = "f32" if s.buffer.dtype is DType.F32 else "i32"
        init = f"kc_splat_{sfx}({table[op]})"
        return [
            f"{self.em.INDENT * depth}{VTYPE[s.buffer.dtype]} {', '.join(f'{a} = {init}' for a in accs)};"
        ]

    def _reduce_loop(self, red, n_full: int, depth: int) -> list[str]:
        """Full chunks round-robin over the partial accumulators, so consecutive chunks do not wait
        on one add's latency; the chunks left over (fewer than the accumulators) go to the first."""
        k = len(red[2])
        rounds, rest = divmod(n_full, k)
        c = Var(f"{self.v.name}_c")
        cname = self.em.names(c)
        pad = self.em.INDENT * depth
        lines = [f"{pad}for (int64_t {cname} = 0; {cname} < {rounds}; ++{cname}) {{"]
        for j in range(k):
            base = simplify(
                Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, c, const(k * self.w)), const(j * self.w))
            )
            self.base, self.n = base, None
            lines += self._reduce_chunk(red, depth + 1, j)
        lines.append(f"{pad}}}")
        for j in range(rest):
            lines += self.chunk(const((rounds * k + j) * self.w), None, depth, red)
        return lines

    def _reduce_chunk(self, red, depth: int, slot: int = 0) -> list[str]:
        s, op, accs = red
        acc = accs[slot]
        dt = s.buffer.dtype
        sfx = "f32" if dt is DType.F32 else "i32"
        rhs = self.vec(self.value(s.value.rhs), dt)
        text = rhs.text
        if self.n is not None:
            table = IDENTITY if dt is DType.F32 else INT_IDENTITY
            text = f"kc_blend_{sfx}(kc_lanes_below({self.n}), {text}, kc_splat_{sfx}({table[op]}))"
        new = f"{RUNNING[op]}_{sfx}({acc}, {text})" if op in RUNNING else f"({acc} {INFIX[op]} {text})"
        return [f"{self.em.INDENT * depth}{acc} = {new};"]

    def _reduce_epilogue(self, red, depth: int) -> list[str]:
        s, op, accs = red
        pad = self.em.INDENT * depth
        total = self.em.names.fresh("kc_sum")
        dt = s.buffer.dtype
        sfx = "f32" if dt is DType.F32 else "i32"
        acc = accs[0]
        lines = []
        for other in accs[1:]:
            new = f"{RUNNING[op]}_{sfx}({acc}, {other})" if op in RUNNING else f"({acc} {INFIX[op]} {other})"
            lines.append(f"{pad}{acc} = {new};")
        if dt is DType.F32 and op in HORIZONTAL:
            lines.append(f"{pad}{CTYPE[dt]} {total} = {HORIZONTAL[op]}({acc});")
        else:
            lines.append(f"{pad}{CTYPE[dt]} {total} = {acc}[0];")
            for lane in range(1, self.w):
                lines.append(f"{pad}{total} = {self.em.expr.binary(op, dt, total, f'{acc}[{lane}]')};")
        target = f"{self.em.names(s.buffer)}[{self.em.expr.flat(s.buffer, s.index)}]"
        lines.append(f"{pad}{target} = {self.em.expr.binary(op, dt, target, total)};")
        return lines


def _storage(dt: DType) -> DType:
    return DType.BOOL if dt is DType.BOOL else dt.compute


def _common(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if DType.F32 in (a, b):
        return DType.F32
    return DType.I32


def _may_fault(e: Expr) -> bool:
    """Lanes past the active count must not read memory (a padded load checks bounds itself)."""
    return any(isinstance(n, Load) and n.pad is None for n in walk(e))
