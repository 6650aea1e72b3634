"""epilogue: an elementwise consumer moved into a register tile's write-back, checked differentially
(interpreter and compiled C against the reference), with the last-k-block guard and each refusal."""

from __future__ import annotations

import pytest
from helpers import check_schedule, scheduled

from kcomp.errors import ScheduleError
from kcomp.expr import loads
from kcomp.loops import Guard, Store, walk_stmts
from kcomp.printer import format_nest

GEMM = """kernel g(X: f32[M, K], W: f32[K, N], b: f32[N], R: f32[M, N]) -> (Z: f32[M, N]) {
    Y[i, j] = b[j] where i < M
    Y[i, j] += X[i, k] * W[k, j]
    Z[i, j] = 0.5 * Y[i, j] * (1.0 + erf(Y[i, j] * 0.7071067811865476)) + R[i, j]
}"""
GEMM_SHAPES = {"M": 7, "N": 10, "K": 9}
TILE = "split i1 3\nsplit j1 4\nreorder i1_o j1_o k i1_i j1_i\ncache_write Y at j1_o\n"
BLOCKED = "split i1 3\nsplit j1 4\nsplit k 4\nreorder k_o i1_o j1_o k_i i1_i j1_i\ncache_write Y at j1_o\n"
CONV = """kernel c(X: f32[C, H, W], F: f32[K, C, 3, 3], b: f32[K]) -> (Z: f32[K, H, W]) {
    Y[k, h, w] += X[c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where h < H, w < W, r < 3, s < 3
    Z[k, h, w] = relu(Y[k, h, w] + b[k])
}"""
CONV_SHAPES = {"C": 2, "H": 5, "W": 7, "K": 4}


@pytest.mark.parametrize(
    "schedule",
    [
        TILE + "epilogue Z at j1_o",
        BLOCKED + "epilogue Z at j1_o",  # the tile is final only in the last k-block
        TILE + "unroll i1_i\nvectorize j1_i\nepilogue Z at j1_o\nparallel i1_o",
        BLOCKED + "epilogue Z at j1_o\nvectorize j1_i",
    ],
)
def test_a_gemm_epilogue_runs_on_the_tile(schedule):
    nest = check_schedule(GEMM, GEMM_SHAPES, schedule)
    text = format_nest(nest)
    assert "Z[" in text and text.count("for i2") == 0  # Z's own nest is gone
    zs = [s for s in walk_stmts(nest.body) if isinstance(s, Store) and s.buffer.name == "Z"]
    assert len(zs) == 1 and any(ld.buffer.name == "Y" for ld in loads(zs[0].value))  # the tile, in L1


def test_only_the_last_k_block_computes_the_epilogue():
    nest = scheduled(GEMM, GEMM_SHAPES, BLOCKED + "epilogue Z at j1_o")
    guarded = [
        s for g in walk_stmts(nest.body) if isinstance(g, Guard) for s in g.body if isinstance(s, Store)
    ]
    assert any(s.buffer.name == "Z" for s in guarded) and "if k_o == 2:" in format_nest(nest)


@pytest.mark.parametrize(
    "schedule",
    [
        "split k 2\nsplit w 4\nreorder k_o h w_o c r s k_i w_i\ncache_write Y at w_o\nepilogue Z at w_o",
        "split w 4\ncache_write Y at w_o\nepilogue Z at w_o",
    ],
)
def test_a_convolution_epilogue(schedule):
    check_schedule(CONV, CONV_SHAPES, schedule)


@pytest.mark.parametrize(
    "kernel, schedule, message",
    [
        (GEMM, "epilogue Z at j1", "written back inside loop j1"),
        (
            GEMM.replace("Z[i, j] = 0.5 * Y[i, j]", "Z[i, j] = 0.5 * Y[j % 7, i % 7]").replace(
                "N]) {", "N]) {", 1
            ),
            TILE + "epilogue Z at j1_o",
            "away from its own index",
        ),
        (
            GEMM.replace("Z: f32[M, N]", "Z: f32[M]").replace("Z[i, j] = 0.5", "Z[i] += 0.5"),
            TILE + "epilogue Z at j1_o",
            "computed by 2 nests",
        ),
        (
            GEMM.replace("    Z[i, j]", "    Y[i, j] = relu(Y[i, j])\n    Z[i, j]"),
            "split i1 3\nsplit j1 4\nreorder i1_o j1_o k i1_i j1_i\ncache_write Y at j1_o\nepilogue Z at j1_o",
            "written between",
        ),
    ],
)
def test_refusals_name_the_step_and_the_reason(kernel, schedule, message):
    with pytest.raises(ScheduleError, match=message):
        scheduled(kernel, GEMM_SHAPES, schedule)
