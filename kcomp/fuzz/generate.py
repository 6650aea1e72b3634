"""Random well-typed `.kc` programs for differential fuzzing, drawn from a `random.Random`.

    prog = generate(random.Random(seed))      # a `GenProgram`: data, so the shrinker can edit it
    text = prog.render()                      # .kc source: parses and type-checks by construction

A program binds 2-4 base dimensions (1..17, `dim D0 = 5, ...`) and sometimes derived ones
(`E0 = (D1 - 1) // 2 + 1`, `E1 = D0 + 2`), then 1-4 statements in one element type (f32 mostly,
also i32, f64 and i64):

    elementwise   t1[i, j] = tanh(A[i, j]) * B[j] + f32(i)
    reduction     t2[i] max= A[i, 2*r + s - 1, pad=-inf] where r < E0, s < D1      (+= *= max= min=)
    arg           t3[i] argmax= A[i, j]                                            (then a gather index)
    scan          t4[i, j] += A[i, j] * 2.0 scan reverse j                         (+= *= max= min=)
    contraction   t0[i, j] += A[i, k] * B[k, j]  with an init and in-place epilogues (maps onto accel);
                  operands stored transposed (A[k, i], B[j, k]), convolutions with strided or dilated
                  padded windows
    accumulate    t0[i, j] = b[j]; t0[i, j] += ...      in place: t0[i, j] = relu(t0[i, j])

Reads are of fresh inputs or of earlier results, indexed by plain variables (prefix reads when the
extents differ), quasi-affine expressions with strides and offsets (out of bounds reads give the pad
value), floor division and modulo by constants, constants, and gathers through i32 or i64 tensors.  Every
written tensor that nothing reads later is an output, and some read ones are too.

Numerics are kept inside the comparison rule by construction rather than by loosening it: exp sees
bounded arguments (`exp(tanh(x))`, `exp(-abs(x))`), sqrt/log/rsqrt/pow see `abs(x) + 1`, a division's
denominator is `abs(x) + 1` or a constant, `*=` multiplies factors in [0.5, 1.5] over at most 64
terms, and value comparisons (select conditions, argmax operands) see exact input values only, so
FMA contraction or another summation order cannot flip them.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from kcomp.fuzz.program import FLOAT_LITERALS, Expr, GenProgram, Stmt, Tensor, names, reads
from kcomp.fuzz.weights import FORMATS as SPARSE_FORMATS

MAX_WORK = 4096  # iterations of one statement (product of its variables' extents)
SPARSE_SHARE = 0.5  # contractions with a sparse operand (its weight: kcomp.fuzz.weights)
SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17)
INTS = ("i32", "i64")
VAR_NAMES = ("i", "j", "k", "l", "m", "n", "q", "r", "s", "u", "v", "w")

# ----------------------------------------------------------------------------------------- generation

INPUT_NAMES = tuple("ABCFGHJLMPQRSUVWXZ")


ELEMENTS = (("f32", 66), ("i32", 18), ("f64", 9), ("i64", 7))  # element types and their weights


def generate(rng: random.Random, name: str = "fz", types: frozenset[str] | None = None) -> GenProgram:
    """A random well-typed program (module docstring); the same `rng` state gives the same program.
    `types`: the element types it may use (a campaign's targets lower no other; None: all)."""
    return _Gen(rng, types).program(name)


class _Gen:
    def __init__(self, rng: random.Random, types: frozenset[str] | None = None):
        self.rng = rng
        drawn = [(t, w) for t, w in ELEMENTS if types is None or t in types] or [("f32", 1)]
        self.element = rng.choices([t for t, _ in drawn], [w for _, w in drawn])[0]
        self.is_int = self.element in INTS
        self.indices = tuple(t for t in INTS if types is None or t in types) or INTS
        base = [rng.choice(SIZES) for _ in range(rng.randint(2, 4))]
        self.dims: list[tuple[str, int | str]] = [(f"D{k}", v) for k, v in enumerate(base)]
        if rng.random() < 0.4:
            self.dims.append(("E0", f"(D{rng.randrange(len(base))} - 1) // 2 + 1"))
        if rng.random() < 0.3:
            self.dims.append(("E1", f"D{rng.randrange(len(base))} + 2"))
        self.values = GenProgram(self.element, tuple(self.dims), (), (), ()).dim_values()
        self.inputs: list[Tensor] = []
        self.params: list[tuple[str, str, str | None]] = []
        self.stmts: list[Stmt] = []
        self.keep: set[str] = set()
        # the statement being built
        self.ranges: dict[str, str] = {}
        self.plain: dict[str, set[bool]] = {}  # per variable: do its plain reads match its range?

    # -- names and sizes --------------------------------------------------------------------------
    def written(self) -> dict[str, Tensor]:
        return GenProgram(self.element, (), (), (), tuple(self.stmts)).written()

    def new_input(self, dtype: str, shape: tuple[str, ...], prefix: str = "") -> Tensor:
        taken = {t.name for t in self.inputs}
        name = prefix + str(len(taken)) if prefix else next(n for n in INPUT_NAMES if n not in taken)
        t = Tensor(name, dtype, shape)
        self.inputs.append(t)
        return t

    def dim(self, cap: int = MAX_WORK) -> str:
        """A dimension name, preferring ones whose value keeps the statement's work under `cap`."""
        fitting = [n for n, v in self.values.items() if v <= cap]
        return self.rng.choice(fitting or [min(self.values, key=self.values.get)])

    def work(self) -> int:
        w = 1
        for d in self.ranges.values():
            w *= self.values[d]
        return w

    def new_var(self, dim: str | None = None) -> str:
        v = next(v for v in VAR_NAMES if v not in self.ranges)
        self.ranges[v] = dim or self.dim(max(1, MAX_WORK // self.work()))
        self.plain[v] = set()
        return v

    # -- reads ------------------------------------------------------------------------------------
    def index_for(self, dim: str, vars: list[str], wanted: list[str]) -> tuple[str, bool]:
        """An index for an axis of size `dim` and whether it may fall outside it."""
        r, size = self.rng.random(), self.values[dim]
        matching = [v for v in wanted if self.values[self.ranges[v]] == size] or [
            v for v in vars if self.values[self.ranges[v]] == size
        ]
        if matching and r < 0.7:
            v = self.rng.choice(matching)
            self.plain[v].add(True)
            return v, False
        if r < 0.8 and vars:
            v = self.rng.choice(wanted or vars)
            self.plain[v].add(self.values[self.ranges[v]] == size)
            return v, self.values[self.ranges[v]] > size
        if r < 0.95 and vars:
            a, b = self.rng.sample(vars, 2) if len(vars) > 1 else (vars[0], None)
            stride, offset = self.rng.choice((1, 1, 2, 3)), self.rng.randint(-2, 2)
            text = f"{stride}*{a}" if stride > 1 else a
            hi = stride * (self.values[self.ranges[a]] - 1) + offset
            if b is not None and self.rng.random() < 0.6:
                text += f" + {b}"
                hi += self.values[self.ranges[b]] - 1
            if offset:
                text += f" {'+' if offset > 0 else '-'} {abs(offset)}"
            if self.rng.random() < 0.15:
                k = self.rng.choice((2, 3, 4))
                text, hi = (
                    (f"({text}) // {k}", hi // k) if self.rng.random() < 0.5 else (f"({text}) % {k}", k - 1)
                )
                offset = max(0, offset)
            if text == a:  # stride 1, no offset: a plain read after all
                self.plain[a].add(self.values[self.ranges[a]] == size)
            return text, offset < 0 or hi >= size
        return str(self.rng.randrange(size)), False

    def read(self, vars: list[str], wanted: list[str], dtype: str, exact: bool = False) -> Expr:
        """A read of a fresh input, an input read before, or an earlier result (not when `exact`:
        computed values may differ in the last bits), covering `wanted` variables where it can."""
        rng = self.rng
        written = [t for t in self.written().values() if t.dtype == dtype and t.name != self.target]
        reused = [t for t in self.inputs if t.dtype == dtype and not t.name[0].isdigit()]
        r = rng.random()
        if written and not exact and r < 0.4:
            t = rng.choice(written)
        elif reused and r < 0.6:
            t = rng.choice(reused)
        else:
            rank = rng.choice((1, 1, 2, 2, 2, 3)) if vars else rng.choice((0, 1))
            rank = max(rank, min(len(wanted), 3))
            shape, picks = [], list(wanted)
            for _ in range(rank):
                v = picks.pop(0) if picks else (rng.choice(vars) if vars and rng.random() < 0.8 else None)
                shape.append(self.ranges[v] if v is not None and rng.random() < 0.85 else self.dim())
            t = self.new_input(dtype, tuple(shape))
        index, outside = [], False
        left = [v for v in wanted]
        for d in t.shape:
            if not self.is_int and vars and rng.random() < 0.06:
                index.append(self.gather(vars, d))
                outside = True
                continue
            ix, out = self.index_for(d, vars, left)
            left = [v for v in left if v not in re.findall(r"[a-z]\w*", ix)]
            index.append(ix)
            outside |= out
        pad = None
        if outside and rng.random() < 0.5:
            pad = rng.choice(("1.0", "-1.0", "0.5") if dtype not in INTS else ("1", "-1", "7"))
        return ("read", t.name, tuple(index), pad)

    def gather(self, vars: list[str], dim: str) -> str:
        """An index read from an i32 or i64 tensor (a gather): a fresh index input, or an argmax result."""
        results = [s for s in self.stmts if s.op in ("argmax=", "argmin=") and all(v in vars for v in s.lhs)]
        if results and self.rng.random() < 0.6:
            s = self.rng.choice(results)
            idx = [
                self.rng.choice([v for v in vars if self.ranges[v] == d] or [None]) for d in self.shape_of(s)
            ]
            if None not in idx:
                for v in idx:
                    self.plain[v].add(True)
                return f"{s.target}[{', '.join(idx)}]"
        v = self.rng.choice(vars)
        self.plain[v].add(True)
        ids = self.new_input(self.rng.choice(self.indices), (self.ranges[v],), prefix="I")
        return f"{ids.name}[{v}]"

    def shape_of(self, s: Stmt) -> tuple[str, ...]:
        return self.written()[s.target].shape

    # -- expressions ------------------------------------------------------------------------------
    def expr(self, depth: int, vars: list[str], wanted: list[str]) -> Expr:
        rng, is_int = self.rng, self.is_int
        if depth <= 0 or rng.random() < 0.3:
            return self.leaf(vars, wanted)
        sub = lambda w=(): self.expr(depth - 1, vars, list(w))  # noqa: E731
        half = len(wanted) // 2
        kinds = ("arith", "maxmin", "unary", "neg", "select") + (("floor",) if is_int else ("safe", "div"))
        kind = rng.choices(kinds, (40, 8, 15, 4, 6) + ((8,) if is_int else (10, 5)))[0]
        if kind == "arith":
            return ("bin", rng.choice("+-*"), sub(wanted[:half]), sub(wanted[half:]))
        if kind == "maxmin":
            return ("call", rng.choice(("max", "min")), (sub(wanted[:half]), sub(wanted[half:])))
        if kind == "unary":
            fns = ("abs", "relu") if is_int else ("tanh", "sigmoid", "erf", "relu", "abs")
            return ("call", rng.choice(fns), (sub(wanted),))
        if kind == "neg":
            return ("neg", sub(wanted))
        if kind == "select":
            return ("select", self.condition(vars), sub(wanted[:half]), sub(wanted[half:]))
        if kind == "floor":
            return ("bin", rng.choice(("//", "%")), sub(wanted), ("lit", str(rng.randint(2, 5))))
        if kind == "div":
            return ("safe", "div", (sub(wanted[:half]), sub(wanted[half:])))
        form = rng.choice(("exp_tanh", "exp_neg", "sqrt", "log", "rsqrt", "pow"))
        return ("safe", form, (sub(wanted),) + ((sub(),) if form == "pow" else ()))

    def leaf(self, vars: list[str], wanted: list[str]) -> Expr:
        rng, is_int = self.rng, self.is_int
        r = rng.random()
        if wanted or r < 0.72:
            if self.element != "i32" and rng.random() < 0.05:
                t = self.read(vars, wanted, "i32", exact=True)
                return ("call", self.element, (t,))
            return self.read(vars, wanted, self.element)
        if r < 0.8:
            lit: Expr = ("lit", str(rng.randint(1, 5)) if is_int else rng.choice(FLOAT_LITERALS))
            return ("call", "f64", (lit,)) if self.element == "f64" else lit  # alone, a literal is f32
        if r < 0.86 and vars:
            v = rng.choice(vars)
            return ("name", v) if self.element == "i32" else ("call", self.element, (("name", v),))
        if r < 0.92:  # a dimension: a flexible i32 constant, so a float program casts it
            dim: Expr = ("name", rng.choice(list(self.values)))
            return dim if is_int else ("call", self.element, (dim,))
        if len(self.params) < 2:
            default = rng.choice((None, "2" if is_int else "0.75"))
            self.params.append((f"p{len(self.params)}", self.element, default))
        return ("name", rng.choice(self.params)[0])

    def condition(self, vars: list[str]) -> Expr:
        """A condition on index values or exact input values (never on computed floats)."""
        rng = self.rng
        r = rng.random()
        if vars and r < 0.5:
            a = rng.choice(vars)
            b = ("name", rng.choice(vars)) if rng.random() < 0.5 else ("lit", str(rng.randint(0, 8)))
            cond: Expr = ("cmp", rng.choice(("<", "<=", ">", ">=", "==", "!=")), ("name", a), b)
        else:
            zero = ("lit", "0") if self.is_int else ("lit", "0.0")
            cond = ("cmp", rng.choice(("<", ">")), self.read(vars, [], self.element, exact=True), zero)
        if rng.random() < 0.15:
            return ("not", cond)
        return cond

    # -- statements -------------------------------------------------------------------------------
    def begin(self, target: str) -> None:
        self.target, self.ranges, self.plain = target, {}, {}

    def plain_read(self, vars: list[str], dtype: str) -> Expr:
        """A fresh input indexed by `vars` exactly (covers variables nothing else used)."""
        for v in vars:
            self.plain[v].add(True)
        t = self.new_input(dtype, tuple(self.ranges[v] for v in vars))
        return ("read", t.name, tuple(vars), None)

    def finish(
        self, op: str, lhs: list[str], value: Expr, dtype: str, existing: bool, scan: str = ""
    ) -> None:
        """Append the statement; `where` for every variable whose range is not inferred from a plain
        read of its size (or from an existing target), and for some of those too.  A reduced
        variable the value does not use yet is brought in by adding a read of a fresh input."""
        missing = [v for v in self.ranges if v not in lhs and v not in names(value)]
        if missing:
            extra = self.plain_read(missing, self.element)
            if value[0] == "safe" and value[1] == "factor":
                value = ("safe", "factor", (("bin", "+", value[2][0], extra),))
            else:
                value = ("bin", "+", value, extra)
        where = []
        for v in self.ranges:
            inferred = (True in self.plain[v] or (existing and v in lhs)) and False not in self.plain[v]
            if not inferred or self.rng.random() < 0.4:
                where.append(v)
        self.stmts.append(
            Stmt(self.target, dtype, tuple(lhs), op, value, tuple(self.ranges.items()), tuple(where), scan)
        )

    def fresh_target(self) -> str:
        return f"t{len(self.written())}"

    def elementwise(self) -> None:
        self.begin(self.fresh_target())
        lhs = [self.new_var() for _ in range(self.rng.choice((0, 1, 1, 2, 2, 2, 3)))]
        value = self.expr(self.rng.randint(0, 3), lhs, lhs if self.rng.random() < 0.8 else [])
        if not reads(value) and self.element != "i32":  # constants alone would be typed i32
            value = ("call", self.element, (value,))
        self.finish("=", lhs, value, self.element, False)

    def reduction(self, target: Tensor | None = None) -> None:
        rng = self.rng
        self.begin(target.name if target else self.fresh_target())
        lhs = (
            [self.new_var(d) for d in target.shape]
            if target
            else [self.new_var() for _ in range(rng.choice((0, 1, 1, 2, 2)))]
        )
        red = [self.new_var() for _ in range(rng.choice((1, 1, 2)))]
        ops = ("+=", "max=", "min=", "*=") if target is None else ("+=", "max=", "min=")
        op = rng.choices(ops, (50, 20, 15, 8)[: len(ops)])[0]
        vars = lhs + red
        if op in ("max=", "min=") and rng.random() < 0.3:  # a pooling: one padded read
            value = self.read(vars, red, self.element, exact=True)
            if value[3] is not None and not self.is_int:
                value = (*value[:3], "-inf" if op == "max=" else "inf")
        else:
            value = self.expr(rng.randint(1, 3), vars, red)
        if op == "*=" and not self.is_int:
            extent = 1
            for v in red:
                extent *= self.values[self.ranges[v]]
            if extent > 64:
                op = "+="
            else:
                value = ("safe", "factor", (value,))
        self.finish(op, lhs, value, self.element, target is not None)

    def scan(self) -> None:
        """A prefix scan along one of its indices (`t0[i0, i1] += v scan reverse i1`)."""
        rng = self.rng
        self.begin(self.fresh_target())
        lhs = [self.new_var() for _ in range(rng.choice((1, 1, 2)))]
        along = rng.choice(lhs)
        op = rng.choices(("+=", "max=", "min=", "*="), (50, 20, 20, 10))[0]
        value = self.expr(rng.randint(0, 2), lhs, [])
        if not reads(value) and self.element != "i32":
            value = ("call", self.element, (value,))
        if op == "*=" and not self.is_int:
            value = ("safe", "factor", (value,)) if self.values[self.ranges[along]] <= 64 else value
            op = op if value[0] == "safe" else "+="
        modifiers = [m for m in ("reverse", "exclusive") if rng.random() < 0.3]
        self.finish(op, lhs, value, self.element, False, " ".join(["scan", *modifiers, along]))

    def argreduce(self) -> None:
        rng = self.rng
        self.begin(self.fresh_target())
        lhs = [self.new_var() for _ in range(rng.choice((0, 1, 1, 2)))]
        red = [self.new_var()]
        value = self.read(lhs + red, red, self.element, exact=True)
        if red[0] not in names(value):
            value = self.plain_read([*lhs, *red], self.element)
        if rng.random() < 0.3:
            value = ("neg", value) if rng.random() < 0.5 else ("call", "abs", (value,))
        self.finish(rng.choice(("argmax=", "argmin=")), lhs, value, "i32", False)  # a temporary: i32

    def in_place(self, target: Tensor) -> None:
        self.begin(target.name)
        lhs = [self.new_var(d) for d in target.shape]
        self.plain.update({v: {True} for v in lhs})
        own: Expr = ("read", target.name, tuple(lhs), None)
        if self.rng.random() < 0.4:
            value = ("call", "relu", (own,))
        else:
            value = ("bin", self.rng.choice("+-*"), own, self.expr(self.rng.randint(0, 2), lhs, []))
        self.finish("=", lhs, value, self.element, True)

    def contraction(self) -> None:
        """A contraction group the accelerator maps: an init, C += A * B, in-place epilogues."""
        rng = self.rng
        pattern = rng.choice(("matmul", "matmul", "matvec", "batched", "conv"))
        target = self.fresh_target()
        d = lambda: self.dim(64)  # noqa: E731
        if pattern == "conv" and "E1" not in self.values:
            self.dims.append(("E1", f"{rng.choice([n for n, _ in self.dims if n.startswith('D')])} + 2"))
            self.values = GenProgram(self.element, tuple(self.dims), (), (), ()).dim_values()
        self.begin(target)
        if pattern == "conv":
            base = next(v for n, v in self.dims if n == "E1").split(" + ")[0]
            k, h, c, r, s = (self.new_var(x) for x in (d(), base, d(), None, None))
            w = self.new_var(base)
            self.ranges[r] = self.ranges[s] = min(self.values, key=lambda n: abs(self.values[n] - 3))
            lhs, a_idx, b_idx = [k, h, w], (c, f"{h} + {r}", f"{w} + {s}"), (k, c, r, s)
            a_pad = None
            if rng.random() < 0.4:  # strided (and dilated) windows, reading past the edge as zeros
                a_idx = (c, f"2 * {h} + {r} - 1", f"{rng.choice((1, 2))} * {w} + {s} - 1")
                a_pad = "0.0"
            a_shape = (self.ranges[c], "E1", "E1")
            b_shape = tuple(self.ranges[v] for v in b_idx)
        else:
            batch = [self.new_var(d())] if pattern == "batched" else []
            i = self.new_var(d())
            j = self.new_var(d()) if pattern != "matvec" else None
            k = self.new_var(d())
            lhs = [*batch, i] + ([j] if j else [])
            a_idx, b_idx = (*batch, i, k), (*batch, k) + ((j,) if j else ())
            # NOTE: operands stored transposed (A as K x M, B as N x K) are the same contraction to
            # the scheduler, which must pack them instead of reading them along a stride
            if rng.random() < 0.5:
                a_idx = (*batch, k, i)
            if j and rng.random() < 0.5:
                b_idx = (*batch, j, k)
            a_shape, b_shape = (tuple(self.ranges[v] for v in ix) for ix in (a_idx, b_idx))
            a_pad = None
        for v in self.ranges:
            self.plain[v] = {True} if v in (*a_idx, *b_idx) else set()
        a, b = self.new_input("f32", a_shape), self.new_input("f32", b_shape)
        if rng.random() < SPARSE_SHARE:  # one operand a sparse weight: packed, or kept dense
            at = len(self.inputs) - 2 + rng.randrange(2)
            if len(self.inputs[at].shape) >= 2:
                self.inputs[at] = replace(self.inputs[at], sparse=rng.choice(SPARSE_FORMATS))
        value = ("bin", "*", ("read", a.name, tuple(a_idx), a_pad), ("read", b.name, tuple(b_idx), None))
        init = rng.choice(("zero", "zero", "bias", "matrix"))
        ranges, lhs_dims = dict(self.ranges), tuple(self.ranges[v] for v in lhs)
        if init != "zero":
            shape = lhs_dims[-1:] if init == "bias" else lhs_dims
            src = self.new_input("f32", shape)
            self.stmts.append(
                Stmt(
                    target,
                    "f32",
                    tuple(lhs),
                    "=",
                    ("read", src.name, tuple(lhs[-len(shape) :]), None),
                    tuple((v, ranges[v]) for v in lhs),
                    tuple(lhs),
                )
            )
        self.ranges = ranges
        self.finish("+=", lhs, value, "f32", init != "zero")
        for _ in range(rng.choice((0, 1, 1, 2))):
            own: Expr = ("read", target, tuple(lhs), None)
            form = rng.choice(("relu", "scale", "bias", "max", "param"))
            if form == "relu":
                value = ("call", "relu", (own,))
            elif form == "scale":
                value = ("bin", "*", own, ("lit", "0.5"))
            elif form == "bias":
                vec = self.new_input("f32", lhs_dims[-1:])
                value = ("bin", "+", own, ("read", vec.name, (lhs[-1],), None))
            elif form == "max":
                value = ("call", "max", (own, ("lit", "0.1")))
            else:
                if not self.params:
                    self.params.append(("p0", "f32", rng.choice((None, "0.75"))))
                value = ("bin", "*", own, ("name", self.params[0][0]))
            self.stmts.append(Stmt(target, "f32", tuple(lhs), "=", value, tuple((v, ranges[v]) for v in lhs)))

    def program(self, name: str) -> GenProgram:
        rng = self.rng
        count = rng.randint(1, 4)
        if self.element == "f32" and rng.random() < 0.3:
            self.contraction()
            count = rng.choice((0, 0, 1, 2))
        for _ in range(count):
            written = [t for t in self.written().values() if t.dtype == self.element]
            assigned = [t for t in written if any(s.target == t.name and s.op == "=" for s in self.stmts)]
            kinds = (
                ["elementwise", "reduction", "arg", "scan"]
                + ["accumulate"] * bool(assigned)
                + ["inplace"] * bool(written)
            )
            weights = (35, 35, 8, 6, 10, 12) if assigned else (35, 35, 8, 6, 12)
            kind = rng.choices(kinds, weights[: len(kinds)])[0]
            if kind == "scan":
                self.scan()
            elif kind == "elementwise":
                self.elementwise()
            elif kind == "reduction":
                self.reduction()
            elif kind == "arg":
                self.argreduce()
            elif kind == "accumulate":
                self.reduction(rng.choice(assigned))
            else:
                self.in_place(rng.choice(written))
        read = {n for s in self.stmts for n in names(s.value)}
        self.keep = {t for t in self.written() if t in read and rng.random() < 0.25}
        return GenProgram(
            self.element,
            tuple(self.dims),
            tuple(self.inputs),
            tuple(self.params),
            tuple(self.stmts),
            frozenset(self.keep),
            name,
        )
