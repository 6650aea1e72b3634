"""Core aten ops as kernel-language text: each translator takes the node's arguments as values and
returns its result as a `TV` (lazy for elementwise ops and views, a statement's tensor for the rest),
or raises `Unsupported` with the reason `explain` reports.

The elementwise table keeps torch's semantics where the language's builtins differ: `relu`, `max`
and `min` of the language ignore NaN, torch propagates it, so those are written as selects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from kcomp.errors import Unsupported
from kcomp.torch.values import DTYPES, TV, broadcast_index, broadcast_shape, lazy, reshape, view

aten = torch.ops.aten
Translator = Callable[["Ctx", Any], Any]
OPS: dict[Any, Translator] = {}


class Ctx:
    """What a translator needs: the builder, the values of the node's arguments and its result's meta."""

    def __init__(self, builder: Any, values: dict[Any, TV]):
        self.b = builder
        self.values = values

    def arg(self, a: Any) -> TV | float | int | bool | None:
        if isinstance(a, torch.fx.Node):
            got = self.values.get(a)
            if got is None:
                raise Unsupported(f"{a.name} is not a tensor kcomp holds")
            return got
        return a


def translates(*targets: Any) -> Callable[[Translator], Translator]:
    def register(fn: Translator) -> Translator:
        for t in targets:
            OPS[t] = fn
        return fn

    return register


def out_meta(node: Any) -> tuple[tuple[int, ...], str]:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise Unsupported("its result is not one tensor")
    return tuple(int(d) for d in val.shape), str(val.dtype).removeprefix("torch.")


def literal(x: float | int | bool, dtype: str) -> str:
    """A Python scalar as a literal of the kernel's `dtype` (floats always with a point or exponent)."""
    if isinstance(x, bool):
        x = int(x)
    if dtype.startswith("f"):
        x = float(x)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        text = repr(x)
        return text if any(c in text for c in ".en") else text + ".0"
    if not float(x).is_integer():
        raise Unsupported(f"the scalar {x} in an integer computation")
    return str(int(x))


# -- elementwise -------------------------------------------------------------------------------------
def elementwise(cx: Ctx, node: Any, args: list[Any], fmt: Callable[..., str], cost: int = 1) -> TV:
    """`fmt(*operand texts)` applied element by element, with numpy broadcasting of tensor operands."""
    shape, torch_dtype = out_meta(node)
    dtype = kc_dtype(torch_dtype)
    values = [cx.arg(a) for a in args]
    tensors = [v for v in values if isinstance(v, TV)]
    if broadcast_shape(shape, *(t.shape for t in tensors)) != shape:
        raise Unsupported("its operands broadcast to another shape than its result")
    operand_dtype = tensors[0].dtype if tensors else dtype

    def reader(idx: list[str]) -> str:
        texts = [
            v.read(broadcast_index(v, idx, shape)) if isinstance(v, TV) else literal(v, operand_dtype)
            for v in values
        ]
        return fmt(*texts)

    return lazy(shape, dtype, reader, cost + sum(t.cost for t in tensors))


def kc_dtype(torch_dtype: str) -> str:
    if torch_dtype not in DTYPES:
        raise Unsupported(f"{torch_dtype} tensors are not in the language")
    return DTYPES[torch_dtype]


def _unary(fmt: str) -> Translator:
    return lambda cx, node: elementwise(cx, node, [node.args[0]], lambda x: fmt.format(x=x))


def _binary(fmt: str) -> Translator:
    def run(cx: Ctx, node: Any) -> TV:
        args = [node.args[0], node.args[1]]
        alpha = node.kwargs.get("alpha", 1)
        if alpha != 1:
            return elementwise(cx, node, [*args, alpha], lambda a, b, s: fmt.format(a=a, b=f"({s} * {b})"), 2)
        return elementwise(cx, node, args, lambda a, b: fmt.format(a=a, b=b))

    return run


