"""TVM MetaSchedule as a peer of `kcomp bench search --with-tvm`, always in a child process.

TVM can crash or hang inside MetaSchedule, so this process never imports it: `tune` writes a request
to `workdir`, runs `python -m kcomp.bench.metaschedule REQUEST` in a session of its own (killed as a
whole on timeout), and reads back two files the child writes as it goes:

    trials.jsonl   one line per measured candidate, in measurement order: {"run_secs": [...] | null,
                   "error": message | null}; written by a measure callback, so it survives a crash
    result.json    what the child knows at the end: target, tuning wall time, the best schedule
                   re-timed with time_evaluator and checked against numpy

The workloads are kcomp's examples written with `tvm.te` (fp32): matmul, gemm_bias_relu, softmax and
conv2d (NCHW, 3x3, stride 1, padding 1).  A trial's time is the median of the runner's repeats (each
repeat at least 100 ms); `best_time_s` is the fastest of them and `history` their running minimum,
so `history[-1] == best_time_s` and a smaller budget can be read off the curve.  The target is
`llvm` with this host's CPU as LLVM names it (its AVX2/AVX-512 features follow) and `num-cores`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PYTHON = sys.executable  # the interpreter of the child; tests point it at a broken one
LOG_NAME = "metaschedule.log"
TRIALS_NAME = "trials.jsonl"
RESULT_NAME = "result.json"
REQUEST_NAME = "request.json"
TUNE_DIR = "tune"  # MetaSchedule's own work_dir: its JSON database and logs
LOG_TAIL_LINES = 20
RUNNER_REPEAT = 3  # repeats per candidate, each of at least RUNNER_MIN_REPEAT_MS
RUNNER_MIN_REPEAT_MS = 100
BUILD_TIMEOUT_S = 600  # one candidate; generous: a loaded machine (and a fresh worker importing tvm) is slow
RUN_TIMEOUT_S = 120
RETIME_BUDGET_S = 0.1  # per repeat when the best schedule is re-timed
RETIME_REPEAT = 5
MAX_REL_ERR = 1e-3  # of the best schedule's output against numpy, relative to its largest value

# workload -> its dims with the example's defaults (examples/*.kc)
WORKLOADS: dict[str, dict[str, int]] = {
    "matmul": {"M": 1024, "N": 1024, "K": 1024},
    "gemm_bias_relu": {"M": 512, "N": 1024, "K": 768},
    "softmax": {"N": 4096, "D": 1024},
    "conv2d": {"N": 4, "C": 32, "K": 64, "H": 56, "W": 56},
}

_PROBE = """
import importlib
for name in ("tvm.s_tir.meta_schedule", "tvm.meta_schedule"):
    try:
        importlib.import_module(name)
        break
    except ImportError:
        pass
else:
    raise SystemExit("tvm has no meta_schedule module")
