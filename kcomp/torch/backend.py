"""kcomp inside torch: the `torch.compile` backend, `from_torch` and `explain`.

    model = torch.compile(model, backend="kcomp")        # registered as a torch_dynamo_backends entry point
    f = kcomp.torch.from_torch(fn_or_module, example_inputs)    # compiled and checked once, then called
    print(kcomp.torch.explain(model, *inputs))            # which ops ran in kcomp, and why the others did not

Dynamo captures the Python-level graph and guards it (a new input shape or dtype re-traces and
recompiles; once dynamo marks sizes dynamic, `PerShape` compiles the symbolic graph once per concrete
shape, so a kernel never runs on a shape it was not built for); AOT autograd traces it to core
aten ops with torch's own decompositions (`core_aten_decompositions`), with the parameters as graph
inputs; `graph.GraphRunner` splits that graph into kcomp kernels and eager ops.  Inference only: a
graph that needs gradients is traced for them by AOT autograd, and its backward runs in eager torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._decomp import core_aten_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from kcomp.torch.graph import GraphRunner, OpReport

_SETTINGS = {"target": "cpu", "check": True}


@dataclass
class Explanation:
    """Every graph torch.compile handed kcomp, op by op: where it ran and why not in kcomp."""

    graphs: list[GraphRunner] = field(default_factory=list)

    @property
    def ops(self) -> list[OpReport]:
        return [r for g in self.graphs for r in g.report]

    def share(self, by: str = "ops") -> float:
        """The fraction of ops (`by="flops"`: of their arithmetic) that ran in kcomp kernels."""
        ops = [r for r in self.ops if "getitem" not in r.op]
        weight = (lambda r: r.flops) if by == "flops" else (lambda r: 1)
        total = sum(weight(r) for r in ops)
        return sum(weight(r) for r in ops if r.where != "eager") / total if total else 1.0

    def __str__(self) -> str:
        lines = [f"{len(self.ops)} ops in {len(self.graphs)} graph(s); {self.share():.0%} of them in kcomp,"
                 f" {self.share('flops'):.0%} of their flops"]  # fmt: skip
        for r in self.ops:
            lines.append(f"  {r.node:<24} {r.op:<32} {r.where:<14} {r.reason}")
        return "\n".join(lines)


def _compiler(sink: Explanation | None, target: str, check: bool | str) -> Any:
    def compile_forward(gm: Any, example_inputs: Any) -> Any:
        if _symbolic(gm):
            return PerShape(gm, target, check, sink)
        runner = GraphRunner(gm, target, check)
        if sink is not None:
            sink.graphs.append(runner)
        return runner

    return aot_autograd(fw_compiler=compile_forward, decompositions=core_aten_decompositions())


def _symbolic(gm: Any) -> bool:
    """Whether dynamo traced `gm` with symbolic sizes (it does after a second shape, unless
    `dynamic=False`): kernels need concrete ones."""
    for n in gm.graph.nodes:
        val = n.meta.get("val")
        if isinstance(val, torch.SymInt) or (
            isinstance(val, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in val.shape)
        ):
            return True
    return False


class PerShape:
    """A graph traced with symbolic sizes, compiled once per concrete input shape: each new shape's
    sizes are propagated through a copy of the graph (`FakeTensorProp`) and that copy compiled as
    any other (`GraphRunner`), so a kernel only ever runs on the shapes it was built for."""

    def __init__(self, gm: Any, target: str, check: bool | str, sink: Explanation | None):
        self.gm, self.target, self.check, self.sink = gm, target, check, sink
        self.runners: dict[tuple, GraphRunner] = {}

    def __call__(self, *args: Any) -> Any:
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
        runner = self.runners.get(key)
        if runner is None:
            gm = copy.deepcopy(self.gm)
            FakeTensorProp(gm, FakeTensorMode(allow_non_fake_inputs=True)).propagate(*args)
            runner = self.runners[key] = GraphRunner(gm, self.target, self.check)
            if self.sink is not None:
                self.sink.graphs.append(runner)
        return runner(*args)


def backend(gm: Any, example_inputs: Any) -> Any:
    """The `torch.compile(backend="kcomp")` entry point (target and check from `configure`)."""
    return _compiler(None, str(_SETTINGS["target"]), _SETTINGS["check"])(gm, example_inputs)


def backend_with(explanation: Explanation, target: str = "cpu", check: bool | str = True) -> Any:
    """A backend for `torch.compile(model, backend=...)` that records each graph it compiles into
    `explanation` (what ran where), for `target`, checking each kernel as `check` says."""
    return _compiler(explanation, target, check)


def configure(target: str = "cpu", check: bool | str = True) -> None:
    """What `backend="kcomp"` compiles for and whether it checks each kernel on its first call."""
    _SETTINGS.update(target=target, check=check)


def from_torch(fn: Any, example_inputs: Any, target: str = "cpu", check: bool | str = True) -> Any:
    """`fn` (a function or module) compiled through kcomp, run once on `example_inputs` (which builds
    and checks every kernel) and returned ready to call; its `.explanation` says what ran where."""
    sink = Explanation()
    compiled = torch.compile(fn, backend=_compiler(sink, target, check), dynamic=False)
    inputs = example_inputs if isinstance(example_inputs, tuple | list) else (example_inputs,)
    with torch.no_grad():
        compiled(*inputs)

    def run(*args: Any) -> Any:
        with torch.no_grad():
            return compiled(*args)

    run.explanation = sink  # type: ignore[attr-defined]
    return run


def explain(fn: Any, *inputs: Any, target: str = "cpu") -> Explanation:
    """Which ops of `fn(*inputs)` ran in kcomp and why the others did not (it compiles and runs it)."""
    return from_torch(fn, inputs, target=target, check=False).explanation
