"""Printer goldens (both IRs), minimal parentheses, the naming rule, canonical text and hashes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Const, Load, Param, Scope, Select, Unary, UnaryOp, Var
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Store, loops
from kcomp.lower import lower
from kcomp.printer import (
    canonical,
    canonical_program,
    format_expr,
    format_nest,
    format_program,
    program_hash,
    structural_hash,
    symbol_names,
)
from kcomp.program import Program, Reduce, Statement

F32, I32 = DType.F32, DType.I32


def matmul(m=64, n=32, k=16, dtype=F32) -> Program:
    a, b, c = Buffer("A", dtype, (m, k)), Buffer("B", dtype, (k, n)), Buffer("C", dtype, (m, n))
    i, j, kk = Var("i"), Var("j"), Var("k")
    value = Binary(BinaryOp.MUL, Load(a, (i, kk)), Load(b, (kk, j)))
    return Program(
        "matmul", (a, b), (c,), (), (), (Statement(c, (i, j), Reduce.ADD, value, (kk,), (m, n, k)),)
    )


MATMUL_NEST = """\
kernel matmul(A: f32[64, 16], B: f32[16, 32], C: f32[64, 32] out)
  for i_init in 0..64:
    for j_init in 0..32:
      C[i_init, j_init] = 0.0
  for i in 0..64:
    for j in 0..32:
      for k in 0..16:
        C[i, j] = C[i, j] + A[i, k] * B[k, j]
