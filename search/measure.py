"""Measurement isolation: a candidate that crashes, hangs, fails to build or computes the wrong result
becomes a recorded `Trial` with its status, never a crash of the search.

    with Measurer("examples/matmul.kc", shapes={"M": 64}, target_spec="cpu", workers=2) as m:
        trials = m.measure([Candidate(schedule), ...], on_trial=print)

One batch (`Measurer.measure`) runs in two phases, never overlapping:
  1. build: the `builder` executor (`workers` processes) compiles every candidate (schedule applied,
     source emitted, library built into kcomp's cache).  ScheduleError -> `illegal`, a toolchain
     failure -> `build_error`, a dead worker -> `crash`, over `build_timeout_s` -> `timeout`.
  2. time: the built candidates go one at a time to the `timer` executor (one process): compile again
     (a cache hit), `CompiledKernel.check` against the numpy reference (a mismatch -> `wrong`, not
     timed), then `CompiledKernel.benchmark` (the target's median; its counters are kept, and
     counters derived from the build get the cost model's traffic of the scheduled nest, `est.*`).  A segfault
     kills only that worker -> `crash`; past `timeout_s` the worker is killed -> `timeout`.
Workers are processes started with the *spawn* context (a fork after OpenMP started can hang), kept
for the Measurer's lifetime and replaced when one dies or is killed.  Jobs and results are plain data
(`Job`, dicts), so any `Executor` can carry them: see `Executor` for how a Ray executor slots in.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import functools
import importlib
import json
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kcomp.api import CompiledKernel
from kcomp.db.records import Status, Trial, key_for
from kcomp.dims import free_dims
from kcomp.errors import BuildError, KcompError, ScheduleError, SourceError, UsageError
from kcomp.lower import lower
from kcomp.parse import parse, read_source
from kcomp.pipeline import front, with_weights
from kcomp.schedule import Schedule, parse_schedule
from kcomp.sparse.weights import load_weights
from kcomp.targets import DEFAULT, get_target

# --------------------------------------------------------------------------------------------- executors


class WorkerFailure(Exception):
    """A job that produced no result: the worker died, overran its time, or the function raised."""


class WorkerCrashed(WorkerFailure):
    pass


class WorkerTimeout(WorkerFailure):
    pass


class WorkerError(WorkerFailure):
    """The function raised inside the worker; the message holds its traceback text."""


class Executor(abc.ABC):
    """Runs module-level functions on plain, picklable data in isolated workers.

    `submit(fn, *args, timeout_s=)` returns a `Future` whose exception, if any, is a `WorkerFailure`;
    `map` returns the results in order with failures as values.  The driver process is the only one
    that touches the tuning database: workers return data, never write.

    `LocalExecutor` is this machine's; `kcomp.search.cluster.RayExecutor` carries the same jobs to a
    Ray cluster (`kcomp tune --executor ray`).
    """

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Future[Any]: ...

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *, timeout_s: float | None = None
    ) -> list[Any]:
        futures = [self.submit(fn, item, timeout_s=timeout_s) for item in items]
        return [f.exception() or f.result() for f in futures]

    def close(self) -> None:  # noqa: B027 (optional for executors without resources)
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """`workers` spawned processes on this machine; a job that kills or hangs its worker fails alone."""

    def __init__(
        self,
        workers: int = 1,
        *,
        preload: Sequence[str] = ("kcomp.api",),
        start_timeout_s: float = 120.0,
        env: Mapping[str, str] | None = None,
    ):
        if workers < 1:
            raise UsageError(f"workers: expected a positive number, not {workers}")
        ctx = multiprocessing.get_context("spawn")
        self._workers = [
            _Worker(ctx, tuple(preload), start_timeout_s, dict(env or {})) for _ in range(workers)
        ]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for w in self._workers:
            self._idle.put(w)
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kcomp-worker")
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Future[Any]:
        return self._threads.submit(self._call, fn, args, timeout_s)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None) -> Any:
        worker = self._idle.get()
        try:
            if self._closed:
                raise WorkerCrashed("the executor was closed")
            return worker.call(fn, args, timeout_s)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        self._closed = True
        for w in self._workers:  # NOTE: first, so that running jobs end now (as crashes)
            w.stop()
        self._threads.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set, restored afterwards: how a spawned worker gets its own
    environment (it inherits the parent's as it is when the process starts)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ENV_LOCK = threading.Lock()
# The timing worker's numpy runs the reference single-threaded: OpenBLAS's threads keep spinning for
# a while after a call, and a candidate timed right after its check must not share the cores with them.
TIMER_ENV = {"OPENBLAS_NUM_THREADS": "1"}


class _Worker:
    """One spawned process serving jobs over a pipe, restarted after it dies or is killed."""

    def __init__(self, ctx: Any, preload: tuple[str, ...], start_timeout_s: float, env: dict[str, str]):
        self.ctx, self.preload, self.start_timeout_s, self.env = ctx, preload, start_timeout_s, env
        self.proc: Any = None
        self.conn: Any = None
        self.lock = threading.Lock()

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_serve, args=(child, self.preload), daemon=True, name="kcomp-worker")
        with _ENV_LOCK, scoped_env(self.env):  # NOTE: a spawned process inherits the environment at start()
            proc.start()
        child.close()  # NOTE: the parent must not hold the child's end, or a dead worker never reads as EOF
        self.proc, self.conn = proc, parent
        if not parent.poll(self.start_timeout_s):
            self.stop()
            raise WorkerCrashed(f"a worker process did not start within {self.start_timeout_s:g} s")
        try:
            parent.recv()
        except (EOFError, OSError):
            raise WorkerCrashed(f"a worker process died while starting ({self.stop()})") from None

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None) -> Any:
        if self.proc is None or not self.proc.is_alive():
            self.stop()
            self.start()
        try:
            self.conn.send_bytes(pickle.dumps((fn, args)))
        except (OSError, ValueError):
            raise WorkerCrashed(f"the worker process is gone ({self.stop()})") from None
        try:
            ready = self.conn.poll(timeout_s)
        except (OSError, ValueError):  # closed by `stop` from another thread (the executor closing)
            raise WorkerCrashed("the worker was stopped") from None
        if not ready:
            self.stop()
            raise WorkerTimeout(f"no result within {timeout_s:g} s; the worker was killed")
        try:
            ok, value = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerCrashed(f"the worker process died: {self.stop()}") from None
        if not ok:
            raise WorkerError(value)
        return value

    def stop(self) -> str:
        """Kill the process (if alive) and say how it ended."""
        with self.lock:
            proc, conn, self.proc, self.conn = self.proc, self.conn, None, None
        if proc is None:
            return "not running"
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        if conn is not None:
            conn.close()
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the driver dies.  A worker inside a long kernel call never
    reads the closed pipe, so a driver killed with SIGKILL would leave it running (and its threads
    would skew every timing after it); elsewhere the pipe's EOF is the only signal."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _serve(conn: Any, preload: tuple[str, ...]) -> None:
    """A worker's loop: (fn, args) in, (True, result) or (False, traceback text) out, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # NOTE: Ctrl-C is the driver's; it kills the workers
    _die_with_parent()
    for name in preload:
        importlib.import_module(name)
    conn.send("ready")
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the driver is gone
        try:
            fn, args = pickle.loads(data)
            reply = (True, fn(*args))
        except BaseException as e:
            reply = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        conn.send(reply)


