"""Random inputs: non-zero, in the domain of the functions that read them, valid as gather indices."""

from __future__ import annotations

import numpy as np
import pytest

from kcomp.data import index_bounds, positive_inputs, random_inputs, random_params
from kcomp.dtypes import DType
from kcomp.expr import Binary, BinaryOp, Buffer, Load, Param, Unary, UnaryOp, Var
from kcomp.program import Program, Reduce, Statement
from kcomp.reference import evaluate

F32, I32 = DType.F32, DType.I32


def _st(target, index, op, value, reduce=(), extents=()):
    return Statement(target, tuple(index), op, value, tuple(reduce), tuple(target.shape) + tuple(extents))


def _add(a, b):
    return Binary(BinaryOp.ADD, a, b)


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def test_floats_are_nonzero_and_signed(rng):
    x, y = Buffer("X", F32, (50, 40)), Buffer("Y", F32, (50, 40))
    i, j = Var("i"), Var("j")
    program = Program("p", (x,), (y,), (), (), (_st(y, (i, j), Reduce.ASSIGN, Load(x, (i, j))),))
    xv = random_inputs(program, rng)["X"]
    assert xv.dtype == np.float32 and xv.shape == (50, 40)
    assert np.abs(xv).min() >= 0.1 and np.abs(xv).max() <= 1.0
    assert (xv < 0).any() and (xv > 0).any()
    assert len(np.unique(xv)) > 1000


def test_positive_inputs_for_log_sqrt_rsqrt_pow_and_through_temps(rng):
    a, b, v, p, q, n = (Buffer(name, F32, (64,)) for name in "abvpqn")
    t, y = Buffer("t", F32, (64,)), Buffer("y", F32, (64,))
    eps = Param("eps", F32)
    i = Var("i")
    statements = (
        _st(t, (i,), Reduce.ASSIGN, Binary(BinaryOp.MUL, Load(v, (i,)), Load(v, (i,)))),
        _st(y, (i,), Reduce.ASSIGN, Unary(UnaryOp.LOG, Load(a, (i,)))),
        _st(y, (i,), Reduce.ASSIGN, Unary(UnaryOp.RSQRT, _add(Load(t, (i,)), eps))),
        _st(y, (i,), Reduce.ASSIGN, Unary(UnaryOp.SQRT, Load(b, (i,)))),
        _st(y, (i,), Reduce.ASSIGN, Binary(BinaryOp.POW, Load(p, (i,)), Load(q, (i,)))),
        _st(y, (i,), Reduce.ASSIGN, Unary(UnaryOp.EXP, Load(n, (i,)))),
    )
    program = Program("p", (a, b, v, p, q, n), (y,), (eps,), (t,), statements)
    assert {x.name for x in positive_inputs(program)} == {"a", "b", "v", "p"}
    data = random_inputs(program, rng)
    for name in "abvp":
        assert data[name].min() >= 0.5 and data[name].max() <= 2.0
    for name in "qn":
        assert (data[name] < 0).any()


def test_gather_indices_are_valid_for_every_dimension_they_index(rng):
    emb, pos = Buffer("E", F32, (30, 8)), Buffer("P", F32, (12, 8))
    ids, out = Buffer("ids", I32, (200,)), Buffer("O", F32, (200, 8))
    t, d = Var("t"), Var("d")
    value = _add(Load(emb, (Load(ids, (t,)), d)), Load(pos, (Load(ids, (t,)), d)))
    program = Program("g", (emb, pos, ids), (out,), (), (), (_st(out, (t, d), Reduce.ASSIGN, value),))
    assert index_bounds(program) == {ids: 12}
    data = random_inputs(program, rng)
    assert data["ids"].dtype == np.int32
    assert data["ids"].min() >= 0 and data["ids"].max() < 12 and len(np.unique(data["ids"])) > 1
    evaluate(program, data)  # in bounds: the load has no padding


def test_other_ints_are_nonzero_in_range(rng):
    a, b = Buffer("A", I32, (500,)), Buffer("B", DType.I8, (500,))
    m, y = Buffer("M", DType.BOOL, (500,)), Buffer("Y", I32, (500,))
    i = Var("i")
    value = _add(Load(a, (i,)), Load(b, (i,)))
    program = Program("p", (a, b, m), (y,), (), (), (_st(y, (i,), Reduce.ASSIGN, value),))
    data = random_inputs(program, rng)
    assert data["A"].dtype == np.int32 and data["B"].dtype == np.int8 and data["M"].dtype == np.bool_
    assert 0 not in data["A"] and 0 not in data["B"]
    assert data["A"].min() >= -50 and data["A"].max() <= 50 and data["A"].min() < 0
    assert data["B"].min() >= -100 and data["B"].max() <= 100 and data["B"].max() > 50
    assert data["M"].any() and not data["M"].all()


def test_f16_inputs(rng):
    x, y = Buffer("X", DType.F16, (64,)), Buffer("Y", DType.F16, (64,))
    i = Var("i")
    program = Program("p", (x,), (y,), (), (), (_st(y, (i,), Reduce.ASSIGN, Load(x, (i,))),))
    xv = random_inputs(program, rng)["X"]
    assert xv.dtype == np.float16 and np.abs(xv).min() >= 0.09


def test_params_and_defaults(rng):
    x, y = Buffer("X", F32, (4,)), Buffer("Y", F32, (4,))
    eps, alpha, n = Param("eps", F32), Param("alpha", F32), Param("n", I32)
    program = Program("p", (x,), (y,), (eps, alpha, n), (), ())
    params = random_params(program, rng, defaults={"eps": 1e-5})
    assert params["eps"] == 1e-5
    assert 0.5 <= params["alpha"] <= 1.5 and isinstance(params["alpha"], float)
    assert isinstance(params["n"], int) and 1 <= params["n"] <= 4


def test_same_seed_same_data():
    x, y = Buffer("X", F32, (16,)), Buffer("Y", F32, (16,))
    i = Var("i")
    program = Program("p", (x,), (y,), (), (), (_st(y, (i,), Reduce.ASSIGN, Load(x, (i,))),))
    first = random_inputs(program, np.random.default_rng(5))["X"]
    np.testing.assert_array_equal(first, random_inputs(program, np.random.default_rng(5))["X"])
    assert not np.array_equal(first, random_inputs(program, np.random.default_rng(6))["X"])
