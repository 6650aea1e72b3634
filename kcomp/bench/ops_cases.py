"""The kernels of `kcomp bench ops`: single operators and short chains a PyTorch user meets, each as
kcomp source with free dimensions, the torch computation of the same thing, and two sets of sizes.

`small` is about 64K output elements or 10 MFLOP (where a call's fixed cost shows), `large` about 4M
elements or 1 GFLOP.  The torch functions take the kernel's inputs by name as tensors and return
what the kernel's (only) output holds; integer inputs arrive as int32 and are widened where torch
wants int64.  The five kernels of the generic-scheduling issue's table are here at its shapes
(`matmul_*` large, `conv2d_alexnet1`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OpCase:
    name: str
    source: str
    small: dict[str, int]
    large: dict[str, int]
    torch: Callable[..., Any]


class _Lazy:
    """A module imported on first attribute use: the case table loads without torch."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
nnf = _Lazy("torch.nn.functional")


def _mm(args: str, product: str) -> str:
    return f"kernel mm({args}) -> (C: f32[M, N]) {{ C[i, j] += {product} }}"


_SQ_SMALL, _SQ_LARGE = {"M": 160, "N": 160, "K": 160}, {"M": 1024, "N": 1024, "K": 1024}
_ROWS_SMALL, _ROWS_LARGE = {"N": 256, "D": 256}, {"N": 4096, "D": 1024}
_IMG_SMALL = {"N": 1, "C": 32, "H": 48, "W": 48}
_IMG_LARGE = {"N": 8, "C": 64, "H": 96, "W": 96}