for _op, _fmt in {
    aten.neg.default: "(-{x})",
    aten.exp.default: "exp({x})",
    aten.log.default: "log({x})",
    aten.sqrt.default: "sqrt({x})",
    aten.rsqrt.default: "rsqrt({x})",
    aten.tanh.default: "tanh({x})",
    aten.sigmoid.default: "sigmoid({x})",
    aten.erf.default: "erf({x})",
    aten.abs.default: "abs({x})",
    aten.reciprocal.default: "(1.0 / {x})",
    aten.relu.default: "select({x} < 0.0, 0.0, {x})",
    aten.log1p.default: "log1p({x})",
    aten.expm1.default: "expm1({x})",
    aten.clone.default: "{x}",
    aten.alias.default: "{x}",
}.items():
    OPS[_op] = _unary(_fmt)

for _op, _fmt in {
    aten.add.Tensor: "({a} + {b})",
    aten.sub.Tensor: "({a} - {b})",
    aten.mul.Tensor: "({a} * {b})",
    aten.div.Tensor: "({a} / {b})",
    aten.maximum.default: "select({a} != {a} or {a} > {b}, {a}, {b})",
    aten.minimum.default: "select({a} != {a} or {a} < {b}, {a}, {b})",
    aten.pow.Tensor_Tensor: "pow({a}, {b})",
}.items():
    OPS[_op] = _binary(_fmt)
OPS[aten.add.Scalar] = OPS[aten.add.Tensor]
OPS[aten.mul.Scalar] = OPS[aten.mul.Tensor]
OPS[aten.sub.Scalar] = OPS[aten.sub.Tensor]
OPS[aten.div.Scalar] = OPS[aten.div.Tensor]


@translates(aten.pow.Tensor_Scalar)
def _pow(cx: Ctx, node: Any) -> TV:
    e = node.args[1]
    if e == 2:
        return elementwise(cx, node, [node.args[0]], lambda x: f"({x} * {x})")
    if e == 0.5:
        return elementwise(cx, node, [node.args[0]], lambda x: f"sqrt({x})")
    return elementwise(cx, node, [node.args[0], e], lambda x, y: f"pow({x}, {y})")


@translates(aten.gelu.default)
def _gelu(cx: Ctx, node: Any) -> TV:
    if node.kwargs.get("approximate", "none") == "tanh":
        c = literal(math.sqrt(2.0 / math.pi), "f32")
        return elementwise(
            cx,
            node,
            [node.args[0]],
            lambda x: f"(0.5 * {x} * (1.0 + tanh({c} * ({x} + 0.044715 * {x} * {x} * {x}))))",
            6,
        )
    return elementwise(
        cx, node, [node.args[0]], lambda x: f"(0.5 * {x} * (1.0 + erf({x} * 0.7071067811865476)))", 4
    )


@translates(aten.silu.default)
def _silu(cx: Ctx, node: Any) -> TV:
    return elementwise(cx, node, [node.args[0]], lambda x: f"({x} * sigmoid({x}))", 2)


@translates(aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default, aten.hardtanh.default)
def _clamp(cx: Ctx, node: Any) -> TV:
    args = list(node.args[1:])
    if node.target is aten.clamp_max.default:
        lo, hi = None, args[0]
    elif node.target is aten.clamp_min.default:
        lo, hi = args[0], None
    elif node.target is aten.hardtanh.default:
        lo, hi = [*args, -1.0, 1.0][:2] if len(args) != 1 else (args[0], 1.0)
    else:
        lo = args[0] if args else node.kwargs.get("min")
        hi = args[1] if len(args) > 1 else node.kwargs.get("max")

    def fmt(x: str, *bounds: str) -> str:
        out, k = x, 0
        if lo is not None:
            out, k = f"select({out} < {bounds[k]}, {bounds[k]}, {out})", k + 1
        if hi is not None:
            out = f"select({out} > {bounds[k]}, {bounds[k]}, {out})"
        return out

    return elementwise(cx, node, [node.args[0], *(b for b in (lo, hi) if b is not None)], fmt, 2)


@translates(aten.where.self)
def _where(cx: Ctx, node: Any) -> TV:
    return elementwise(cx, node, list(node.args[:3]), lambda c, a, b: f"select({c}, {a}, {b})")