# ------------------------------------------------------------------------------------------ candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    schedule: Schedule


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a worker needs to compile one candidate: plain text and numbers."""

    source: str  # the .kc text
    file: str  # its path, for messages
    kernel: str
    shapes: tuple[tuple[str, int], ...]
    target: str  # target spec
    schedule: str  # schedule text (parsed in the worker, never evaluated)
    seed: int
    budget_s: float
    cutoff_s: float | None = None  # one call over this is the figure (targets/base.py `bench`)
    weights: tuple[tuple[str, str], ...] = ()  # sparse inputs: (name, .npy path), loaded by the worker
    rearrange: bool = True


@functools.lru_cache(maxsize=8)
def _module(source: str, file: str) -> Any:
    return parse(source, file)


@functools.lru_cache(maxsize=2)
def _weights(items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return load_weights([f"{name}={path}" for name, path in items])


def _compile(job: Job) -> CompiledKernel:
    module = _module(job.source, job.file)
    schedule = parse_schedule(job.schedule, "<candidate>")
    return CompiledKernel(
        module,
        module.kernel(job.kernel),
        job.target,
        dict(job.shapes),
        schedule,
        _weights(job.weights),
        job.rearrange,
    )


def _failed(status: Status, error: object) -> dict[str, Any]:
    return {"status": status.value, "error": str(error)}


def build_candidate(job: Job) -> dict[str, Any]:
    """Phase 1, in a build worker: compile `job` into the cache.  {"status": "built"} or a failure."""
    try:
        _compile(job)
    except (ScheduleError, SourceError) as e:
        return _failed(Status.ILLEGAL, e)
    except KcompError as e:
        return _failed(Status.BUILD_ERROR, e)
    except Exception as e:
        return _failed(Status.BUILD_ERROR, f"internal error: {type(e).__name__}: {e}")
    return {"status": "built"}


def time_candidate(job: Job) -> dict[str, Any]:
    """Phase 2, in the timing worker: check against the reference, then time (median)."""
    try:
        kernel = _compile(job)
        check = _checked_kernel(job, kernel).check(seed=job.seed)
        if not check.ok:
            return _failed(
                Status.WRONG,
                f"output differs from the reference: max abs err {check.max_abs_err:.3g},"
                f" max rel err {check.max_rel_err:.3g}",
            )
        m = kernel.benchmark(seed=job.seed, budget_s=job.budget_s, cutoff_s=job.cutoff_s)
    except (ScheduleError, SourceError) as e:
        return _failed(Status.ILLEGAL, e)
    except BuildError as e:
        return _failed(Status.BUILD_ERROR, e)
    except Exception as e:
        return _failed(Status.CRASH, f"{type(e).__name__}: {e}")
    counters = {**m.counters, **_estimated_traffic(kernel, m.counters)}
    return {
        "status": Status.OK.value,
        "time_s": float(m.time_s),
        "counters": _jsonable(counters),
        "hardware": kernel.target.fingerprint(),  # NOTE: on a cluster, not necessarily the driver's
    }


def _checked_kernel(job: Job, kernel: CompiledKernel) -> CompiledKernel:
    """The kernel a candidate is checked on: itself, or where the target's check costs too much per
    element (`Target.check_extent`), the same schedule at every dimension cut down to the smallest of
    16, 32, .. the limit at which the schedule still applies (a split wider than a cut dimension is
    refused, so the next size is tried)."""
    limit = kernel.target.check_extent()
    dims = dict(kernel.built.program.dims)
    if limit is None or max(dims.values(), default=0) <= limit or job.weights:
        return kernel  # NOTE: a sparse weight is given at its shapes: nothing to cut down
    module = _module(job.source, job.file)
    schedule = parse_schedule(job.schedule, "<candidate>")
    cap = 16
    while cap <= limit:
        shapes = {d: min(v, cap) for d, v in dims.items()}
        try:
            return CompiledKernel(module, module.kernel(job.kernel), job.target, shapes, schedule)
        except (ScheduleError, SourceError, UsageError):
            cap *= 2
    raise ScheduleError(
        f"no cut-down shapes (each dimension at most {limit}) take this schedule, and a check at"
        f" {', '.join(f'{d}={v}' for d, v in dims.items())} costs too much on {kernel.target.name}"
    )


def _estimated_traffic(kernel: CompiledKernel, counters: Mapping[str, Any]) -> dict[str, Any]:
    """The cost model's bytes per cache level (`est.*`) for a measurement whose counters are derived
    from the build (no hardware counters): the scheduled nest is known here, not in `profile`."""
    if counters.get("counter_source") != "derived":
        return {}
    built = kernel.built
    try:
        return built.target.estimate(built.nest, built.schedule).traffic()
    except Exception as e:  # a counter is never a reason to lose a measurement
        return {"est_note": f"no traffic estimate: {type(e).__name__}: {e}"}


def _jsonable(counters: Mapping[str, Any]) -> dict[str, Any]:
    """Counters as JSON data (numpy scalars become numbers, anything else its text)."""

    def default(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else str(v)

    return json.loads(json.dumps(dict(counters), default=default))


class Measurer:
    """Builds and times schedules of one kernel at fixed shapes on one target (module docstring).

    The driver parses and checks the kernel once (`program`, `target`, `default_schedule`); workers
    start on the first `measure`.  `build_fn`/`time_fn` are the worker functions (module-level, so
    they pickle by name): tests substitute ones that crash or hang.
    """

    def __init__(
        self,
        source_or_path: str | Path,
        kernel: str | None = None,
        shapes: Mapping[str, int] | None = None,
        target_spec: str = DEFAULT,
        *,
        workers: int = 1,
        timeout_s: float = 60.0,
        build_timeout_s: float = 300.0,
        budget_s: float = 0.1,
        seed: int = 0,
        fused_default: bool = True,
        weights: Mapping[str, str] | None = None,
        rearrange: bool = True,
        builder: Executor | None = None,
        timer: Executor | None = None,
        build_fn: Callable[[Job], dict[str, Any]] = build_candidate,
        time_fn: Callable[[Job], dict[str, Any]] = time_candidate,
    ):
        if isinstance(source_or_path, Path) or ("\n" not in source_or_path and "{" not in source_or_path):
            self.file = str(source_or_path)
            self.source = read_source(self.file)
        else:
            self.file, self.source = "<string>", str(source_or_path)
        module = _module(self.source, self.file)
        kern = module.kernel(kernel)
        self.kernel = kern.name
        self.shapes = dict(shapes or {})
        free = [d for d in free_dims(module, kern) if d not in self.shapes]
        if free:
            raise UsageError(
                f"kernel '{kern.name}' has unbound dimensions {', '.join(free)}: give them with --shape NAME=VALUE"
            )
        self.target_spec = target_spec
        self.target = get_target(target_spec)
        # sparse weights: .npy paths the workers load again; the program tuned is the packed one
        self.weights = tuple(sorted((weights or {}).items()))
        self.rearrange = rearrange
        _, self.program, _ = with_weights(
            front(module, kern, self.shapes), self.target, _weights(self.weights), rearrange
        )
        # the baseline (trial 0): the target's default, or that default without its fusion steps
        self.default_schedule = self.target.default_schedule(
            self.program, lower(self.program), fuse=fused_default
        )
        if workers < 1:
            raise UsageError(f"--workers {workers}: expected a positive number")
        if not timeout_s > 0 or not build_timeout_s > 0 or not budget_s > 0:
            raise UsageError("timeouts and the timing budget must be positive numbers of seconds")
        self.workers, self.timeout_s, self.build_timeout_s = workers, timeout_s, build_timeout_s
        self.budget_s, self.seed = budget_s, seed
        self.cutoff_s: float | None = None  # set by the session from its best time so far
        self.build_fn, self.time_fn = build_fn, time_fn
        self._builder, self._timer = builder, timer

    @property
    def builder(self) -> Executor:
        if self._builder is None:
            self._builder = LocalExecutor(self.workers)
        return self._builder

    @property
    def timer(self) -> Executor:
        if self._timer is None:
            self._timer = LocalExecutor(1, env=TIMER_ENV)
        return self._timer

    def job(self, schedule: Schedule) -> Job:
        return Job(
            self.source,
            self.file,
            self.kernel,
            tuple(sorted(self.shapes.items())),
            self.target_spec,
            str(schedule),
            self.seed,
            self.budget_s,
            self.cutoff_s,
            self.weights,
            self.rearrange,
        )

    def measure(
        self,
        candidates: Sequence[Candidate | Schedule],
        *,
        on_trial: Callable[[Trial], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Trial | None]:
        """One trial per candidate, in order: built in parallel, then checked and timed one at a time.

        `on_trial` sees each trial as soon as it is final (record it there: a run killed mid-batch keeps
        it); once `stop()` is true, candidates not yet timed are skipped and their entry is None.
        """
        schedules = [c.schedule if isinstance(c, Candidate) else c for c in candidates]
        jobs = [self.job(s) for s in schedules]
        trials: list[Trial | None] = [None] * len(jobs)
        built = self.builder.map(self.build_fn, jobs, timeout_s=self.build_timeout_s)
        for n, outcome in enumerate(built):
            if isinstance(outcome, dict) and outcome.get("status") == "built":
                continue
            trials[n] = _trial(schedules[n], outcome, "build")
            if on_trial:
                on_trial(trials[n])
        for n, job in enumerate(jobs):
            if trials[n] is not None:
                continue
            if stop and stop():
                break
            future = self.timer.submit(self.time_fn, job, timeout_s=self.timeout_s)
            outcome = future.exception() or future.result()
            trials[n] = self._timed_on(_trial(schedules[n], outcome, "run"), outcome)
            if on_trial:
                on_trial(trials[n])
        return trials

    def _timed_on(self, trial: Trial, outcome: Any) -> Trial:
        """`trial` keyed by the hardware that timed it, where that is not this machine (a cluster's
        timing node): the database keeps a row under the hardware it is valid for."""
        hardware = outcome.get("hardware") if isinstance(outcome, dict) else None
        if not hardware or hardware == self.target.fingerprint():
            return trial
        return replace(trial, key=replace(key_for(self.program, self.target), hardware=hardware))

    def close(self) -> None:
        for executor in (self._builder, self._timer):
            if executor is not None:
                executor.close()

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _trial(schedule: Schedule, outcome: Any, phase: str) -> Trial:
    """A worker's outcome (a result dict or a WorkerFailure) as a Trial."""
    if isinstance(outcome, WorkerTimeout):
        return Trial(schedule, Status.TIMEOUT, error=f"{phase}: {outcome}")
    if isinstance(outcome, WorkerCrashed):
        return Trial(schedule, Status.CRASH, error=f"{phase}: {outcome}")
    if isinstance(outcome, BaseException):
        status = Status.BUILD_ERROR if phase == "build" else Status.CRASH
        return Trial(schedule, status, error=f"{phase}: {outcome}")
    try:
        status = Status(outcome["status"])
    except (KeyError, TypeError, ValueError):
        return Trial(schedule, Status.CRASH, error=f"{phase}: the worker returned {outcome!r}")
    return Trial(
        schedule,
        status,
        time_s=outcome.get("time_s") if status == Status.OK else None,
        counters=outcome.get("counters") or {},
        error=outcome.get("error", ""),
    )
