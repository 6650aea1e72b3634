"""What the host CPU is, from /proc/cpuinfo: the fingerprint in cache keys and the capability fields.

A library built with -march=native is only valid on the CPU it was built for, so the cache key
includes the model (name, family, model, stepping) and a hash of the feature flags.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def model_name() -> str:
    info = cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def flags() -> frozenset[str]:
    info = cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


@functools.cache
def fingerprint() -> str:
    """One line naming this CPU for cache keys: model, family/model/stepping, flags hash."""
    info = cpuinfo()
    parts = [model_name(), info.get("cpu family", ""), info.get("model", ""), info.get("stepping", "")]
    flag_hash = hashlib.sha256(" ".join(sorted(flags())).encode()).hexdigest()[:16]
    return f"{platform.machine()} | {' / '.join(parts)} | flags {flag_hash}"


def vector_bits() -> int:
    """Width of the widest SIMD registers the compiler may use with -march=native."""
    f = flags()
    if "avx512f" in f:
        return 512
    if "avx" in f or "avx2" in f:
        return 256
    if "sse2" in f or "asimd" in f or platform.machine() in ("x86_64", "aarch64", "arm64"):
        return 128
    return 0


AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
AVX2_FLAGS = frozenset({"avx2", "fma"})


def isa_level(have: frozenset[str] | None = None) -> str:
    """The widest ISA level (targets/cpu/isa.py) of a CPU with flags `have` (default: this host's).

    "avx512" needs AVX-512 F, BW, VL and DQ; "avx2" needs AVX2 and FMA; anything else is "scalar".
    """
    f = flags() if have is None else have
    if f >= AVX512_FLAGS:
        return "avx512"
    if f >= AVX2_FLAGS:
        return "avx2"
    return "scalar"


L2_FALLBACK = 512 << 10  # a Zen 3 core's: the smallest L2 of the machines kcomp meets
CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


@functools.cache
def l2_bytes() -> int:
    """One core's L2 (or unified level-2) cache in bytes, from sysfs; L2_FALLBACK where it does not say."""
    try:
        for index in sorted(CACHES.glob("index*")):
            if (index / "level").read_text().strip() == "2" and (
                index / "type"
            ).read_text().strip() != "Instruction":
                return _size((index / "size").read_text().strip()) or L2_FALLBACK
    except OSError:
        pass
    return L2_FALLBACK


def _size(text: str) -> int:
    """'1024K' -> 1048576 (sysfs's spelling); 0 for anything else."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    return int(number) * unit if number.isdigit() else 0


def cores() -> int:
    """Hardware threads this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