import tvm.te, xgboost
"""


def available() -> str | None:
    """None when `tvm` with MetaSchedule can be imported in a subprocess, else the reason (for the row's extra)."""
    try:
        done = subprocess.run(
            [PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=300, env=_child_env(1)
        )
    except OSError as e:
        return f"tvm probe could not start: {e}"
    except subprocess.TimeoutExpired:
        return "tvm probe did not finish in 300 s"
    if done.returncode == 0:
        return None
    lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
    return f"tvm MetaSchedule not importable ({lines[-1]}); pip install 'kcomp[tvm]'"


def tune(
    workload: str,
    shapes: dict[str, int],
    trials: int,
    *,
    seed: int = 0,
    threads: int = 2,
    workdir: str | Path,
    timeout_s: float = 3600,
) -> dict:
    """Tune one workload with MetaSchedule for `trials` measured candidates on the llvm CPU target of this
    host, in a subprocess, and return {"best_time_s": float | None, "history": [best time so far after
    each measured trial, None until one succeeds], "wall_s": tuning wall seconds, "trials": measured
    trials, "error": None or a message}.  `wall_s` is tune_tir's own time; importing tvm and its tensor
    intrinsics comes before it ("startup_s"; "process_wall_s" is the whole child).  Also "retimed_s" (the
    best schedule re-timed with time_evaluator, ~0.1 s x 5, median), "max_rel_err" (its output against
    numpy on random inputs), "target", "tvm" and "log".  Raises ValueError for a bad request only.
    """
    dims = _check_request(workload, shapes, trials, threads)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (TRIALS_NAME, RESULT_NAME):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / TUNE_DIR, ignore_errors=True)  # every run starts from an empty database
    request = {"workload": workload, "shapes": dims, "trials": trials, "seed": seed, "threads": threads}
    (workdir / REQUEST_NAME).write_text(json.dumps(request))
    log_path = workdir / LOG_NAME

    start = time.perf_counter()
    error = _run_child(workdir, log_path, threads, timeout_s)
    process_wall_s = time.perf_counter() - start

    result = _read_json(workdir / RESULT_NAME)
    times = _trial_times(workdir / TRIALS_NAME)
    history: list[float | None] = []
    best: float | None = None
    for t in times:
        if t is not None and (best is None or t < best):
            best = t
        history.append(best)
    if error is None and (result.get("max_rel_err") or 0) > MAX_REL_ERR:
        error = (
            f"the best schedule's output differs from numpy: max relative error {result['max_rel_err']:.3g}"
        )
    if error is None and best is None:
        error = f"no candidate of {len(times)} ran successfully"
    if error is not None:
        error = f"{error}\n{_log_tail(log_path)}"
    return {
        "best_time_s": best,
        "history": history,
        "wall_s": result.get("wall_s", process_wall_s),
        "trials": len(times),
        "error": error,
        "retimed_s": result.get("retimed_s"),
        "max_rel_err": result.get("max_rel_err"),
        "retime_error": result.get("retime_error"),
        "startup_s": result.get("startup_s"),
        "target": result.get("target"),
        "tvm": result.get("tvm"),
        "process_wall_s": process_wall_s,
        "log": str(log_path),
    }


def _check_request(workload: str, shapes: dict[str, int], trials: int, threads: int) -> dict[str, int]:
    """The workload's full dims (defaults from the example), or ValueError with what is wrong."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown MetaSchedule workload {workload!r}; known: {', '.join(WORKLOADS)}")
    defaults = WORKLOADS[workload]
    unknown = sorted(set(shapes) - set(defaults))
    if unknown:
        raise ValueError(f"{workload} has no dims {unknown}; its dims are {', '.join(defaults)}")
    dims = {**defaults, **{k: int(v) for k, v in shapes.items()}}
    if any(v <= 0 for v in dims.values()):
        raise ValueError(f"{workload} dims must be positive, got {dims}")
    if trials <= 0 or threads <= 0:
        raise ValueError(f"trials and threads must be positive, got {trials} and {threads}")
    return dims


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["TVM_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_child(workdir: Path, log_path: Path, threads: int, timeout_s: float) -> str | None:
    """Run the child with its output in the log; None when it exited cleanly, else why not."""
    command = [PYTHON, "-m", "kcomp.bench.metaschedule", str(workdir / REQUEST_NAME)]
    try:
        with log_path.open("w") as log:
            # NOTE: a session of its own, so a timeout also ends the builder and runner pools it starts
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(threads),
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_session(proc)
                return f"MetaSchedule timed out after {timeout_s:g} s"
    except OSError as e:
        return f"MetaSchedule child could not start: {e}"
    if code != 0:
        return f"MetaSchedule child exited with {code}"
    return None


def _kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _trial_times(path: Path) -> list[float | None]:
    """Each measured candidate's median time in order, None for one that failed to build or run."""
    times: list[float | None] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        try:
            secs = json.loads(line).get("run_secs")
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        ok = secs and all(math.isfinite(s) and 0 < s < 1e9 for s in secs)
        times.append(statistics.median(secs) if ok else None)
    return times


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return f"log {path}, last lines:\n" + "\n".join(lines[-LOG_TAIL_LINES:])


# ---------------------------------------------------------------------------------------------------
# The child: everything below runs only in `python -m kcomp.bench.metaschedule REQUEST`.


def _import_ms() -> tuple[Any, Any]:
    """(meta_schedule module, derived_object decorator) of whichever layout this TVM has."""
    try:
        import tvm.s_tir.meta_schedule as ms
        from tvm.ir.utils import derived_object
    except ImportError:
        import tvm.meta_schedule as ms
        from tvm.meta_schedule.utils import derived_object
    return ms, derived_object


def _tir(tvm: Any) -> Any:
    return getattr(tvm, "tirx", None) or tvm.tir


def _workload(name: str, d: dict[str, int]) -> tuple[Any, list, Any]:
    """(prim func, its tensors in argument order, numpy reference: inputs -> output)."""
    import tvm
    from tvm import te

    f32 = "float32"
    zero = _tir(tvm).const(0.0, f32)
    if name in ("matmul", "gemm_bias_relu"):
        M, N, K = d["M"], d["N"], d["K"]
        A = te.placeholder((M, K), f32, name="A")
        B = te.placeholder((K, N), f32, name="B")
        k = te.reduce_axis((0, K), name="k")
        C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
        if name == "matmul":
            return te.create_prim_func([A, B, C]), [A, B, C], lambda a, b: a @ b
        bias = te.placeholder((N,), f32, name="b")
        Y = te.compute((M, N), lambda i, j: te.max(C[i, j] + bias[j], zero), name="Y")
        return (
            te.create_prim_func([A, B, bias, Y]),
            [A, B, bias, Y],
            lambda a, b, c: np.maximum(a @ b + c, 0),
        )
    if name == "softmax":
        N, D = d["N"], d["D"]
        X = te.placeholder((N, D), f32, name="X")
        r1 = te.reduce_axis((0, D), name="d1")
        mx = te.compute((N,), lambda n: te.max(X[n, r1], axis=r1), name="mx")
        e = te.compute((N, D), lambda n, j: te.exp(X[n, j] - mx[n]), name="e")
        r2 = te.reduce_axis((0, D), name="d2")
        s = te.compute((N,), lambda n: te.sum(e[n, r2], axis=r2), name="s")
        Y = te.compute((N, D), lambda n, j: e[n, j] / s[n], name="Y")

        def softmax(x: Any) -> Any:
            ex = np.exp(x - x.max(axis=1, keepdims=True))
            return ex / ex.sum(axis=1, keepdims=True)

        return te.create_prim_func([X, Y]), [X, Y], softmax
    if name == "conv2d":
        N, C, K, H, W = d["N"], d["C"], d["K"], d["H"], d["W"]
        X = te.placeholder((N, C, H, W), f32, name="X")
        F = te.placeholder((K, C, 3, 3), f32, name="F")
        Xp = te.compute(
            (N, C, H + 2, W + 2),
            lambda n, c, h, w: te.if_then_else(
                te.all(h >= 1, h <= H, w >= 1, w <= W), X[n, c, h - 1, w - 1], zero
            ),
            name="Xp",
        )
        c = te.reduce_axis((0, C), name="c")
        r = te.reduce_axis((0, 3), name="r")
        s = te.reduce_axis((0, 3), name="s")
        Y = te.compute(
            (N, K, H, W),
            lambda n, k, h, w: te.sum(Xp[n, c, h + r, w + s] * F[k, c, r, s], axis=[c, r, s]),
            name="Y",
        )

        def conv(x: Any, f: Any) -> Any:
            xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # n c h w r s
            return np.einsum("nchwrs,kcrs->nkhw", win, f, optimize=True)

        return te.create_prim_func([X, F, Y]), [X, F, Y], conv
    raise ValueError(f"unknown MetaSchedule workload {name!r}")


def _host_target(threads: int) -> Any:
    """llvm for this host's CPU (LLVM's own detection, so AVX2/AVX-512 are on where the CPU has them)."""
    import tvm
    from tvm.target import codegen

    mcpu = codegen.llvm_get_system_cpu()
    try:
        return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": threads})
    except ValueError:  # TVM versions that still take the command-line form
        return tvm.target.Target(f"llvm -mcpu={mcpu} -num-cores {threads}")


def _recorder(ms: Any, derived_object: Any, path: Path) -> Any:
    """A measure callback appending each candidate's run_secs (or error) to `path` as it is measured."""

    @derived_object
    class RecordTrials(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
            with path.open("a") as out:
                for built, ran in zip(builder_results, runner_results, strict=True):
                    error = built.error_msg or ran.error_msg
                    secs = None if error or ran.run_secs is None else [float(s) for s in ran.run_secs]
                    line = {"run_secs": secs, "error": str(error)[:500] if error else None}
                    out.write(json.dumps(line) + "\n")

    return RecordTrials()


def _retime(tvm: Any, ms: Any, database: Any, func: Any, tensors: list, target: Any, reference: Any) -> dict:
    """Build the best schedule, check it against numpy on random inputs, time it (~0.1 s x 5, median)."""

    sch = ms.tir_integration.compile_tir(database, func, target)
    if sch is None:
        raise RuntimeError("the database has no schedule for the workload")
    built = tvm.compile(sch.mod, target=target) if hasattr(tvm, "compile") else tvm.build(sch.mod, target)
    built = built.jit() if hasattr(built, "jit") else built  # an Executable (0.2x) holds the runtime module
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, [int(x) for x in t.shape]).astype("float32") for t in tensors[:-1]]
    out_shape = [int(x) for x in tensors[-1].shape]
    to_dev = getattr(tvm.runtime, "tensor", None) or tvm.nd.array
    args = [to_dev(a, dev) for a in inputs] + [to_dev(np.zeros(out_shape, "float32"), dev)]
    built(*args)
    want = reference(*inputs)
    got = args[-1].numpy()
    max_rel_err = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))

    once = built.time_evaluator("main", dev, number=1, repeat=1)(*args).mean
    number = max(1, math.ceil(RETIME_BUDGET_S / max(once, 1e-9)))
    timer = built.time_evaluator("main", dev, number=number, repeat=RETIME_REPEAT)
    retimed = statistics.median(float(t) for t in timer(*args).results)
    return {"retimed_s": retimed, "max_rel_err": max_rel_err}


