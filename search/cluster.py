"""Tuning on a Ray cluster: the `Executor` seam of kcomp.search.measure carried by Ray tasks.

    with ray_session(address=None, cpus=2) as session:        # a local cluster, or `address`'s
        builder, timer = RayExecutor(session), RayExecutor(session, timer=True, env=TIMER_ENV)
        Measurer(..., builder=builder, timer=timer)

Why it is shaped this way:
- Builds spread over every CPU of the cluster; timing asks for one unit of the `kcomp_timer` resource,
  which a node offers once, so a machine never times two candidates at once (nor times beside its own
  builds: the Measurer's phases never overlap).  A local cluster has one such node; a real cluster
  names its timing nodes with `ray start ... --resources '{"kcomp_timer": 1}'`.
- A worker killed under a job (an OOM kill, a lost node, `kill -9`) is Ray's to retry: every task
  runs with `max_retries`, so the trial is measured again elsewhere and nothing is lost.  A candidate
  that kills its worker every time fails each retry and ends as a crash, as with local workers.
  An exception raised by the job is never retried (it is the candidate's outcome).
- The per-job timeout counts from the moment a job is handed to Ray, and at most as many jobs as the
  cluster has slots are handed over at once, so a queued job does not spend its time waiting.  A job
  past its time is cancelled with its worker killed.
- Workers return plain data (`Job` in, dicts out); the driver alone writes the tuning database, and
  a timed result names the hardware it was timed on (measure.py `time_candidate`).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kcomp.errors import UsageError
from kcomp.search.measure import Executor, WorkerCrashed, WorkerError, WorkerTimeout

TIMER_RESOURCE = "kcomp_timer"
RETRIES = 2  # Ray re-runs a job whose worker died this many times before calling it a crash
_OBJECT_STORE = 256 << 20  # a local cluster's object store: jobs and results are a few KiB


@dataclass
class RaySession:
    """A connection to a Ray cluster (the `ray` module and what the cluster offers)."""

    ray: Any
    address: str  # "local" for a cluster started by this process

    def slots(self, resource: str) -> int:
        """How many units of `resource` the cluster has (the jobs that can run at once)."""
        return int(self.ray.cluster_resources().get(resource, 0))

    def describe(self) -> str:
        where = "a local cluster" if self.address == "local" else f"the cluster at {self.address}"
        return (
            f"ray {self.ray.__version__}, {where}: {self.slots('CPU')} CPUs,"
            f" {self.slots(TIMER_RESOURCE)} timing node(s)"
        )


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray in this environment: pip install -e '.[ray]' (or pip install ray)"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int = 2) -> Iterator[RaySession]:
    """Connect to the cluster at `address`, or start a local one of `cpus` CPUs and one timing slot
    (shut down on exit).  A process already connected (ray.init called by the user) keeps its
    connection.  A cluster where no node offers `kcomp_timer` is a UsageError: timing would wait forever."""
    ray = _import_ray()
    started = False
    if ray.is_initialized():
        session = RaySession(ray, address or "connected")
    else:
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(
                    num_cpus=cpus, resources={TIMER_RESOURCE: 1}, object_store_memory=_OBJECT_STORE, **quiet
                )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"--executor ray: could not start or reach a Ray cluster: {e}") from None
        started = True
        session = RaySession(ray, address or "local")
    try:
        if session.slots(TIMER_RESOURCE) < 1:
            raise UsageError(
                f"no node of the Ray cluster at {session.address} offers the '{TIMER_RESOURCE}' resource:"
                f" start the nodes that may time candidates with"
                f" `ray start ... --resources '{{\"{TIMER_RESOURCE}\": 1}}'`"
            )
        if session.slots("CPU") < 1:
            raise UsageError(f"the Ray cluster at {session.address} has no CPUs to build on")
        yield session
    finally:
        if started:
            ray.shutdown()


class RayExecutor(Executor):
    """Jobs as Ray tasks: on any CPU of the cluster, or with `timer=True` one at a time per timing
    node.  `env` is set in the workers' environment (the timing worker's numpy threads)."""

    def __init__(
        self,
        session: RaySession,
        *,
        timer: bool = False,
        env: Mapping[str, str] | None = None,
        retries: int = RETRIES,
    ):
        self.session, self.ray = session, session.ray
        self.slots = max(1, session.slots(TIMER_RESOURCE if timer else "CPU"))
        self.options: dict[str, Any] = {"max_retries": retries, "retry_exceptions": False, "num_cpus": 1}
        if timer:
            self.options["resources"] = {TIMER_RESOURCE: 1}
        if env:
            self.options["runtime_env"] = {"env_vars": dict(env)}
        self._remotes: dict[Callable[..., Any], Any] = {}
        self._running: set[Any] = set()
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="kcomp-ray")
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Future[Any]:
        return self._threads.submit(self._call, fn, args, timeout_s)

    def _remote(self, fn: Callable[..., Any]) -> Any:
        with self._lock:
            if fn not in self._remotes:
                self._remotes[fn] = self.ray.remote(fn).options(**self.options)
            return self._remotes[fn]

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None) -> Any:
        if self._closed:
            raise WorkerCrashed("the executor was closed")
        ref = self._remote(fn).remote(*args)
        with self._lock:
            self._running.add(ref)
        try:
            ready, _ = self.ray.wait([ref], timeout=timeout_s)
            if not ready:
                self.ray.cancel(ref, force=True)
                raise WorkerTimeout(f"no result within {timeout_s:g} s; the Ray worker was killed")
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # the job raised: its traceback is the message
            raise WorkerError(str(e)) from None
        except self.ray.exceptions.RayError as e:  # the worker died on every retry, or was cancelled
            reason = "the executor was closed" if self._closed else f"the Ray worker died: {type(e).__name__}"
            raise WorkerCrashed(f"{reason} ({str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        finally:
            with self._lock:
                self._running.discard(ref)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            running = list(self._running)
        for ref in running:  # NOTE: first, so that waiting threads end now (as crashes)
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._threads.shutdown(wait=True, cancel_futures=True)
