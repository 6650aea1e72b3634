"""kcomp/contraction.py: a contraction's roles read from its accesses, and the default scheduler's
register-tile rule firing on every operand layout (each checked against the reference)."""

from __future__ import annotations

import pytest

from kcomp import compile
from kcomp.api import load_module
from kcomp.contraction import classify
from kcomp.lower import lower
from kcomp.pipeline import front
from kcomp.schedule import CacheWrite, Pack

LAYOUTS = {
    "nn": ("A: f32[M, K], B: f32[K, N]", "A[i, k] * B[k, j]", 1),
    "nt": ("A: f32[M, K], B: f32[N, K]", "A[i, k] * B[j, k]", 0),
    "tn": ("A: f32[K, M], B: f32[K, N]", "A[k, i] * B[k, j]", 1),
    "tt": ("A: f32[K, M], B: f32[N, K]", "A[k, i] * B[j, k]", 0),
    "scaled": ("A: f32[M, K], B: f32[N, K]", "A[i, k] * 0.125 * B[j, k]", 0),
    # an operand read at a constant index of a dimension (a slice of a larger tensor: torch's size-1 batch)
    "const_a": ("A: f32[1, M, K], B: f32[K, N]", "A[0, i, k] * B[k, j]", 1),
    "const_b": ("A: f32[M, K], B: f32[N, 3, K]", "A[i, k] * B[j, 2, k]", 0),
    # operands cut out of larger tensors at an offset (the second half of a projection's columns)
    "offset": ("A: f32[M, 3*K], B: f32[K, 2*N]", "A[i, K + k] * B[k, N + j]", 1),
}


def chain_of(text: str, shapes: dict[str, int]):
    module = load_module(text)
    nest = lower(front(module, module.kernel(None), shapes))
    top = [s for s in nest.body if hasattr(s, "var")][-1]
    chain = [top]
    while len(chain[-1].body) == 1 and hasattr(chain[-1].body[0], "var"):
        chain.append(chain[-1].body[0])
    return chain


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_operand_layout_is_one_contraction(layout):
    args, product, panel_dim = LAYOUTS[layout]
    text = f"kernel mm({args}) -> (C: f32[M, N]) {{ C[i, j] += {product} }}"
    c = classify(chain_of(text, {"M": 5, "N": 6, "K": 7}))
    assert c is not None
    assert (c.rows.extent, c.cols.extent, c.reduce.extent) == (5, 6, 7)
    assert c.panel.buffer.name == "B" and c.broadcast.buffer.name == "A" and c.panel_dim == panel_dim


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_default_register_tiles_and_packs_every_layout(layout):
    args, product, panel_dim = LAYOUTS[layout]
    text = f"kernel mm({args}) -> (C: f32[M, N]) {{ C[i, j] += {product} }}"
    k = compile(text, shapes={"M": 37, "N": 70, "K": 300})
    steps = k.built.schedule.steps
    assert any(isinstance(s, Pack) and s.tensor == "B" and s.dim == panel_dim for s in steps)
    assert any(isinstance(s, CacheWrite) for s in steps)
    for seed in (0, 1):
        assert k.check(seed=seed).ok


def test_batched_attention_scores_with_the_batch_in_every_operand():
    text = "kernel s(Q: f32[B, S, E], K: f32[B, S, E]) -> (P: f32[B, S, S]) { P[b, i, j] += Q[b, i, c] * K[b, j, c] }"
    c = classify(chain_of(text, {"B": 3, "S": 9, "E": 4}))
    assert c is not None and [lp.extent for lp in c.batch] == [3] and c.panel.buffer.name == "K"
    assert compile(text, shapes={"B": 3, "S": 40, "E": 24}).check().ok


@pytest.mark.parametrize(
    "text",
    [
        # a reduction indexing one operand only: a row sum times a vector, not a GEMM
        "kernel f(A: f32[M, K], v: f32[N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * v[j] }",
        # a stencil (the convolution rule's)
        "kernel f(X: f32[N], F: f32[M, 3]) -> (C: f32[M, N]) { C[m, n] += X[n + r - 1, pad=0.0] * F[m, r] where r < 3 }",
        # no reduction: an outer product
        "kernel f(a: f32[M], b: f32[N]) -> (C: f32[M, N]) { C[i, j] = a[i] * b[j] }",
        # integers
        "kernel f(A: i32[M, K], B: i32[K, N]) -> (C: i32[M, N]) { C[i, j] += A[i, k] * B[k, j] }",
        # the column index in both operands: a batched dot product, no row operand
        "kernel f(A: f32[N, K], B: f32[N, K]) -> (C: f32[M, N]) { C[i, j] += A[j, k] * B[j, k] where i < M }",
    ],
)
def test_what_is_not_a_contraction(text):
    shapes = {"M": 4, "N": 5, "K": 6}
    assert (
        classify(chain_of(text, {d: n for d, n in shapes.items() if f"{d}]" in text or f"{d}," in text}))
        is None
    )


def test_a_tile_reading_strided_rows_of_its_broadcast_operand_stays_within_the_l1_ways():
    """A[i, k] rows lie K floats apart (one L1 set at a power-of-two K): at most 8 rows per tile;
    Aᵀ's rows are contiguous, so it may use the full accumulator budget."""
    from kcomp.autoschedule import ROWS_SHARING_L1_SETS, _tile_sizes
    from kcomp.schedule import Split

    for layout, strided in (("nn", True), ("tn", False)):
        args, product, _ = LAYOUTS[layout]
        k = compile(
            f"kernel mm({args}) -> (C: f32[M, N]) {{ C[i, j] += {product} }}",
            shapes={"M": 96, "N": 64, "K": 64},
        )
        rows = next(s.factor for s in k.built.schedule.steps if isinstance(s, Split) and s.loop == "i")
        width = k.target.vector_bits // 32
        assert rows == _tile_sizes(96, 64, width, strided)[0]
        assert (rows <= ROWS_SHARING_L1_SETS) if strided else rows == _tile_sizes(96, 64, width)[0]
        assert k.check(seed=1).ok


def test_attention_heads_cut_out_of_one_projection():
    """Q·Kᵀ and P·V per head read straight from the fused projection (`QKV[s, 64*h + k]`): batch loop h
    and reduction k share an index; j still steps one dimension of the panel by one."""
    text = """kernel att(QKV: f32[96, 384], P: f32[2, 96, 96]) -> (S: f32[2, 96, 96], O: f32[2, 96, 64]) {
        S[h, i, j] += QKV[i, 64*h + k] * QKV[j, 128 + 64*h + k] where k < 64
        O[h, i, j] += P[h, i, r] * QKV[r, 256 + 64*h + j] where j < 64
    }"""
    k = compile(text)
    packs = [s for s in k.built.schedule.steps if isinstance(s, Pack)]
    assert len(packs) == 2 and {p.tensor for p in packs} == {"QKV"}
    for seed in (0, 1):
        assert k.check(seed=seed).ok
