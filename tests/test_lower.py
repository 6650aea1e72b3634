"""Default lowering's structure, and `verify` catching each broken invariant with a clear message."""

from __future__ import annotations

import pytest

from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Const, Load, Param, Scope, Var
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Store, loops, walk_stmts
from kcomp.loops.verify import VerifyError, verify
from kcomp.lower import identity, lower
from kcomp.program import Program, Reduce, Statement

F32, I32 = DType.F32, DType.I32


def matmul_program(accumulate: bool = False) -> Program:
    a, b, c = Buffer("A", F32, (4, 3)), Buffer("B", F32, (3, 5)), Buffer("C", F32, (4, 5))
    i, j, k = Var("i"), Var("j"), Var("k")
    value = Binary(BinaryOp.MUL, Load(a, (i, k)), Load(b, (k, j)))
    s = Statement(c, (i, j), Reduce.ADD, value, (k,), (4, 5, 3), accumulate)
    return Program("matmul", (a, b), (c,), (), (), (s,))


def test_matmul_lowers_to_init_nest_then_reduction_nest():
    nest = lower(matmul_program())
    verify(nest)
    init, update = nest.body
    assert [lp.var.name for lp in loops((init,))] == ["i_init", "j_init"]
    assert [(lp.var.name, lp.extent) for lp in loops((update,))] == [("i", 4), ("j", 5), ("k", 3)]
    assert all(lp.kind is LoopKind.SERIAL for lp in loops(nest.body))
    (zero,) = [s for s in walk_stmts((init,)) if isinstance(s, Store)]
    assert zero.value == Const(0.0, F32)


def test_every_loop_binds_a_fresh_var():
    program = matmul_program()
    nest = lower(program)
    bound = [lp.var for lp in loops(nest.body)]
    assert len({id(v) for v in bound}) == len(bound) == 5
    assert not set(map(id, bound)) & set(map(id, program.statements[0].vars))


def test_accumulate_skips_initialisation():
    nest = lower(matmul_program(accumulate=True))
    verify(nest)
    assert len(nest.body) == 1 and len(loops(nest.body)) == 3


def test_temps_are_allocated_around_the_body():
    x, t, y = Buffer("X", F32, (6,)), Buffer("T", F32, (6,)), Buffer("Y", F32, (6,))
    i1, i2 = Var("i"), Var("i")
    s1 = Statement(t, (i1,), Reduce.ASSIGN, Load(x, (i1,)), (), (6,))
    s2 = Statement(y, (i2,), Reduce.ASSIGN, Load(t, (i2,)), (), (6,))
    nest = lower(Program("copy2", (x,), (y,), (), (t,), (s1, s2)))
    verify(nest)
    (alloc,) = nest.body
    assert isinstance(alloc, Alloc) and alloc.buffer is t and len(alloc.body) == 2


def test_argmax_allocates_best_and_guards_the_update():
    x, out = Buffer("X", F32, (3, 7)), Buffer("I", I32, (3,))
    i, r = Var("i"), Var("r")
    s = Statement(out, (i,), Reduce.ARGMAX, Load(x, (i, r)), (r,), (3, 7))
    nest = lower(Program("amax", (x,), (out,), (), (), (s,)))
    verify(nest)
    (alloc,) = nest.body
    assert isinstance(alloc, Alloc) and alloc.buffer.scope is Scope.GLOBAL
    assert alloc.buffer.shape == (3,) and alloc.buffer.dtype is F32
    (guard,) = [s for s in walk_stmts(nest.body) if isinstance(s, Guard)]
    assert isinstance(guard.cond, Binary) and guard.cond.op is BinaryOp.GT
    assert [st.buffer for st in guard.body] == [alloc.buffer, out]


def test_argmax_needs_one_reduced_index():
    x, out = Buffer("X", F32, (3, 7, 2)), Buffer("I", I32, (3,))
    i, r, q = Var("i"), Var("r"), Var("q")
    s = Statement(out, (i,), Reduce.ARGMAX, Load(x, (i, r, q)), (r, q), (3, 7, 2))
    with pytest.raises(ValueError, match="exactly one reduced index"):
        lower(Program("amax", (x,), (out,), (), (), (s,)))


