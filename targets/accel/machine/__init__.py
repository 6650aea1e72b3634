"""kcomp's simulated accelerator: the machine, its ISA, assembler/disassembler and simulator.

A DIM x DIM weight-stationary matrix unit and a vector unit fed from a banked scratchpad and an
accumulator, DRAM reached by DMA over one channel, and three decoupled in-order instruction queues
(load, compute, store) ordered by counting-semaphore tokens.  docs/accel-isa.md is the reference:
configuration keys, every instruction and its encoding, the timing model, errors.

Public API (what a backend, the CLI and the benchmarks use):

    cfg = AccelConfig.load(path | None)      # TOML file; None = default.toml; "small" = a packaged config
    cfg.dim, cfg.sp_rows, cfg.acc_rows, cfg.bank_rows, cfg.dtype, cfg.acc_dtype, ...

    ins = make("mma", acc=0, a=0, b=1024, m=16, k=16, mode="accumulate", wait=0, signal=(1,))
    ins.op, ins.args, ins.wait, ins.signal, ins.operand("m"), ins.queue()
    OPS["mma"]                               # the table entry: fields, opcode, queue, unit, semantics, cost
    program = Program(buffers=(Buffer("A", "f32", (64, 64)), ...), instrs=(ins, ...))

    program = assemble(text, file="x.s")     # SourceError at file:line:col
    text = format_program(program)           # canonical text
    data = encode(program)                   # the binary file (bytes)
    program = decode(data)                   # EncodingError naming the word
    text = disassemble(data)                 # == format_program(decode(data))

    result = simulate(program, {"A": a, "B": b, "C": c}, cfg)   # outputs written into the arrays in place
    result.cycles, result.ideal_cycles, result.utilization, result.stalls, result.dma_bytes,
    result.counts, result.instr_per_s, result.to_dict(), result.report()
    ideal_cycles(macs, compulsory_bytes, cfg)
    write_trace(result, "t.json")            # Chrome / Perfetto trace, one track per unit and queue
    plot(result, "t.png")                    # timeline picture (matplotlib)

Errors are KcompErrors with exit code 2: `UsageError` (bad config file, DRAM arrays that do not match
the program), `SourceError` (bad assembly), `EncodingError` (bad operands or bytes), `SimError` (a
program the machine cannot run: out of range, outside a buffer, a race between queues, a deadlock).
"""

from __future__ import annotations

from kcomp.targets.accel.machine.asm import (
    assemble,
    decode,
    disassemble,
    encode,
    format_instr,
    format_program,
)
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.errors import EncodingError, SimError
from kcomp.targets.accel.machine.isa import (
    NUM_TOKENS,
    OPS,
    Buffer,
    Field,
    Instr,
    OpSpec,
    Program,
    Queue,
    Unit,
    make,
)
from kcomp.targets.accel.machine.result import SimResult, ideal_cycles
from kcomp.targets.accel.machine.sim import simulate
from kcomp.targets.accel.machine.trace import plot, write_trace

__all__ = [
    "NUM_TOKENS",
    "OPS",
    "AccelConfig",
    "Buffer",
    "EncodingError",
    "Field",
    "Instr",
    "OpSpec",
    "Program",
    "Queue",
    "SimError",
    "SimResult",
    "Unit",
    "assemble",
    "decode",
    "disassemble",
    "encode",
    "format_instr",
    "format_program",
    "ideal_cycles",
    "make",
    "plot",
    "simulate",
    "write_trace",
]