"""


def test_matmul_program_golden():
    assert format_program(matmul()) == (
        "kernel matmul(A: f32[64, 16], B: f32[16, 32]) -> (C: f32[64, 32])\n"
        "  C[i, j] += A[i, k] * B[k, j]  # reduce k<16\n"
    )


def test_matmul_nest_golden():
    assert format_nest(lower(matmul())) == MATMUL_NEST


def test_loop_kinds_alloc_guard_pad_and_params_golden():
    x, y = Buffer("X", F32, (8, 8)), Buffer("Y", F32, (8,))
    t = Buffer("acc", F32, (16,), Scope.LOCAL)
    eps = Param("eps", F32)
    h, w, v = Var("h"), Var("w"), Var("v")
    padded = Load(x, (Binary(BinaryOp.SUB, h, Const(1, I32)), w), pad=float("-inf"))
    body = (
        Alloc(t, (Loop(v, 16, LoopKind.VECTOR, (Store(t, (v,), eps),)),)),
        Guard(Binary(BinaryOp.LT, w, Const(4, I32)), (Store(y, (h,), padded),)),
    )
    nest = LoopNest(
        "k", (x,), (y,), (eps,), (Loop(h, 8, LoopKind.PARALLEL, (Loop(w, 8, LoopKind.UNROLLED, body),)),)
    )
    assert format_nest(nest) == (
        "kernel k(X: f32[8, 8], Y: f32[8] out, eps: f32)\n"
        "  parallel for h in 0..8:\n"
        "    unrolled for w in 0..8:\n"
        "      alloc acc: f32[16] local\n"
        "        vector for v in 0..16:\n"
        "          acc[v] = eps\n"
        "      if w < 4:\n"
        "        Y[h] = X[h - 1, w, pad=-inf]\n"
    )


def test_argmax_nest_golden():
    x, out = Buffer("X", F32, (4, 6)), Buffer("I", I32, (4,))
    i, r = Var("i"), Var("r")
    s = Statement(out, (i,), Reduce.ARGMAX, Load(x, (i, r)), (r,), (4, 6))
    assert format_nest(lower(Program("amax", (x,), (out,), (), (), (s,)))) == (
        "kernel amax(X: f32[4, 6], I: i32[4] out)\n"
        "  alloc I_best: f32[4] global\n"
        "    for i_init in 0..4:\n"
        "      I_best[i_init] = -inf\n"
        "      I[i_init] = 0\n"
        "    for i in 0..4:\n"
        "      for r in 0..6:\n"
        "        if X[i, r] > I_best[i]:\n"
        "          I_best[i] = X[i, r]\n"
        "          I[i] = r\n"
    )


# ---------------------------------------------------------------- expressions

a, b, c = Var("a"), Var("b"), Var("c")


def bin_(op, x, y):
    return Binary(op, x, y)


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (bin_(BinaryOp.SUB, a, bin_(BinaryOp.SUB, b, c)), "a - (b - c)"),
        (bin_(BinaryOp.SUB, bin_(BinaryOp.SUB, a, b), c), "a - b - c"),
        (bin_(BinaryOp.MUL, bin_(BinaryOp.ADD, a, b), c), "(a + b) * c"),
        (bin_(BinaryOp.ADD, a, bin_(BinaryOp.MUL, b, c)), "a + b * c"),
        (bin_(BinaryOp.DIV, a, bin_(BinaryOp.MUL, b, c)), "a / (b * c)"),
        (Unary(UnaryOp.NEG, bin_(BinaryOp.ADD, a, b)), "-(a + b)"),
        (Unary(UnaryOp.NEG, Const(-1.5, F32)), "-(-1.5)"),
        (bin_(BinaryOp.SUB, a, Const(-2, I32)), "a - -2"),
        (Unary(UnaryOp.NOT, bin_(BinaryOp.LT, a, b)), "not a < b"),
        (bin_(BinaryOp.AND, bin_(BinaryOp.LT, a, b), bin_(BinaryOp.OR, a, b)), "a < b and (a or b)"),
        (bin_(BinaryOp.EQ, bin_(BinaryOp.LT, a, b), Const(True, DType.BOOL)), "(a < b) == true"),
        (bin_(BinaryOp.MAX, a, bin_(BinaryOp.ADD, b, c)), "max(a, b + c)"),
        (Unary(UnaryOp.EXP, bin_(BinaryOp.MUL, a, b)), "exp(a * b)"),
        (Cast(F32, a), "f32(a)"),
        (Select(bin_(BinaryOp.LT, a, b), a, b), "select(a < b, a, b)"),
        (Const(float("nan"), F32), "nan"),
        (Const(1e-05, F32), "1e-05"),
    ],
)
def test_minimal_parentheses(expr, text):
    assert format_expr(expr) == text


def test_format_expr_names_override():
    assert format_expr(bin_(BinaryOp.ADD, a, b), {a: "x"}) == "x + b"


# ---------------------------------------------------------------- naming


def test_names_are_unique_and_follow_order_of_appearance():
    nest = lower(matmul())
    names = symbol_names(nest)
    loop_names = [names[lp.var] for lp in loops(nest.body)]
    assert loop_names == ["i_init", "j_init", "i", "j", "k"]
    assert len(set(names.values())) == len(names)


def test_later_symbol_with_a_suffix_like_name_is_not_confused():
    i1, i2, i3 = Var("i"), Var("i"), Var("i1")
    y = Buffer("Y", F32, (2,))
    store = Store(y, (i1,), Cast(F32, Binary(BinaryOp.ADD, i2, i3)))
    nest = LoopNest("n", (), (y,), (), (Loop(i1, 2, LoopKind.SERIAL, (Loop(i2, 2, LoopKind.SERIAL, (
        Loop(i3, 2, LoopKind.SERIAL, (store,)),)),)),))  # fmt: skip
    names = symbol_names(nest)
    assert [names[v] for v in (i1, i2, i3)] == ["i", "i1", "i11"]  # "i1" is taken: suffix its own name


def test_buffer_names_are_disambiguated_separately_from_loop_vars():
    y = Buffer("i", F32, (2,))
    t1, t2 = Buffer("T", F32, (2,)), Buffer("T", F32, (2,))
    i = Var("i")
    body = Alloc(
        t1,
        (
            Alloc(
                t2,
                (
                    Loop(
                        i,
                        2,
                        LoopKind.SERIAL,
                        (Store(t2, (i,), Load(t1, (i,))), Store(y, (i,), Load(t2, (i,)))),
                    ),
                ),
            ),
        ),
    )
    text = format_nest(LoopNest("n", (), (y,), (), (body,)))
    assert "alloc T: f32[2] global" in text and "alloc T1: f32[2] global" in text
    assert "T1[i] = T[i]" in text and "i[i] = T1[i]" in text


# ---------------------------------------------------------------- canonical text and hashes


def test_same_program_built_twice_has_the_same_hashes():
    assert program_hash(matmul()) == program_hash(matmul())
    assert structural_hash(lower(matmul())) == structural_hash(lower(matmul()))
    assert len(program_hash(matmul())) == 64


def test_shape_dtype_and_structure_change_the_hashes():
    base = program_hash(matmul())
    assert program_hash(matmul(m=128)) != base
    assert program_hash(matmul(dtype=DType.F64)) != base
    nest = lower(matmul())
    first = nest.body[0]
    assert isinstance(first, Loop)
    parallel = replace(nest, body=(replace(first, kind=LoopKind.PARALLEL), *nest.body[1:]))
    assert structural_hash(parallel) != structural_hash(nest)
    assert structural_hash(lower(matmul(k=8))) != structural_hash(nest)


def test_constant_dtypes_are_part_of_the_canonical_text():
    y = Buffer("Y", DType.F64, (2,))
    i, j = Var("i"), Var("j")
    n32 = LoopNest("n", (), (y,), (), (Loop(i, 2, LoopKind.SERIAL, (Store(y, (i,), Const(1.0, F32)),)),))
    n64 = LoopNest(
        "n", (), (y,), (), (Loop(j, 2, LoopKind.SERIAL, (Store(y, (j,), Const(1.0, DType.F64)),)),)
    )
    assert format_nest(n32) == format_nest(n64).replace("j", "i")
    assert structural_hash(n32) != structural_hash(n64)


def test_canonical_renames_loop_vars_and_allocated_buffers():
    x, out = Buffer("X", F32, (4, 6)), Buffer("I", I32, (4,))
    i, r = Var("i"), Var("r")
    s = Statement(out, (i,), Reduce.ARGMAX, Load(x, (i, r)), (r,), (4, 6))
    text = canonical(lower(Program("amax", (x,), (out,), (), (), (s,))))
    assert "alloc b0: f32[4] global" in text
    assert "if X[v1, v2] > b0[v1]:" in text
    assert "I[v0] = 0:i32" in text


def test_canonical_program_renames_vars_per_statement():
    assert canonical_program(matmul()) == (
        "kernel matmul(A: f32[64, 16], B: f32[16, 32]) -> (C: f32[64, 32])\n"
        "  C[v0, v1] += A[v0, v2] * B[v2, v1]  # reduce v2<16; over v0<64, v1<32\n"
    )
