"""x86-64 ISA levels of the CPU target: what `--target cpu:LEVEL` compiles for and what it needs to run.

    spec = "cpu"            host level, -march=native (tuned for this CPU, runs only on its kind)
         | "cpu:" LEVEL     LEVEL's -march (portable: runs on any CPU that has LEVEL's flags)
    LEVEL = "avx512" | "avx2" | "scalar"

"scalar" means no AVX: only the SSE2 baseline every x86-64 CPU has, 128-bit vectors.  A level may be
forced on a CPU that lacks it (emit and build cross-compile), but its code cannot run there: `run` and
`profile` call `check_runnable` first, so the user gets a UsageError instead of SIGILL.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from kcomp.errors import UsageError
from kcomp.targets.cpu import host

FAMILY = "cpu"
NATIVE = "native"
X86_MACHINES = frozenset({"x86_64", "amd64"})


@dataclass(frozen=True, slots=True)
class IsaLevel:
    """One level: gcc's `-march` value, the widest vector register it allows, and the /proc/cpuinfo
    flags a CPU needs to run code built with that `-march` (every feature gcc may use, not only AVX)."""

    name: str
    march: str
    vector_bits: int
    needs: frozenset[str]


# The psABI microarchitecture levels, in /proc/cpuinfo spelling (pni = SSE3, abm = LZCNT).
_BASELINE = frozenset({"cmov", "cx8", "fxsr", "mmx", "sse", "sse2"})
_V2 = _BASELINE | {"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"}
_V3 = _V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}

# Widest first: the order `runnable_levels` and error messages list them in.
LEVELS: dict[str, IsaLevel] = {
    "avx512": IsaLevel("avx512", "x86-64-v4", 512, _V4),
    "avx2": IsaLevel("avx2", "x86-64-v3", 256, _V3),
    "scalar": IsaLevel("scalar", "x86-64", 128, _BASELINE),
}


def parse_cpu_spec(spec: str) -> tuple[str, str]:
    """`(isa, arch)` of a cpu target spec: "cpu" -> (host level, "native"); "cpu:avx2" -> ("avx2", "x86-64-v3").

    Case and surrounding blanks are ignored.  An unknown level is a UsageError listing the valid ones.
    """
    family, sep, name = (part.strip() for part in spec.strip().lower().partition(":"))
    if family != FAMILY:
        raise UsageError(f"{spec!r} is not a cpu target; expected cpu or cpu:LEVEL ({_valid()})")
    if not sep:
        return host.isa_level(), NATIVE
    if name not in LEVELS:
        raise UsageError(f"unknown cpu ISA level {name!r} in target {spec!r}; valid levels: {_valid()}")
    return name, LEVELS[name].march


def level(name: str) -> IsaLevel:
    """The table entry for `name`; an unknown name is a UsageError listing the valid ones."""
    try:
        return LEVELS[name]
    except KeyError:
        raise UsageError(f"unknown cpu ISA level {name!r}; valid levels: {_valid()}") from None


def isa_of_march(arch: str) -> str:
    """The level whose `-march` value is `arch`; any other value is a UsageError (the level is unknown)."""
    for entry in LEVELS.values():
        if entry.march == arch:
            return entry.name
    marches = ", ".join(entry.march for entry in LEVELS.values())
    raise UsageError(f"-march={arch} is not an ISA level's ({marches}); name the level too (isa=...)")


def missing_flags(name: str, flags: frozenset[str] | None = None) -> list[str]:
    """The flags level `name` needs that `flags` (default: this host's) lacks, sorted."""
    have = host.flags() if flags is None else flags
    return sorted(level(name).needs - have)


def runnable_levels(flags: frozenset[str] | None = None) -> list[str]:
    """The levels whose code can run on a CPU with `flags` (default: this host), widest first."""
    return [name for name in LEVELS if not missing_flags(name, flags)]


def check_runnable(name: str, arch: str) -> None:
    """Raise UsageError unless code built for level `name` with `-march=arch` can run on this host.

    "native" code was built for this host, so it always can; a forced level needs all its flags.
    """
    if arch == NATIVE:
        return
    missing = missing_flags(name)
    if not missing:
        return
    alternatives = ["cpu", *(f"cpu:{n}" for n in runnable_levels()[:1])]  # the widest that runs
    raise UsageError(
        f"this CPU lacks {name} (missing {', '.join(missing)}); code built for cpu:{name} cannot run here; "
        f"use --target {' or '.join(alternatives)}"
    )


def check_buildable(name: str, arch: str) -> None:
    """Raise UsageError when this host's gcc cannot compile for `-march=arch` (x86 levels off x86)."""
    machine = platform.machine()
    if arch != NATIVE and machine.lower() not in X86_MACHINES:
        raise UsageError(
            f"cpu:{name} is an x86-64 level; this host is {machine} and its gcc cannot build for it; "
            "use --target cpu"
        )


def _valid() -> str:
    return ", ".join(LEVELS)
