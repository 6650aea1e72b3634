"""Code generation targets behind one interface (`kcomp.targets.base.Target`), found by name.

A target spec is `family` or `family:variant`, case-insensitive: "cpu" (this host), "cpu:avx2" (an
ISA level), "accel", "accel:small", "accel:FILE.toml", "cuda", "cuda:sm_90".  `TARGETS` maps each family to the class that
parses the rest (`from_spec`), as `module:Class` text: a target's package is imported only when the
target is used.  Adding a target is a package under targets/ and one entry here; a target kept
outside kcomp (a plugin, a test's) registers through `KCOMP_TARGETS=family=module:Class`, which
spawned workers inherit.
"""

from __future__ import annotations

import importlib
from functools import cache

from kcomp.config import config
from kcomp.errors import UsageError
from kcomp.targets.base import Measurement, Target

DEFAULT = "cpu"  # what commands and the API compile for unless told otherwise
SIMULATED = "accel"  # what `kcomp sim` simulates unless told otherwise
TARGETS: dict[str, str] = {
    "cpu": "kcomp.targets.cpu.target:CpuTarget",
    "accel": "kcomp.targets.accel.target:AccelTarget",
    "cuda": "kcomp.targets.cuda.target:CudaTarget",
}


def families() -> dict[str, str]:
    """Every registered family and where its class is: kcomp's own, then `KCOMP_TARGETS`'."""
    return {**TARGETS, **dict(config().targets)}


@cache
def target_class(family: str) -> type[Target]:
    """The class registered for `family` (imported now); UsageError for an unknown family."""
    where = families().get(family)
    if where is None:
        raise UsageError(f"unknown target {family!r}; known targets: {', '.join(sorted(families()))}")
    module, _, attr = where.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"target {family!r}: cannot load {where}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise UsageError(f"target {family!r}: {where} is not a kcomp.targets.base.Target")
    return cls


def get_target(spec: str) -> Target:
    """The target named by `spec` (e.g. "cpu", "cpu:avx2", "accel:small"); an unknown family lists
    the known ones.  The family is case-insensitive; the variant goes to the target as written (it
    may be a file name)."""
    family, sep, variant = spec.strip().partition(":")
    family = family.strip().lower()
    if family not in families():
        raise UsageError(f"unknown target {spec!r}; known targets: {', '.join(sorted(families()))}")
    return target_class(family).from_spec(f"{family}:{variant.strip()}" if sep else family)


__all__ = [
    "DEFAULT",
    "SIMULATED",
    "TARGETS",
    "Measurement",
    "Target",
    "families",
    "get_target",
    "target_class",
]
