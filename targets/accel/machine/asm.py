"""Assembler, disassembler and the binary program file, all driven by isa.py's table.

    program = line*                      one statement per line; `#` starts a comment
    line    = ".buffer" NAME DTYPE SHAPE  declare a DRAM buffer (before its first use): `.buffer A f32 64x32`
            | MNEMONIC (NAME "=" VALUE)*  every operand of the instruction, in any order
    VALUE   = integer (decimal or 0x hex) | enum name | buffer name | float (f32 operands; 0x.. = raw bits)
            | "t"N ("," "t"N)*            for the wait= and signal= token lists

`format_program` writes the canonical text (buffers first, operands in table order, wait/signal last),
so `format_program(decode(encode(assemble(text))))` re-assembles to the same bytes.  Assembly errors are
`SourceError`s at `file:line:col`; bad bytes are `EncodingError`s naming the word.

Binary file (little-endian): a 16-byte header `b"KACC"`, u16 version, u16 buffer count, u32 instruction
count, u32 buffer-table bytes; the buffer table (per buffer: u8 dtype code, u8 rank, u16 name length,
u32 per dimension, the name in ASCII; zero-padded to a multiple of 16 bytes); then one 16-byte word per
instruction (isa.py's layout).
"""

from __future__ import annotations

import re
import struct

import numpy as np

from kcomp.errors import SourceError, Span
from kcomp.targets.accel.machine.errors import EncodingError
from kcomp.targets.accel.machine.isa import (
    NUM_TOKENS,
    OPS,
    WORD_BYTES,
    Buffer,
    Field,
    Instr,
    Program,
    decode_word,
    encode_word,
    field_raw,
    field_value,
)

MAGIC = b"KACC"
VERSION = 1
HEADER = struct.Struct("<4sHHII")
DTYPE_CODES = ("f32", "i8", "i32")
_TOKEN = re.compile(r"\S+")
_INT = re.compile(r"(0x[0-9a-fA-F]+|[0-9]+)\Z")
_SHAPE = re.compile(r"[0-9]+(x[0-9]+)*\Z")


# -- text -> Program ----------------------------------------------------------------------------
def assemble(text: str, file: str = "<asm>") -> Program:
    """The program written in `text`; SourceError at the first bad statement."""
    buffers: list[Buffer] = []
    instrs: list[Instr] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0]
        words = [(m.group(), m.start() + 1) for m in _TOKEN.finditer(line)]
        if not words:
            continue

        def fail(
            message: str, col: int, length: int = 1, *, _n: int = number, _t: str = raw_line
        ) -> SourceError:
            return SourceError(message, Span(file, _n, col, _t.rstrip(), length))

        head, col = words[0]
        if head == ".buffer":
            buffers.append(_buffer(words, buffers, fail))
        elif head in OPS:
            instrs.append(_instruction(head, words[1:], buffers, fail, words[-1][1] + len(words[-1][0])))
        else:
            raise fail(f"unknown mnemonic {head!r}; known: .buffer, {', '.join(OPS)}", col, len(head))
    try:
        return Program(tuple(buffers), tuple(instrs))
    except EncodingError as e:
        raise SourceError(str(e), Span(file, 1, 1)) from None


def _buffer(words: list[tuple[str, int]], buffers: list[Buffer], fail) -> Buffer:  # type: ignore[no-untyped-def]
    if len(words) != 4:
        raise fail(
            ".buffer takes NAME DTYPE SHAPE, e.g. `.buffer A f32 64x32`", words[0][1], len(words[0][0])
        )
    (name, ncol), (dtype, dcol), (shape, scol) = words[1:]
    if any(b.name == name for b in buffers):
        raise fail(f"buffer {name!r} is declared twice", ncol, len(name))
    if dtype not in DTYPE_CODES:
        raise fail(f"unknown dtype {dtype!r}; buffers are {', '.join(DTYPE_CODES)}", dcol, len(dtype))
    if not _SHAPE.match(shape):
        raise fail(f"bad shape {shape!r}; write the dimensions joined by x, e.g. 64x32", scol, len(shape))
    try:
        return Buffer(name, dtype, tuple(int(d) for d in shape.split("x")))
    except EncodingError as e:
        raise fail(str(e), ncol, len(name)) from None