def _cases() -> list[OpCase]:
    mm = [
        OpCase(
            "matmul_nn",
            _mm("A: f32[M, K], B: f32[K, N]", "A[i, k] * B[k, j]"),
            _SQ_SMALL,
            _SQ_LARGE,
            lambda A, B: A @ B,
        ),
        OpCase(
            "matmul_nt",
            _mm("A: f32[M, K], B: f32[N, K]", "A[i, k] * B[j, k]"),
            _SQ_SMALL,
            _SQ_LARGE,
            lambda A, B: A @ B.T,
        ),
        OpCase(
            "matmul_tn",
            _mm("A: f32[K, M], B: f32[K, N]", "A[k, i] * B[k, j]"),
            _SQ_SMALL,
            _SQ_LARGE,
            lambda A, B: A.T @ B,
        ),
        OpCase(
            "matmul_tt",
            _mm("A: f32[K, M], B: f32[N, K]", "A[k, i] * B[j, k]"),
            _SQ_SMALL,
            _SQ_LARGE,
            lambda A, B: A.T @ B.T,
        ),
        OpCase(
            "bmm",
            "kernel bmm(A: f32[B, M, K], X: f32[B, K, N]) -> (C: f32[B, M, N]) { C[b, i, j] += A[b, i, k] * X[b, k, j] }",
            {"B": 4, "M": 96, "N": 96, "K": 96},
            {"B": 8, "M": 512, "N": 512, "K": 256},
            lambda A, X: torch.bmm(A, X),
        ),
        OpCase(
            "linear_bias",
            """kernel linear(X: f32[M, K], Wt: f32[O, K], b: f32[O]) -> (Y: f32[M, O]) {
    Y[i, o] = b[o] where i < M
    Y[i, o] += X[i, k] * Wt[o, k]
}""",
            {"M": 64, "K": 256, "O": 256},
            {"M": 512, "K": 1024, "O": 1024},
            lambda X, Wt, b: nnf.linear(X, Wt, b),
        ),
    ]
    conv = [
        OpCase(
            "conv1d_s2",
            """dim OL = (L + 2 - 3) // 2 + 1
kernel conv1d(X: f32[N, C, L], F: f32[K, C, 3]) -> (Y: f32[N, K, OL]) {
    Y[n, k, o] += X[n, c, 2 * o + t - 1, pad=0.0] * F[k, c, t] where t < 3
}""",
            {"N": 1, "C": 64, "K": 64, "L": 2048},
            {"N": 8, "C": 128, "K": 128, "L": 8192},
            lambda X, F: nnf.conv1d(X, F, stride=2, padding=1),
        ),
        OpCase(
            "conv2d_3x3",
            """kernel conv2d(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3
}""",
            {**_IMG_SMALL, "K": 32},
            {"N": 4, "C": 64, "K": 64, "H": 56, "W": 56},
            lambda X, F: nnf.conv2d(X, F, padding=1),
        ),
        OpCase(
            "conv2d_stride2",
            """dim OH = (H + 2 - 3) // 2 + 1, OW = (W + 2 - 3) // 2 + 1
kernel conv2d_s2(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, OH, OW]) {
    Y[n, k, h, w] += X[n, c, 2 * h + r - 1, 2 * w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3
}""",
            {"N": 1, "C": 32, "K": 64, "H": 64, "W": 64},
            {"N": 8, "C": 64, "K": 128, "H": 112, "W": 112},
            lambda X, F: nnf.conv2d(X, F, stride=2, padding=1),
        ),
        OpCase(
            "conv2d_dilated",
            """kernel conv2d_d2(X: f32[N, C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + 2 * r - 2, w + 2 * s - 2, pad=0.0] * F[k, c, r, s] where r < 3, s < 3
}""",
            {**_IMG_SMALL, "K": 32},
            {"N": 4, "C": 64, "K": 64, "H": 56, "W": 56},
            lambda X, F: nnf.conv2d(X, F, padding=2, dilation=2),
        ),
        OpCase(
            "conv2d_grouped",
            """dim G = 4
dim CG = C // G, KG = K // G
kernel conv2d_g(X: f32[N, C, H, W], F: f32[K, CG, 3, 3]) -> (Y: f32[N, K, H, W]) {
    Y[n, k, h, w] += X[n, (k // KG) * CG + c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where r < 3, s < 3
}""",
            {**_IMG_SMALL, "K": 32, "G": 4},
            {"N": 4, "C": 128, "K": 128, "H": 56, "W": 56, "G": 4},
            lambda X, F: nnf.conv2d(X, F, padding=1, groups=4),
        ),
        OpCase(
            "conv2d_depthwise",
            """kernel dw(X: f32[N, C, H, W], F: f32[C, 3, 3]) -> (Y: f32[N, C, H, W]) {
    Y[n, c, h, w] += X[n, c, h + r - 1, w + s - 1, pad=0.0] * F[c, r, s] where r < 3, s < 3
}""",
            _IMG_SMALL,
            {"N": 8, "C": 64, "H": 96, "W": 96},
            lambda X, F: nnf.conv2d(X, F.unsqueeze(1), padding=1, groups=X.shape[1]),
        ),
        OpCase(
            "conv3d",
            """kernel conv3d(X: f32[N, C, D, H, W], F: f32[K, C, 3, 3, 3]) -> (Y: f32[N, K, D, H, W]) {
    Y[n, k, d, h, w] += X[n, c, d + q - 1, h + r - 1, w + s - 1, pad=0.0] * F[k, c, q, r, s] where q < 3, r < 3, s < 3
}""",
            {"N": 1, "C": 8, "K": 16, "D": 16, "H": 16, "W": 16},
            {"N": 1, "C": 32, "K": 32, "D": 32, "H": 32, "W": 32},
            lambda X, F: nnf.conv3d(X, F, padding=1),
        ),
        OpCase(
            "conv_transpose2d_s2",
            """dim OH = 2 * H, OW = 2 * W
kernel convt(X: f32[N, C, H, W], F: f32[C, K, 3, 3]) -> (Y: f32[N, K, OH, OW]) {
    Y[n, k, h, w] += select((h + 1 - r) % 2 == 0 and (w + 1 - s) % 2 == 0, X[n, c, (h + 1 - r) // 2, (w + 1 - s) // 2, pad=0.0], 0.0) * F[c, k, r, s] where r < 3, s < 3, c < C
}""",
            {"N": 1, "C": 32, "K": 16, "H": 32, "W": 32},
            {"N": 4, "C": 64, "K": 32, "H": 56, "W": 56},
            lambda X, F: nnf.conv_transpose2d(X, F, stride=2, padding=1, output_padding=1),
        ),
        OpCase(
            "conv2d_alexnet1",
            """dim OH = (H + 4 - 11) // 4 + 1, OW = (W + 4 - 11) // 4 + 1
kernel alexnet1(X: f32[N, C, H, W], F: f32[K, C, 11, 11]) -> (Y: f32[N, K, OH, OW]) {
    Y[n, k, h, w] += X[n, c, 4 * h + r - 2, 4 * w + s - 2, pad=0.0] * F[k, c, r, s] where r < 11, s < 11
}""",
            {"N": 1, "C": 3, "K": 96, "H": 64, "W": 64},
            {"N": 8, "C": 3, "K": 96, "H": 224, "W": 224},
            lambda X, F: nnf.conv2d(X, F, stride=4, padding=2),
        ),
    ]
    pool = [
        OpCase(
            "maxpool1d",
            """dim OL = (L + 2 - 3) // 2 + 1
kernel mp1(X: f32[N, C, L]) -> (Y: f32[N, C, OL]) { Y[n, c, o] max= X[n, c, 2 * o + t - 1, pad=-inf] where t < 3 }""",
            {"N": 1, "C": 64, "L": 2048},
            {"N": 16, "C": 128, "L": 4096},
            lambda X: nnf.max_pool1d(X, 3, 2, 1),
        ),
        OpCase(
            "maxpool2d",
            """dim OH = (H + 2 - 3) // 2 + 1, OW = (W + 2 - 3) // 2 + 1
kernel mp2(X: f32[N, C, H, W]) -> (Y: f32[N, C, OH, OW]) {
    Y[n, c, h, w] max= X[n, c, 2 * h + r - 1, 2 * w + s - 1, pad=-inf] where r < 3, s < 3
}""",
            {"N": 1, "C": 64, "H": 64, "W": 64},
            {"N": 8, "C": 64, "H": 112, "W": 112},
            lambda X: nnf.max_pool2d(X, 3, 2, 1),
        ),
        OpCase(
            "avgpool2d",
            """dim OH = H // 2, OW = W // 2
kernel ap2(X: f32[N, C, H, W]) -> (Y: f32[N, C, OH, OW]) {
    Y[n, c, h, w] += X[n, c, 2 * h + r, 2 * w + s] * 0.25 where r < 2, s < 2
}""",
            {"N": 1, "C": 64, "H": 64, "W": 64},
            {"N": 8, "C": 64, "H": 128, "W": 128},
            lambda X: nnf.avg_pool2d(X, 2),
        ),
        OpCase(
            "maxpool3d",
            """dim OD = D // 2, OH = H // 2, OW = W // 2
kernel mp3(X: f32[N, C, D, H, W]) -> (Y: f32[N, C, OD, OH, OW]) {
    Y[n, c, d, h, w] max= X[n, c, 2 * d + q, 2 * h + r, 2 * w + s] where q < 2, r < 2, s < 2
}""",
            {"N": 1, "C": 16, "D": 32, "H": 32, "W": 32},
            {"N": 4, "C": 32, "D": 64, "H": 64, "W": 64},
            lambda X: nnf.max_pool3d(X, 2),
        ),
    ]
    norms = [
        OpCase(
            "batchnorm",
            """kernel bn(X: f32[N, C, H, W], g: f32[C], b: f32[C]) -> (Y: f32[N, C, H, W]) {
    mean[c] += X[n, c, h, w] / (N * H * W)
    var[c] += (X[n, c, h, w] - mean[c]) * (X[n, c, h, w] - mean[c]) / (N * H * W)
    Y[n, c, h, w] = (X[n, c, h, w] - mean[c]) * rsqrt(var[c] + 0.00001) * g[c] + b[c]
}""",
            {"N": 4, "C": 16, "H": 32, "W": 32},
            {"N": 16, "C": 64, "H": 64, "W": 64},
            lambda X, g, b: nnf.batch_norm(X, None, None, g, b, training=True, eps=1e-5),
        ),
        OpCase(
            "layernorm",
            """kernel ln(X: f32[N, D], g: f32[D], b: f32[D]) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    var[n] += (X[n, d] - mean[n]) * (X[n, d] - mean[n]) / D
    Y[n, d] = (X[n, d] - mean[n]) * rsqrt(var[n] + 0.00001) * g[d] + b[d]
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X, g, b: nnf.layer_norm(X, (X.shape[-1],), g, b, 1e-5),
        ),
        OpCase(
            "groupnorm",
            """dim G = 8
dim CPG = C // G
kernel gn(X: f32[N, C, P], g: f32[C], b: f32[C]) -> (Y: f32[N, C, P]) {
    mean[n, q] += X[n, q * CPG + c, p] / (CPG * P) where q < G, c < CPG
    var[n, q] += (X[n, q * CPG + c, p] - mean[n, q]) * (X[n, q * CPG + c, p] - mean[n, q]) / (CPG * P) where q < G, c < CPG
    Y[n, c, p] = (X[n, c, p] - mean[n, c // CPG]) * rsqrt(var[n, c // CPG] + 0.00001) * g[c] + b[c]
}""",
            {"N": 2, "C": 32, "G": 8, "P": 1024},
            {"N": 8, "C": 64, "G": 8, "P": 8192},
            lambda X, g, b: nnf.group_norm(X, 8, g, b, 1e-5),
        ),
        OpCase(
            "instancenorm",
            """kernel inorm(X: f32[N, C, P]) -> (Y: f32[N, C, P]) {
    mean[n, c] += X[n, c, p] / P
    var[n, c] += (X[n, c, p] - mean[n, c]) * (X[n, c, p] - mean[n, c]) / P
    Y[n, c, p] = (X[n, c, p] - mean[n, c]) * rsqrt(var[n, c] + 0.00001)
}""",
            {"N": 2, "C": 32, "P": 1024},
            {"N": 8, "C": 64, "P": 8192},
            lambda X: nnf.instance_norm(X, eps=1e-5),
        ),
        OpCase(
            "rmsnorm",
            """kernel rms(X: f32[N, D], w: f32[D]) -> (Y: f32[N, D]) {
    ms[n] += X[n, d] * X[n, d] / D
    Y[n, d] = X[n, d] * rsqrt(ms[n] + 0.000001) * w[d]
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X, w: X * torch.rsqrt(X.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
        ),
    ]
    softmax = [
        OpCase(
            "softmax_inner",
            """kernel sm(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    e[n, d] = exp(X[n, d] - mx[n])
    s[n] += e[n, d]
    Y[n, d] = e[n, d] / s[n]
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.softmax(X, -1),
        ),
        OpCase(
            "softmax_outer",
            """kernel smo(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[d] max= X[n, d]
    e[n, d] = exp(X[n, d] - mx[d])
    s[d] += e[n, d]
    Y[n, d] = e[n, d] / s[d]
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.softmax(X, 0),
        ),
        OpCase(
            "log_softmax",
            """kernel lsm(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    s[n] += exp(X[n, d] - mx[n])
    Y[n, d] = X[n, d] - mx[n] - log(s[n])
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.log_softmax(X, -1),
        ),
        OpCase(
            "logsumexp",
            """kernel lse(X: f32[N, D]) -> (Y: f32[N]) {
    mx[n] max= X[n, d]
    s[n] += exp(X[n, d] - mx[n])
    Y[n] = mx[n] + log(s[n])
}""",
            {"N": 256, "D": 256},
            _ROWS_LARGE,
            lambda X: torch.logsumexp(X, -1),
        ),
    ]
    red = [
        OpCase(
            "cumsum_last",
            "kernel c(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] += X[n, d] scan d }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.cumsum(X, -1),
        ),
        OpCase(
            "cumsum_first",
            "kernel c(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] += X[n, d] scan n }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.cumsum(X, 0),
        ),
        OpCase(
            "cummax_last",
            "kernel c(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] max= X[n, d] scan d }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.cummax(X, -1).values,
        ),
        OpCase(
            "cumsum_1d",
            "kernel c(x: f32[D]) -> (y: f32[D]) { y[d] += x[d] scan d }",
            {"D": 65536},
            {"D": 1 << 22},
            lambda x: torch.cumsum(x, 0),
        ),
        OpCase(
            "sum_last",
            "kernel r(X: f32[N, D]) -> (Y: f32[N]) { Y[n] += X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: X.sum(-1),
        ),
        OpCase(
            "sum_first",
            "kernel r(X: f32[N, D]) -> (Y: f32[D]) { Y[d] += X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: X.sum(0),
        ),
        OpCase(
            "mean_middle",
            "kernel r(X: f32[A, B, C]) -> (Y: f32[A, C]) { Y[a, c] += X[a, b, c] / B }",
            {"A": 16, "B": 64, "C": 64},
            {"A": 64, "B": 256, "C": 256},
            lambda X: X.mean(1),
        ),
        OpCase(
            "max_last",
            "kernel r(X: f32[N, D]) -> (Y: f32[N]) { Y[n] max= X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.amax(X, -1),
        ),
        OpCase(
            "min_first",
            "kernel r(X: f32[N, D]) -> (Y: f32[D]) { Y[d] min= X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.amin(X, 0),
        ),
        OpCase(
            "argmax_last",
            "kernel r(X: f32[N, D]) -> (Y: i32[N]) { Y[n] argmax= X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.argmax(X, -1),
        ),
        OpCase(
            "argmin_first",
            "kernel r(X: f32[N, D]) -> (Y: i32[D]) { Y[d] argmin= X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: torch.argmin(X, 0),
        ),
    ]
    loss = [
        OpCase(
            "cross_entropy",
            """kernel ce(X: f32[N, V], labels: i32[N]) -> (L: f32[]) {
    mx[n] max= X[n, v]
    s[n] += exp(X[n, v] - mx[n])
    L[] += (mx[n] + log(s[n]) - X[n, labels[n]]) / N
}""",
            {"N": 256, "V": 256},
            {"N": 4096, "V": 1024},
            lambda X, labels: nnf.cross_entropy(X, labels.long()),
        ),
        OpCase(
            "mse",
            "kernel mse(A: f32[N, D], B: f32[N, D]) -> (L: f32[]) { L[] += (A[n, d] - B[n, d]) * (A[n, d] - B[n, d]) / (N * D) }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda A, B: nnf.mse_loss(A, B),
        ),
        OpCase(
            "smooth_l1",
            """kernel sl1(A: f32[N, D], B: f32[N, D]) -> (L: f32[]) {
    L[] += select(abs(A[n, d] - B[n, d]) < 1.0, 0.5 * (A[n, d] - B[n, d]) * (A[n, d] - B[n, d]), abs(A[n, d] - B[n, d]) - 0.5) / (N * D)
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda A, B: nnf.smooth_l1_loss(A, B),
        ),
        OpCase(
            "kl_div",
            "kernel kl(P: f32[N, D], Q: f32[N, D]) -> (L: f32[]) { L[] += Q[n, d] * (log(Q[n, d]) - P[n, d]) / N }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda P, Q: nnf.kl_div(P, Q, reduction="batchmean"),
        ),
        OpCase(
            "cosine_similarity",
            """kernel cos(A: f32[N, D], B: f32[N, D]) -> (Y: f32[N]) {
    dot[n] += A[n, d] * B[n, d]
    na[n] += A[n, d] * A[n, d]
    nb[n] += B[n, d] * B[n, d]
    Y[n] = dot[n] / max(sqrt(na[n] * nb[n]), 0.00000001)
}""",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda A, B: nnf.cosine_similarity(A, B, dim=1),
        ),
    ]
    act = [
        OpCase(
            "gelu_bias",
            "kernel g(X: f32[N, D], b: f32[D]) -> (Y: f32[N, D]) { Y[n, d] = 0.5 * (X[n, d] + b[d]) * (1.0 + erf((X[n, d] + b[d]) * 0.7071067811865476)) }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X, b: nnf.gelu(X + b),
        ),
        OpCase(
            "silu",
            "kernel s(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] = X[n, d] * sigmoid(X[n, d]) }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: nnf.silu(X),
        ),
        OpCase(
            "tanh_chain",
            "kernel t(X: f32[N, D], a: f32[D]) -> (Y: f32[N, D]) { Y[n, d] = tanh(X[n, d] * a[d] + 0.5) * 2.0 - X[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X, a: torch.tanh(X * a + 0.5) * 2.0 - X,
        ),
        OpCase(
            "hardswish",
            "kernel h(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] = X[n, d] * min(max(X[n, d] + 3.0, 0.0), 6.0) / 6.0 }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: nnf.hardswish(X),
        ),
        OpCase(
            "softplus",
            "kernel sp(X: f32[N, D]) -> (Y: f32[N, D]) { Y[n, d] = log(1.0 + exp(X[n, d])) }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X: nnf.softplus(X),
        ),
        OpCase(
            "relu_scale_residual",
            "kernel r(X: f32[N, D], R: f32[N, D], s: f32[D]) -> (Y: f32[N, D]) { Y[n, d] = relu(X[n, d] * s[d]) + R[n, d] }",
            _ROWS_SMALL,
            _ROWS_LARGE,
            lambda X, R, s: torch.relu(X * s) + R,
        ),
    ]
    return mm + conv + pool + norms + softmax + red + loss + act


CASES: dict[str, OpCase] = {c.name: c for c in _cases()}
