"""Hardware performance counters of this process through Linux's perf_event_open, called with ctypes.

    support()              -> Support(ok, reason)  probed once per process, never raises
    count(call, calls)     -> {"hw.cycles": ..., "hw.instructions": ..., ...} per call, or None

Counted: cycles, instructions, last-level cache misses and dTLB read misses, in user space only
(`exclude_kernel`, which `kernel.perf_event_paranoid` 2 still permits).  A counter is opened for
every thread the process has when counting starts (the OpenMP pool started by an earlier call
included) with `inherit`, so threads started during the calls are counted too.  Each counter is
read before and after the calls, scaled by its enabled over running time (the kernel multiplexes
when there are more counters than registers).

Virtual machines often expose no counters (perf_event_open fails with ENOENT or EOPNOTSUPP), and
containers or a paranoid setting forbid them (EACCES, EPERM): then `support()` says why, `count`
returns None, and the CPU target falls back on counters derived from the build (targets/cpu/counters.py).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYSCALL = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}  # __NR_perf_event_open
TYPE_HARDWARE, TYPE_HW_CACHE = 0, 3
DTLB_READ_MISS = 3 | (0 << 8) | (1 << 16)  # PERF_COUNT_HW_CACHE_DTLB | OP_READ << 8 | RESULT_MISS << 16
# name -> (type, config); the first two are required, the others are dropped where the CPU lacks them
EVENTS = {
    "cycles": (TYPE_HARDWARE, 0),
    "instructions": (TYPE_HARDWARE, 1),
    "cache_misses": (TYPE_HARDWARE, 3),
    "dtlb_misses": (TYPE_HW_CACHE, DTLB_READ_MISS),
}
REQUIRED = ("cycles", "instructions")
INHERIT, EXCLUDE_KERNEL, EXCLUDE_HV = 1 << 1, 1 << 5, 1 << 6  # perf_event_attr flag bits
READ_TIMES = 1 | 2  # PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING
FD_CLOEXEC = 8  # PERF_FLAG_FD_CLOEXEC
UNSUPPORTED = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL})
FORBIDDEN = frozenset({errno.EACCES, errno.EPERM})


class _Attr(ctypes.Structure):
    """`struct perf_event_attr` up to `config1`: PERF_ATTR_SIZE_VER0 (64 bytes), which every kernel takes."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
    ]


@dataclass(frozen=True, slots=True)
class Support:
    """Whether hardware counters can be read here, and if not, a sentence saying why."""

    ok: bool
    reason: str = ""


@functools.cache
def support() -> Support:
    """Open a cycle counter on this thread and close it again (cached: the answer holds for the process)."""
    try:
        os.close(_open(*EVENTS["cycles"], tid=0))
    except OSError as e:
        return Support(False, _why(e))
    return Support(True)


def available() -> bool:
    return support().ok


def count(call: Callable[[], object], calls: int) -> dict[str, float] | None:
    """Counts per call over `calls` calls of `call`, as `hw.<event>`; None when the cycle or
    instruction counter cannot be opened.  Events a CPU lacks, or never got a counter register
    for, are left out."""
    fds: dict[str, list[int]] = {}
    try:
        for name, (kind, config) in EVENTS.items():
            opened = _open_all(kind, config)
            if opened:
                fds[name] = opened
            elif name in REQUIRED:
                return None
        before = {name: [_read(fd) for fd in group] for name, group in fds.items()}
        for _ in range(calls):
            call()
        after = {name: [_read(fd) for fd in group] for name, group in fds.items()}
    except OSError:
        return None
    finally:
        for group in fds.values():
            for fd in group:
                os.close(fd)
    out = {}
    for name in fds:
        counted = [_scaled(a, b) for a, b in zip(before[name], after[name], strict=True)]
        if any(running > 0 for _, running in counted):  # else never on a counter register: unknown
            out[f"hw.{name}"] = sum(value for value, _ in counted) / calls
    return out if all(f"hw.{name}" in out for name in REQUIRED) else None


def _open_all(kind: int, config: int) -> list[int]:
    """A counter on every thread of this process (threads that end meanwhile are skipped); [] when
    the event cannot be counted here."""
    fds = []
    for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
        try:
            fds.append(_open(kind, config, tid))
        except OSError as e:
            if e.errno == errno.ESRCH:
                continue
            for fd in fds:
                os.close(fd)
            return []
    return fds


def _open(kind: int, config: int, tid: int) -> int:
    """One counting (not sampling) event on thread `tid` (0: the calling thread), enabled now."""
    number = SYSCALL.get(platform.machine().lower())
    if number is None:
        raise OSError(errno.ENOSYS, f"no perf_event_open system call number known for {platform.machine()}")
    attr = _Attr(
        type=kind,
        size=ctypes.sizeof(_Attr),
        config=config,
        read_format=READ_TIMES,
        flags=INHERIT | EXCLUDE_KERNEL | EXCLUDE_HV,
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(number),
        ctypes.byref(attr),
        ctypes.c_long(tid),
        ctypes.c_long(-1),  # any CPU
        ctypes.c_long(-1),  # no group
        ctypes.c_ulong(FD_CLOEXEC),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(fd)


def _read(fd: int) -> tuple[int, int, int]:
    """(count, time enabled, time running) of one counter, its inherited children's included."""
    return struct.unpack("QQQ", os.read(fd, 24))


def _scaled(before: tuple[int, int, int], after: tuple[int, int, int]) -> tuple[float, int]:
    """The count between two reads, scaled up for the time the counter was multiplexed out, and the
    time it ran (0: it never ran, or its thread did not)."""
    value, enabled, running = (a - b for a, b in zip(after, before, strict=True))
    return (value * enabled / running if running > 0 else 0.0), running


def _why(e: OSError) -> str:
    if e.errno in UNSUPPORTED:
        return "perf_event not supported (no hardware counters on this machine or VM)"
    if e.errno in FORBIDDEN:
        paranoid = Path("/proc/sys/kernel/perf_event_paranoid")
        level = paranoid.read_text().strip() if paranoid.exists() else "?"
        return f"perf_event not permitted (kernel.perf_event_paranoid = {level}, or a container's seccomp)"
    return f"perf_event_open failed: {e.strerror}"


__all__ = ["Support", "available", "count", "support"]
