"""parallel, vectorize, unroll: the loop kinds they set, the differential check, and every error."""

from __future__ import annotations

import pytest
from helpers import check_schedule, scheduled

from kcomp.affine import const
from kcomp.dtypes import DType
from kcomp.errors import ScheduleError
from kcomp.expr import Binary, BinaryOp, Buffer, Load, Var
from kcomp.loops import Loop, LoopKind, LoopNest, Store
from kcomp.passes import apply
from kcomp.printer import format_nest
from kcomp.schedule import parse_schedule

MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
ROWS = "kernel rows(x: f32[M, N]) -> (s: f32[M], m: f32[M]) {\n    s[i] += x[i, j]\n    m[i] max= x[i, j]\n}"
ARGMAX = "kernel am(x: f32[M, N]) -> (y: i32[M]) { y[i] argmax= x[i, j] }"
KERNELS = {"matmul": MATMUL, "rows": ROWS, "argmax": ARGMAX}
MM = {"M": 5, "N": 6, "K": 3}
F32 = DType.F32


def one_loop(n: int, store) -> LoopNest:
    """`for i in 0..n: store(i)` over a 1-D input x and output y of length 2n (hand-built: the kernel
    language cannot write these dependences)."""
    x, y = Buffer("x", F32, (2 * n,)), Buffer("y", F32, (2 * n,))
    i = Var("i")
    return LoopNest("dep", (x,), (y,), (), (Loop(i, n, LoopKind.SERIAL, (store(i, x, y),)),))


def test_kinds_are_printed():
    text = format_nest(scheduled(MATMUL, MM, "parallel i\nunroll k\nvectorize j_init"))
    assert "parallel for i in 0..5:\n    for j in 0..6:\n      unrolled for k in 0..3:" in text
    assert "vector for j_init in 0..6:" in text


def test_vectorize_reduce_marks_the_reduction_loop():
    assert "vector for k in 0..3:" in format_nest(scheduled(MATMUL, MM, "vectorize k reduce"))


@pytest.mark.parametrize(
    "schedule",
    [
        "parallel i",
        "parallel j",
        "parallel i_init\nvectorize j_init",
        "split j 4\nparallel i\nvectorize j_i",
        "split j 4\nvectorize j_i\nunroll k",
        "vectorize k reduce\nparallel j",
        "split k 2\nunroll k_i\nvectorize j",
        "tile i j 2 4\nparallel i_o\nunroll i_i\nvectorize j_i",
        "reorder k j\nvectorize j\nparallel i",
        "fuse i j\nparallel i_j\nvectorize k reduce",
    ],
)
def test_annotations_preserve_results(schedule):
    check_schedule(MATMUL, MM, schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "vectorize j reduce\nvectorize j1 reduce",
        "parallel i\nparallel i1",
        "split j 3 peel\nvectorize j_i reduce\nvectorize j_t reduce",
        "split j 7\nvectorize j_i reduce",
    ],
)
def test_row_reductions(schedule):
    check_schedule(ROWS, {"M": 3, "N": 7}, schedule)


@pytest.mark.parametrize("schedule", ["parallel i", "parallel i_init\nunroll j", "split j 4\nunroll j_i"])
def test_argmax(schedule):
    check_schedule(ARGMAX, {"M": 4, "N": 9}, schedule)


RECURRENCE = one_loop(4, lambda i, x, y: Store(y, (Binary(BinaryOp.ADD, i, const(1)),), Load(y, (i,))))
COLLIDING = one_loop(4, lambda i, x, y: Store(y, (Binary(BinaryOp.FLOORDIV, i, const(2)),), Load(x, (i,))))
OVERWRITE = one_loop(4, lambda i, x, y: Store(y, (const(0),), Load(x, (i,))))
SELF_READ = one_loop(
    4, lambda i, x, y: Store(y, (const(0),), Binary(BinaryOp.ADD, Load(y, (const(0),)), Load(y, (const(0),))))
)


@pytest.mark.parametrize(
    ("nest", "schedule", "message"),
    [
        (
            RECURRENCE,
            "parallel i",
            r"parallel i: cannot run i in parallel: y is accessed at different indices",
        ),
        (RECURRENCE, "vectorize i", r"vectorize i: cannot vectorize i: y is accessed at different indices"),
        (COLLIDING, "parallel i", r"cannot run i in parallel: iterations may write the same elements of y"),
        (
            OVERWRITE,
            "vectorize i reduce",
            r"vectorize i reduce needs y\[\.\.\] = y\[\.\.\] op value with op \+ \* max min",
        ),
        (SELF_READ, "vectorize i reduce", r"the value accumulated into y must not read y elsewhere"),
    ],
)
def test_dependence_errors(nest, schedule, message):
    with pytest.raises(ScheduleError, match=message):
        apply(nest, parse_schedule(schedule))


