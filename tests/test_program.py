"""The tensor IR built by the checker: statements, update semantics, the dataflow DAG and its queries."""

from __future__ import annotations

import networkx as nx

from kcomp.api import load_module
from kcomp.check import check, param_defaults
from kcomp.dtypes import DType
from kcomp.parse import parse
from kcomp.program import Kind, Reduce


def program(path: str, **shapes: int):
    module = load_module(path)
    return check(module, module.kernels[0], shapes)


def test_softmax_dag_edges_follow_the_tensors():
    p = program("examples/softmax.kc", N=8, D=16)
    names = [s.target.name for s in p.statements]
    assert names == ["mx", "e", "s", "Y"]
    edges = {(names[a], names[b], t.name) for a, b, t in p.graph.edges(data="tensor")}
    assert edges == {("mx", "e", "mx"), ("e", "s", "e"), ("e", "Y", "e"), ("s", "Y", "s")}
    assert nx.is_directed_acyclic_graph(p.graph)
    assert p.topological()[0].target.name == "mx"
    e = p.temps[1]
    assert [s.target.name for s in p.producers(e)] == ["e"]
    assert [s.target.name for s in p.consumers(e)] == ["s", "Y"]


def test_kinds_and_reductions():
    p = program("examples/softmax.kc", N=8, D=16)
    assert [s.kind for s in p.statements] == [
        Kind.REDUCTION,
        Kind.ELEMENTWISE,
        Kind.REDUCTION,
        Kind.ELEMENTWISE,
    ]
    assert [s.op for s in p.statements] == [Reduce.MAX, Reduce.ASSIGN, Reduce.ADD, Reduce.ASSIGN]
    mm = program("examples/matmul.kc", M=4, N=5, K=6)
    (s,) = mm.statements
    assert s.kind is Kind.CONTRACTION
    assert [v.name for v in s.index] == ["i", "j"] and [v.name for v in s.reduce] == ["k"]
    assert s.extents == (4, 5, 6)
    assert mm.flops == 2 * 4 * 5 * 6
    assert dict(mm.dims) == {"M": 4, "N": 5, "K": 6}


def test_accumulate_after_a_write_and_write_after_write_edges():
    p = program("examples/gemm_bias_relu.kc", M=4, N=4, K=4)
    assert [s.accumulate for s in p.statements] == [False, True, False]
    assert [(a, b) for a, b in p.graph.edges()] == [(0, 1), (1, 2)]


def test_intermediates_take_shape_and_dtype_from_their_first_write():
    p = program("examples/argmax_rows.kc", N=3, D=7)
    assert p.outputs[0].dtype is DType.I32
    g = program("examples/groupnorm.kc", N=2, C=8, G=4, HW=5)
    mean = next(t for t in g.temps if t.name == "mean")
    assert mean.shape == (2, 4) and mean.dtype is DType.F32


def test_out_of_bounds_reads_get_pads_and_in_bounds_reads_do_not():
    p = program("examples/conv2d.kc", N=1, C=2, K=2, H=5, W=5)
    x_load, f_load = p.statements[0].value.lhs, p.statements[0].value.rhs
    assert x_load.pad == 0.0  # h + r - 1 reaches -1 and H
    assert f_load.pad is None
    pool = program("examples/maxpool2d.kc", N=1, C=1, H=8, W=8)
    assert pool.statements[0].value.pad == float("-inf")


def test_derived_dimensions_follow_overrides_and_defaults_are_read():
    p = program("examples/maxpool2d.kc", H=20, W=10)
    assert p.outputs[0].shape[2:] == (10, 5)
    module = parse(
        "kernel f(X: f32[4], eps: f32 = 1e-5, n: i32 = -3) -> (Y: f32[4]) { Y[i] = X[i] + eps }", "t.kc"
    )
    assert param_defaults(module.kernels[0]) == {"eps": 1e-5, "n": -3}
