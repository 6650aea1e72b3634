"""C source to a cached shared library with gcc.

The cache lives in a directory only the user can write (`Config.lib_dir`, created 0700): a library
found there is loaded into the process, so a directory others can write would let them run code as
the user.  Keys are sha256 over everything that changes the machine code: the source, the compiler's
version, the flags and the host CPU (-march=native).  Builds write to a temporary file in the cache
directory and `os.replace` it into place, so concurrent builds of one kernel (parallel tuning
workers) never see a half-written library and the last writer wins with identical bytes.

Flags: -O3 -march=native, OpenMP, -fwrapv (integer overflow wraps: the numeric policy),
-ffp-contract=fast (FMA contraction), -fno-math-errno (libm calls vectorize); never -ffast-math,
which would break NaN-aware max/min and the floor-division helpers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kcomp.config import Config, config
from kcomp.errors import BuildError, UsageError
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cpu import host

GCC = "gcc"
BASE_FLAGS = (
    "-O3",
    "-fPIC",
    "-shared",
    "-fopenmp",
    "-fwrapv",
    "-ffp-contract=fast",
    "-fno-math-errno",
    "-std=gnu11",
)
GCC_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class Library:
    """A built kernel: the shared library, the source it came from and its ABI (None if unknown)."""

    path: Path
    source_path: Path
    key: str
    signature: Signature | None
    cached: bool  # True when the library came from the cache without running gcc


def flags(arch: str = "native") -> tuple[str, ...]:
    """gcc flags for `arch` (`-march=` value; "native" tunes for this host)."""
    return (*BASE_FLAGS, f"-march={arch}")


@functools.cache
def compiler_id() -> str:
    """gcc's exact version, part of every cache key."""
    try:
        full = subprocess.run([GCC, "-dumpfullversion"], capture_output=True, text=True, check=True).stdout
        banner = subprocess.run([GCC, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot run {GCC}: {e}; the cpu target needs gcc with OpenMP") from None
    return f"{full.strip()} | {banner.splitlines()[0] if banner else ''}"


def cache_key(source: str, build_flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (source, compiler_id(), " ".join(build_flags), host.fingerprint()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing; refuses a directory another user owns or others may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as e:
        raise UsageError(
            f"cannot create the kernel cache {path}: {e.strerror}; set KCOMP_CACHE_DIR"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"kernel cache {path} is not a directory; set KCOMP_CACHE_DIR")
    if st.st_uid != os.getuid():
        raise UsageError(
            f"kernel cache {path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
            "libraries in it would run as you. Set KCOMP_CACHE_DIR to a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"kernel cache {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"libraries in it would run as you. Run `chmod go-w {path}` or set KCOMP_CACHE_DIR"
        )
    return path


def build(source: str, *, arch: str = "native", cfg: Config | None = None) -> Library:
    """The shared library of `source`, from the cache or compiled now.

    Raises BuildError with gcc's output and the path of the kept source when gcc rejects it.
    """
    cfg = cfg or config()
    private_dir(cfg.cache_dir)
    lib_dir = private_dir(cfg.lib_dir)
    build_flags = flags(arch)
    key = cache_key(source, build_flags)
    lib_path, src_path = lib_dir / f"{key}.so", lib_dir / f"{key}.c"
    signature = Signature.parse(source)
    if lib_path.exists() and src_path.exists():
        return Library(lib_path, src_path, key, signature, cached=True)
    tmp_src = _write_temp(lib_dir, key, ".c", source)
    fd, tmp_lib_name = tempfile.mkstemp(dir=lib_dir, prefix=f".{key[:16]}-", suffix=".so")
    os.close(fd)
    tmp_lib = Path(tmp_lib_name)
    try:
        result = _run_gcc([GCC, *build_flags, "-o", str(tmp_lib), str(tmp_src), "-lm"])
        if result.returncode != 0:
            failed = lib_dir / f"{key}.failed.c"
            os.replace(tmp_src, failed)
            raise BuildError(
                f"gcc rejected the generated C (kept at {failed}):\n{(result.stderr + result.stdout).strip()}"
            )
        os.replace(tmp_src, src_path)  # NOTE: source first, so a visible library always has its source
        os.replace(tmp_lib, lib_path)
    finally:
        tmp_src.unlink(missing_ok=True)
        tmp_lib.unlink(missing_ok=True)
    return Library(lib_path, src_path, key, signature, cached=False)


def _write_temp(directory: Path, key: str, suffix: str, text: str) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{key[:16]}-", suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


def _run_gcc(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """One gcc invocation (a seam: tests count calls to it to prove cache hits)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=GCC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"gcc took longer than {GCC_TIMEOUT_S} s: {' '.join(cmd)}") from None
    except OSError as e:
        raise BuildError(f"cannot run {cmd[0]}: {e}; the cpu target needs gcc with OpenMP") from None
