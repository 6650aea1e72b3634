"""What a simulation reports (`SimResult`), and the ideal bound it is judged against.

Counters are in cycles unless named otherwise.  `utilization["matrix"]` is useful MAC cycles over total
cycles (an `m x k` by `k x dim` product is worth `m*k/dim` full cycles), so preloads, k < dim and idle
time all count against it; `busy` holds raw occupancy.  The per-instruction `Timeline` feeds
trace.py's Chrome trace and timeline plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Program

CLOCK_HZ = 1e9  # the nominal clock: simulated cycles become seconds at 1 GHz


def ideal_cycles(macs: int, compulsory_bytes: int, cfg: AccelConfig) -> int:
    """The bound no mapping beats: the larger of MACs / dim² (the matrix unit never idle) and the
    compulsory DRAM bytes / DMA bandwidth (each input read once, each output written once)."""
    return math.ceil(max(macs / cfg.dim**2, compulsory_bytes / cfg.dma_bytes_per_cycle))


@dataclass(slots=True)
class Timeline:
    """Per PC: `ready` (its turn in its queue came and its unit was free), `issue` (tokens and unit allowed it), `start`/`end`
    (its unit was busy: the DRAM channel for a DMA, the matrix or vector unit otherwise), `done` (retired:
    results visible, tokens signalled), `preload` (matrix unit: weight-preload cycles at the start)."""

    ready: list[int]
    issue: list[int]
    start: list[int]
    end: list[int]
    done: list[int]
    preload: list[int]

    @classmethod
    def empty(cls, n: int) -> Timeline:
        return cls(*([-1] * n for _ in range(6)))


@dataclass(slots=True)
class SimResult:
    cycles: int
    ideal_cycles: int
    instructions: int  # instructions run (halt included)
    counts: dict[str, int]  # per mnemonic
    macs: int
    busy: dict[str, int]  # matrix (preload + streaming + bank stalls), preload, vector, dma (the channel)
    utilization: dict[str, float]  # matrix (useful MACs), matrix_busy, vector, dma: each over `cycles`
    stalls: dict[str, int]
    dma_bytes: dict[str, int]  # load, store
    compulsory_bytes: int
    wall_s: float
    config: AccelConfig
    program: Program = field(repr=False)
    timeline: Timeline = field(repr=False)

    @property
    def instr_per_s(self) -> float:
        """Simulated instructions per second of wall time."""
        return self.instructions / self.wall_s if self.wall_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able summary (no timeline)."""
        return {
            "cycles": self.cycles,
            "ideal_cycles": self.ideal_cycles,
            "utilization": self.utilization,
            "busy": self.busy,
            "stalls": self.stalls,
            "dma_bytes": self.dma_bytes,
            "compulsory_bytes": self.compulsory_bytes,
            "macs": self.macs,
            "instructions": self.instructions,
            "counts": self.counts,
            "sim_seconds": round(self.wall_s, 4),
            "sim_instr_per_s": round(self.instr_per_s),
            "config": self.config.to_dict(),
        }

    def report(self) -> str:
        """A few lines for people: where the cycles went."""
        util = self.utilization
        stalls = ", ".join(f"{k} {v}" for k, v in sorted(self.stalls.items(), key=lambda kv: -kv[1]) if v)
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return "\n".join(
            [
                self.config.describe(),
                f"cycles {self.cycles}  ideal {self.ideal_cycles}  ({self.ideal_cycles / max(self.cycles, 1):.1%} of ideal)",
                f"matrix unit {util['matrix']:.1%} useful ({util['matrix_busy']:.1%} busy, "
                f"{self.busy['preload']} preload cycles)  vector {util['vector']:.1%}  DRAM channel {util['dma']:.1%}",
                f"DMA bytes: load {self.dma_bytes['load']}, store {self.dma_bytes['store']} "
                f"(compulsory {self.compulsory_bytes})",
                f"stalls: {stalls or 'none'}",
                f"instructions {self.instructions}: {counts}",
                f"simulated in {self.wall_s:.2f} s ({self.instr_per_s:,.0f} instructions/s)",
            ]
        )
