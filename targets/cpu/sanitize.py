"""The CPU target under AddressSanitizer and UndefinedBehaviorSanitizer, as a standalone executable.

    kcomp.compile(path).check(sanitize=True)   # CpuTarget.run_sanitized -> run_sanitized(source, args)
                                               # SanitizerError (exit code 1) when a sanitizer reports

ASan must be the first library of a process, so it is never loaded into Python.  Instead the kernel's
C source gets a generated `main` appended (`emit_driver`): it reads every input tensor and scalar
parameter from a raw binary file that Python wrote (`DIR/argN.bin`, in ABI order), allocates each
tensor with `malloc` at its exact size (so one element past the end is in ASan's redzone; no extra
alignment, as docs/abi.md promises none is needed), poisons the outputs with 0xFF bytes (NaN: a read
before the first write shows up in the check), calls the kernel, and writes each output to
`DIR/argN.out`.  Python reads them back and compares them with the numpy reference.  Built with

    gcc -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1 -fopenmp ...

plus the target's -march and numeric flags (-fwrapv, -ffp-contract=fast, -fno-math-errno), cached
like the libraries.  Leak detection is off (ASAN_OPTIONS=detect_leaks=0): libgomp's thread pool is
reported as leaked memory at exit, a false report; the kernels' own temporaries are freed by
construction (docs/abi.md) and use-after-free and overflows are still caught.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kcomp.config import config
from kcomp.errors import BuildError, CheckFailed
from kcomp.targets.cfamily.signature import Signature
from kcomp.targets.cpu import build as _build

SANITIZE_FLAGS = (
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
    "-fopenmp",
    "-fwrapv",
    "-ffp-contract=fast",
    "-fno-math-errno",
    "-std=gnu11",
)
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=86",
}
RUN_TIMEOUT_S = 300
_C_TYPE = {
    "f32": "float",
    "f64": "double",
    "f16": "_Float16",
    "i32": "int32_t",
    "i64": "int64_t",
    "i8": "int8_t",
    "bool": "bool",
}
_PARAM_C_TYPE = {**_C_TYPE, "f16": "float"}  # f16 scalars travel as float (docs/abi.md)
_PARAM_NUMPY = {
    "f32": np.float32,
    "f64": np.float64,
    "f16": np.float32,
    "i32": np.int32,
    "i64": np.int64,
    "i8": np.int8,
}


class SanitizerError(CheckFailed):
    """AddressSanitizer or UndefinedBehaviorSanitizer reported an error: a kcomp bug (exit code 1)."""


def emit_driver(sig: Signature, threads: int) -> str:
    """A C `main(argc, argv)` that runs `sig.entry` on the files in the folder argv[1]."""
    lines = [
        "",
        "/* ---- kcomp sanitizer driver (targets/cpu/sanitize.py) ---- */",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "#include <string.h>",
        "static void *kcsan_read(const char *dir, int i, size_t bytes) {",
        '    char path[4096]; snprintf(path, sizeof path, "%s/arg%d.bin", dir, i);',
        '    FILE *f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }',
        '    void *p = malloc(bytes ? bytes : 1); if (!p) { fputs("out of memory\\n", stderr); exit(2); }',
        '    if (fread(p, 1, bytes, f) != bytes) { fprintf(stderr, "%s: short file\\n", path); exit(2); }',
        "    fclose(f); return p;",
        "}",
        "static void kcsan_write(const char *dir, int i, const void *p, size_t bytes) {",
        '    char path[4096]; snprintf(path, sizeof path, "%s/arg%d.out", dir, i);',
        '    FILE *f = fopen(path, "wb"); if (!f) { perror(path); exit(2); }',
        "    if (fwrite(p, 1, bytes, f) != bytes) { perror(path); exit(2); }",
        "    fclose(f);",
        "}",
        "int main(int argc, char **argv) {",
        '    if (argc != 2) { fputs("usage: kernel DIR\\n", stderr); return 2; }',
        "    const char *dir = argv[1];",
    ]
    call = []
    for i, a in enumerate(sig.args):
        if a.shape is None:
            ctype = _PARAM_C_TYPE[a.dtype.value]
            lines.append(f"    {ctype} *kcsan_{i} = kcsan_read(dir, {i}, sizeof({ctype}));")
            call.append(f"*kcsan_{i}")
            continue
        ctype = _C_TYPE[a.dtype.value]
        count = int(np.prod(a.shape, dtype=np.int64))
        size = f"(size_t){count} * sizeof({ctype})"
        if a.role == "input":
            lines.append(f"    {ctype} *kcsan_{i} = kcsan_read(dir, {i}, {size});")
        else:
            lines.append(f"    {ctype} *kcsan_{i} = malloc({size} ? {size} : 1);")
            lines.append(f"    memset(kcsan_{i}, 0xFF, {size});  /* poison: NaN / -1 */")
        call.append(f"kcsan_{i}")
    lines.append(f"    kc_set_threads({threads});")
    lines.append(f"    {sig.entry}({', '.join(call)});")
    for i, a in enumerate(sig.args):
        if a.shape is not None and a.role != "input":
            count = int(np.prod(a.shape, dtype=np.int64))
            lines.append(
                f"    kcsan_write(dir, {i}, kcsan_{i}, (size_t){count} * sizeof({_C_TYPE[a.dtype.value]}));"
            )
    lines += [f"    free(kcsan_{i});" for i in range(len(sig.args))]
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def build_sanitized(source: str, *, arch: str = "native", threads: int = 2) -> Path:
    """The sanitized executable of a kernel's C source (with its signature comment), cached."""
    sig = Signature.parse(source)
    if sig is None:
        raise BuildError("the C source has no kcomp-signature comment: cannot generate a driver for it")
    full = source + emit_driver(sig, threads)
    flags = (*SANITIZE_FLAGS, f"-march={arch}")
    cfg = config()
    _build.private_dir(cfg.cache_dir)
    folder = _build.private_dir(cfg.lib_dir / "sanitize")
    key = _build.cache_key(full, flags)
    exe, src = folder / f"{key}.exe", folder / f"{key}.c"
    if exe.exists():
        return exe
    src.write_text(full)
    tmp = folder / f".{key[:16]}-{os.getpid()}.exe"
    result = _build._run_gcc([_build.GCC, *flags, "-o", str(tmp), str(src), "-lm"])
    if result.returncode != 0:
        raise BuildError(
            f"gcc rejected the sanitized build (source at {src}):\n{(result.stderr + result.stdout).strip()}"
        )
    os.replace(tmp, exe)
    return exe


