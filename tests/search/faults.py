"""Worker functions for tests/search/test_measure.py that misbehave on purpose, picked by the
candidate's schedule text.  They run inside spawned workers, so they live in an importable module."""

from __future__ import annotations

import ctypes
import os
import tempfile
import time

from kcomp.search.measure import Job, build_candidate, time_candidate

SEGFAULT = "split i 2\n"
HANG = "split i 4\n"
WRONG = "split j 2\n"
BUILD_ERROR = "split j 4\n"


def build(job: Job) -> dict:
    """`build_candidate`, with gcc replaced by `false` for the BUILD_ERROR schedule, in a cache of its
    own (the session's cache may hold this very library from another test: a hit would not build)."""
    if job.schedule != BUILD_ERROR:
        return build_candidate(job)
    from kcomp.config import config
    from kcomp.targets.cpu import build as cpu_build

    saved, cpu_build.GCC = cpu_build.GCC, "false"
    saved_dir = os.environ.get("KCOMP_CACHE_DIR")
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["KCOMP_CACHE_DIR"] = fresh
        config.cache_clear()
        try:
            return build_candidate(job)
        finally:
            cpu_build.GCC = saved
            if saved_dir is None:
                os.environ.pop("KCOMP_CACHE_DIR", None)
            else:
                os.environ["KCOMP_CACHE_DIR"] = saved_dir
            config.cache_clear()


def run(job: Job) -> dict:
    """`time_candidate`, except: SEGFAULT dereferences NULL, HANG never returns, WRONG's reference is off."""
    if job.schedule == SEGFAULT:
        ctypes.string_at(0)
    if job.schedule == HANG:
        time.sleep(3600)
    if job.schedule == WRONG:
        import kcomp.api

        reference = kcomp.api.evaluate

        def off_by_one(program, arrays, params):
            return {name: value + 1 for name, value in reference(program, arrays, params).items()}

        kcomp.api.evaluate = off_by_one
        try:
            return time_candidate(job)
        finally:
            kcomp.api.evaluate = reference
    return time_candidate(job)


def boom(x: int) -> int:
    if x == 1:
        ctypes.string_at(0)
    if x == 2:
        time.sleep(3600)
    if x == 3:
        raise ValueError("three")
    return x * 10


def sleep_and_report(path: str, seconds: float) -> None:
    """Write this worker's pid to `path`, then sleep (a worker busy in a long call)."""
    import os

    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
