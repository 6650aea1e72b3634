"""Calling a built CUDA kernel: emulated on this CPU, or on a GPU through torch.

The host entry `kc_<name>` takes device pointers (docs/cuda.md).  In the emulation they are plain
host pointers, so numpy arrays are passed as they are and every problem the emulator recorded (a
race, an out-of-bounds access, a divergent barrier) fails the run.  On a GPU the runtime is torch:
kcomp's bench already uses it as a peer, it is on every GPU machine kcomp is measured on, and it
gives device memory, copies and CUDA events without another dependency (cuda-python or CuPy would
each add one for no capability kcomp needs).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kcomp.errors import KcompError, KernelFault
from kcomp.targets.cfamily.signature import PARAM_CTYPE, Signature, checked_arguments, scalar


class EmulationError(KernelFault):
    """The emulator saw the kernel do something a GPU would do wrong or unpredictably."""


def _entry(path: Path, signature: Signature) -> tuple[ctypes.CDLL, Any]:
    """The library and its host entry, typed by the signature (buffers are pointers, device or not)."""
    dll = ctypes.CDLL(str(path))
    fn = getattr(dll, signature.entry)
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p if a.role != "param" else PARAM_CTYPE[a.dtype] for a in signature.args]
    return dll, fn


class EmulatedKernel:
    """A library built against emu.h, loaded once per process."""

    def __init__(self, path: Path, signature: Signature):
        self.signature = signature
        self._dll, self._fn = _entry(path, signature)
        self._errors = self._dll.kc_emu_errors
        self._errors.restype = ctypes.c_char_p
        self._dll.kc_emu_seed.argtypes = [ctypes.c_ulonglong]
        self._dll.kc_emu_launches.restype = ctypes.c_int

    def bind(self, args: Sequence[object], seed: int = 1) -> Callable[[], dict]:
        converted = checked_arguments(self.signature, args)
        return lambda: self._call(converted, args, seed)

    def _call(self, converted: list[object], keep: Sequence[object], seed: int) -> dict:
        self._dll.kc_emu_reset()
        self._dll.kc_emu_seed(seed)
        rc = self._fn(*converted)
        problems = (self._errors() or b"").decode(errors="replace").strip()
        if problems or rc:
            detail = problems or f"the host entry returned CUDA error {rc}"
            raise EmulationError(f"{self.signature.entry} (emulated): {detail}")
        return {"mode": "emulated", "launches": int(self._dll.kc_emu_launches()), "seed": seed}


_LOADED: dict[Path, Any] = {}  # a library is loaded once per process (never unloaded: ctypes)


def _once(kind: type, path: Path, signature: Signature) -> Any:
    kernel = _LOADED.get(path)
    if kernel is None:
        kernel = _LOADED[path] = kind(path, signature)
    return kernel


def emulated(path: Path, signature: Signature) -> EmulatedKernel:
    return _once(EmulatedKernel, path, signature)


def gpu_available() -> bool:
    """Whether torch sees a CUDA device (False without torch or a GPU)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def gpu_name() -> str:
    import torch

    return str(torch.cuda.get_device_name(0))


class GpuKernel:
    """The nvcc-built library on the GPU: arguments copied to device tensors once per bind."""

    def __init__(self, path: Path, signature: Signature):
        self.signature = signature
        self._dll, self._fn = _entry(path, signature)

    def bind(self, args: Sequence[object]) -> tuple[Callable[[], None], Callable[[], None]]:
        """(call, copy_back): `call` launches on the device tensors; `copy_back` writes the outputs
        into the numpy arrays given."""
        import torch

        checked_arguments(self.signature, args)  # the same checks as the emulation's
        device, values = [], []
        for spec, arg in zip(self.signature.args, args, strict=True):
            if spec.role == "param":
                values.append(scalar(spec, arg))
                continue
            t = torch.from_numpy(np.ascontiguousarray(arg)).to("cuda")
            device.append((spec, arg, t))
            values.append(ctypes.c_void_p(t.data_ptr()))
        fn = self._fn

        def call() -> None:
            rc = fn(*values)
            if rc:
                raise KcompError(f"{self.signature.entry}: CUDA error {rc}")

        def copy_back() -> None:
            torch.cuda.synchronize()
            for spec, arr, t in device:
                if spec.role == "output":
                    arr[...] = t.cpu().numpy()

        return call, copy_back


def on_gpu(path: Path, signature: Signature) -> GpuKernel:
    return _once(GpuKernel, path, signature)


def time_gpu(call: Callable[[], None], budget_s: float) -> float:
    """Median seconds per call by CUDA events (warm-up first; each call timed on its own)."""
    import torch

    call()
    torch.cuda.synchronize()
    times = []
    spent = 0.0
    while len(times) < 5 or (spent < budget_s and len(times) < 1000):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        t = start.elapsed_time(end) / 1e3
        times.append(t)
        spent += t
    return float(np.median(times))
