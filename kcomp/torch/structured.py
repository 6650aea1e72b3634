"""Core aten ops that become statements of their own: reductions, arg-reductions, products,
convolutions, pooling, the norms, softmax and gathers (registered into `ops.OPS`).

Operands a statement reads many times per element (a product's, a convolution's) are materialized
first (`KernelBuilder.settle`); a padded read needs a tensor of the kernel, so its operand is
materialized whatever it is.  Each result's shape comes from the node's meta (torch's own shape
rules: ceil_mode, keepdim), and each translator checks the arguments it cannot honour.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kcomp.errors import Unsupported
from kcomp.torch.ops import Ctx, aten, kc_dtype, literal, out_meta, translates
from kcomp.torch.values import TV, broadcast_index, lazy, reshape

PLAIN = re.compile(r"\w+\[\s*(v\d+|0)?(\s*,\s*(v\d+|0))*\s*\]")  # `t3[v1, v0]`, `t3[0, v2]`


def _operand(cx: Ctx, a: Any, readers: int = 2) -> TV:
    value = cx.arg(a)
    if not isinstance(value, TV):
        raise Unsupported("a scalar where a tensor is expected")
    return cx.b.settle(value, readers)


def _factor(cx: Ctx, a: Any) -> TV:
    """A product's operand as the scheduler's contraction rules want it: read through plain loop
    variables (a transposed or broadcast view of a tensor is fine); a view that splits or offsets an
    index (attention heads cut out of one projection) is copied contiguous first, as torch does."""
    value = _operand(cx, a)
    if value.name is None and not PLAIN.fullmatch(value.read([f"v{k}" for k in range(value.rank)])):
        value = cx.b.materialize(value)
    return value


def _tensor(cx: Ctx, a: Any) -> TV:
    """A tensor of the kernel (padded reads and gathers index a tensor, not an expression)."""
    value = cx.arg(a)
    if not isinstance(value, TV):
        raise Unsupported("a scalar where a tensor is expected")
    return value if value.name is not None else cx.b.materialize(value)


def _padded(t: TV, idx: list[str], pad: str) -> str:
    assert t.name is not None
    return f"{t.name}[{', '.join(idx)}, pad={pad}]" if idx else f"{t.name}[]"


def _reduced(rank: int, dims: Any) -> list[int]:
    if dims is None or dims == []:
        return list(range(rank))
    dims = [dims] if isinstance(dims, int) else dims
    return sorted({d % rank for d in dims})


def _source_index(rank: int, red: list[int], keepdim: bool) -> tuple[list[str], list[str]]:
    """(index into the reduced operand in terms of `i*` output and `r*` reduced variables, the `r*`)."""
    idx, rs, k = [], [], 0
    for d in range(rank):
        if d in red:
            idx.append(f"r{len(rs)}")
            rs.append(f"r{len(rs)}")
            k += keepdim
        else:
            idx.append(f"i{k}")
            k += 1
    return idx, rs


# -- reductions ----------------------------------------------------------------------------------------
@translates(aten.sum.dim_IntList, aten.sum.default, aten.mean.dim, aten.mean.default, aten.amax.default,
            aten.amin.default)  # fmt: skip
def _reduce(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], readers=1)
    kind = str(node.target).split(".")[1]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    if node.kwargs.get("dtype") is not None:
        raise Unsupported("a reduction that converts its type")
    red = _reduced(x.rank, dims)
    shape, dtype = out_meta(node)
    idx, rs = _source_index(x.rank, red, keepdim)
    body = x.read(idx)
    if x.dtype == "bool":  # NOTE: torch counts a mask's true elements
        body = f"select({body}, 1, 0)"
    if kind == "mean":
        body = f"{body} / {literal(math.prod(x.shape[d] for d in red), x.dtype)}"
    op = {"sum": "+=", "mean": "+=", "amax": "max=", "amin": "min="}[kind]
    return cx.b.statement(
        shape, kc_dtype(dtype), body, op, tuple(zip(rs, (x.shape[d] for d in red), strict=True))
    )


@translates(aten.var.correction)
def _var(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0])
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = bool(node.kwargs.get("keepdim", False))
    correction = node.kwargs.get("correction", 1)
    red = _reduced(x.rank, dims)
    n = math.prod(x.shape[d] for d in red)
    mean = _keep_reduce(cx, x, red, "+=", lambda v: f"{v} / {literal(n, x.dtype)}")
    shape, _ = out_meta(node)

    def centred(i: list[str]) -> str:
        return f"({x.read(i)} - {mean.read(broadcast_index(mean, i, x.shape))})"

    xc = lazy(x.shape, x.dtype, centred, 2)
    sq = _keep_reduce(cx, xc, red, "+=", lambda v: f"{v} * {v} / {literal(max(n - correction, 0), x.dtype)}")
    return sq if keepdim else reshape(sq, shape)


def _keep_reduce(cx: Ctx, x: TV, red: list[int], op: str, term: Any) -> TV:
    """`x` reduced over `red` with the reduced dimensions kept (size 1), each term `term(read)`."""
    idx, rs = _source_index(x.rank, red, True)
    shape = tuple(1 if d in red else s for d, s in enumerate(x.shape))
    return cx.b.statement(
        shape, x.dtype, term(x.read(idx)), op, tuple(zip(rs, (x.shape[d] for d in red), strict=True))
    )


@translates(aten.argmax.default, aten.argmin.default)
def _argmax(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], readers=1)
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    shape, _ = out_meta(node)
    if dim is None:
        x, dim, keepdim = reshape(x, (math.prod(x.shape),)), 0, False
    idx, rs = _source_index(x.rank, [dim % x.rank], keepdim)
    op = "argmax=" if node.target is aten.argmax.default else "argmin="
    out_shape = shape if dim is not None else ()
    return cx.b.statement(out_shape, "i64", x.read(idx), op, ((rs[0], x.shape[dim % x.rank]),))


# -- products ------------------------------------------------------------------------------------------
@translates(aten.mm.default, aten.bmm.default)
def _mm(cx: Ctx, node: Any) -> TV:
    a, b = _factor(cx, node.args[0]), _factor(cx, node.args[1])
    shape, dtype = out_meta(node)
    lead = [f"i{k}" for k in range(len(shape) - 2)]
    m, n = f"i{len(shape) - 2}", f"i{len(shape) - 1}"
    body = f"{a.read([*lead, m, 'r0'])} * {b.read([*lead, 'r0', n])}"
    return cx.b.statement(shape, kc_dtype(dtype), body, "+=", (("r0", a.shape[-1]),))


@translates(aten.addmm.default)
def _addmm(cx: Ctx, node: Any) -> TV:
    bias, a, b = _operand(cx, node.args[0], 1), _factor(cx, node.args[1]), _factor(cx, node.args[2])
    beta, alpha = node.kwargs.get("beta", 1), node.kwargs.get("alpha", 1)
    shape, dtype = out_meta(node)
    dt = kc_dtype(dtype)
    init = bias.read(broadcast_index(bias, ["i0", "i1"], shape))
    if beta != 1:
        init = f"{literal(beta, dt)} * {init}"
    name = cx.b.statement(shape, dt, init).name
    body = f"{a.read(['i0', 'r0'])} * {b.read(['r0', 'i1'])}"
    if alpha != 1:
        body = f"{literal(alpha, dt)} * {body}"
    return cx.b.statement(shape, dt, body, "+=", (("r0", a.shape[1]),), name=name)


@translates(aten.convolution.default)
def _conv(cx: Ctx, node: Any) -> TV:
    x, w = _tensor(cx, node.args[0]), _operand(cx, node.args[1])
    bias = node.args[2]
    stride, padding, dilation, transposed, _, groups = node.args[3:9]
    if transposed:
        raise Unsupported("a transposed convolution (not yet)")
    shape, dtype = out_meta(node)
    dt = kc_dtype(dtype)
    spatial = len(shape) - 2
    k_out, c_per = w.shape[0], w.shape[1]
    channel = "r0" if groups == 1 else f"(i1 // {k_out // groups}) * {c_per} + r0"
    x_idx, w_idx = ["i0", channel], ["i1", "r0"]
    for d in range(spatial):
        term = f"{stride[d]}*i{2 + d}" if stride[d] != 1 else f"i{2 + d}"
        tap = f"{dilation[d]}*r{1 + d}" if dilation[d] != 1 else f"r{1 + d}"
        x_idx.append(f"{term} + {tap}" + (f" - {padding[d]}" if padding[d] else ""))
        w_idx.append(f"r{1 + d}")
    read = _padded(x, x_idx, "0.0") if any(padding) else x.read(x_idx)
    name = None
    if bias is not None:
        b = _operand(cx, bias, 1)
        name = cx.b.statement(shape, dt, b.read(["i1"])).name
    reduced = (("r0", c_per), *((f"r{1 + d}", w.shape[2 + d]) for d in range(spatial)))
    return cx.b.statement(shape, dt, f"{read} * {w.read(w_idx)}", "+=", reduced, name=name)


# -- pooling ---------------------------------------------------------------------------------------------
def _window(x: TV, shape: tuple[int, ...], kernel: list[int], stride: list[int], padding: list[int],
            dilation: list[int]) -> tuple[list[str], tuple[tuple[str, int], ...]]:  # fmt: skip
    spatial = len(kernel)
    lead = x.rank - spatial
    idx = [f"i{k}" for k in range(lead)]
    for d in range(spatial):
        term = f"{stride[d]}*i{lead + d}" if stride[d] != 1 else f"i{lead + d}"
        tap = f"{dilation[d]}*r{d}" if dilation[d] != 1 else f"r{d}"
        idx.append(f"{term} + {tap}" + (f" - {padding[d]}" if padding[d] else ""))
    return idx, tuple((f"r{d}", kernel[d]) for d in range(spatial))


def _pool_args(node: Any, spatial: int) -> tuple[list[int], list[int], list[int]]:
    def expand(v: Any, default: int) -> list[int]:
        v = default if v is None or v == [] else v
        return list(v) * (spatial // len(v)) if isinstance(v, list | tuple) else [v] * spatial

    kernel = expand(node.args[1], 1)
    stride = expand(node.args[2] if len(node.args) > 2 else None, 0) or kernel
    stride = kernel if not any(stride) else stride
    padding = expand(node.args[3] if len(node.args) > 3 else 0, 0)
    return kernel, stride, padding


@translates(aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default)
def _max_pool(cx: Ctx, node: Any) -> tuple[TV, None]:
    x = _tensor(cx, node.args[0])
    spatial = 2 if node.target is aten.max_pool2d_with_indices.default else 3
    kernel, stride, padding = _pool_args(node, spatial)
    dilation = list(node.args[4]) if len(node.args) > 4 else [1] * spatial
    val = node.meta["val"][0]
    shape = tuple(int(d) for d in val.shape)
    idx, reduced = _window(x, shape, kernel, stride, padding, dilation * (spatial // len(dilation)))
    out = cx.b.statement(shape, x.dtype, _padded(x, idx, "-inf"), "max=", reduced)
    return out, None


@translates(aten.avg_pool2d.default)
def _avg_pool(cx: Ctx, node: Any) -> TV:
    x = _tensor(cx, node.args[0])
    kernel, stride, padding = _pool_args(node, 2)
    ceil_mode = node.args[4] if len(node.args) > 4 else False
    include_pad = node.args[5] if len(node.args) > 5 else True
    divisor = node.args[6] if len(node.args) > 6 else None
    if (ceil_mode or (any(padding) and not include_pad)) and divisor is None:
        raise Unsupported(
            "an average pool whose divisor changes at the border (ceil_mode or count_include_pad=False)"
        )
    shape, _ = out_meta(node)
    idx, reduced = _window(x, shape, kernel, stride, padding, [1, 1])
    count = literal(divisor or math.prod(kernel), x.dtype)
    read = _padded(x, idx, "0.0") if any(padding) else x.read(idx)
    return cx.b.statement(shape, x.dtype, f"{read} / {count}", "+=", reduced)


@translates(aten._adaptive_avg_pool2d.default)
def _adaptive_avg(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], 1)
    shape, _ = out_meta(node)
    if any(i % o for i, o in zip(x.shape[-2:], shape[-2:], strict=True)):
        raise Unsupported("an adaptive average pool whose windows differ in size")
    kernel = [i // o for i, o in zip(x.shape[-2:], shape[-2:], strict=True)]
    idx, reduced = _window(x, shape, kernel, kernel, [0, 0], [1, 1])
    return cx.b.statement(
        shape, x.dtype, f"{x.read(idx)} / {literal(math.prod(kernel), x.dtype)}", "+=", reduced
    )


# -- norms and softmax ------------------------------------------------------------------------------------
@translates(aten.native_layer_norm.default)
def _layer_norm(cx: Ctx, node: Any) -> tuple[TV, TV, TV]:
    x = _operand(cx, node.args[0])
    k = len(node.args[1])
    weight, bias, eps = node.args[2], node.args[3], node.args[4]
    red = list(range(x.rank - k, x.rank))
    n = math.prod(x.shape[d] for d in red)
    mean = _keep_reduce(cx, x, red, "+=", lambda v: f"{v} / {literal(n, x.dtype)}")

    def centred(i: list[str]) -> str:
        return f"({x.read(i)} - {mean.read(broadcast_index(mean, i, x.shape))})"

    var = _keep_reduce(cx, lazy(x.shape, x.dtype, centred, 2), red, "+=",
                       lambda v: f"{v} * {v} / {literal(n, x.dtype)}")  # fmt: skip
    eps_text = literal(eps, x.dtype)
    rstd = cx.b.statement(
        var.shape, x.dtype, f"rsqrt({var.read([f'i{k}' for k in range(var.rank)])} + {eps_text})"
    )
    w = _operand(cx, weight, 1) if weight is not None else None
    b = _operand(cx, bias, 1) if bias is not None else None

    def out(i: list[str]) -> str:
        text = f"{centred(i)} * {rstd.read(broadcast_index(rstd, i, x.shape))}"
        if w is not None:
            text = f"{text} * {w.read(i[x.rank - k :])}"
        return f"{text} + {b.read(i[x.rank - k :])}" if b is not None else text

    return lazy(x.shape, x.dtype, out, 6), mean, rstd


@translates(aten._native_batch_norm_legit_no_training.default)
def _batch_norm(cx: Ctx, node: Any) -> tuple[TV, None, None]:
    x = _operand(cx, node.args[0], 1)
    weight, bias, mean, var = (cx.arg(a) if a is not None else None for a in node.args[1:5])
    eps = literal(node.args[6], x.dtype)
    # NOTE: folded per channel first (C elements), so each element costs one multiply-add
    channels = (x.shape[1],)
    scale_text = f"rsqrt({var.read(['i0'])} + {eps})" + (
        f" * {weight.read(['i0'])}" if weight is not None else ""
    )
    scale = cx.b.statement(channels, x.dtype, scale_text)
    shift_text = f"-{mean.read(['i0'])} * {scale.read(['i0'])}"
    shift = cx.b.statement(
        channels, x.dtype, f"{bias.read(['i0'])} {shift_text}" if bias is not None else shift_text
    )
    return (
        lazy(x.shape, x.dtype, lambda i: f"{x.read(i)} * {scale.read([i[1]])} + {shift.read([i[1]])}", 2),
        None,
        None,
    )


@translates(aten._softmax.default, aten._log_softmax.default)
def _softmax(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0])
    red = [node.args[1] % x.rank]
    mx = _keep_reduce(cx, x, red, "max=", lambda v: v)

    def shifted(i: list[str]) -> str:
        return f"({x.read(i)} - {mx.read(broadcast_index(mx, i, x.shape))})"

    if node.target is aten._log_softmax.default:
        s = _keep_reduce(cx, lazy(x.shape, x.dtype, shifted, 2), red, "+=", lambda v: f"exp({v})")
        return lazy(
            x.shape, x.dtype, lambda i: f"({shifted(i)} - log({s.read(broadcast_index(s, i, x.shape))}))", 4
        )
    e = cx.b.materialize(lazy(x.shape, x.dtype, lambda i: f"exp({shifted(i)})", 3))
    s = _keep_reduce(cx, e, red, "+=", lambda v: v)
    return lazy(x.shape, x.dtype, lambda i: f"({e.read(i)} / {s.read(broadcast_index(s, i, x.shape))})", 1)


# -- gathers ----------------------------------------------------------------------------------------------
@translates(aten.embedding.default)
def _embedding(cx: Ctx, node: Any) -> TV:
    weight, ids = _tensor(cx, node.args[0]), _tensor(cx, node.args[1])
    shape, _ = out_meta(node)
    return lazy(shape, weight.dtype, lambda i: f"{weight.name}[{ids.read(i[: ids.rank])}, {i[-1]}]", 1)


@translates(aten.index_select.default)
def _index_select(cx: Ctx, node: Any) -> TV:
    x, dim, ids = (
        _tensor(cx, node.args[0]),
        node.args[1] % cx.arg(node.args[0]).rank,
        _tensor(cx, node.args[2]),
    )
    shape, _ = out_meta(node)

    def read(i: list[str]) -> str:
        j = list(i)
        j[dim] = ids.read([i[dim]])
        return f"{x.name}[{', '.join(j)}]"

    return lazy(shape, x.dtype, read, 1)


@translates(aten.gather.default)
def _gather(cx: Ctx, node: Any) -> TV:
    x, ids = _tensor(cx, node.args[0]), _tensor(cx, node.args[2])
    dim = node.args[1] % x.rank
    shape, _ = out_meta(node)

    def read(i: list[str]) -> str:
        j = list(i)
        j[dim] = ids.read(i)
        return f"{x.name}[{', '.join(j)}]"

    return lazy(shape, x.dtype, read, 1)


@translates(aten.cat.default)
def _cat(cx: Ctx, node: Any) -> TV:
    parts = [_tensor(cx, a) for a in node.args[0]]
    shape, _ = out_meta(node)
    dim = (node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % len(shape)
    parts = [p for p in parts if p.shape[dim] > 0]  # NOTE: torch allows empty pieces

    def read(i: list[str]) -> str:
        start, pieces = 0, []
        for p in parts:  # NOTE: every piece is read padded: the select evaluates both of its sides
            j = list(i)
            j[dim] = f"{i[dim]} - {start}" if start else i[dim]
            pieces.append((start + p.shape[dim], _padded(p, j, literal(0, p.dtype))))
            start += p.shape[dim]
        text = pieces[-1][1]
        for end, piece in reversed(pieces[:-1]):
            text = f"select({i[dim]} < {end}, {piece}, {text})"
        return text

    return lazy(shape, parts[0].dtype, read, len(parts))


@translates(aten.prod.dim_int)
def _prod(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], readers=1)
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    red = _reduced(x.rank, node.args[1])
    shape, dtype = out_meta(node)
    idx, rs = _source_index(x.rank, red, keepdim)
    return cx.b.statement(
        shape, kc_dtype(dtype), x.read(idx), "*=", tuple(zip(rs, (x.shape[d] for d in red), strict=True))
    )


@translates(aten.max.dim, aten.min.dim)
def _max_dim(cx: Ctx, node: Any) -> tuple[TV, TV]:
    x = _operand(cx, node.args[0])
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    red = _reduced(x.rank, node.args[1])
    shape = tuple(int(d) for d in node.meta["val"][0].shape)
    idx, rs = _source_index(x.rank, red, keepdim)
    reduced = ((rs[0], x.shape[red[0]]),)
    best = "max=" if node.target is aten.max.dim else "min="
    values = cx.b.statement(shape, x.dtype, x.read(idx), best, reduced)
    positions = cx.b.statement(shape, "i64", x.read(idx), "arg" + best, reduced)
    return values, positions


@translates(aten.linalg_vector_norm.default)
def _norm(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], readers=1)
    order = node.args[1] if len(node.args) > 1 else node.kwargs.get("ord", 2)
    if order != 2:
        raise Unsupported(f"a vector norm of order {order}")
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    keepdim = bool(node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False))
    red = _reduced(x.rank, dims)
    shape, dtype = out_meta(node)
    idx, rs = _source_index(x.rank, red, keepdim)
    v = x.read(idx)
    sq = cx.b.statement(
        shape, kc_dtype(dtype), f"{v} * {v}", "+=", tuple(zip(rs, (x.shape[d] for d in red), strict=True))
    )
    return lazy(shape, sq.dtype, lambda i: f"sqrt({sq.read(i)})", 1)


@translates(aten.cumsum.default, aten.cumprod.default)
def _cumsum(cx: Ctx, node: Any) -> TV:
    x = _operand(cx, node.args[0], readers=1)
    if node.kwargs.get("dtype") is not None:
        raise Unsupported("a scan that converts its type")
    shape, dtype = out_meta(node)
    dim = node.args[1] % max(1, x.rank)
    op = "+=" if node.target is aten.cumsum.default else "*="
    idx = [f"i{k}" for k in range(x.rank)]
    return cx.b.statement(shape, kc_dtype(dtype), f"{x.read(idx)} scan i{dim}", op)
