"""Every environment knob kcomp reads, in one place.

Code deep in the compiler never calls `os.getenv`; it asks `config()` (read once per process, so a
knob cannot change half-way through a build) or receives a `Config` explicitly, which is what tests
do.  Knobs:

    KCOMP_CACHE_DIR   root of kcomp's cache (compiled libraries in `<root>/lib`); default
                      `$XDG_CACHE_HOME/kcomp`, else `~/.cache/kcomp`
    KCOMP_THREADS     OpenMP threads a CPU kernel runs with; default `os.cpu_count()`
    KCOMP_TUNING_DB   the tuning database (`kcomp tune`, `kcomp db`, and the schedule `compile` picks);
                      default `<cache root>/tuning.db`
    KCOMP_NO_DB       `1`: compile and run never consult the tuning database (deterministic builds;
                      `kcomp tune --no-db` is the same for one tuning run)
    KCOMP_TARGETS     more targets, without editing kcomp: `family=module:Class,...` (the class's
                      `from_spec` builds it; kcomp.targets imports the module when the target is used)
    KCOMP_VERIFY      `1`: check the loop IR's invariants after every pass step (`kcomp.loops.verify`),
                      so a pass that breaks one is caught at its step; the test suite sets it
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kcomp.errors import UsageError


@dataclass(frozen=True, slots=True)
class Config:
    cache_dir: Path  # root of the per-user cache; must be owned by the user and not group/other-writable
    threads: int  # OpenMP threads for CPU kernels
    db_path: Path | None = None  # the tuning database; None: `<cache_dir>/tuning.db`
    no_db: bool = False  # True: choosing a schedule never reads the tuning database
    targets: tuple[tuple[str, str], ...] = ()  # (family, "module:Class") registered from KCOMP_TARGETS
    verify: bool = False  # True: verify the loop IR after every pass step

    @property
    def lib_dir(self) -> Path:
        """Where compiled kernel libraries are cached."""
        return self.cache_dir / "lib"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        if env.get("KCOMP_CACHE_DIR"):
            cache = Path(env["KCOMP_CACHE_DIR"]).expanduser()
        else:
            base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            cache = Path(base).expanduser() / "kcomp"
        threads_text = env.get("KCOMP_THREADS", "")
        try:
            threads = int(threads_text) if threads_text else (os.cpu_count() or 1)
        except ValueError:
            raise UsageError(f"KCOMP_THREADS={threads_text!r}: expected a positive integer") from None
        if threads < 1:
            raise UsageError(f"KCOMP_THREADS={threads_text!r}: expected a positive integer")
        db = Path(env["KCOMP_TUNING_DB"]).expanduser().absolute() if env.get("KCOMP_TUNING_DB") else None
        return cls(
            cache_dir=cache.absolute(),
            threads=threads,
            db_path=db,
            no_db=_flag(env.get("KCOMP_NO_DB", "")),
            targets=_targets(env.get("KCOMP_TARGETS", "")),
            verify=_flag(env.get("KCOMP_VERIFY", "")),
        )


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("", "0", "false", "no")


def _targets(text: str) -> tuple[tuple[str, str], ...]:
    """`family=module:Class,...` as pairs; a malformed entry is a UsageError naming it."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        family, _, where = item.partition("=")
        module, _, attr = where.partition(":")
        if not family.strip() or not module.strip() or not attr.strip():
            raise UsageError(f"KCOMP_TARGETS: {item!r}: expected family=module:Class")
        out.append((family.strip().lower(), f"{module.strip()}:{attr.strip()}"))
    return tuple(out)


@functools.cache
def config() -> Config:
    """The process-wide configuration, read from the environment on first use."""
    return Config.from_env()
