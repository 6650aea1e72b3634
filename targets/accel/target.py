"""The accelerator as a kcomp target: assembly text as its source, a program as its artifact.

    target = get_target("accel")                       # or "accel:small", "accel:/path/config.toml"
    schedule = target.default_schedule(program, naive) # the rule-based mapping, as schedule steps
    text = target.emit(nest, schedule)                 # canonical assembly, an ABI comment on top
    artifact = target.build(text)                      # assembled: Artifact(program, abi)
    result = target.run(artifact, args)                # simulated (a SimResult); outputs written in place
    m = target.profile(artifact, args)                 # Measurement: simulated time at the nominal
                                                       # clock, counters: cycles, utilization, stalls...

The schedule says what the nest cannot show: which operands are double-buffered (`double_buffer`).
Loops left untiled get the rule-based mapping.  Everything goes through kcomp's one pipeline, so
`kcomp sim`, `kcomp run --target accel` and every tuning trial compile a schedule the same way.

Timing: simulated cycles at a nominal 1 GHz clock (`CLOCK_HZ`), so `time_s` is cycles / 1e9.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kcomp.dtypes import DType
from kcomp.errors import UsageError
from kcomp.loops import LoopNest
from kcomp.program import Program
from kcomp.schedule import NONE, DoubleBuffer, Reorder, Schedule, Split, Tile
from kcomp.search.cost_model import Estimate
from kcomp.targets.accel.compiler.backend import Abi, check_vector_sections, compile_nest, mappings
from kcomp.targets.accel.compiler.codegen import reserved_rows
from kcomp.targets.accel.compiler.mapping import (
    default_mapping,
    describe_mapping,
    estimate,
    mapping_schedule,
    naive_mapping,
)
from kcomp.targets.accel.compiler.match import match
from kcomp.targets.accel.compiler.tuning import AccelRules
from kcomp.targets.accel.machine.asm import assemble, encode, format_program
from kcomp.targets.accel.machine.config import PACKAGED, AccelConfig
from kcomp.targets.accel.machine.isa import Program as MachineProgram
from kcomp.targets.accel.machine.result import CLOCK_HZ, SimResult
from kcomp.targets.accel.machine.sim import NUMPY_DTYPES, simulate
from kcomp.targets.base import Arg, Capabilities, Measurement, Target

if TYPE_CHECKING:
    from kcomp.pipeline import Built

ABI_TAG = "# kcomp-abi: "
FAMILY = "accel"


@dataclass(frozen=True)
class Artifact:
    """An assembled program and which DRAM buffers the kernel's arguments bind (None: a hand-written
    program, bound in buffer order)."""

    program: MachineProgram
    abi: Abi | None = None


class AccelTarget(Target):
    """The simulated accelerator of configuration `cfg` (docs/accel-isa.md)."""

    family = FAMILY
    capabilities = Capabilities(
        dtypes=frozenset({DType.F32, DType.I8, DType.I32}),
        steps=frozenset({Split, Tile, Reorder, DoubleBuffer}),
        source="asm",
        suffix=".s",
        simulated=True,
        sparse="tiles",
    )
    default_label = "default (accelerator mapping rules)"
    naive_label = "none (naive mapping: dim-sized tiles, one buffer each)"

    def __init__(self, cfg: AccelConfig | None = None, spec: str = FAMILY):
        self.cfg = cfg or AccelConfig.load(None)
        self.name = spec
        self.vector_bits = 0  # NOTE: no CPU SIMD
        self.cores = 1

    @classmethod
    def from_spec(cls, spec: str) -> AccelTarget:
        """ "accel" (the default config), "accel:small" (a packaged config) or "accel:PATH.toml"."""
        _, _, variant = spec.partition(":")
        variant = variant.strip()
        if variant.lower() in PACKAGED:
            variant = variant.lower()
        return cls(AccelConfig.load(variant or None), f"{FAMILY}:{variant}" if variant else FAMILY)

    # -- scheduling -----------------------------------------------------------------------------
    def default_schedule(self, program: Program, nest: LoopNest, fuse: bool = True) -> Schedule:
        """The rule-based mapping of every contraction in the unscheduled `nest`, as schedule steps;
        Unsupported first when a vector section cannot run on this configuration."""
        check_vector_sections(nest, self.cfg)
        return mapping_schedule(
            nest, lambda g: default_mapping(g, self.cfg, reserved_rows(g, self.cfg), nest.constants), self.cfg
        )

    def naive_schedule(self, nest: LoopNest) -> Schedule:
        """The baseline mapping: dim-sized tiles, no double buffering."""
        return mapping_schedule(nest, lambda g: naive_mapping(g, self.cfg), self.cfg)

    # -- code -----------------------------------------------------------------------------------
    def compile(self, nest: LoopNest, schedule: Schedule = NONE) -> Artifact:
        """The program for a scheduled nest; `schedule` supplies its double_buffer steps."""
        program, abi = compile_nest(nest, self.cfg, schedule)
        return Artifact(program, abi)

    def emit(self, nest: LoopNest, schedule: Schedule = NONE) -> str:
        return emit_text(self.compile(nest, schedule))

    def build(self, source: str) -> Artifact:
        return Artifact(assemble(source, "<accel>"), _abi_of(source))

    def artifacts(self, built: Built, out: Path) -> list[Path]:
        """The assembly text and its binary encoding (`kcomp asm` / `kcomp disasm` read them)."""
        name = built.program.name
        files = [out / f"{name}.s", out / f"{name}.bin"]
        files[0].write_text(built.source)
        files[1].write_bytes(encode(built.artifact.program))
        return files

    # -- running --------------------------------------------------------------------------------
    def run(self, artifact: Artifact, args: Sequence[Arg]) -> SimResult:
        """Simulate; outputs written in place; the simulator's report (cycles, units, stalls)."""
        dram, copies = _bind(artifact, args, self.cfg)
        result = simulate(artifact.program, dram, self.cfg)
        for name, out in copies.items():
            out[...] = dram[name].reshape(out.shape)
        return result

    def profile(
        self, artifact: Artifact, args: Sequence[Arg], *, budget_s: float = 0.1, cutoff_s: float | None = None
    ) -> Measurement:
        """One simulation (cycles are deterministic): time at the nominal clock, and its counters."""
        r = self.run(artifact, args)
        return Measurement(r.cycles / CLOCK_HZ, counters(r))

    # -- search ---------------------------------------------------------------------------------
    def search_rules(self) -> AccelRules:
        return AccelRules(self.cfg)

    def estimate(self, nest: LoopNest, schedule: Schedule = NONE) -> Estimate:
        """Each contraction group's mapping (the schedule says which operands are double-buffered;
        the nest cannot) by the backend's cycle estimate at the nominal clock; `compute` is the
        matrix unit's share, `dram` what it waits for."""
        out = Estimate()
        for g, m in mappings(nest, self.cfg, schedule):
            macs = (
                math.prod(a.extent for a in (*g.batch, *g.slices))
                * g.extent("i")
                * g.extent("j")
                * g.extent("k")
            )
            out.compute += macs / self.cfg.dim**2 / CLOCK_HZ
            out.time += estimate(g, m, self.cfg) / CLOCK_HZ
            out.flops += 2 * macs
        out.dram = max(0.0, out.time - out.compute)
        out.vector = 1.0
        return out

    # -- reports --------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.name} ({self.cfg.describe()}; nominal clock {CLOCK_HZ / 1e9:g} GHz)"

    def notes(self, naive: LoopNest, nest: LoopNest, schedule: Schedule) -> tuple[str, ...]:
        """One line per contraction group: its statement (as the unscheduled nest prints it), tiles,
        tile order and double buffering, as the backend maps them."""
        groups = zip(mappings(nest, self.cfg, schedule), match(naive, self.cfg).groups, strict=True)
        return tuple(describe_mapping(g, m, plain.text) for (g, m), plain in groups)


