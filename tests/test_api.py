"""The Python API: `kcomp.api.compile(...)` -> `CompiledKernel`, called like a function on numpy arrays
or torch CPU tensors, with its reference, check, benchmark and the errors a caller can meet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import kcomp.api
from kcomp.api import CheckResult, CompiledKernel, compile
from kcomp.compare import Comparison
from kcomp.errors import KcompError, UsageError
from kcomp.pipeline import Built
from kcomp.targets import Measurement
from kcomp.targets.base import Target

DEFAULT = Target.default_label  # the CPU's default-scheduler label

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

SCALE = """
kernel scale(X: f32[N], a: f32 = 2.0) -> (Y: f32[N]) {
    Y[i] = X[i] * a
}
"""

ADD2 = """
kernel add2(X: f32[N], Z: f32[N]) -> (Y: f32[N]) {
    Y[i] = X[i] + Z[i]
}
"""

OUTER = """
kernel outer(x: f32[M], y: f32[N]) -> (P: f32[M, N]) {
    P[i, j] = x[i] * y[j]
}
"""

TWO_KERNELS = """
dim N = 8
kernel double(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 2.0 }
kernel triple(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 3.0 }
"""


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def nonzero(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    """Random values with magnitude in [0.1, 1) and a random sign: never zero."""
    mag = rng.uniform(0.1, 1.0, size=shape)
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return np.ascontiguousarray((mag * sign).astype(dtype))


@pytest.fixture(scope="module")
def matmul() -> CompiledKernel:
    return compile(EXAMPLES / "matmul.kc", shapes={"M": 24, "N": 20, "K": 16})


@pytest.fixture(scope="module")
def layernorm() -> CompiledKernel:
    return compile(str(EXAMPLES / "layernorm.kc"), shapes={"N": 6, "D": 32})


@pytest.fixture(scope="module")
def row_reduce() -> CompiledKernel:
    return compile(EXAMPLES / "row_reduce.kc", shapes={"N": 10, "D": 33})


def layernorm_numpy(X: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    x = X.astype(np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


# --- compiling ---------------------------------------------------------------------------------------


def test_compile_from_path_object_and_str(rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    k1 = compile(EXAMPLES / "matmul.kc", shapes={"M": 24, "N": 20, "K": 16})
    k2 = compile(str(EXAMPLES / "matmul.kc"), shapes={"M": 24, "N": 20, "K": 16})
    assert isinstance(k1, CompiledKernel) and k1.name == k2.name == "matmul"
    np.testing.assert_array_equal(k1(A, B), k2(A, B))


def test_compile_from_source_text(rng):
    src = (EXAMPLES / "matmul.kc").read_text()
    k = compile(src, shapes={"M": 5, "N": 7, "K": 3})
    A, B = nonzero(rng, 5, 3), nonzero(rng, 3, 7)
    C = k(A, B)
    assert C.shape == (5, 7) and C.dtype == np.float32
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-6)


def test_file_without_unbound_dims_compiles_eagerly(matmul):
    assert matmul.free == []
    assert len(matmul._built) == 1
    assert isinstance(matmul.built, Built)
    assert matmul.built.schedule_source.startswith(DEFAULT)  # the file's block is for 1024³


def test_source_program_and_nest(matmul):
    assert "kc_matmul" in matmul.source
    assert dict(matmul.program.dims) == {"M": 24, "N": 20, "K": 16}
    assert [b.name for b in matmul.program.inputs] == ["A", "B"]
    assert [b.name for b in matmul.program.outputs] == ["C"]
    assert matmul.program.flops == 2 * 24 * 20 * 16
    assert [b.name for b in matmul.nest.outputs] == ["C"]


def test_shapes_override_file_default(rng):
    k = compile(EXAMPLES / "matmul.kc", shapes={"M": 32, "N": 32, "K": 32})
    A, B = nonzero(rng, 32, 32), nonzero(rng, 32, 32)
    C = k(A, B)
    assert C.shape == (32, 32)
    assert k.program.outputs[0].shape == (32, 32)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-5)


def test_partial_shapes_keep_other_file_defaults():
    k = compile(EXAMPLES / "matmul.kc", shapes={"M": 3})
    assert dict(k.program.dims) == {"M": 3, "N": 1024, "K": 1024}


def test_kernel_selected_by_name(rng):
    X = nonzero(rng, 8)
    np.testing.assert_allclose(compile(TWO_KERNELS, kernel="double")(X), X * 2, rtol=1e-6)
    np.testing.assert_allclose(compile(TWO_KERNELS, kernel="triple")(X), X * 3, rtol=1e-6)


# --- calling ------------------------------------------------------------------------------------------


def test_call_matches_reference_and_numpy(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    C = matmul(A, B)
    assert isinstance(C, np.ndarray) and C.shape == (24, 20) and C.dtype == np.float32
    ref = matmul.reference(A, B)
    np.testing.assert_allclose(C, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-4, atol=1e-5)
    assert np.all(C != 0)


def test_call_with_keywords_equals_positional(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    np.testing.assert_array_equal(matmul(A, B), matmul(B=B, A=A))
    np.testing.assert_array_equal(matmul(A, B), matmul(A, B=B))


def test_call_does_not_modify_inputs(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    A0, B0 = A.copy(), B.copy()
    matmul(A, B)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(B, B0)


def test_multiple_outputs_returned_as_tuple(row_reduce, rng):
    X = nonzero(rng, 10, 33)
    result = row_reduce(X)
    assert isinstance(result, tuple) and len(result) == 2
    total, biggest = result
    assert total.shape == biggest.shape == (10,)
    np.testing.assert_allclose(total, X.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(biggest, X.max(axis=1))
    ref_total, ref_biggest = row_reduce.reference(X)
    np.testing.assert_allclose(total, ref_total, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(biggest, ref_biggest)


def test_scalar_param_default_positional_and_keyword(layernorm, rng):
    X = nonzero(rng, 6, 32) * 3
    gamma, beta = nonzero(rng, 32), nonzero(rng, 32)
    default = layernorm(X, gamma, beta)
    np.testing.assert_allclose(default, layernorm_numpy(X, gamma, beta, 1e-5), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(default, layernorm.reference(X, gamma, beta), rtol=1e-5, atol=1e-5)

    eps = 2.5  # large enough to change every row visibly
    positional = layernorm(X, gamma, beta, eps)
    keyword = layernorm(X, gamma, beta, eps=eps)
    all_keywords = layernorm(eps=eps, beta=beta, gamma=gamma, X=X)
    expected = layernorm_numpy(X, gamma, beta, eps)
    for got in (positional, keyword, all_keywords):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(positional, layernorm.reference(X, gamma, beta, eps=eps), rtol=1e-5, atol=1e-5)
    assert not np.allclose(default, positional, rtol=1e-3, atol=1e-3)


def test_scalar_param_accepts_numpy_scalar(layernorm, rng):
    X, gamma, beta = nonzero(rng, 6, 32), nonzero(rng, 32), nonzero(rng, 32)
    np.testing.assert_allclose(
        layernorm(X, gamma, beta, eps=np.float32(0.5)), layernorm(X, gamma, beta, eps=0.5), rtol=1e-6
    )


def test_defaults_exposed(layernorm):
    assert layernorm.defaults == {"eps": pytest.approx(1e-5)}


def test_scalar_without_default_must_be_passed(rng):
    k = compile("kernel p(X: f32[N], a: f32) -> (Y: f32[N]) { Y[i] = X[i] * a }")
    X = nonzero(rng, 4)
    with pytest.raises(UsageError, match=r"scalar parameter 'a' has no default"):
        k(X)
    np.testing.assert_allclose(k(X, 3.0), X * 3, rtol=1e-6)
    np.testing.assert_allclose(k(X, a=-0.5), X * -0.5, rtol=1e-6)


def test_out_fills_given_array_and_returns_it(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    out = np.full((24, 20), np.nan, np.float32)
    result = matmul(A, B, out=out)
    assert result is out
    np.testing.assert_allclose(out, matmul.reference(A, B), rtol=1e-5, atol=1e-6)


def test_out_tuple_for_several_outputs(row_reduce, rng):
    X = nonzero(rng, 10, 33)
    total, biggest = np.zeros(10, np.float32), np.zeros(10, np.float32)
    result = row_reduce(X, out=(total, biggest))
    assert isinstance(result, tuple) and result[0] is total and result[1] is biggest
    np.testing.assert_array_equal(biggest, X.max(axis=1))
    np.testing.assert_allclose(total, X.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-5)
    as_list = [np.zeros(10, np.float32), np.zeros(10, np.float32)]
    row_reduce(X, out=as_list)
    np.testing.assert_array_equal(as_list[1], biggest)


def test_out_is_validated(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    with pytest.raises(UsageError, match=r"output 'C': expected dtype f32"):
        matmul(A, B, out=np.empty((24, 20), np.float64))
    with pytest.raises(UsageError, match=r"output 'C': expected shape \(24, 20\), got \(20, 24\)"):
        matmul(A, B, out=np.empty((20, 24), np.float32))
    with pytest.raises(UsageError, match=r"out= needs 1 arrays \(C\), got 2"):
        matmul(A, B, out=(np.empty((24, 20), np.float32),) * 2)
    with pytest.raises(UsageError, match=r"output 'C' must be C-contiguous"):
        matmul(A, B, out=np.empty((20, 24), np.float32).T)
    readonly = np.empty((24, 20), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(UsageError, match=r"output 'C' is read-only"):
        matmul(A, B, out=readonly)


# --- unbound dimensions ---------------------------------------------------------------------------------


def test_unbound_dims_bound_per_call_shape(rng):
    k = compile(SCALE)
    assert k.free == ["N"]
    assert k._built == {}  # nothing compiled until a call binds N
    for n in (3, 17):
        X = nonzero(rng, n)
        Y = k(X)
        assert Y.shape == (n,)
        np.testing.assert_allclose(Y, X * 2, rtol=1e-6)
        np.testing.assert_allclose(k(X, 0.5), X * 0.5, rtol=1e-6)
    assert len(k._built) == 2


def test_each_binding_compiled_once(rng, monkeypatch):
    calls: list[dict[str, int]] = []
    real_build = kcomp.api.build

    def counting_build(module, kernel, shapes, target, schedule=None, *sparse):
        calls.append(dict(shapes))
        return real_build(module, kernel, shapes, target, schedule, *sparse)

    monkeypatch.setattr(kcomp.api, "build", counting_build)
    k = compile(SCALE)
    assert calls == []
    X5, X9 = nonzero(rng, 5), nonzero(rng, 9)
    k(X5)
    first = k.specialize({"N": 5})
    k(X5 * 2)
    k(X=X5, a=4.0)
    k.reference(X5)
    assert calls == [{"N": 5}]
    k(X9)
    k(X5)
    assert calls == [{"N": 5}, {"N": 9}]
    assert len(k._built) == 2
    assert k.specialize({"N": 5}) is first
    assert all(isinstance(b, Built) for b in k._built.values())


def test_several_unbound_dims(rng):
    k = compile(OUTER)
    assert sorted(k.free) == ["M", "N"]
    x, y = nonzero(rng, 4), nonzero(rng, 6)
    P = k(x, y)
    assert P.shape == (4, 6)
    np.testing.assert_allclose(P, np.outer(x, y), rtol=1e-6)
    assert k(y, x).shape == (6, 4)
    assert len(k._built) == 2


def test_shapes_bind_unbound_dims_at_compile_time(rng):
    k = compile(SCALE, shapes={"N": 7})
    assert k.free == [] and len(k._built) == 1
    assert "kc_scale" in k.source
    with pytest.raises(UsageError, match=r"input 'X': expected shape \(7,\), got \(8,\)"):
        k(nonzero(rng, 8))


def test_unbound_dims_have_no_source_until_bound():
    k = compile(SCALE)
    with pytest.raises(UsageError, match=r"kernel 'scale' has unbound dimensions N: pass shapes="):
        _ = k.source
    with pytest.raises(UsageError, match=r"unbound dimensions N"):
        _ = k.program
    with pytest.raises(UsageError, match=r"unbound dimensions N"):
        k.check()


def test_conflicting_inferred_dimensions(rng):
    k = compile(ADD2)
    with pytest.raises(UsageError, match=r"dimension N is 3 from input 'X' but 4 from input 'Z'"):
        k(nonzero(rng, 3), nonzero(rng, 4))
    X, Z = nonzero(rng, 4), nonzero(rng, 4)
    np.testing.assert_allclose(k(X, Z), X + Z, rtol=1e-6)


def test_unbound_dim_rank_mismatch(rng):
    with pytest.raises(UsageError, match=r"input 'X' must have rank 1, got shape \(2, 3\)"):
        compile(SCALE)(nonzero(rng, 2, 3))


def test_unbound_dim_from_empty_array_rejected():
    with pytest.raises(UsageError, match=r"positive"):
        compile(SCALE)(np.ones(0, np.float32))


def test_unbound_dim_rejects_non_array_with_usage_error():
    with pytest.raises(UsageError, match=r"argument 'X': expected a numpy array or torch tensor, got list"):
        compile(SCALE)([1.0, 2.0, 3.0])


# --- torch ------------------------------------------------------------------------------------------------


def test_torch_tensors_in_torch_tensors_out(matmul, rng):
    torch = pytest.importorskip("torch")
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    C = matmul(torch.from_numpy(A), torch.from_numpy(B))
    assert isinstance(C, torch.Tensor) and C.dtype == torch.float32 and tuple(C.shape) == (24, 20)
    np.testing.assert_allclose(C.numpy(), matmul(A, B), rtol=1e-6)
    np.testing.assert_allclose(C.numpy(), A.astype(np.float64) @ B, rtol=1e-4, atol=1e-5)
    # keyword torch arguments, and a tensor that requires grad
    C2 = matmul(A=torch.from_numpy(A).requires_grad_(True), B=torch.from_numpy(B))
    assert isinstance(C2, torch.Tensor)
    np.testing.assert_array_equal(C2.numpy(), C.numpy())


def test_torch_multiple_outputs_and_out(row_reduce, rng):
    torch = pytest.importorskip("torch")
    X = torch.from_numpy(nonzero(rng, 10, 33))
    total, biggest = row_reduce(X)
    assert isinstance(total, torch.Tensor) and isinstance(biggest, torch.Tensor)
    assert torch.allclose(total, X.sum(dim=1), rtol=1e-5, atol=1e-5)
    assert torch.equal(biggest, X.amax(dim=1))
    out = (torch.empty(10), torch.empty(10))
    result = row_reduce(X, out=out)
    assert result is out
    assert torch.equal(out[1], biggest)


def test_torch_unbound_dims_and_errors(rng):
    torch = pytest.importorskip("torch")
    k = compile(SCALE)
    Y = k(torch.arange(1, 6, dtype=torch.float32))
    assert isinstance(Y, torch.Tensor)
    assert torch.equal(Y, torch.arange(1, 6, dtype=torch.float32) * 2)
    with pytest.raises(UsageError, match=r"input 'X': expected dtype f32 \(float32\), got float64"):
        k(torch.ones(4, dtype=torch.float64))
    with pytest.raises(UsageError, match=r"input 'X' must be C-contiguous"):
        k(torch.ones(8)[::2])


def test_numpy_inputs_give_numpy_outputs(matmul, rng):
    C = matmul(nonzero(rng, 24, 16), nonzero(rng, 16, 20))
    assert type(C) is np.ndarray


# --- argument errors --------------------------------------------------------------------------------------


def test_wrong_dtype(matmul, rng):
    with pytest.raises(UsageError, match=r"input 'A': expected dtype f32 \(float32\), got float64"):
        matmul(nonzero(rng, 24, 16, dtype=np.float64), nonzero(rng, 16, 20))


def test_wrong_shape(matmul, rng):
    with pytest.raises(UsageError, match=r"input 'B': expected shape \(16, 20\), got \(20, 16\)"):
        matmul(nonzero(rng, 24, 16), nonzero(rng, 20, 16))


def test_non_contiguous(matmul, rng):
    A = nonzero(rng, 16, 24).T  # right shape, Fortran order
    assert A.shape == (24, 16) and not A.flags.c_contiguous
    with pytest.raises(UsageError, match=r"input 'A' must be C-contiguous \(use np.ascontiguousarray"):
        matmul(A, nonzero(rng, 16, 20))
    C = matmul(np.ascontiguousarray(A), B := nonzero(rng, 16, 20))
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-5)


def test_missing_input(matmul, rng):
    with pytest.raises(UsageError, match=r"kernel 'matmul': missing input B"):
        matmul(nonzero(rng, 24, 16))
    with pytest.raises(UsageError, match=r"missing inputs A, B"):
        matmul()


def test_unknown_keyword(matmul, rng):
    with pytest.raises(UsageError, match=r"kernel 'matmul' has no input named 'Q' \(its inputs: A, B\)"):
        matmul(nonzero(rng, 24, 16), nonzero(rng, 16, 20), Q=1.0)


def test_too_many_args(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    with pytest.raises(UsageError, match=r"kernel 'matmul' takes 2 inputs \(A, B\), 3 given"):
        matmul(A, B, A)


def test_input_given_twice(matmul, rng):
    A, B = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    with pytest.raises(UsageError, match=r"input 'A' given twice"):
        matmul(A, B, A=A)


def test_not_an_array(matmul, rng):
    with pytest.raises(UsageError, match=r"argument 'A': expected a numpy array or torch tensor, got list"):
        matmul([[1.0]], nonzero(rng, 16, 20))


def test_bad_scalar_values(layernorm, rng):
    X, g, b = nonzero(rng, 6, 32), nonzero(rng, 32), nonzero(rng, 32)
    with pytest.raises(UsageError, match=r"parameter 'eps': expected a f32 number, got 'abc'"):
        layernorm(X, g, b, eps="abc")
    with pytest.raises(UsageError, match=r"parameter 'eps': expected a f32 number, got None"):
        layernorm(X, g, b, None)


def test_i32_param_out_of_range(rng):
    k = compile("kernel p(X: f32[N], a: i32) -> (Y: f32[N]) { Y[i] = X[i] * f32(a) }")
    X = nonzero(rng, 4)
    with pytest.raises(UsageError, match=r"parameter 'a': \d+ does not fit in i32"):
        k(X, a=2**40)
    np.testing.assert_allclose(k(X, a=-3), X * -3, rtol=1e-6)


def test_unknown_kernel_name():
    with pytest.raises(UsageError, match=r"no kernel named 'nope'; the file defines matmul"):
        compile(EXAMPLES / "matmul.kc", kernel="nope")


def test_several_kernels_without_name():
    with pytest.raises(UsageError, match=r"defines kernels double, triple: choose one"):
        compile(TWO_KERNELS)


def test_unknown_target():
    with pytest.raises(UsageError, match=r"unknown target 'gpu9'; known targets: accel, cpu"):
        compile(EXAMPLES / "matmul.kc", target="gpu9", shapes={"M": 2, "N": 2, "K": 2})


def test_missing_file():
    with pytest.raises(UsageError, match=r"cannot read .*no_such_kernel\.kc"):
        compile(EXAMPLES / "no_such_kernel.kc")


def test_bad_shapes_argument():
    with pytest.raises(UsageError, match=r"has no dimension 'Q'"):
        compile(EXAMPLES / "matmul.kc", shapes={"Q": 3})
    with pytest.raises(UsageError, match=r"positive"):
        compile(EXAMPLES / "matmul.kc", shapes={"M": 0})


def test_unsupported_schedule():
    with pytest.raises(UsageError, match=r"--schedule tiled: no such file"):
        compile(EXAMPLES / "matmul.kc", shapes={"M": 2, "N": 2, "K": 2}, schedule="tiled")


def test_source_errors_are_kcomp_errors():
    with pytest.raises(KcompError, match=r"unbound dimension 'M'"):
        compile("kernel f(X: f32[N]) -> (Y: f32[M]) { Y[i] = 1.0 }")(np.ones(3, np.float32))


# --- check, benchmark, random inputs ------------------------------------------------------------------------


def test_check_ok_on_example(matmul):
    result = matmul.check(seed=0)
    assert isinstance(result, CheckResult)
    assert result.ok
    assert 0 <= result.max_abs_err < 1e-3
    assert 0 <= result.max_rel_err < 1e-4
    assert set(result.outputs) == {"C"}
    c = result.outputs["C"]
    assert isinstance(c, Comparison) and c.ok and c.reason == "" and c.mismatches == 0
    assert c.max_abs_err == result.max_abs_err
    assert c.rtol == pytest.approx(1e-4) and 0 < c.atol < 1e-2  # the f32 policy


def test_check_reports_every_output(row_reduce):
    result = row_reduce.check(seed=1)
    assert result.ok
    assert set(result.outputs) == {"total", "biggest"}
    assert all(c.ok for c in result.outputs.values())
    assert result.outputs["biggest"].max_abs_err == 0.0  # max is exact
    assert result.max_abs_err == max(c.max_abs_err for c in result.outputs.values())
    assert result.max_rel_err == max(c.max_rel_err for c in result.outputs.values())


def test_check_with_given_inputs_and_params(layernorm, rng):
    inputs = {"X": nonzero(rng, 6, 32), "gamma": nonzero(rng, 32), "beta": nonzero(rng, 32)}
    assert layernorm.check(inputs=inputs).ok
    assert layernorm.check(inputs=inputs, params={"eps": 0.25}).ok
    assert layernorm.check(seed=3, params={"eps": 0.25}).ok


def test_check_fails_when_outputs_differ(matmul, monkeypatch):
    bad = Comparison(False, 1.0, 0.5, 1e-5, 1e-4, mismatches=7, reason="7 elements outside tolerance")
    monkeypatch.setattr(kcomp.api, "compare_outputs", lambda program, actual, expected: {"C": bad})
    result = matmul.check(seed=0)
    assert not result.ok
    assert result.max_abs_err == 1.0 and result.max_rel_err == 0.5
    assert result.outputs["C"].reason == "7 elements outside tolerance"


def test_check_is_reproducible_with_seed(matmul):
    assert matmul.check(seed=5).max_abs_err == matmul.check(seed=5).max_abs_err


def test_check_on_several_examples():
    for name, shapes in [
        ("softmax", {"N": 4, "D": 40}),
        ("gemm_bias_relu", {"M": 8, "N": 12, "K": 20}),
        ("argmax_rows", {"N": 5, "D": 17}),
        ("embedding_lookup", {"T": 6, "V": 11, "D": 9}),
        ("maxpool2d", {"N": 1, "C": 2, "H": 9, "W": 7}),
    ]:
        result = compile(EXAMPLES / f"{name}.kc", shapes=shapes).check(seed=2)
        assert result.ok, (name, result)


def test_benchmark_returns_measurement(matmul):
    m = matmul.benchmark(seed=0)
    assert isinstance(m, Measurement)
    assert math.isfinite(m.time_s) and m.time_s > 0
    assert m.counters["repeats"] >= 1


def test_benchmark_with_given_inputs(layernorm, rng):
    inputs = {"X": nonzero(rng, 6, 32), "gamma": nonzero(rng, 32), "beta": nonzero(rng, 32)}
    m = layernorm.benchmark(inputs=inputs, params={"eps": 0.1})
    assert math.isfinite(m.time_s) and m.time_s > 0


def test_random_inputs(layernorm):
    inputs, params = layernorm.random_inputs(seed=7)
    assert set(inputs) == {"X", "gamma", "beta"}
    assert inputs["X"].shape == (6, 32) and inputs["X"].dtype == np.float32
    assert inputs["gamma"].shape == inputs["beta"].shape == (32,)
    assert set(params) == {"eps"}
    again, params_again = layernorm.random_inputs(seed=7)
    for name in inputs:
        np.testing.assert_array_equal(inputs[name], again[name])
    assert params == params_again
    other, _ = layernorm.random_inputs(seed=8)
    assert not np.array_equal(inputs["X"], other["X"])
    # the random inputs are valid arguments
    Y = layernorm(**inputs, **params)
    np.testing.assert_allclose(Y, layernorm.reference(**inputs, **params), rtol=1e-5, atol=1e-5)
