"""CUDA source to its artifacts: nvcc's cubin and PTX with ptxas's resource report, and the builds
that run it (the emulation library from g++, a GPU library from nvcc where a GPU is present).

Everything is cached in `<lib_dir>/cuda` (created 0700, as the CPU's libraries: a library found
there is loaded into the process), keyed by sha256 over the source, the tool's version and flags.

ptxas's `-v` report is per kernel and per architecture:

    ptxas info    : Compiling entry function 'kc_matmul_k0' for 'sm_80'
    ptxas info    : Function properties for kc_matmul_k0
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 32 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]

and becomes `Resources` per kernel; `occupancy` turns them into resident warps per SM from the
architecture's limits (CUDA's occupancy calculator's arithmetic: registers are allocated per warp
in units of 256, shared memory per block with 1 KiB reserved by the system).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from kcomp.config import Config
from kcomp.errors import BuildError, UsageError
from kcomp.targets.cpu.build import private_dir

NVCC_TIMEOUT_S = 300
ARCHS = ("sm_80", "sm_90")
NVCC_FLAGS = ("-O3", "-std=c++17", "-Xptxas", "-v", "-Xcompiler", "-fwrapv")
EMU_FLAGS = ("-std=gnu++17", "-O1", "-g0", "-fPIC", "-shared", "-fwrapv", "-DKC_EMULATED")


@dataclass(frozen=True)
class Arch:
    """The per-SM limits occupancy depends on (CUDA C Programming Guide, compute capabilities table)."""

    name: str
    max_threads: int = 2048
    max_blocks: int = 32
    registers: int = 65536
    shared_bytes: int = 167936  # 164 KiB on sm_80
    reserved_shared: int = 1024  # per block, taken by the system


ARCH = {"sm_80": Arch("sm_80"), "sm_90": Arch("sm_90", shared_bytes=233472)}  # 228 KiB on sm_90


@dataclass(frozen=True)
class Resources:
    """ptxas's report of one kernel on one architecture."""

    registers: int = 0
    shared_bytes: int = 0
    stack_bytes: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    barriers: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeviceBuild:
    """nvcc's output for one architecture: the cubin, the PTX, and the resources of each kernel."""

    arch: str
    cubin: Path
    ptx: Path
    resources: dict[str, Resources] = field(default_factory=dict)
    report: str = ""


def nvcc() -> str:
    """The nvcc executable: on PATH, or under $CUDA_HOME; a UsageError (exit 2) when there is none."""
    found = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if found is None and home and (Path(home) / "bin" / "nvcc").is_file():
        found = str(Path(home) / "bin" / "nvcc")
    if found is None:
        raise UsageError(
            "the cuda target needs nvcc (the CUDA toolkit, 12 or newer) on PATH or under $CUDA_HOME;"
            " it was not found"
        )
    return found


@functools.cache
def _version(tool: str) -> str:
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot run {tool}: {e}") from None


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _cache(cfg: Config) -> Path:
    private_dir(cfg.cache_dir)
    private_dir(cfg.lib_dir)
    return private_dir(cfg.lib_dir / "cuda")


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than {NVCC_TIMEOUT_S} s: {' '.join(cmd)}") from None
    except OSError as e:
        raise BuildError(f"cannot run {cmd[0]}: {e}") from None


def _compile(
    source: str, key: str, outputs: dict[str, list[str]], tool: list[str], cfg: Config
) -> dict[str, Path]:
    """Run `tool` once per output (suffix -> extra flags) on `source`, into the cache under `key`;
    cached outputs are reused.  The returned dict also holds "log": the tools' combined output."""
    cache = _cache(cfg)
    paths = {suffix: cache / f"{key}{suffix}" for suffix in outputs}
    log = cache / f"{key}.log"
    if all(p.exists() for p in paths.values()) and log.exists():
        return {**paths, "log": log}
    fd, src_name = tempfile.mkstemp(dir=cache, prefix=f".{key[:16]}-", suffix=".cu")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    texts = []
    try:
        for suffix, extra in outputs.items():
            tmp = Path(tempfile.mkstemp(dir=cache, prefix=f".{key[:16]}-", suffix=suffix)[1])
            try:
                result = _run([*tool, *extra, "-o", str(tmp), src_name], tool[0])
                if result.returncode != 0:
                    failed = cache / f"{key}.failed.cu"
                    Path(src_name).replace(failed)
                    raise BuildError(
                        f"{Path(tool[0]).name} rejected the generated CUDA (kept at {failed}):\n"
                        f"{(result.stderr + result.stdout).strip()}"
                    )
                texts.append(result.stdout + result.stderr)
                os.replace(tmp, paths[suffix])
            finally:
                tmp.unlink(missing_ok=True)
        os.replace(src_name, cache / f"{key}.cu")
        log.write_text("".join(texts))
    finally:
        Path(src_name).unlink(missing_ok=True)
    return {**paths, "log": log}


