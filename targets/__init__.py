"""Code generation targets behind one interface (`kcomp.targets.base.Target`), found by name.

Adding a target is a package under targets/ and one entry in `TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable

from kcomp.errors import UsageError
from kcomp.targets.base import Measurement, Target
from kcomp.targets.cpu.target import CpuTarget

TARGETS: dict[str, Callable[[], Target]] = {"cpu": CpuTarget}


def get_target(spec: str) -> Target:
    """The target named `spec` (e.g. "cpu"); an unknown name lists the known ones."""
    factory = TARGETS.get(spec.strip().lower())
    if factory is None:
        raise UsageError(f"unknown target {spec!r}; known targets: {', '.join(sorted(TARGETS))}")
    return factory()


__all__ = ["TARGETS", "Measurement", "Target", "get_target"]
