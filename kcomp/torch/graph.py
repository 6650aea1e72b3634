"""An aten FX graph split into kcomp kernels and eager ops, and the callable that runs it.

    runner = compile_graph(gm, target="cpu")      # gm: core aten ops (backend.py's aot tracing)
    outputs = runner(*inputs)                      # torch tensors in, torch tensors out
    runner.report                                  # per op: where it ran and why

Each call_function node is translated on its own first (its arguments as plain tensors), which says
whether kcomp can take it and, if not, why.  Runs of consecutive nodes kcomp takes become one kernel
each (`kernel.KernelBuilder`): its inputs are the values it reads from outside, its outputs the values
read after it; a kernel that then fails to build runs its nodes eagerly, with the reason.  The other
nodes run in eager torch.  On the first call every kernel's outputs are compared with eager torch's on
the same inputs (kcomp's numeric policy); a mismatch raises `CheckFailed` (`check="warn"` only
warns, `check=False` skips it).  Tensors cross as they are, but for bool ones (i32 of 0 and 1 in a
kernel: the language has no bool tensors).
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

import kcomp
from kcomp.compare import compare, reduction_length
from kcomp.dtypes import DType
from kcomp.errors import CheckFailed, KcompError, Unsupported
from kcomp.torch import structured  # noqa: F401  (its translators register into OPS)
from kcomp.torch.kernel import KernelBuilder
from kcomp.torch.ops import OPS, Ctx, out_meta
from kcomp.torch.values import DTYPES, TV, lazy, tensor


@dataclass
class OpReport:
    node: str
    op: str
    where: str  # "kcomp" (with its kernel's name) or "eager"
    reason: str = ""
    flops: int = 0  # its arithmetic, roughly (`node_flops`): what `Explanation.share` weighs by


@dataclass
class Segment:
    nodes: list[Any]
    kernel: Any = None  # a CompiledKernel; None: the nodes run eagerly
    name: str = ""
    source: str = ""
    inputs: list[Any] = field(default_factory=list)  # graph nodes, in the kernel's input order
    outputs: list[Any] = field(default_factory=list)  # graph nodes, in the kernel's output order
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # the kernel's input shapes (no 1s)
    checked: bool = False


def _op_name(node: Any) -> str:
    return str(node.target).removeprefix("aten.") if node.op == "call_function" else node.op


def _meta_value(node: Any) -> TV | None:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    dtype = DTYPES.get(str(val.dtype).removeprefix("torch."))
    return tensor(node.name, tuple(int(d) for d in val.shape), dtype) if dtype else None


def _why_not(node: Any) -> str:
    """Why kcomp cannot take `node` on its own ("" when it can), from a trial translation."""
    if node.op != "call_function":
        return "not an op"
    if node.target is operator.getitem:
        return ""
    if node.target not in OPS:
        return f"{_op_name(node)} has no kcomp translation"
    values = {a: v for a in node.all_input_nodes if (v := _meta_value(a)) is not None}
    try:
        result = OPS[node.target](Ctx(KernelBuilder("probe"), values), node)
    except Unsupported as e:
        return str(e)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        return f"{_op_name(node)} with these arguments is not translated ({type(e).__name__}: {e})"
    if (
        isinstance(result, TV) and result.dtype == "bool" and any(u.target not in OPS for u in node.users)
    ):  # NOTE: a mask is an expression inside a kernel, never a tensor of one
        return "a bool result read outside kcomp"
    return ""


class GraphRunner:
    """The compiled graph (module docstring)."""

    def __init__(self, gm: Any, target: str = "cpu", check: bool | str = True):
        self.gm, self.target, self.check = gm, target, check
        self.nodes = list(gm.graph.nodes)
        self.report: list[OpReport] = []
        self.segments = self._segments()

    # -- building --------------------------------------------------------------------------------
    def _segments(self) -> list[Segment]:
        ops = [n for n in self.nodes if n.op == "call_function"]
        reasons = {n: _why_not(n) for n in ops}
        for n in ops:  # NOTE: an element of an eager op's tuple is read eagerly too
            if n.target is operator.getitem and reasons.get(n.args[0], "x"):
                reasons[n] = "an element of an op that runs eagerly"
        segments: list[Segment] = []
        for n in ops:
            if reasons[n]:
                segments.append(Segment([n]))
            elif segments and segments[-1].name == "pending":
                segments[-1].nodes.append(n)
            else:
                segments.append(Segment([n], name="pending"))
        count = 0
        for seg in segments:
            if seg.name != "pending":
                continue
            seg.name = f"part{count}"
            count += 1
            why = self._build(seg)
            if why:
                seg.kernel, seg.name = None, ""
                for n in seg.nodes:
                    reasons[n] = why
        for n in ops:
            seg = next(s for s in segments if n in s.nodes)
            where = f"kcomp {seg.name}" if seg.kernel is not None else "eager"
            self.report.append(OpReport(n.name, _op_name(n), where, reasons[n], node_flops(n)))
        return segments

    def _build(self, seg: Segment) -> str:
        """Write and compile `seg`'s kernel; "" when it built, else why not."""
        inside = set(seg.nodes)
        b = KernelBuilder(seg.name)
        values: dict[Any, Any] = {}
        try:
            for n in seg.nodes:
                for a in n.all_input_nodes:
                    if a not in inside and a not in values:
                        v = _meta_value(a)
                        if v is None:
                            raise Unsupported(f"{a.name} is not a tensor kcomp can read")
                        values[a] = _boundary_in(b, a.name, v)
                        seg.inputs.append(a)
                if n.target is operator.getitem:
                    got = values[n.args[0]][n.args[1]]
                    if got is None:
                        raise Unsupported(f"element {n.args[1]} of {_op_name(n.args[0])} is not computed")
                    values[n] = got
                    continue
                result = OPS[n.target](Ctx(b, values), n)
                values[n] = b.settle(result, len(n.users)) if isinstance(result, TV) else result
            for n in seg.nodes:
                if any(u not in inside for u in n.users):
                    if not isinstance(values[n], TV):
                        raise Unsupported(f"{n.name} leaves the kernel but is not one tensor")
                    b.output(n.name, _boundary_out(values[n]))
                    seg.outputs.append(n)
            seg.shapes = [t.shape for _, t in b.inputs]
            seg.source = b.source()
            seg.kernel = kcomp.compile(seg.source, target=self.target)
            assert seg.kernel.built is not None  # NOTE: compile now: a failure lands here, not in a call
        except (Unsupported, KcompError) as e:
            seg.inputs, seg.outputs = [], []
            return f"its kernel did not build: {e}".splitlines()[0]
        return ""

    # -- running ---------------------------------------------------------------------------------
    def __call__(self, *args: Any) -> Any:
        env: dict[Any, Any] = {}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        for n, a in zip(placeholders, args, strict=True):
            env[n] = a
        for seg in self.segments:
            if seg.kernel is not None:
                self._run_kernel(seg, env)
                continue
            for n in seg.nodes:
                env[n] = _eager(n, env)
        out = next(n for n in self.nodes if n.op == "output")
        return torch.fx.node.map_arg(out.args[0], lambda n: env[n])

    def _run_kernel(self, seg: Segment, env: dict[Any, Any]) -> None:
        """Run `seg`'s kernel into `env`."""
        ins = []
        for n, shape in zip(seg.inputs, seg.shapes, strict=True):
            x = env[n].detach()
            if x.dtype == torch.bool:
                x = x.to(torch.int32)
            # NOTE: numpy views (no copy) take the kernel's quick call, which checks only that each
            # array is exactly what the signature says; torch tensors would take the checked path
            ins.append(x.contiguous().reshape(shape).numpy())
        got = seg.kernel(*ins)
        got = got if isinstance(got, tuple) else (got,)
        for n, value in zip(seg.outputs, got, strict=True):
            value = torch.from_numpy(value)
            env[n] = value.to(torch.bool) if out_meta(n)[1] == "bool" else value
        if self.check and not seg.checked:
            seg.checked = True
            self._check(seg, env)

    def _check(self, seg: Segment, env: dict[Any, Any]) -> None:
        """The first call's comparison of `seg`'s outputs with eager torch's on the same inputs."""
        eager = {n: env[n] for n in seg.inputs}
        for n in seg.nodes:
            eager[n] = _eager(n, eager)
        program = seg.kernel.built.program
        for n, buffer in zip(seg.outputs, program.outputs, strict=True):
            actual, expected = env[n].detach().numpy(), eager[n].detach().numpy()
            dtype = DType(DTYPES[str(expected.dtype)])
            want = dtype.numpy
            result = compare(
                actual.astype(want), expected.astype(want), dtype, reduction_length(program, buffer)
            )
            if not result.ok:
                message = (
                    f"kcomp kernel {seg.name} ({_op_name(n)} -> {n.name}) differs from eager torch: {result}"
                )
                if self.check == "warn":
                    warnings.warn(message, stacklevel=3)
                else:
                    raise CheckFailed(message + f"\n{seg.source}")


