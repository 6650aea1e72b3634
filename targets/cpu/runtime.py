"""Loading a built kernel with ctypes and calling it on numpy arrays.

C trusts its pointers, so before a call every argument is checked against the signature the emitter
wrote (dtype, shape, C-contiguity, writeable outputs, no output overlapping another argument): a
wrong argument is a `UsageError` with the argument's name, never a crash or silently wrong output.
Libraries are loaded once per process and never unloaded (unloading a library whose OpenMP threads
may still be parked is unsafe); ctypes releases the GIL during the call.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kcomp.errors import UsageError
from kcomp.targets.cfamily.signature import ABI_VERSION, PARAM_CTYPE, Signature, checked_arguments, scalar
from kcomp.targets.cpu.build import Library


class Kernel:
    """A loaded kernel library; keeps the CDLL alive as long as the kernel is referenced."""

    def __init__(self, library: Library):
        if library.signature is None:
            raise UsageError(f"{library.source_path} has no kcomp-signature line; cannot call it safely")
        self.library = library
        self.signature: Signature = library.signature
        self._dll = ctypes.CDLL(str(library.path))
        abi = self._dll.kc_abi_version()
        if abi != ABI_VERSION:
            raise UsageError(f"{library.path} has ABI version {abi}, this kcomp expects {ABI_VERSION}")
        self._fn = getattr(self._dll, self.signature.entry)
        self._fn.restype = None
        self._fn.argtypes = [
            ctypes.c_void_p if a.role != "param" else PARAM_CTYPE[a.dtype] for a in self.signature.args
        ]
        self._set_threads = self._dll.kc_set_threads
        self._set_threads.argtypes = [ctypes.c_int]
        self._set_threads.restype = None

    def set_threads(self, n: int) -> None:
        """Threads of this library's parallel loops in the following calls (from any Python thread)."""
        if n < 1:
            raise UsageError(f"thread count must be positive, got {n}")
        self._set_threads(n)

    def bind(self, args: Sequence[object]) -> Callable[[], None]:
        """A zero-argument call with `args` checked and converted once (what profiling times)."""
        return _BoundCall(self._fn, checked_arguments(self.signature, args), args)

    def __call__(self, args: Sequence[object]) -> None:
        self.bind(args)()

    def fast(
        self, inputs: Sequence[str], params: dict[str, object], threads: int
    ) -> Callable[[tuple], list[np.ndarray] | None]:
        """The Python API's quick call: `call(arrays)` with the input arrays named `inputs` (the
        declaration order), scalar parameters fixed to `params`, returns fresh output arrays, or None
        when an argument is anything but an exact match (a numpy array of the signature's dtype and
        shape, C-contiguous), so the caller takes the checked path with its error messages.  The
        checks cost about what numpy's own attribute reads do; fresh outputs cannot overlap."""
        specs = {a.name: a for a in self.signature.args}
        order = [n for n in (a.name for a in self.signature.args if a.role == "input")]
        wanted = [(specs[n].shape, specs[n].dtype.numpy, inputs.index(n)) for n in order]
        outs = [(a.shape, a.dtype.numpy) for a in self.signature.args if a.role == "output"]
        values = [scalar(a, params[a.name]) for a in self.signature.args if a.role == "param"]
        fn, set_threads, ndarray, empty = self._fn, self._set_threads, np.ndarray, np.empty
        address, from_buffer = ctypes.addressof, ctypes.c_char.from_buffer
        count = len(inputs)

        def call(arrays: tuple) -> list[np.ndarray] | None:
            if len(arrays) != count:
                return None
            pointers = []
            for shape, dtype, k in wanted:
                a = arrays[k]
                if type(a) is not ndarray or a.shape != shape or a.dtype != dtype or not a.flags.c_contiguous:
                    return None
                try:
                    pointers.append(address(from_buffer(a)))  # NOTE: a fifth of a.ctypes.data's cost
                except (TypeError, ValueError):  # read-only or empty: no writable buffer to export
                    pointers.append(a.ctypes.data)
            results = [empty(shape, dtype) for shape, dtype in outs]
            for r in results:
                pointers.append(address(from_buffer(r)) if r.size else r.ctypes.data)
            set_threads(threads)  # NOTE: the library's count; another binding may have changed it
            fn(*pointers, *values)
            return results

        return call


class _BoundCall:
    """`fn(*converted)`, holding the arrays the converted pointers point into."""

    __slots__ = ("_arrays", "_converted", "_fn")

    def __init__(self, fn: Callable[..., None], converted: list[object], arrays: Sequence[object]):
        self._fn, self._converted, self._arrays = fn, converted, arrays

    def __call__(self) -> None:
        self._fn(*self._converted)


_LOADED: dict[Path, Kernel] = {}


def load(library: Library) -> Kernel:
    """The process's one Kernel for `library`."""
    kernel = _LOADED.get(library.path)
    if kernel is None:
        kernel = _LOADED[library.path] = Kernel(library)
    return kernel
