"""Every example, end to end: `kcomp run --check --json` at the file's shapes, the compiled C on
randomized shapes, and the loop-IR interpreter at small shapes, all against the numpy reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kcomp.api import compile as kc_compile
from kcomp.api import load_module
from kcomp.check import check, param_defaults
from kcomp.cli import main
from kcomp.compare import compare_outputs
from kcomp.data import random_inputs, random_params
from kcomp.errors import SourceError
from kcomp.interp import run as interpret
from kcomp.loops.verify import verify
from kcomp.lower import lower
from kcomp.reference import evaluate
from kcomp.syntax import Num

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.kc"))
IDS = [p.stem for p in EXAMPLES]
REQUIRED = {
    "matmul",
    "batched_matmul",
    "matvec",
    "gemm_bias_relu",
    "softmax",
    "layernorm",
    "rmsnorm",
    "conv2d",
    "depthwise_conv2d",
    "maxpool2d",
    "row_reduce",
    "transpose",
    "gelu_chain",
    "groupnorm",
    "embedding_lookup",
    "argmax_rows",
    "causal_softmax",
    "cumsum",
}


def test_all_required_examples_exist():
    assert set(IDS) >= REQUIRED


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_run_check_json(path, capsys):
    code = main(["run", str(path), "--check", "--json", "--seed", "1"])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert code == 0 and result["ok"] is True, out
    assert {"ok", "max_abs_err", "max_rel_err", "time_s", "gflops", "schedule_source"} <= set(result)


def random_shapes(path: Path, rng: np.random.Generator, cap: int) -> dict[str, int]:
    """Random sizes for the dimensions the file binds to literals; derived ones follow."""
    module = load_module(path)
    roots = [b.name for b in module.dims if isinstance(b.value, Num)]
    for _ in range(50):
        shapes = {n: int(rng.integers(1, cap + 1)) for n in roots}
        try:
            check(module, module.kernels[0], shapes)
        except SourceError:  # e.g. CPG = C // G became 0: draw again
            continue
        return shapes
    raise AssertionError(f"no valid random shapes for {path}")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_compiled_on_random_shapes(path, seed):
    rng = np.random.default_rng(seed)
    shapes = random_shapes(path, rng, cap=24)
    k = kc_compile(path, shapes=shapes, schedule="default")  # a file's block is written for its shapes
    result = k.check(seed=seed)
    assert result.ok, (shapes, {n: str(c) for n, c in result.outputs.items()})


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_interpreter_agrees_with_reference(path):
    rng = np.random.default_rng(7)
    shapes = random_shapes(path, rng, cap=6)
    module = load_module(path)
    program = check(module, module.kernels[0], shapes)
    nest = lower(program)
    verify(nest)
    inputs = random_inputs(program, rng)
    params = random_params(program, rng, param_defaults(module.kernels[0]))
    arrays = {
        **{k: v.copy() for k, v in inputs.items()},
        **{b.name: np.empty(b.shape, b.dtype.numpy) for b in program.outputs},
    }
    interpret(nest, arrays, params)
    expected = evaluate(program, inputs, params)
    comparisons = compare_outputs(program, {b.name: arrays[b.name] for b in program.outputs}, expected)
    assert all(c.ok for c in comparisons.values()), (shapes, {n: str(c) for n, c in comparisons.items()})
