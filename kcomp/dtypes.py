"""Element types of the language and how each maps onto numpy and C.

`compute` is the type arithmetic is done in (the numeric policy: i8 computes in i32 and f16 in f32,
rounding when stored), so the reference and every target agree on it from one table.
"""

from __future__ import annotations

import enum

import numpy as np


class DType(enum.Enum):
    F32 = "f32"
    F64 = "f64"
    I32 = "i32"
    I64 = "i64"
    F16 = "f16"
    BF16 = "bf16"
    I8 = "i8"
    BOOL = "bool"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> bool:
        return self in FLOATS

    @property
    def is_int(self) -> bool:
        return self in INTS

    @property
    def numpy(self) -> np.dtype:
        """The numpy storage type; bf16 has none (no target lowers it yet)."""
        if self is DType.BF16:
            raise NotImplementedError("bf16 has no numpy storage type")
        return np.dtype(_NUMPY[self])

    @property
    def compute(self) -> DType:
        """The type arithmetic on this type happens in (C's promotion, mirrored by the reference)."""
        return _COMPUTE.get(self, self)

    @property
    def bounds(self) -> tuple[int, int]:
        """The least and the greatest value of an integer type (its reductions' -inf and +inf)."""
        info = np.iinfo(self.numpy)
        return int(info.min), int(info.max)

    @property
    def c_type(self) -> str:
        return _C_TYPE[self]

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self]


def common(a: DType, b: DType) -> DType:
    """The type a binary operation on `a` and `b` computes in (C's usual conversions, mirrored by the
    reference): a condition takes the other side's type, a float with an int stays in the float's,
    two floats meet in the wider, two ints in i32, or in i64 when one is."""
    a, b = a.compute, b.compute
    if a is b or b is DType.BOOL:
        return a
    if a is DType.BOOL:
        return b
    if a.is_float and b.is_float:
        return DType.F64 if DType.F64 in (a, b) else DType.F32
    if a.is_float or b.is_float:
        return a if a.is_float else b
    return DType.I64 if DType.I64 in (a, b) else DType.I32


FLOATS = frozenset({DType.F32, DType.F64, DType.F16, DType.BF16})
INTS = frozenset({DType.I32, DType.I64, DType.I8})
# Types that compile and run end to end; the others are parsed and type-checked only.
LOWERED = frozenset({DType.F32, DType.F64, DType.I32, DType.I64, DType.I8, DType.F16, DType.BOOL})

_NUMPY = {
    DType.F32: "float32",
    DType.F64: "float64",
    DType.I32: "int32",
    DType.I64: "int64",
    DType.F16: "float16",
    DType.I8: "int8",
    DType.BOOL: "bool",
}
_COMPUTE = {DType.I8: DType.I32, DType.F16: DType.F32, DType.BF16: DType.F32}
_C_TYPE = {
    DType.F32: "float",
    DType.F64: "double",
    DType.I32: "int32_t",
    DType.I64: "int64_t",
    DType.F16: "_Float16",
    DType.BF16: "__bf16",
    DType.I8: "int8_t",
    DType.BOOL: "bool",
}
_ITEMSIZE = {
    DType.F32: 4,
    DType.F64: 8,
    DType.I32: 4,
    DType.I64: 8,
    DType.F16: 2,
    DType.BF16: 2,
    DType.I8: 1,
    DType.BOOL: 1,
}


def from_numpy(dtype: np.dtype) -> DType | None:
    for dt, name in _NUMPY.items():
        if np.dtype(name) == dtype:
            return dt
    return None
