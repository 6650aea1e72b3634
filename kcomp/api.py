"""The Python API: `kcomp.compile(...)` returns a `CompiledKernel` you call like a function.

    k = kcomp.compile("examples/matmul.kc")          # or source text, kernel=, shapes=, target=
    C = k(A, B)                                      # numpy arrays or torch CPU tensors
    k.check().ok, k.benchmark().time_s, print(k.source)

Dimensions the file leaves unbound are taken from the arguments at call time; each distinct binding
is compiled once and kept.  Compilation is the pipeline of `kcomp.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kcomp import syntax as S
from kcomp.arguments import as_array, check_arrays, check_params, infer_shapes, is_torch, split_arguments
from kcomp.check import param_defaults
from kcomp.compare import CheckResult, compare_outputs
from kcomp.data import random_inputs, random_params
from kcomp.dims import free_dims
from kcomp.errors import UsageError
from kcomp.parse import parse, read_source
from kcomp.pipeline import Built, build
from kcomp.reference import evaluate
from kcomp.targets import DEFAULT, get_target
from kcomp.targets.base import Measurement


def load_module(source_or_path: str | Path) -> S.Module:
    """A path (str or Path) to a `.kc` file, or the program text itself."""
    if isinstance(source_or_path, Path) or (
        isinstance(source_or_path, str) and "\n" not in source_or_path and "{" not in source_or_path
    ):
        path = str(source_or_path)
        return parse(read_source(path), path)
    return parse(source_or_path, "<string>")


def compile(
    source_or_path: str | Path,
    kernel: str | None = None,
    target: str = DEFAULT,
    shapes: dict[str, int] | None = None,
    schedule: Any = None,
    weights: dict[str, Any] | None = None,
    rearrange: bool = True,
) -> CompiledKernel:
    """`weights`: values of the kernel's sparse inputs (numpy arrays or torch tensors), bound at compile
    time; `rearrange=False` packs them in the given row and column order (docs/sparse.md)."""
    module = load_module(source_or_path)
    return CompiledKernel(module, module.kernel(kernel), target, shapes or {}, schedule, weights, rearrange)


class CompiledKernel:
    def __init__(
        self,
        module: S.Module,
        kernel: S.Kernel,
        target: str,
        shapes: dict[str, int],
        schedule: Any,
        weights: dict[str, Any] | None = None,
        rearrange: bool = True,
    ):
        self.module = module
        self.weights = {n: as_array(n, w) for n, w in (weights or {}).items()}
        self.rearrange = rearrange
        self.kernel = kernel
        self.target = get_target(target)
        self.shapes = dict(shapes)
        self.schedule = schedule
        self.defaults = param_defaults(kernel)
        self.free = [d for d in free_dims(module, kernel) if d not in self.shapes]
        if self.free and self.weights:  # a weight's shape binds its dimensions too
            self.shapes.update(infer_shapes(kernel, self.free, self.weights))
            self.free = [d for d in self.free if d not in self.shapes]
        self._built: dict[tuple[tuple[str, int], ...], Built] = {}
        self._quick: Callable[[tuple], list[np.ndarray] | None] | None = None
        if not self.free:
            self.specialize({})  # bound in the file or by `shapes`: compile now, report errors now
            self._quick = self._quick_call()

    def _quick_call(self) -> Callable[[tuple], list[np.ndarray] | None] | None:
        """The target's fast path for calls with every tensor input given positionally as an exact
        numpy match and the scalars at their defaults (None when a scalar has no default or is
        declared before a tensor, so positions would not line up)."""
        decls = self.kernel.inputs
        tensors = [d.name for d in decls if d.shape is not None]
        if [d.name for d in decls[: len(tensors)]] != tensors:
            return None
        scalars = [d.name for d in decls if d.shape is None]
        if any(name not in self.defaults for name in scalars):
            return None
        if self.built.bound:
            return None  # the fast path passes the caller's arrays alone
        try:
            params = check_params(self.built.program, {}, self.defaults)
        except UsageError:
            return None
        return self.target.quick_call(self.built.artifact, tensors, params)

    @property
    def name(self) -> str:
        return self.kernel.name

    def specialize(self, extra: dict[str, int]) -> Built:
        """The compiled form for the file's dimensions plus `extra` (cached per binding)."""
        binding = {**self.shapes, **extra}
        key = tuple(sorted(binding.items()))
        if key not in self._built:
            self._built[key] = build(
                self.module, self.kernel, binding, self.target, self.schedule, self.weights, self.rearrange
            )
        return self._built[key]

    @property
    def built(self) -> Built:
        if self.free:
            raise UsageError(
                f"kernel '{self.name}' has unbound dimensions {', '.join(self.free)}: pass shapes={{...}} to"
                " kcomp.compile, or call the kernel with arrays to bind them"
            )
        return self.specialize({})

    @property
    def source(self) -> str:
        return self.built.source

    @property
    def program(self):
        return self.built.program

    @property
    def nest(self):
        return self.built.nest

    def _bind(self, args, kwargs) -> tuple[Built, dict[str, np.ndarray], dict[str, float | int]]:
        tensors, scalars = split_arguments(self.kernel, args, kwargs)
        tensors = {name: as_array(name, value) for name, value in tensors.items()}
        built = self.specialize(infer_shapes(self.kernel, self.free, tensors)) if self.free else self.built
        arrays = check_arrays(built.program, tensors)
        return built, arrays, check_params(built.program, scalars, self.defaults)

    def __call__(self, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        """Run on the given inputs; returns the output (a tuple for several), or fills `out=`."""
        if out is None and not kwargs and self._quick is not None:
            results = self._quick(args)
            if results is not None:
                return results[0] if len(results) == 1 else tuple(results)
        built, arrays, params = self._bind(args, kwargs)
        outputs = self._outputs(built, out)
        self.target.run(built.artifact, built.arguments(arrays, outputs, params))
        want_torch = any(is_torch(a) for a in args) or any(is_torch(v) for v in kwargs.values())
        if out is not None:
            return out
        result = [outputs[b.name] for b in built.program.outputs]
        if want_torch:
            import torch

            result = [torch.from_numpy(r) for r in result]
        return result[0] if len(result) == 1 else tuple(result)

    def _outputs(self, built: Built, out: Any) -> dict[str, np.ndarray]:
        buffers = built.program.outputs
        if out is None:
            return {b.name: np.empty(b.shape, b.dtype.numpy) for b in buffers}
        given = out if isinstance(out, tuple | list) else (out,)
        if len(given) != len(buffers):
            raise UsageError(
                f"out= needs {len(buffers)} arrays ({', '.join(b.name for b in buffers)}), got {len(given)}"
            )
        return check_arrays(
            built.program, {b.name: o for b, o in zip(buffers, given, strict=True)}, role="output"
        )

    def reference(self, *args: Any, **kwargs: Any) -> Any:
        """The numpy reference semantics on the same inputs (the ground truth for `check`)."""
        built, arrays, params = self._bind(args, kwargs)
        ref = evaluate(built.program, arrays, params)
        result = [ref[b.name] for b in built.program.outputs]
        return result[0] if len(result) == 1 else tuple(result)

    def random_inputs(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
        rng = np.random.default_rng(seed)
        program = self.built.program
        return random_inputs(program, rng), random_params(program, rng, self.defaults)

    def _prepare(self, seed, inputs, params):
        """Bound arguments and fresh output arrays: the given inputs, or random ones from `seed`."""
        if inputs is None:
            inputs, random = self.random_inputs(seed)
            params = {**random, **(params or {})}
        built, arrays, params = self._bind((), {**inputs, **(params or {})})
        return built, arrays, self._outputs(built, None), params

    def check(
        self,
        seed: int | None = None,
        inputs: dict[str, np.ndarray] | None = None,
        params: dict[str, float | int] | None = None,
        *,
        sanitize: bool = False,
    ) -> CheckResult:
        """Run on fresh random inputs (or the given ones) and compare with the reference; `report` is
        what the target's run returned (the simulator's report on the accelerator).  `sanitize`: run
        the target's sanitizer build instead (`run_sanitized`; a UsageError where it has none)."""
        built, arrays, outputs, params = self._prepare(seed, inputs, params)
        args = built.arguments(arrays, outputs, params)
        report = self.target.run_sanitized(built, args) if sanitize else self.target.run(built.artifact, args)
        expected = evaluate(built.program, arrays, params)
        return CheckResult.of(compare_outputs(built.program, outputs, expected), report)

    def timer(
        self,
        seed: int | None = None,
        inputs: dict[str, np.ndarray] | None = None,
        params: dict[str, float | int] | None = None,
    ) -> Callable[[], object]:
        """A zero-argument call of the kernel on bound inputs (random from `seed`, or the given ones)
        and its own output arrays, for timing it beside other systems (`targets.base.interleave`)."""
        built, arrays, outputs, params = self._prepare(seed, inputs, params)
        return self.target.caller(built.artifact, built.arguments(arrays, outputs, params))

    def benchmark(
        self,
        seed: int | None = None,
        inputs: dict[str, np.ndarray] | None = None,
        params: dict[str, float | int] | None = None,
        budget_s: float = 0.1,
        cutoff_s: float | None = None,
    ) -> Measurement:
        """Median time of repeated runs after warm-up (the target's `profile`), timing for about
        `budget_s` seconds (at least five calls, or one when it took over `cutoff_s`)."""
        built, arrays, outputs, params = self._prepare(seed, inputs, params)
        return self.target.profile(
            built.artifact, built.arguments(arrays, outputs, params), budget_s=budget_s, cutoff_s=cutoff_s
        )