def _boundary_in(b: KernelBuilder, key: str, v: TV) -> TV:
    """A kernel input; a bool tensor crosses as i32 (the language has no bool tensors) and is read
    back as a mask."""
    if v.dtype != "bool":
        return b.input(key, v.shape, v.dtype)
    raw = b.input(key, v.shape, "i32")
    return lazy(v.shape, "bool", lambda idx: f"{raw.read(idx)} != 0", 1)


def _boundary_out(v: TV) -> TV:
    """A kernel output; a mask leaves as an i32 tensor of 0 and 1 (turned back into bool after)."""
    if v.dtype != "bool":
        return v
    return lazy(v.shape, "i32", lambda idx: f"select({v.read(idx)}, 1, 0)", 1)


def node_flops(node: Any) -> int:
    """Floating-point operations of `node`: 2·M·N·K for products and convolutions, one per element of
    the larger of its result and its first operand for the rest, 0 for views and tuple elements."""
    val = node.meta.get("val")
    out = val.numel() if isinstance(val, torch.Tensor) else 0
    first = node.args[0].meta.get("val") if node.args and isinstance(node.args[0], torch.fx.Node) else None
    size = max(out, first.numel() if isinstance(first, torch.Tensor) else 0)
    if node.target in (torch.ops.aten.mm.default, torch.ops.aten.bmm.default):
        return 2 * out * int(first.shape[-1])
    if node.target is torch.ops.aten.addmm.default:
        return 2 * out * int(node.args[1].meta["val"].shape[-1])
    if node.target is torch.ops.aten.convolution.default:
        w = node.args[1].meta["val"]
        return 2 * out * int(w[0].numel())
    if node.target is operator.getitem or "view" in str(node.target) or "permute" in str(node.target):
        return 0
    return int(size)


def _eager(node: Any, env: dict[Any, Any]) -> Any:
    args = torch.fx.node.map_arg(node.args, lambda a: env[a])
    kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
    return node.target(*args, **kwargs)


def compile_graph(gm: Any, target: str = "cpu", check: bool | str = True) -> GraphRunner:
    return GraphRunner(gm, target, check)


__all__ = ["GraphRunner", "OpReport", "compile_graph"]