def run_executable(
    exe: Path, sig: Signature, args: list[Any], timeout_s: float = RUN_TIMEOUT_S
) -> list[np.ndarray]:
    """Run a sanitized executable on `args` (ABI order: arrays and scalars); the outputs, in ABI order.

    Raises SanitizerError with the sanitizer's report when it reports (or the process fails)."""
    with tempfile.TemporaryDirectory(prefix="kcomp-sanitize-") as tmp:
        for i, (a, value) in enumerate(zip(sig.args, args, strict=True)):
            if a.shape is None:
                data = np.asarray(value, dtype=_PARAM_NUMPY[a.dtype.value]).tobytes()
            elif a.role == "input":
                data = np.ascontiguousarray(value, dtype=a.dtype.numpy).tobytes()
            else:
                continue
            Path(tmp, f"arg{i}.bin").write_bytes(data)
        env = {**os.environ, **SANITIZER_ENV}
        try:
            proc = subprocess.run([str(exe), tmp], capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise SanitizerError(f"the sanitized kernel {exe} ran longer than {timeout_s:g} s") from None
        report = (proc.stderr + proc.stdout).strip()
        if proc.returncode != 0 or "runtime error:" in report or "Sanitizer" in report:
            raise SanitizerError(
                f"the sanitized kernel failed (exit code {proc.returncode}; executable {exe}):\n{report}"
            )
        outputs = []
        for i, a in enumerate(sig.args):
            if a.shape is not None and a.role != "input":
                data = np.fromfile(Path(tmp, f"arg{i}.out"), dtype=a.dtype.numpy)
                outputs.append(data.reshape(a.shape))
        return outputs


def run_sanitized(source: str, args: Sequence[Any], *, arch: str = "native", threads: int = 2) -> Path:
    """Build the kernel `source` with the sanitizers and run it on `args` (ABI order); its outputs
    are written into the output arrays of `args`, as `CpuTarget.run` does.  The executable's path."""
    exe = build_sanitized(source, arch=arch, threads=threads)
    sig = Signature.parse(source)
    results = run_executable(exe, sig, list(args))
    outputs = [
        value for a, value in zip(sig.args, args, strict=True) if a.shape is not None and a.role != "input"
    ]
    for out, result in zip(outputs, results, strict=True):
        out[...] = result.reshape(out.shape)
    return exe
