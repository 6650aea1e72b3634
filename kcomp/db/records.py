"""What the tuning database stores: a `Trial` (one evaluated schedule and its outcome) under a `Key`
(this workload, on this target, on this hardware).

Keys are sha256 hashes of canonical text: the workload is `printer.program_hash` (the canonical
Program, shapes and dtypes included), the hardware is the target's own `fingerprint()` (the CPU's
model and features; the accelerator's configuration), so a measurement is only ever reused where it
was made.  The search produces trials (kcomp.search.measure); the database keeps them (store.py);
`kcomp compile` reads the best one back (lookup.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kcomp.printer import canonical_program, program_hash
from kcomp.schedule import Schedule


class Status(StrEnum):
    OK = "ok"  # checked against the reference and timed
    WRONG = "wrong"  # ran, but the output differs from the reference (not timed)
    BUILD_ERROR = "build_error"  # the target's toolchain rejected the code
    CRASH = "crash"  # the worker died (segfault, abort) or the run raised
    TIMEOUT = "timeout"  # the build or the timing took longer than allowed; the worker was killed
    ILLEGAL = "illegal"  # a schedule step does not apply (ScheduleError)


@dataclass(frozen=True, slots=True)
class Trial:
    """One evaluated schedule.  The fields after `error` are provenance the tuning database fills in."""

    schedule: Schedule
    status: Status
    time_s: float | None = None  # median seconds per call; None unless status is ok
    counters: Mapping[str, Any] = field(default_factory=dict)  # the target's (cycles, repeats, threads..)
    error: str = ""
    id: int | None = None  # row id in the tuning database
    key: Key | None = None  # workload x target x hardware
    strategy: str = ""
    run_id: str = ""
    created: float = 0.0  # unix time the row was written
    version: str = ""  # kcomp version that measured it

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


@dataclass(frozen=True, slots=True)
class Key:
    """What a measurement is valid for: this workload, on this target, on this hardware."""

    workload: str  # sha256 of the canonical Program
    target: str  # target spec, e.g. "cpu", "cpu:avx2", "accel"
    hardware: str  # the target's fingerprint() of the machine that measured it
    workload_text: str = field(default="", compare=False)  # the canonical Program, for people


def key_for(program: Any, target: Any) -> Key:
    """The key of `program` measured on `target` (a `kcomp.targets.Target`: its spec and fingerprint)."""
    return Key(program_hash(program), target.name, target.fingerprint(), canonical_program(program))


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
