"""Code generation targets behind one interface (`kcomp.targets.base.Target`), found by name.

A target spec is `family` or `family:variant`, case-insensitive: "cpu" (this host), "cpu:avx2" (an
ISA level, targets/cpu/isa.py).  `TARGETS` maps each family to a factory that takes the whole
normalised spec; adding a target is a package under targets/ and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from kcomp.errors import UsageError
from kcomp.targets.accel.target import AccelTarget
from kcomp.targets.base import Measurement, Target
from kcomp.targets.cpu.target import CpuTarget

TARGETS: dict[str, Callable[[str], Target]] = {"cpu": CpuTarget.from_spec, "accel": AccelTarget.from_spec}


def get_target(spec: str) -> Target:
    """The target named by `spec` (e.g. "cpu", "cpu:avx2"); an unknown family lists the known ones."""
    normalised = spec.strip().lower()
    family = normalised.partition(":")[0].strip()
    factory = TARGETS.get(family)
    if factory is None:
        raise UsageError(f"unknown target {spec!r}; known targets: {', '.join(sorted(TARGETS))}")
    return factory(normalised)


__all__ = ["TARGETS", "Measurement", "Target", "get_target"]