def device_build(source: str, arch: str, cfg: Config) -> DeviceBuild:
    """The cubin and PTX of `source` for `arch` ("sm_80", "sm_90"), with ptxas's resource report."""
    tool = nvcc()
    flags = [*NVCC_FLAGS, f"-arch={arch}"]
    key = _key(source, _version(tool), " ".join(flags), "device")
    out = _compile(source, key, {".cubin": ["-cubin"], ".ptx": ["-ptx"]}, [tool, *flags], cfg)
    report = out["log"].read_text()
    return DeviceBuild(arch, out[".cubin"], out[".ptx"], parse_ptxas(report), report)


def gpu_library(source: str, arch: str, cfg: Config) -> Path:
    """A shared library with the host entry and the device code for `arch` (for a machine with a GPU)."""
    tool = nvcc()
    flags = [*NVCC_FLAGS, f"-arch={arch}", "-shared", "-Xcompiler", "-fPIC"]
    key = _key(source, _version(tool), " ".join(flags), "gpu")
    return _compile(source, key, {".so": []}, [tool, *flags], cfg)[".so"]


def emulation_header() -> Path:
    return Path(str(resources.files("kcomp.targets.cuda").joinpath("emu.h")))


def emulated_library(source: str, cfg: Config) -> Path:
    """The same source built by g++ against the emulation header (emu.h), to run on this CPU."""
    header = emulation_header()
    flags = [*EMU_FLAGS, "-include", str(header), "-x", "c++"]
    key = _key(source, _version("g++"), " ".join(EMU_FLAGS), header.read_text(), "emulated")
    return _compile(source, key, {".so": []}, ["g++", *flags], cfg)[".so"]


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_BARRIERS = re.compile(r"used (\d+) barriers")


def parse_ptxas(report: str) -> dict[str, Resources]:
    """Resources per kernel from `ptxas -v` output (the last architecture's, when there are several)."""
    out: dict[str, Resources] = {}
    current: str | None = None
    fields: dict[str, int] = {}
    for line in report.splitlines():
        if m := _ENTRY.search(line):
            current, fields = m.group(1), {}
        elif current is None:
            continue
        elif m := _PROPS.search(line):
            fields.update(stack_bytes=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        elif m := _USED.search(line):
            fields["registers"] = int(m[1])
            if s := _SMEM.search(line):
                fields["shared_bytes"] = int(s[1])
            if b := _BARRIERS.search(line):
                fields["barriers"] = int(b[1])
            out[current] = Resources(**fields)
    return out


def occupancy(res: Resources, threads: int, arch: str) -> dict[str, object]:
    """Resident blocks and warps per SM of a kernel with `res` launched with `threads` per block, and
    which resource limits them."""
    a = ARCH[arch]
    warps = -(-threads // 32)
    regs_per_warp = -(-max(res.registers, 1) * 32 // 256) * 256
    limits = {
        "threads": a.max_threads // (warps * 32),
        "blocks": a.max_blocks,
        "registers": a.registers // (regs_per_warp * warps),
        "shared": a.shared_bytes // (res.shared_bytes + a.reserved_shared),
    }
    blocks = min(limits.values())
    limiter = min(limits, key=lambda k: limits[k])
    return {
        "blocks_per_sm": blocks,
        "warps_per_sm": blocks * warps,
        "occupancy": blocks * warps / (a.max_threads // 32),
        "limited_by": limiter,
    }
