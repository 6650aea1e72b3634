"""Assembler, disassembler and binary file: exact round trips, and every error with its position."""

from __future__ import annotations

import struct

import pytest
from gemm_programs import gemm_program
from hypothesis import given, settings
from hypothesis import strategies as st

from kcomp.errors import SourceError
from kcomp.targets.accel.machine import (
    NUM_TOKENS,
    OPS,
    AccelConfig,
    Buffer,
    EncodingError,
    Instr,
    Program,
    assemble,
    decode,
    disassemble,
    encode,
    format_program,
    make,
)
from kcomp.targets.accel.machine.isa import WORD_BYTES, decode_word, encode_word

EVERY_OP = """\
# one of each instruction
.buffer A f32 64x32
.buffer bias f32 16
.buffer C f32 64x16
.buffer I i32 8x16
dma.load sp=0 buf=A off=0 rows=16 cols=16 stride=32 signal=t0
dma.load.acc acc=16 buf=bias off=0 rows=16 cols=16 stride=0 signal=t1
mma acc=0 a=0 b=0 m=16 k=16 mode=overwrite wait=t0,t1
vadd dst=0 src=0 rows=16 b=16 bmem=acc bstep=1
vsub dst=0 src=0 rows=16 b=3 bmem=sp bstep=0
vmul dst=0 src=0 rows=16 b=16 bmem=acc bstep=1
vmax dst=0 src=0 rows=16 b=16 bmem=acc bstep=0
vadds dst=0 src=0 rows=16 imm=-0.5
vmuls dst=0 src=0 rows=16 imm=0.1
vmaxs dst=0 src=0 rows=16 imm=0.0
vmin dst=0 src=0 rows=16 b=16 bmem=acc bstep=1
vmins dst=0 src=0 rows=16 imm=2.0
vexp dst=32 src=0 rows=16
vrecip dst=32 src=32 rows=16
vlog dst=32 src=32 rows=16
vsqrt dst=32 src=32 rows=16
vrsqrt dst=32 src=32 rows=16
vtanh dst=32 src=32 rows=16
verf dst=32 src=32 rows=16
vsigmoid dst=32 src=32 rows=16
vabs dst=32 src=32 rows=16
vredsum dst=48 src=32 rows=16
vredmax dst=48 src=32 rows=16 signal=t2,t7
dma.store acc=48 buf=C off=0 rows=16 cols=16 stride=16 act=relu wait=t2
dma.load.pad sp=64 buf=A off=1 rows=16 cols=8 stride=32 lead=4 fill=zero
dma.load.acc.pad acc=64 buf=bias off=0 rows=3 cols=0 stride=0 lead=0 fill=-inf
dma.load.acc.t acc=80 buf=A off=0 rows=8 cols=16 stride=32
dma.load.t sp=200 buf=A off=1 rows=8 cols=16 stride=32 step=3
dma.store.t acc=80 buf=C off=0 rows=8 cols=16 stride=16 act=relu
dma.fill imm=0.5
dma.load.idx slot=3 buf=A off=5 rows=8 limit=30
dma.load.acc.g acc=96 buf=A off=2 rows=8 cols=16 stride=32 slot=3 fill=inf
viota dst=96 rows=8 axis=row imm=-1.5
vcmp dst=96 src=96 rows=8 b=80 bmem=acc bstep=1 cmp=ne
vcmps dst=96 src=96 rows=8 imm=0.5 cmp=le
vsel dst=96 src=96 rows=8 a=80 b=64 sstep=1 astep=1 bstep=0
vredargmax dst=96 src=96 rows=8
vscan dst=96 src=80 rows=8 c=64 fn=max dir=rev cin=carry
dma.fill.i imm=-7
dma.load.acc acc=112 buf=I off=0 rows=8 cols=16 stride=16
viota.i dst=120 rows=1 axis=col imm=-3
viadd dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
visub dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vimul dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vimax dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vimin dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vidiv dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vifdiv dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vimod dst=112 src=112 rows=8 b=120 bmem=acc bstep=0
vicmp dst=96 src=112 rows=8 b=120 bmem=acc bstep=0 cmp=lt
viabs dst=112 src=112 rows=8
viredsum dst=112 src=112 rows=8
viredmax dst=112 src=112 rows=8
viredmin dst=112 src=112 rows=8
vitof dst=96 src=112 rows=8
vftoi dst=112 src=96 rows=8
viscan dst=112 src=112 rows=8 c=0 fn=mul dir=fwd cin=none
dma.store.i acc=112 buf=I off=0 rows=8 cols=16 stride=16
fence q=store
halt
"""