@pytest.mark.parametrize(
    ("kernel", "schedule", "message"),
    [
        ("matmul", "parallel q", r"parallel q: no loop named 'q' \(loops are i_init, j_init, i, j, k\)"),
        (
            "matmul",
            "parallel k",
            r"parallel k: cannot run k in parallel: every iteration updates the same C\[i, j\] \(a reduction\); "
            r"parallelize a loop whose iterations are independent",
        ),
        (
            "matmul",
            "vectorize k",
            r"vectorize k: cannot vectorize k: every iteration updates the same C\[i, j\] \(a reduction\) "
            r"\(use `vectorize LOOP reduce` for a reduction\)",
        ),
        (
            "matmul",
            "vectorize j reduce",
            r"vectorize j reduce needs a loop whose body is one update statement",
        ),
        (
            "matmul",
            "vectorize j_init reduce",
            r"C is indexed by j_init: not a reduction over j_init; vectorize without `reduce`",
        ),
        (
            "argmax",
            "vectorize j reduce",
            r"vectorize j reduce needs a loop whose body is one update statement",
        ),
        (
            "rows",
            "split j 4\nvectorize j_i reduce",
            r"vectorize j_i reduce needs a loop whose body is one update statement",
        ),
        ("argmax", "parallel j", r"cannot run j in parallel: .*a reduction"),
        (
            "matmul",
            "parallel j\nparallel i",
            r"parallel i: loop j inside i is parallel already; nested parallelism is not supported",
        ),
        (
            "matmul",
            "parallel i\nparallel j",
            r"parallel j: loop i around j is parallel already; nested parallelism is not supported",
        ),
        (
            "matmul",
            "vectorize i_init\nparallel j_init",
            r"loop i_init around j_init is vector; threads cannot start",
        ),
        (
            "matmul",
            "vectorize j\nvectorize i",
            r"vectorize i: loop j inside i is vector; vectorize an innermost loop",
        ),
        (
            "matmul",
            "parallel j\nvectorize i",
            r"vectorize i: loop j inside i is parallel; vectorize an innermost loop",
        ),
        (
            "matmul",
            "vectorize i\nvectorize j",
            r"vectorize j: loop i around j is vector already; vectors do not nest",
        ),
        (
            "matmul",
            "unroll i",
            r"unroll i: extent 65 is too large to unroll fully \(limit 64\); split it first",
        ),
    ],
)
def test_annotate_errors(kernel, schedule, message):
    shapes = {"M": 65, "N": 6, "K": 3} if kernel == "matmul" else {"M": 4, "N": 9}
    with pytest.raises(ScheduleError, match=message):
        scheduled(KERNELS[kernel], shapes, schedule)


def test_vector_inside_parallel_is_fine():
    text = format_nest(scheduled(MATMUL, MM, "vectorize j_init\nparallel i_init"))
    assert "parallel for i_init in 0..5:\n    vector for j_init in 0..6:" in text


def test_unroll_limit_is_inclusive():
    assert "unrolled for i in 0..64:" in format_nest(scheduled(MATMUL, {"M": 64, "N": 2, "K": 2}, "unroll i"))


@pytest.mark.parametrize(
    "schedule",
    [
        "reorder k i\nparallel k reduce",
        "split k 4\nreorder k_o i\nparallel k_o reduce\nvectorize j",
        # Regression: a staged copy (a store whose value is a plain load) inside the loop crashed the
        # reduction check with AttributeError instead of being ignored as private.
        "reorder k i\ncache_read A at j\nparallel k reduce",
    ],
)
def test_parallel_reduce_preserves_results(schedule):
    check_schedule(MATMUL, {"M": 3, "N": 4, "K": 9}, schedule)


def test_parallel_reduce_errors():
    with pytest.raises(
        ScheduleError, match=r"parallel j reduce needs a loop whose only dependence is updates"
    ):
        scheduled(ARGMAX, {"M": 4, "N": 9}, "parallel j reduce")


def test_a_split_loop_with_its_outer_part_inside_is_independent():
    """`for i: for o: C[8 * o + i]` with i < 8: c * (i1 - i2) never equals 8 * (o2 - o1) (the thread
    loop of a row split for coalescing); with i over 9 values it may (i = 8, o = 0 is i = 0, o = 1)."""
    rows = "kernel sc(x: f32[M, N]) -> (y: f32[M, N]) { y[i, j] = x[i, j] * 2.0 }"
    ok = scheduled(rows, {"M": 3, "N": 32}, "split j 8\nreorder j_i j_o\nparallel j_i")
    assert "parallel for j_i in 0..8:" in format_nest(ok)
    check_schedule(rows, {"M": 3, "N": 32}, "split j 8\nreorder j_i j_o\nparallel j_i")
    o, i = Var("o"), Var("i")
    x, y = Buffer("x", F32, (64,)), Buffer("y", F32, (64,))
    idx = Binary(BinaryOp.ADD, Binary(BinaryOp.MUL, o, const(8)), i)
    body = (Loop(o, 4, LoopKind.SERIAL, (Store(y, (idx,), Load(x, (idx,))),)),)
    nest = LoopNest("dep", (x,), (y,), (), (Loop(i, 9, LoopKind.SERIAL, body),))
    with pytest.raises(ScheduleError, match="iterations may write the same elements"):
        apply(nest, parse_schedule("parallel i"))