for _op, _sym in {
    aten.gt.Tensor: ">", aten.lt.Tensor: "<", aten.ge.Tensor: ">=", aten.le.Tensor: "<=",
    aten.eq.Tensor: "==", aten.ne.Tensor: "!=", aten.gt.Scalar: ">", aten.lt.Scalar: "<",
    aten.ge.Scalar: ">=", aten.le.Scalar: "<=", aten.eq.Scalar: "==", aten.ne.Scalar: "!=",
}.items():  # fmt: skip
    OPS[_op] = (
        lambda s: lambda cx, node: elementwise(cx, node, list(node.args[:2]), lambda a, b: f"({a} {s} {b})")
    )(_sym)


@translates(aten.leaky_relu.default)
def _leaky(cx: Ctx, node: Any) -> TV:
    slope = node.args[1] if len(node.args) > 1 else 0.01
    return elementwise(cx, node, [node.args[0], slope], lambda x, s: f"select({x} < 0.0, {s} * {x}, {x})", 2)


@translates(aten.elu.default)
def _elu(cx: Ctx, node: Any) -> TV:
    alpha, scale, in_scale = [*node.args[1:], 1.0, 1.0, 1.0][:3]
    return elementwise(
        cx, node, [node.args[0], alpha, scale, in_scale],
        lambda x, a, s, k: f"{s} * select({x} <= 0.0, {a} * (exp({k} * {x}) - 1.0), {x})", 4,
    )  # fmt: skip


@translates(aten.scalar_tensor.default, aten.full.default)
def _constant(cx: Ctx, node: Any) -> TV:
    shape, dtype = out_meta(node)
    value = node.args[0] if node.target is aten.scalar_tensor.default else node.args[1]
    text = literal(value, kc_dtype(dtype))
    return lazy(shape, kc_dtype(dtype), lambda _idx: text, 0)


@translates(aten._to_copy.default)
def _to_copy(cx: Ctx, node: Any) -> TV:
    _, dtype = out_meta(node)
    want = kc_dtype(dtype)
    source = cx.arg(node.args[0])
    if isinstance(source, TV) and source.dtype == "bool":
        one, zero = literal(1, want), literal(0, want)
        return elementwise(cx, node, [node.args[0]], lambda x: f"select({x}, {one}, {zero})")
    return elementwise(cx, node, [node.args[0]], lambda x: f"{want}({x})")


# -- views ---------------------------------------------------------------------------------------------
@translates(aten.permute.default)
def _permute(cx: Ctx, node: Any) -> TV:
    x, dims = cx.arg(node.args[0]), [d % len(node.args[1]) for d in node.args[1]]
    shape = tuple(x.shape[d] for d in dims)

    def mapping(idx: list[str]) -> list[str]:
        out = [""] * len(dims)
        for k, d in enumerate(dims):
            out[d] = idx[k]
        return out

    return view(x, shape, mapping)


@translates(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def _view(cx: Ctx, node: Any) -> TV:
    shape, _ = out_meta(node)
    return reshape(cx.arg(node.args[0]), shape)


@translates(aten.expand.default)
def _expand(cx: Ctx, node: Any) -> TV:
    x = cx.arg(node.args[0])
    shape, _ = out_meta(node)
    return view(x, shape, lambda idx: broadcast_index(x, idx, shape))


@translates(aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def _squeeze(cx: Ctx, node: Any) -> TV:
    shape, _ = out_meta(node)
    return reshape(cx.arg(node.args[0]), shape)


@translates(aten.slice.Tensor)
def _slice(cx: Ctx, node: Any) -> TV:
    x = cx.arg(node.args[0])
    dim = node.args[1] % x.rank if len(node.args) > 1 else 0
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    step = node.args[4] if len(node.args) > 4 else 1
    start = max(0, start + x.shape[dim] if start < 0 else min(start, x.shape[dim]))
    shape, _ = out_meta(node)

    def mapping(idx: list[str]) -> list[str]:
        out = list(idx)
        out[dim] = f"{start} + {step}*{idx[dim]}" if start or step != 1 else idx[dim]
        return out

    return view(x, shape, mapping)


@translates(aten.select.int)
def _select(cx: Ctx, node: Any) -> TV:
    x, dim, index = cx.arg(node.args[0]), node.args[1], node.args[2]
    dim %= x.rank
    index %= x.shape[dim]
    shape, _ = out_meta(node)
    return view(x, shape, lambda idx: [*idx[:dim], str(index), *idx[dim:]])
