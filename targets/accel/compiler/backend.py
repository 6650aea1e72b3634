"""The accelerator backend: a scheduled loop nest -> an accelerator `Program`.

    program = compile_nest(nest, cfg, schedule)

1. `match` recognizes the kernel's contraction groups (init, C += A * B, epilogue) by meaning, and
   the statements the vector unit runs alone (maps, broadcasts, reductions: vector_match.py);
2. each group's mapping is read from the nest (tile sizes, tile order) and the schedule
   (`double_buffer`), or chosen by `default_mapping` when its loops are not tiled, and checked
   against the scratchpad and accumulator (`check_fits`);
3. `codegen.emit_section` writes each group's instructions, `vector_codegen.emit_vector_section`
   each vector statement's; sections run one after another, the
   next one's first DMA waiting for the previous one's last store.

DRAM buffers, in this order (the ABI `AccelTarget.run` binds): the kernel's inputs and outputs as
declared, its temporaries (allocated by `run`), then one buffer per scalar parameter holding `dim`
copies of its value (so the vector unit reads it as a row).
"""

from __future__ import annotations

from collections.abc import Mapping as Map
from dataclasses import dataclass, replace
from typing import Any

from kcomp.dtypes import DType
from kcomp.errors import ScheduleError, Unsupported
from kcomp.loops import LoopNest
from kcomp.schedule import Schedule
from kcomp.targets.accel.compiler.codegen import check_counts, emit_section, reserved_rows
from kcomp.targets.accel.compiler.mapping import (
    Mapping,
    check_fits,
    deepen,
    default_mapping,
    doubled_operands,
    fit_buffers,
    held_operand,
    hold_weights,
    mapping_of,
)
from kcomp.targets.accel.compiler.match import DTYPES, Contraction, Kernel, dtype_problem, match
from kcomp.targets.accel.compiler.vector_codegen import emit_vector_section, fit, vector_work
from kcomp.targets.accel.compiler.vector_fuse import RowGroup, emit_group, fuse
from kcomp.targets.accel.compiler.vector_match import VectorStmt
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Buffer, Instr, Program, make


@dataclass(frozen=True)
class Abi:
    """Which DRAM buffers are the kernel's arguments (in ABI order), temporaries and parameters."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    temps: tuple[str, ...]
    params: tuple[str, ...]


def choose_mapping(
    g: Contraction, cfg: AccelConfig, schedule: Schedule | None, constants: Map[str, Any] | None = None
) -> Mapping:
    """The group's mapping: the nest's tiles (double buffering as the schedule says; without a
    schedule, wherever it fits), or the default when its loops are not tiled."""
    reserved = reserved_rows(g, cfg)
    doubled = doubled_operands(g, schedule)
    m = mapping_of(g, doubled)
    if m is None:
        return default_mapping(g, cfg, reserved, constants)
    if m.th > 1 and held_operand(g, constants):  # NOTE: zero tiles are skipped row range by row range
        m = replace(m, th=1)
    if doubled is None:
        m = fit_buffers(g, m, cfg, reserved)
    m = hold_weights(g, deepen(g, m, cfg, reserved, constants), cfg, reserved, constants)
    check_fits(g, m, cfg, reserved)
    check_counts(g, m)
    return m


def compile_nest(nest: LoopNest, cfg: AccelConfig, schedule: Schedule | None = None) -> tuple[Program, Abi]:
    """The program for `nest` and its ABI; ScheduleError when the kernel or its mapping cannot be run."""
    kernel = match(nest, cfg)
    chosen = {id(g): choose_mapping(g, cfg, schedule, nest.constants) for g in kernel.groups}
    buffers, abi = _buffers(nest, kernel, cfg)
    ids = {b.name: n for n, b in enumerate(buffers)}
    instrs: list[Instr] = []
    sections = fuse(list(kernel.sections), set(nest.outputs), cfg)
    last = len(sections) - 1
    for n, section in enumerate(sections):
        order = {"after_section": n > 0, "before_section": n < last}
        if isinstance(section, RowGroup):
            instrs += emit_group(section, cfg, ids, **order)
            continue
        if isinstance(section, VectorStmt):
            instrs += emit_vector_section(section, cfg, ids, **order)
            continue
        _check_dtypes(section, cfg)
        instrs += emit_section(section, chosen[id(section)], cfg, ids, constants=nest.constants, **order)
    instrs.append(make("halt"))
    return Program(buffers, tuple(instrs)), abi


def check_vector_sections(nest: LoopNest, cfg: AccelConfig) -> None:
    """Unsupported when a statement for the vector unit alone cannot run on configuration `cfg`."""
    for section in match(nest, cfg).sections:
        if isinstance(section, VectorStmt):
            fit(section, cfg)


def vector_bound(nest: LoopNest, cfg: AccelConfig) -> int:
    """The vector unit's least cycles for the kernel's vector statements (vector_codegen.vector_work)."""
    return sum(vector_work(s, cfg) for s in match(nest, cfg).sections if isinstance(s, VectorStmt))


def mappings(
    nest: LoopNest, cfg: AccelConfig, schedule: Schedule | None = None
) -> list[tuple[Contraction, Mapping]]:
    """Each group with the mapping `compile_nest` uses (for reports)."""
    return [(g, choose_mapping(g, cfg, schedule, nest.constants)) for g in match(nest, cfg).groups]


def _buffers(nest: LoopNest, kernel: Kernel, cfg: AccelConfig) -> tuple[tuple[Buffer, ...], Abi]:
    tensors = (*nest.inputs, *nest.outputs, *kernel.temps)
    out = []
    for t in tensors:
        if t.dtype not in DTYPES:
            raise Unsupported(
                f"the accelerator backend cannot map tensor {t.name}: {t.dtype.value}; DRAM buffers hold"
                f" {', '.join(DTYPES.values())}"
            )
        out.append(Buffer(t.name, DTYPES[t.dtype], tuple(t.shape) or (1,)))
    names = {t.name for t in tensors}
    for p in nest.params:
        if p.name in names:
            raise ScheduleError(f"parameter {p.name} has the name of a tensor")
        out.append(Buffer(p.name, "i32" if p.dtype is DType.I32 else "f32", (cfg.dim,)))  # NOTE: a row of it
    abi = Abi(
        tuple(t.name for t in nest.inputs),
        tuple(t.name for t in nest.outputs),
        tuple(t.name for t in kernel.temps),
        tuple(p.name for p in nest.params),
    )
    return tuple(out), abi


def _check_dtypes(g: Contraction, cfg: AccelConfig) -> None:
    problem = dtype_problem(g, cfg)
    if problem:
        raise Unsupported(problem)
    if cfg.acc_dtype != "f32" and any(op.op == "exp" for op in g.epilogue):
        raise Unsupported(
            f"the accelerator backend cannot map {g.text}'s epilogue: exp needs f32 accumulators"
        )