def roundtrip(program: Program) -> bytes:
    """Bytes of `program`, checked to survive disassembly and re-assembly unchanged."""
    data = encode(program)
    text = disassemble(data)
    assert encode(assemble(text)) == data
    assert format_program(assemble(text)) == text  # the text form is canonical too
    assert decode(data) == program
    return data


def test_every_instruction_round_trips():
    program = assemble(EVERY_OP, "every.s")
    assert {ins.op for ins in program.instrs} == set(OPS)
    data = roundtrip(program)
    assert len(data) % WORD_BYTES == 0
    lines = [line for line in EVERY_OP.splitlines() if line and not line.startswith("#")]
    assert disassemble(data).splitlines() == lines  # the source was written canonically


@pytest.mark.parametrize(
    ("shape", "config", "tiles"),
    [
        ((64, 64, 64), None, {}),
        ((40, 36, 50), None, {"tm": 32, "tn": 32, "tk": 32}),
        ((64, 48, 80), "small", {"tm": 32, "tn": 16, "tk": 24, "double_buffer": False}),
        ((48, 32, 64), "i8", {"mma_rows": 16, "relu": True}),
    ],
)
def test_generated_gemm_programs_round_trip(shape, config, tiles):
    cfg = AccelConfig.from_dict({"dtype": "i8"}) if config == "i8" else AccelConfig.load(config)
    roundtrip(gemm_program(*shape, cfg, **tiles))


@st.composite
def instructions(draw: st.DrawFn) -> Instr:
    spec = draw(st.sampled_from(list(OPS.values())))
    args = tuple(draw(st.integers(f.lo, f.hi if f.kind != "buf" else 1)) for f in spec.fields)
    toks = st.lists(st.integers(0, NUM_TOKENS - 1), max_size=3).map(lambda t: tuple(sorted(set(t))))
    return Instr(spec.mnemonic, args, draw(toks), draw(toks))


@settings(max_examples=300, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=8))
def test_random_instructions_round_trip(instrs):
    program = Program((Buffer("x", "f32", (4, 4)), Buffer("y", "i32", (7,))), tuple(instrs))
    roundtrip(program)
    for i, ins in enumerate(instrs):
        assert decode_word(encode_word(ins), i) == ins


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("0.1", "0.1"), ("-0", "-0.0"), ("1e-7", "1e-07"), ("3.4028235e38", "3.4028235e+38"), ("inf", "inf"),
     ("-inf", "-inf"), ("nan", "nan"), ("0x3f800000", "1.0"), ("0x7fc00001", "0x7fc00001")],
)  # fmt: skip
def test_float_immediates_print_shortest_and_keep_their_bits(written, canonical):
    program = assemble(f".buffer x f32 1\nvmuls dst=0 src=0 rows=1 imm={written}\n")
    assert disassemble(roundtrip(program)).splitlines()[1] == f"vmuls dst=0 src=0 rows=1 imm={canonical}"


def test_make_builds_what_the_assembler_builds():
    made = make("mma", acc=0, a=0, b=0, m=16, k=16, mode="overwrite", wait=(0, 1))
    assert made == assemble(EVERY_OP).instrs[2]
    assert made.operand("mode") == "overwrite" and made.operand("m") == 16
    assert make("vmuls", dst=0, src=0, rows=16, imm=0.1).operand("imm") == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"op": "mmx"}, r"unknown instruction 'mmx'; known: dma\.load"),
        ({"op": "halt", "x": 1}, r"halt: unknown operand 'x'; halt takes none"),
        ({"op": "fence"}, r"fence: missing operand 'q'; fence takes q"),
        ({"op": "fence", "q": "dram"}, r"fence: q=dram is not one of load, compute, store"),
        ({"op": "fence", "q": 1.5}, r"fence: q must be an integer, not 1\.5"),
        ({"op": "fence", "q": "load", "wait": 8}, r"fence: wait token 8 is not one of t0\.\.t7"),
        (
            {"op": "vmuls", "dst": 0, "src": 0, "rows": 0, "imm": 1.0},
            r"vmuls: rows=0 is out of range 1\.\.65535",
        ),
        (
            {"op": "vmuls", "dst": 0, "src": 0, "rows": 1, "imm": 1e39},
            r"vmuls: imm=1e\+39 does not fit in an f32",
        ),
        (
            {"op": "vmuls", "dst": 1 << 16, "src": 0, "rows": 1, "imm": 1.0},
            r"dst=65536 is out of range 0\.\.65535",
        ),
    ],
)
def test_make_errors(kwargs, match):
    with pytest.raises(EncodingError, match=match):
        make(kwargs.pop("op"), **kwargs)