def _instruction(op: str, words: list[tuple[str, int]], buffers: list[Buffer], fail, end: int) -> Instr:  # type: ignore[no-untyped-def]
    spec = OPS[op]
    fields = {f.name: f for f in spec.fields}
    raw: dict[str, int] = {}
    toks: dict[str, tuple[int, ...]] = {}
    for word, col in words:
        name, eq, value = word.partition("=")
        if not eq or not name or not value:
            raise fail(f"expected NAME=VALUE, got {word!r}", col, len(word))
        vcol = col + len(name) + 1
        if name in raw or name in toks:
            raise fail(f"operand {name!r} given twice", col, len(name))
        if name in ("wait", "signal"):
            toks[name] = _tokens(value, vcol, fail)
        elif name in fields:
            raw[name] = _value(op, fields[name], value, buffers, vcol, fail)
        else:
            takes = ", ".join([*fields, "wait", "signal"])
            raise fail(f"{op} has no operand {name!r}; it takes {takes}", col, len(name))
    missing = [n for n in fields if n not in raw]
    if missing:
        raise fail(f"{op}: missing operand {missing[0]!r} (operands: {', '.join(fields)})", end)
    return Instr(op, tuple(raw[n] for n in fields), toks.get("wait", ()), toks.get("signal", ()))


def _value(op: str, f: Field, text: str, buffers: list[Buffer], col: int, fail) -> int:  # type: ignore[no-untyped-def]
    value: int | float | str = text
    if f.kind == "buf":
        ids = [i for i, b in enumerate(buffers) if b.name == text]
        if not ids:
            known = ", ".join(b.name for b in buffers) or "none declared"
            raise fail(
                f"unknown buffer {text!r} (buffers: {known}); declare it with .buffer first", col, len(text)
            )
        value = ids[0]
    elif f.kind == "f32" and text.lower().startswith("0x"):
        value = _int(text, col, fail)
        if value >= 1 << 32:
            raise fail(f"{f.name}={text} has more than 32 bits", col, len(text))
        return value
    elif f.kind == "f32":
        try:
            value = float(text)
        except ValueError:
            raise fail(f"{f.name} must be a number, got {text!r}", col, len(text)) from None
    elif f.kind == "uint":
        value = _int(text, col, fail)
    elif f.kind == "i32":
        value = -_int(text[1:], col, fail) if text.startswith("-") else _int(text, col, fail)
    try:
        return field_raw(op, f, value)
    except EncodingError as e:
        raise fail(str(e), col, len(text)) from None


def _int(text: str, col: int, fail) -> int:  # type: ignore[no-untyped-def]
    if not _INT.match(text):
        raise fail(f"expected an integer, got {text!r}", col, len(text))
    return int(text, 16) if text.startswith("0x") else int(text)


def _tokens(text: str, col: int, fail) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    out: list[int] = []
    for part in text.split(","):
        number = part[1:]
        if not (part.startswith("t") and number.isdigit() and int(number) < NUM_TOKENS):
            raise fail(
                f"bad token {part!r}: tokens are t0..t{NUM_TOKENS - 1}, joined by commas", col, len(text)
            )
        out.append(int(number))
    return tuple(sorted(set(out)))


# -- Program -> text ----------------------------------------------------------------------------
def format_instr(ins: Instr, buffers: tuple[Buffer, ...] = ()) -> str:
    """The canonical text of one instruction (buffer names from `buffers` when given)."""
    parts = [ins.op]
    for f, raw in zip(OPS[ins.op].fields, ins.args, strict=True):
        parts.append(f"{f.name}={_format_value(f, raw, buffers)}")
    if ins.wait:
        parts.append("wait=" + ",".join(f"t{t}" for t in ins.wait))
    if ins.signal:
        parts.append("signal=" + ",".join(f"t{t}" for t in ins.signal))
    return " ".join(parts)


