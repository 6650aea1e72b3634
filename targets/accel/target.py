"""The accelerator as a kcomp target: assembly text as its source, a program as its artifact.

    target = AccelTarget.from_spec("accel")            # or "accel:small", "accel:/path/config.toml"
    text = target.emit(nest, schedule)                 # canonical assembly, an ABI comment on top
    artifact = target.build(text)                      # assembled: Artifact(program, abi)
    target.run(artifact, args)                         # simulated; outputs written in place
    m = target.profile(artifact, args)                 # Measurement: simulated time at the nominal
                                                       # clock, counters: cycles, utilization, stalls...

`emit(nest)` without the schedule cannot see its `double_buffer` steps (the pass records nothing in
the nest): it double-buffers every tile that fits twice.  `compile(nest, schedule)` follows the
schedule, and `default_schedule(nest)` spells the rule-based mapping as schedule steps (the
pipeline's default scheduler is the CPU's, which leaves these loops untiled, and an untiled
contraction gets the same rule-based mapping).

Timing: simulated cycles at a nominal 1 GHz clock (`CLOCK_HZ`), so `time_s` is cycles / 1e9.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcomp.errors import UsageError
from kcomp.loops import LoopNest
from kcomp.schedule import Schedule
from kcomp.targets.accel.asm import assemble, format_program
from kcomp.targets.accel.backend import Abi, compile_nest
from kcomp.targets.accel.codegen import reserved_rows
from kcomp.targets.accel.config import AccelConfig
from kcomp.targets.accel.isa import Program
from kcomp.targets.accel.mapping import default_mapping, mapping_schedule, naive_mapping
from kcomp.targets.accel.result import SimResult
from kcomp.targets.accel.sim import NUMPY_DTYPES, simulate
from kcomp.targets.base import Arg, Measurement, Target

CLOCK_HZ = 1e9  # nominal: simulated cycles become seconds at 1 GHz
ABI_TAG = "# kcomp-abi: "
FAMILY = "accel"


@dataclass(frozen=True)
class Artifact:
    """An assembled program and which DRAM buffers the kernel's arguments bind (None: a hand-written
    program, bound in buffer order)."""

    program: Program
    abi: Abi | None = None


class AccelTarget(Target):
    """The simulated accelerator of configuration `cfg` (docs/accel-isa.md)."""

    def __init__(self, cfg: AccelConfig | None = None, spec: str = FAMILY):
        self.cfg = cfg or AccelConfig.load(None)
        self.name = spec
        self.vector_bits = 0  # NOTE: no CPU SIMD: the CPU default scheduler leaves the loops alone
        self.cores = 1
        self.last_result: SimResult | None = None

    @classmethod
    def from_spec(cls, spec: str) -> AccelTarget:
        """ "accel" (the default config), "accel:small" (a packaged config) or "accel:PATH.toml"."""
        _, _, variant = spec.partition(":")
        variant = variant.strip()
        return cls(AccelConfig.load(variant or None), f"{FAMILY}:{variant}" if variant else FAMILY)

    # -- compiling ------------------------------------------------------------------------------
    def compile(self, nest: LoopNest, schedule: Schedule | None = None) -> Artifact:
        """The program for a scheduled nest; `schedule` supplies its double_buffer steps."""
        program, abi = compile_nest(nest, self.cfg, schedule)
        return Artifact(program, abi)

    def emit(self, nest: LoopNest, schedule: Schedule | None = None) -> str:
        return emit_text(self.compile(nest, schedule))

    def build(self, source: str) -> Artifact:
        return Artifact(assemble(source, "<accel>"), _abi_of(source))

    def default_schedule(self, nest: LoopNest) -> Schedule:
        """The rule-based mapping of every contraction in the unscheduled `nest`, as schedule steps."""
        return mapping_schedule(nest, lambda g: default_mapping(g, self.cfg, reserved_rows(g, self.cfg)))

    def naive_schedule(self, nest: LoopNest) -> Schedule:
        """The baseline mapping: dim-sized tiles, no double buffering."""
        return mapping_schedule(nest, lambda g: naive_mapping(g, self.cfg))

    # -- running --------------------------------------------------------------------------------
    def simulate(self, artifact: Artifact, args: Sequence[Arg]) -> SimResult:
        """Run on the simulator; outputs written in place; the report."""
        dram, copies = _bind(artifact, args, self.cfg)
        result = simulate(artifact.program, dram, self.cfg)
        for name, out in copies.items():
            out[...] = dram[name].reshape(out.shape)
        self.last_result = result
        return result

    def run(self, artifact: Artifact, args: Sequence[Arg]) -> None:
        self.simulate(artifact, args)

    def profile(
        self, artifact: Artifact, args: Sequence[Arg], *, budget_s: float = 0.1, cutoff_s: float | None = None
    ) -> Measurement:
        """One simulation (cycles are deterministic): time at the nominal clock, and its counters."""
        r = self.simulate(artifact, args)
        return Measurement(r.cycles / CLOCK_HZ, counters(r))

    def describe(self) -> str:
        return f"{self.name} ({self.cfg.describe()}; nominal clock {CLOCK_HZ / 1e9:g} GHz)"


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
        dram[name] = np.full(cfg.dim, value, np.float32)
    return dram, copies