@pytest.mark.parametrize(
    ("op", "dtype", "value"),
    [
        (Reduce.ADD, F32, 0.0),
        (Reduce.MUL, I32, 1),
        (Reduce.MAX, F32, float("-inf")),
        (Reduce.MIN, F32, float("inf")),
        (Reduce.MAX, I32, -(2**31)),
        (Reduce.MIN, I32, 2**31 - 1),
        (Reduce.MAX, DType.I8, -128),
        (Reduce.MIN, DType.I8, 127),
    ],
)
def test_identities(op, dtype, value):
    assert identity(op, dtype) == Const(value, dtype)


# ---------------------------------------------------------------- verify


X = Buffer("X", F32, (4, 4))
Y = Buffer("Y", F32, (4,))


def nest_of(*body, params=()) -> LoopNest:
    return LoopNest("k", (X,), (Y,), tuple(params), tuple(body))


def loop(v, *body, extent=4):
    return Loop(v, extent, LoopKind.SERIAL, tuple(body))


def test_verify_accepts_a_good_nest():
    i = Var("i")
    verify(nest_of(loop(i, Store(Y, (i,), Load(X, (i, i))))))


def test_unbound_var():
    i, j = Var("i"), Var("j")
    with pytest.raises(VerifyError, match="variable j is used outside a loop that binds it"):
        verify(nest_of(loop(i, Store(Y, (i,), Load(X, (i, j))))))


def test_var_used_after_its_loop():
    i = Var("i")
    with pytest.raises(VerifyError, match="variable i is used outside"):
        verify(nest_of(loop(i, Store(Y, (i,), Const(1.0, F32))), Store(Y, (i,), Const(1.0, F32))))


def test_var_bound_twice():
    i = Var("i")
    body = Store(Y, (i,), Const(1.0, F32))
    with pytest.raises(VerifyError, match="loop variable i is bound by more than one loop"):
        verify(nest_of(loop(i, body), loop(i, body)))


def test_index_arity():
    i = Var("i")
    with pytest.raises(VerifyError, match=r"X has 2 dimensions but is indexed with 1\n  at: Y\[i\] = X\[i\]"):
        verify(nest_of(loop(i, Store(Y, (i,), Load(X, (i,))))))
    with pytest.raises(VerifyError, match="Y has 1 dimensions but is indexed with 2"):
        verify(nest_of(loop(i, Store(Y, (i, i), Const(1.0, F32)))))


def test_unknown_buffer_and_alloc_scope():
    i = Var("i")
    t = Buffer("T", F32, (4,))
    with pytest.raises(VerifyError, match="buffer T is neither an argument nor allocated"):
        verify(nest_of(loop(i, Store(Y, (i,), Load(t, (i,))))))
    verify(nest_of(Alloc(t, (loop(i, Store(t, (i,), Const(1.0, F32))),))))
    j = Var("j")
    with pytest.raises(VerifyError, match="buffer T is neither"):
        verify(
            nest_of(
                Alloc(t, (loop(i, Store(t, (i,), Const(1.0, F32))),)), loop(j, Store(Y, (j,), Load(t, (j,))))
            )
        )


def test_non_positive_extent():
    i = Var("i")
    with pytest.raises(VerifyError, match="loop i has non-positive extent 0"):
        verify(nest_of(loop(i, Store(Y, (i,), Const(1.0, F32)), extent=0)))


def test_store_type_and_guard_condition():
    i = Var("i")
    cmp = Binary(BinaryOp.LT, i, Const(2, I32))
    with pytest.raises(VerifyError, match="cannot store a bool value into Y: f32"):
        verify(nest_of(loop(i, Store(Y, (i,), cmp))))
    with pytest.raises(VerifyError, match="guard condition has type f32, not bool"):
        verify(nest_of(loop(i, Guard(Load(Y, (i,)), (Store(Y, (i,), Const(1.0, F32)),)))))
    with pytest.raises(VerifyError, match="index of Y has type f32, not an integer"):
        verify(nest_of(loop(i, Store(Y, (Const(1.0, F32),), Const(1.0, F32)))))


def test_unknown_param():
    i, eps = Var("i"), Param("eps", F32)
    store = Store(Y, (i,), eps)
    with pytest.raises(VerifyError, match="parameter eps is not a parameter of the kernel"):
        verify(nest_of(loop(i, store)))
    verify(nest_of(loop(i, store), params=(eps,)))