def _format_value(f: Field, raw: int, buffers: tuple[Buffer, ...]) -> str:
    if f.kind == "buf":
        return buffers[raw].name if raw < len(buffers) else str(raw)
    if f.kind == "f32":
        text = str(np.float32(field_value(f, raw)))  # numpy prints the shortest text that reads back
        return text if field_raw("", f, float(text)) == raw else f"0x{raw:08x}"  # NaN payloads: raw bits
    return str(field_value(f, raw))


def format_program(program: Program) -> str:
    """The canonical text of `program` (what `disassemble` returns)."""
    lines = [f".buffer {b.name} {b.dtype} {'x'.join(map(str, b.shape))}" for b in program.buffers]
    lines += [format_instr(ins, program.buffers) for ins in program.instrs]
    return "\n".join(lines) + "\n"


# -- Program <-> bytes --------------------------------------------------------------------------
def encode(program: Program) -> bytes:
    """The binary file of `program`."""
    table = bytearray()
    for b in program.buffers:
        name = b.name.encode("ascii")
        table += struct.pack(
            f"<BBH{len(b.shape)}I", DTYPE_CODES.index(b.dtype), len(b.shape), len(name), *b.shape
        )
        table += name
    table += bytes(-len(table) % WORD_BYTES)
    head = HEADER.pack(MAGIC, VERSION, len(program.buffers), len(program.instrs), len(table))
    words = b"".join(encode_word(ins).to_bytes(WORD_BYTES, "little") for ins in program.instrs)
    return head + bytes(table) + words


def decode(data: bytes) -> Program:
    """The program in a binary file; EncodingError for a bad header, buffer table or word."""
    if len(data) < HEADER.size:
        raise EncodingError(f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, nbuf, ninstr, table_bytes = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EncodingError(f"not a kcomp accelerator program: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise EncodingError(f"unsupported program version {version} (this kcomp reads version {VERSION})")
    buffers = _decode_table(data[HEADER.size : HEADER.size + table_bytes], nbuf, table_bytes)
    body = data[HEADER.size + table_bytes :]
    whole, extra = divmod(len(body), WORD_BYTES)
    if whole < ninstr:
        got = f"only {whole} whole words" + (f" and {extra} bytes of word {whole}" if extra else "")
        raise EncodingError(f"truncated: the header promises {ninstr} instructions, {got} follow")
    if len(body) > ninstr * WORD_BYTES:
        raise EncodingError(
            f"{len(body) - ninstr * WORD_BYTES} bytes after the last word (word {ninstr - 1})"
        )
    instrs = tuple(
        decode_word(int.from_bytes(body[i * WORD_BYTES : (i + 1) * WORD_BYTES], "little"), i)
        for i in range(ninstr)
    )
    return Program(buffers, instrs)


def _decode_table(table: bytes, count: int, size: int) -> tuple[Buffer, ...]:
    if len(table) < size or size % WORD_BYTES:
        raise EncodingError(f"truncated buffer table: {len(table)} of {size} bytes")
    buffers, pos = [], 0
    try:
        for i in range(count):
            code, rank, length = struct.unpack_from("<BBH", table, pos)
            shape = struct.unpack_from(f"<{rank}I", table, pos + 4)
            pos += 4 + 4 * rank
            name = table[pos : pos + length].decode("ascii")
            pos += length
            if code >= len(DTYPE_CODES) or len(name) != length:
                raise EncodingError(f"buffer table entry {i}: bad dtype code {code} or truncated name")
            buffers.append(Buffer(name, DTYPE_CODES[code], tuple(shape)))
    except (struct.error, UnicodeDecodeError) as e:
        raise EncodingError(f"bad buffer table: {e}") from None
    except EncodingError as e:
        raise EncodingError(f"bad buffer table: {e}") from None
    if any(table[pos:]):
        raise EncodingError("bad buffer table: padding bytes are not zero")
    return tuple(buffers)


def disassemble(data: bytes) -> str:
    """The canonical text of a binary program."""
    return format_program(decode(data))