def test_encoding_checks_instructions_built_directly():
    with pytest.raises(EncodingError, match=r"fence: q=3 is out of range 0\.\.2"):
        encode_word(Instr("fence", (3,)))
    with pytest.raises(EncodingError, match=r"fence: signal token 9 is not one of t0\.\.t7"):
        encode_word(Instr("fence", (0,), signal=(9,)))
    with pytest.raises(EncodingError, match=r"halt: not an instruction with 1 operands"):
        encode_word(Instr("halt", (1,)))


@pytest.mark.parametrize(
    ("line", "col", "match"),
    [
        ("mmx acc=0", 1, r"unknown mnemonic 'mmx'; known: \.buffer, dma\.load"),
        ("fence", 6, r"fence: missing operand 'q' \(operands: q\)"),
        ("fence q=load wait=t8", 19, r"bad token 't8': tokens are t0\.\.t7"),
        ("fence q=load q=store", 14, r"operand 'q' given twice"),
        ("fence q=load x=1", 14, r"fence has no operand 'x'; it takes q, wait, signal"),
        ("fence q", 7, r"expected NAME=VALUE, got 'q'"),
        ("fence q=dram", 9, r"fence: q=dram is not one of load, compute, store"),
        ("vexp dst=70000 src=0 rows=1", 10, r"vexp: dst=70000 is out of range 0\.\.65535 \(16-bit field\)"),
        ("vexp dst=x src=0 rows=1", 10, r"expected an integer, got 'x'"),
        ("vmuls dst=0 src=0 rows=1 imm=two", 30, r"imm must be a number, got 'two'"),
        ("vmuls dst=0 src=0 rows=1 imm=0x100000000", 30, r"imm=0x100000000 has more than 32 bits"),
        (
            "dma.store acc=0 buf=D off=0 rows=1 cols=1 stride=1 act=none",
            21,
            r"unknown buffer 'D' \(buffers: A\)",
        ),
        (".buffer A f32 4", 9, r"buffer 'A' is declared twice"),
        (".buffer B f64 4", 11, r"unknown dtype 'f64'; buffers are f32, i8, i32"),
        (".buffer B f32 4x", 15, r"bad shape '4x'"),
        (".buffer B f32", 1, r"\.buffer takes NAME DTYPE SHAPE"),
        (".buffer 9B f32 4", 9, r"buffer name '9B' is not an identifier"),
    ],
)
def test_assembly_errors_point_at_the_column(line, col, match):
    text = f".buffer A f32 4x4\n# a comment\n  {line}  # trailing comment\n"
    with pytest.raises(SourceError, match=match) as info:
        assemble(text, "bad.s")
    err = info.value
    assert (err.span.file, err.span.line, err.span.col) == ("bad.s", 3, col + 2)
    assert str(err).startswith(f"bad.s:3:{col + 2}: error: ")
    assert err.exit_code == 2


def _words(*texts: str) -> bytearray:
    return bytearray(encode(assemble(".buffer A f32 4\n" + "\n".join(texts))))


def test_bad_binaries_name_the_word():
    good = _words("fence q=load", "halt")
    header = len(good) - 2 * WORD_BYTES
    unknown = bytearray(good)
    unknown[header + WORD_BYTES] = 0x77
    with pytest.raises(EncodingError, match=r"word 1: unknown opcode 0x77"):
        decode(bytes(unknown))
    reserved = bytearray(good)
    reserved[header + WORD_BYTES - 1] = 0x80
    with pytest.raises(EncodingError, match=r"word 0 \(fence\): reserved bits 26\.\.127 are not zero"):
        decode(bytes(reserved))
    bad_enum = bytearray(good)
    bad_enum[header + 3] = 0x03  # q = 3: no such queue
    with pytest.raises(EncodingError, match=r"word 0 \(fence\): q=3 is out of range 0\.\.2"):
        decode(bytes(bad_enum))
    with pytest.raises(
        EncodingError,
        match=r"truncated: the header promises 2 instructions, only 1 whole words and 8 bytes of word 1",
    ):
        decode(bytes(good[:-8]))
    with pytest.raises(EncodingError, match=r"4 bytes after the last word \(word 1\)"):
        decode(bytes(good) + b"\0" * 4)
    with pytest.raises(EncodingError, match=r"not a kcomp accelerator program"):
        decode(b"ELF\x7f" + bytes(good[4:]))
    with pytest.raises(EncodingError, match=r"truncated: 3 bytes, shorter than the 16-byte header"):
        decode(b"KAC")
    version = bytearray(good)
    struct.pack_into("<H", version, 4, 9)
    with pytest.raises(EncodingError, match=r"unsupported program version 9"):
        decode(bytes(version))
    with pytest.raises(EncodingError, match=r"truncated buffer table"):
        decode(bytes(good[:20]))