def counters(r: SimResult) -> dict[str, Any]:
    """What `profile` reports: cycles, the ideal bound, utilization, stalls, DMA bytes."""
    return {
        "cycles": r.cycles,
        "ideal_cycles": r.ideal_cycles,
        "utilization": r.utilization["matrix"],
        "utilization_by_unit": dict(r.utilization),
        "stalls": dict(r.stalls),
        "dma_bytes": r.dma_bytes["load"] + r.dma_bytes["store"],
        "dma_bytes_by_direction": dict(r.dma_bytes),
        "instructions": r.instructions,
        "sim_seconds": r.wall_s,
    }


def emit_text(artifact: Artifact) -> str:
    """Canonical assembly with the ABI as a comment line on top (assemblers skip it)."""
    text = format_program(artifact.program)
    if artifact.abi is None:
        return text
    abi = artifact.abi
    header = {"inputs": abi.inputs, "outputs": abi.outputs, "temps": abi.temps, "params": abi.params}
    return ABI_TAG + json.dumps(header, separators=(",", ":")) + "\n" + text


def _abi_of(source: str) -> Abi | None:
    first = source.split("\n", 1)[0]
    if not first.startswith(ABI_TAG):
        return None
    try:
        data = json.loads(first[len(ABI_TAG) :])
        return Abi(*(tuple(map(str, data[k])) for k in ("inputs", "outputs", "temps", "params")))
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"malformed ABI line {first!r}") from None


def _bind(artifact: Artifact, args: Sequence[Arg], cfg: AccelConfig) -> tuple[dict[str, np.ndarray], dict]:
    """DRAM arrays by buffer name from the arguments in ABI order; `copies`: outputs that are not
    C-contiguous, simulated in a copy and written back."""
    program, abi = artifact.program, artifact.abi
    buffers = {b.name: b for b in program.buffers}
    if abi is None:
        names = [b.name for b in program.buffers]
        abi = Abi(tuple(names[: len(args)]), (), (), ())
    want = len(abi.inputs) + len(abi.outputs) + len(abi.params)
    if len(args) != want:
        raise UsageError(f"the program takes {want} arguments, got {len(args)}")
    dram: dict[str, np.ndarray] = {}
    copies: dict[str, np.ndarray] = {}
    tensors = abi.inputs + abi.outputs
    for n, name in enumerate(tensors):
        value, buf = args[n], buffers[name]
        dtype = NUMPY_DTYPES[buf.dtype]
        if not isinstance(value, np.ndarray) or value.size != math.prod(buf.shape):
            raise UsageError(f"argument {name} must be an array of shape {buf.shape}")
        if value.dtype == dtype and value.flags.c_contiguous:
            dram[name] = value.reshape(buf.shape)
        elif name in abi.outputs:
            dram[name] = np.ascontiguousarray(value, dtype=dtype).reshape(buf.shape)
            copies[name] = value
        else:
            dram[name] = np.ascontiguousarray(value, dtype=dtype).reshape(buf.shape)
    for name in abi.temps:
        buf = buffers[name]
        dram[name] = np.zeros(buf.shape, NUMPY_DTYPES[buf.dtype])
    for name, value in zip(abi.params, args[len(tensors) :], strict=True):
        dram[name] = np.full(cfg.dim, value, NUMPY_DTYPES[buffers[name].dtype])
    return dram, copies
