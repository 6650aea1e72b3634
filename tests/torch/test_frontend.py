"""The torch frontend (kcomp/torch): single ops and fused chains through `kcomp.torch.from_torch`, each
compared with eager torch on fresh random inputs (the frontend also checks every kernel on its first
call), with the share of ops kcomp took; `torch.compile(backend="kcomp")` through the entry point;
`explain`'s reasons; the boundary rules (i64 in and out, a new shape recompiles)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

import kcomp.torch as kt  # noqa: E402
from kcomp.errors import CheckFailed  # noqa: E402


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def conv_gn_act() -> nn.Module:
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU())


# (name, module or function, inputs): every op of each is expected in kcomp
CASES = [
    ("mm", lambda a, b: a @ b, (r(13, 17), r(17, 9))),
    ("mm_bt", lambda a, b: a @ b.t(), (r(13, 17), r(9, 17))),
    ("mm_at", lambda a, b: a.t() @ b, (r(17, 13), r(17, 9))),
    ("bmm", torch.bmm, (r(3, 5, 7), r(3, 7, 4))),
    ("matmul_batched", lambda a, b: torch.matmul(a, b), (r(2, 3, 5, 7), r(2, 3, 7, 4))),
    ("linear", nn.Linear(16, 24), (r(5, 16),)),
    ("linear_nobias", nn.Linear(16, 24, bias=False), (r(2, 5, 16),)),
    ("addmm_scaled", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), (r(6, 4), r(6, 5), r(5, 4))),
    ("conv2d", nn.Conv2d(3, 8, 3), (r(2, 3, 10, 9),)),
    ("conv2d_pad_stride", nn.Conv2d(3, 8, 3, stride=2, padding=1), (r(2, 3, 11, 9),)),
    ("conv2d_dilated", nn.Conv2d(4, 6, 3, padding=2, dilation=2), (r(1, 4, 9, 9),)),
    ("conv2d_grouped", nn.Conv2d(4, 8, 3, padding=1, groups=2), (r(1, 4, 7, 7),)),
    ("conv2d_depthwise", nn.Conv2d(6, 6, 3, padding=1, groups=6), (r(2, 6, 8, 8),)),
    ("conv1d", nn.Conv1d(4, 5, 5, padding=2), (r(2, 4, 20),)),
    ("maxpool", nn.MaxPool2d(2), (r(2, 3, 8, 8),)),
    ("maxpool_pad_ceil", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (r(1, 2, 10, 9),)),
    ("avgpool", nn.AvgPool2d(2), (r(2, 3, 8, 6),)),
    ("avgpool_pad", nn.AvgPool2d(3, stride=1, padding=1), (r(1, 3, 6, 6),)),
    ("adaptive_avgpool", nn.AdaptiveAvgPool2d(1), (r(2, 5, 4, 4),)),
    ("layernorm", nn.LayerNorm(32), (r(6, 32),)),
    ("layernorm_2d", nn.LayerNorm([4, 8]), (r(3, 4, 8),)),
    ("batchnorm_eval", nn.BatchNorm2d(5).eval(), (r(2, 5, 4, 4),)),
    ("groupnorm", nn.GroupNorm(2, 6), (r(2, 6, 5, 5),)),
    ("softmax", lambda x: torch.softmax(x, -1), (r(7, 33),)),
    ("softmax_dim0", lambda x: torch.softmax(x, 0), (r(7, 33),)),
    ("log_softmax", lambda x: F.log_softmax(x, dim=1), (r(5, 20),)),
    ("sum_keepdim", lambda x: x.sum(dim=1, keepdim=True), (r(4, 9, 3),)),
    ("mean_all", lambda x: x.mean(), (r(4, 9),)),
    ("amax_amin", lambda x: x.amax(dim=0) - x.amin(dim=0), (r(6, 5),)),
    ("var", lambda x: x.var(dim=1), (r(4, 10),)),
    ("argmax", lambda x: x.argmax(dim=1), (r(6, 10),)),
    ("argmin_keepdim", lambda x: x.argmin(dim=0, keepdim=True), (r(6, 10),)),
    ("relu_chain", lambda x: F.relu(x * 2.0 - 1.0) + 0.5, (r(8, 8),)),
    ("gelu", nn.GELU(), (r(64),)),
    ("gelu_tanh", nn.GELU(approximate="tanh"), (r(64),)),
    ("sigmoid_tanh", lambda x: torch.sigmoid(x) * torch.tanh(x), (r(9, 7),)),
    ("silu", nn.SiLU(), (r(4, 9),)),
    ("hardtanh_clamp", lambda x: F.hardtanh(x) + x.clamp(min=-0.5, max=0.25), (r(5, 5),)),
    ("where_mask", lambda x, y: torch.where(x > y, x, y * 0.5), (r(6, 4), r(6, 4))),
    ("maximum", lambda x, y: torch.maximum(x, y) - torch.minimum(x, y), (r(6, 4), r(4))),
    ("exp_log_sqrt", lambda x: torch.log(torch.exp(x) + 1.0) + torch.sqrt(x.abs()), (r(10),)),
    ("pow", lambda x: x.pow(2) + x.abs().pow(1.5), (r(10),)),
    ("broadcast_bias", lambda x, b: x + b, (r(3, 4, 5), r(5))),
    ("permute_reshape", lambda x: x.permute(0, 2, 1).reshape(2, -1) * 2.0, (r(2, 3, 4),)),
    ("split_heads", lambda x: x.view(2, 5, 4, 8).transpose(1, 2).sum(-1), (r(2, 5, 32),)),
    ("slice_select", lambda x: x[:, 1:5:2] + x[:, 0:1] + x[2, 3:5], (r(4, 9),)),
    ("unsqueeze_expand", lambda x: x.unsqueeze(1).expand(3, 4, 5) * 1.5, (r(3, 5),)),
    ("embedding", nn.Embedding(20, 8), (torch.randint(0, 20, (4, 6)),)),
    ("mlp_block", nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)), (r(5, 16),)),
    ("gemm_bn_softmax", nn.Sequential(nn.Linear(12, 10), nn.BatchNorm1d(10).eval(), nn.Softmax(dim=1)), (r(6, 12),)),
    ("conv_gn_act", conv_gn_act(), (r(2, 4, 6, 6),)),
    ("attention", lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) * 0.25, -1) @ v, (r(2, 6, 8), r(2, 6, 8), r(2, 6, 8))),
    ("residual_ln", lambda x, w: F.layer_norm(x + F.gelu(x @ w), (8,)), (r(5, 8), r(8, 8))),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t), (r(6, 10), torch.randint(0, 10, (6,)))),
    ("nll_loss", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), (r(6, 10), torch.randint(0, 10, (6,)))),
    ("mse_loss", F.mse_loss, (r(6, 10), r(6, 10))),
    ("l1_loss", F.l1_loss, (r(6, 10), r(6, 10))),
    ("bce_logits", F.binary_cross_entropy_with_logits, (r(6, 10), torch.rand(6, 10))),
    ("cat", lambda x, y: torch.cat([x, y * 2], dim=1), (r(6, 10), r(6, 3))),
    ("gather_dim1", lambda x, i: torch.gather(x, 1, i), (r(6, 10), torch.randint(0, 10, (6, 3)))),
    ("prod", lambda x: x.prod(dim=1), (r(6, 5),)),
    ("max_dim", lambda x: x.max(dim=1), (r(6, 5),)),
    ("vector_norm", lambda x: x.norm(dim=1), (r(6, 5),)),
    ("logsumexp", lambda x: torch.logsumexp(x, dim=1), (r(6, 5),)),
    ("std", lambda x: x.std(dim=1), (r(6, 5),)),
    ("leaky_elu", lambda x: F.leaky_relu(x, 0.1) + F.elu(x), (r(6, 10),)),
    ("softplus_mish_hardswish", lambda x: F.softplus(x) + F.mish(x) + F.hardswish(x), (r(6, 10),)),
    ("rmsnorm", lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w, (r(6, 10), r(10))),
    ("pool1d", lambda x: F.avg_pool1d(x, 2) + F.max_pool1d(x, 2), (r(2, 3, 8),)),
    ("mask_count", lambda x: (x > 0).sum(dim=1) + (x > 0.5).long().sum(), (r(5, 7),)),
    ("log1p_expm1", lambda x: torch.log1p(x * 1e-6) + torch.expm1(x * 1e-6), (r(5, 7),)),
    ("cumsum", lambda x: torch.cumsum(x, dim=1) + torch.cumsum(x, dim=0), (r(5, 7),)),
    ("cumprod", lambda x: torch.cumprod(1.0 + 0.1 * x, dim=-1), (r(3, 9),)),
]  # fmt: skip


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    if b.dtype.is_floating_point:
        np.testing.assert_allclose(
            a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max()))
        )
    else:
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("name,fn,inputs", CASES, ids=[c[0] for c in CASES])
def test_modules_compile_through_kcomp_and_match_eager(name, fn, inputs):
    torch.manual_seed(0)
    if isinstance(fn, nn.Module):
        fn.eval()
    compiled = kt.from_torch(fn, inputs)
    fresh = tuple(
        torch.randn_like(x) if x.is_floating_point() else torch.randint_like(x, 0, int(x.max()) + 1)
        for x in inputs
    )
    if name == "bce_logits":
        fresh = (fresh[0], torch.rand_like(inputs[1]))
    with torch.no_grad():
        want = fn(*fresh)
    got = compiled(*fresh)
    for a, b in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,), strict=True
    ):
        _close(a, b)
    explanation = compiled.explanation
    eager = [(o.op, o.reason) for o in explanation.ops if o.where == "eager"]
    assert eager == [], eager


def test_the_backend_is_registered_with_torch_compile():
    f = torch.compile(lambda x: torch.relu(x) * 2 + 1, backend="kcomp")
    x = r(5, 7)
    _close(f(x), torch.relu(x) * 2 + 1)


def test_a_new_shape_recompiles():
    compiled = kt.from_torch(lambda x: x.softmax(-1), (r(3, 8),))
    for shape in ((3, 8), (5, 16), (2, 3)):
        x = r(*shape)
        _close(compiled(x), x.softmax(-1))
    assert len(compiled.explanation.graphs) >= 2


def test_sizes_dynamo_makes_dynamic_compile_per_shape():
    explanation = kt.Explanation()
    f = torch.compile(lambda x: torch.softmax(x * 2.0, -1), backend=kt.backend_with(explanation))
    for shape in ((3, 8), (5, 8), (7, 8), (5, 8)):
        x = r(*shape)
        _close(f(x), torch.softmax(x * 2.0, -1))
    shapes = [g.nodes[-2].meta["val"].shape for g in explanation.graphs]
    assert len(explanation.graphs) == 3 and all(o.where != "eager" for o in explanation.ops), shapes


def test_explain_names_the_ops_that_stay_eager_and_why():
    def fn(x):
        return torch.flip(torch.relu(x), [1]) * 2.0

    explanation = kt.explain(fn, r(4, 6))
    where = {o.op: o for o in explanation.ops}
    assert where["relu.default"].where.startswith("kcomp")
    assert where["flip.default"].where == "eager"
    assert "no kcomp translation" in where["flip.default"].reason
    assert 0 < explanation.share() < 1
    assert "flip" in str(explanation)


def test_i64_tensors_stay_i64_in_kernels():
    table = nn.Embedding(50, 4)
    ids = torch.randint(0, 50, (7,))
    compiled = kt.from_torch(table, (ids,))
    _close(compiled(ids), table(ids).detach())
    arg = kt.from_torch(lambda x: x.argmax(-1), (r(3, 9),))
    x = r(3, 9)
    assert arg(x).dtype == torch.int64 and torch.equal(arg(x), x.argmax(-1))

    def wide(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:  # sums far past the i32 range
        return (n * 3_000_000_000).sum(dim=1) + x.argmax(dim=1) + (x > 0).sum(dim=1)

    n = torch.randint(-5, 6, (4, 8)) * (1 << 33)
    x = r(4, 8)
    compiled = kt.from_torch(wide, (x, n))
    got, want = compiled(x, n), wide(x, n)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    assert abs(int(want.abs().max())) > 2**40  # the values really are out of i32's reach
    assert compiled.explanation.share() == 1.0


def test_a_kernel_that_disagrees_with_eager_is_refused(monkeypatch):
    from kcomp.torch import ops

    wrong = ops._unary("exp({x})")  # tanh computed as exp: the first call's check must catch it
    monkeypatch.setitem(ops.OPS, torch.ops.aten.tanh.default, wrong)
    with pytest.raises(CheckFailed, match="differs from eager torch"):
        kt.from_torch(lambda x: torch.tanh(x) + 1.0, (r(4, 4),))
