"""The vector unit's integer words: i32 buffers landing as bit patterns, the integer operations with
the language's rules (wrapping, floor division and modulo, division by zero), compares into masks,
conversions, reductions, the integer fill register and the word store; each against numpy and
kcomp.semantics by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kcomp import semantics as lang
from kcomp.dtypes import DType
from kcomp.expr import BinaryOp
from kcomp.targets.accel.machine import assemble, simulate

OPS = {"viadd": BinaryOp.ADD, "visub": BinaryOp.SUB, "vimul": BinaryOp.MUL, "vimax": BinaryOp.MAX,
       "vimin": BinaryOp.MIN, "vidiv": BinaryOp.DIV, "vifdiv": BinaryOp.FLOORDIV, "vimod": BinaryOp.MOD}  # fmt: skip


def _ints(rng, shape):  # type: ignore[no-untyped-def]
    x = rng.integers(-50, 50, shape).astype(np.int32)
    x.flat[:4] = (2**31 - 1, -(2**31), 0, -1)  # wrapping and the edge cases division has
    return x


@pytest.mark.parametrize("op", sorted(OPS))
def test_integer_operations_follow_the_language(rng, op):
    text = f"""\
.buffer X i32 4x16
.buffer Y i32 4x16
.buffer Z i32 4x16
dma.load.acc acc=0 buf=X off=0 rows=4 cols=16 stride=16
dma.load.acc acc=4 buf=Y off=0 rows=4 cols=16 stride=16 signal=t0
{op} dst=8 src=0 rows=4 b=4 bmem=acc bstep=1 wait=t0 signal=t2
dma.store.i acc=8 buf=Z off=0 rows=4 cols=16 stride=16 wait=t2
"""
    x, y = _ints(rng, (4, 16)), _ints(rng, (4, 16))
    y[1, :5] = 0  # division by zero gives 0
    y[0, 1] = -1  # the least i32 divided by -1 wraps
    z = np.zeros((4, 16), np.int32)
    simulate(assemble(text), {"X": x, "Y": y, "Z": z})
    np.testing.assert_array_equal(z, lang.binary(OPS[op], x, y).astype(np.int32))


def test_constants_compares_conversions_and_reductions(rng):
    text = """\
.buffer X i32 3x16
.buffer F f32 3x16
.buffer Z i32 3x16
.buffer M f32 6x16
dma.load.acc acc=0 buf=X off=0 rows=3 cols=16 stride=16
dma.load.acc acc=3 buf=F off=0 rows=3 cols=16 stride=16 signal=t0
viota.i dst=6 rows=1 axis=col imm=-5 wait=t0
vicmp dst=7 src=0 rows=3 b=6 bmem=acc bstep=0 cmp=ge
vitof dst=10 src=0 rows=3
vftoi dst=13 src=3 rows=3
viredsum dst=16 src=0 rows=1
viredmax dst=17 src=0 rows=1
viredmin dst=18 src=0 rows=1
viabs dst=19 src=0 rows=1
vsel dst=20 src=7 rows=3 a=0 b=6 sstep=1 astep=1 bstep=0 signal=t2
dma.store acc=7 buf=M off=0 rows=6 cols=16 stride=16 act=none wait=t2
dma.store.i acc=13 buf=Z off=0 rows=3 cols=16 stride=16
"""
    x = _ints(rng, (3, 16))
    f = (rng.standard_normal((3, 16)) * 100).astype(np.float32)
    z, m = np.zeros((3, 16), np.int32), np.zeros((6, 16), np.float32)
    result = simulate(assemble(text), {"X": x, "F": f, "Z": z, "M": m})
    cols = np.arange(16, dtype=np.int32) - 5
    np.testing.assert_array_equal(m[:3], (x >= cols).astype(np.float32))
    np.testing.assert_array_equal(m[3:], x.astype(np.float32))
    np.testing.assert_array_equal(z, lang.cast(f, DType.I32))
    assert result.cycles > 0


def test_integer_pads_come_from_the_integer_fill_register(rng):
    text = """\
.buffer X i32 3x10
.buffer Z i32 4x16
dma.fill.i imm=-7
dma.load.acc.pad acc=0 buf=X off=0 rows=3 cols=10 stride=10 lead=3 fill=reg
dma.load.acc.pad acc=3 buf=X off=0 rows=1 cols=0 stride=10 lead=0 fill=reg signal=t2
dma.store.i acc=0 buf=Z off=0 rows=4 cols=16 stride=16 wait=t2
"""
    x = _ints(rng, (3, 10))
    z = np.zeros((4, 16), np.int32)
    simulate(assemble(text), {"X": x, "Z": z})
    want = np.full((4, 16), -7, np.int32)
    want[:3, 3:13] = x
    np.testing.assert_array_equal(z, want)