def _child(request_path: Path) -> None:
    import tvm

    request = json.loads(request_path.read_text())
    workdir = request_path.parent
    threads, trials = request["threads"], request["trials"]
    ms, derived_object = _import_ms()
    func, tensors, reference = _workload(request["workload"], request["shapes"])
    target = _host_target(threads)
    result: dict[str, Any] = {"target": str(target), "tvm": tvm.__version__}
    print(f"tuning {request['workload']} {request['shapes']} for {trials} trials on {target}", flush=True)

    evaluator = ms.runner.EvaluatorConfig(
        number=1, repeat=RUNNER_REPEAT, min_repeat_ms=RUNNER_MIN_REPEAT_MS, enable_cpu_cache_flush=False
    )
    callbacks = [*ms.MeasureCallback.create("default"), _recorder(ms, derived_object, workdir / TRIALS_NAME)]
    # NOTE: tune_tir imports the tensor intrinsics (TVMScript-parsed, slow) on first use; done here,
    # that one-time import stays out of wall_s (the builder's workers still import them per batch)
    start = time.perf_counter()
    with contextlib.suppress(ImportError):
        importlib.import_module(f"{ms.__name__.rsplit('.', 1)[0]}.tensor_intrin")
    result["startup_s"] = time.perf_counter() - start
    start = time.perf_counter()
    database = ms.tune_tir(
        mod=func,
        target=target,
        work_dir=str(workdir / TUNE_DIR),
        max_trials_global=trials,
        num_trials_per_iter=min(64, trials),
        builder=ms.builder.LocalBuilder(max_workers=threads, timeout_sec=BUILD_TIMEOUT_S),
        runner=ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S, evaluator_config=evaluator),
        cost_model="xgb",
        measure_callbacks=callbacks,
        num_tuning_cores=threads,
        seed=request["seed"],
    )
    result["wall_s"] = time.perf_counter() - start
    (workdir / RESULT_NAME).write_text(json.dumps(result))
    try:
        result.update(_retime(tvm, ms, database, func, tensors, target, reference))
    except Exception as e:  # the tuning numbers stand without the re-timing
        result["retime_error"] = f"{type(e).__name__}: {e}"
    print(f"done: {result}", flush=True)
    (workdir / RESULT_NAME).write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
