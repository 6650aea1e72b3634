"""Race detection between the decoupled queues.

Only tokens order the load, compute and store queues, so a program that forgets one lets, say, an mma
read scratchpad rows a DMA is still writing.  The simulator processes instructions in issue order, so
when it reaches an access it knows every earlier-issued access that is still in flight; an overlap in
rows with one from another queue is a race (`Race`), reported instead of silently computing with
whichever data the processing order gave.  Accesses of one queue never race: the queue is in order
and the compute queue interlocks its matrix and vector units.

In flight means: a DMA owns its destination rows from issue to retirement and its source rows from
issue to the end of its transfer; an mma reads A while streaming and B while preloading, and owns
its accumulator rows until it retires; a vector op reads until its last row and owns what it writes
until it retires.  Each record is (first row, rows, busy-until cycle, pc); records whose cycle has
passed are dropped from the front of their deque (each deque is filled in nearly increasing order).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Footprint

Record = tuple[int, int, int, int]  # first row, rows, busy until (exclusive), pc
_IDLE: Record = (0, 0, 0, -1)


@dataclass(frozen=True, slots=True)
class Race:
    """`pc` touched `memory` rows first..first+rows-1 at `cycle` while `other_pc` still `other_does` them
    ("reads" or "writes") until cycle `until`."""

    memory: str
    first: int
    rows: int
    cycle: int
    other_pc: int
    other_does: str
    until: int


def _busy(records: deque[Record], first: int, rows: int, t: int) -> Record | None:
    """The first record still busy after cycle t that overlaps rows first..first+rows-1."""
    while records and records[0][2] <= t:
        records.popleft()
    for rec in records:
        if rec[2] > t and rec[0] < first + rows and first < rec[0] + rec[1]:
            return rec
    return None


class Races:
    """The in-flight accesses of one run."""

    def __init__(self, cfg: AccelConfig):
        self.bank_rows = cfg.bank_rows
        self.sp_writes: list[deque[Record]] = [deque() for _ in range(cfg.banks)]  # DMA loads, per bank
        # NOTE: the matrix and vector units are serial, so only their last scratchpad reads can be in flight
        self.mma_a = self.mma_b = self.vec_sp = _IDLE
        self.acc_load: deque[Record] = deque()  # dma.load.acc writes
        self.acc_compute_writes: deque[Record] = deque()
        self.acc_vector_reads: deque[Record] = deque()
        self.acc_store: deque[Record] = deque()  # dma.store reads

    def _sp_written(self, first: int, rows: int, t: int) -> Record | None:
        low, high = first // self.bank_rows, (first + rows - 1) // self.bank_rows
        if low == high:  # the common case, kept cheap: it runs for every mma
            writes = self.sp_writes[low]
            return _busy(writes, first, rows, t) if writes else None
        for bank in range(low, high + 1):
            if self.sp_writes[bank]:
                hit = _busy(self.sp_writes[bank], first, rows, t)
                if hit:
                    return hit
        return None

    def mma(
        self, pc: int, a: int, m: int, b: int, k: int, preload: int, acc: int, t: int, end: int, done: int
    ) -> Race | None:
        hit = self._sp_written(a, m, t)
        if hit:
            return Race("scratchpad", a, m, t, hit[3], "writes", hit[2])
        if preload:
            hit = self._sp_written(b, k, t)
            if hit:
                return Race("scratchpad", b, k, t, hit[3], "writes", hit[2])
            self.mma_b = (b, k, t + preload, pc)
        for records, does in ((self.acc_load, "writes"), (self.acc_store, "reads")):
            if records:
                hit = _busy(records, acc, m, t)
                if hit:
                    return Race("accumulator", acc, m, t, hit[3], does, hit[2])
        self.mma_a = (a, m, end, pc)
        writes = self.acc_compute_writes
        writes.append((acc, m, done, pc))
        if writes[0][2] <= t:
            writes.popleft()  # NOTE: keeps the deque short between the DMAs that prune it
        return None

    def vector(self, pc: int, foot: Footprint, t: int, end: int, done: int) -> Race | None:
        for first, rows in foot.sp_read:
            hit = self._sp_written(first, rows, t)
            if hit:
                return Race("scratchpad", first, rows, t, hit[3], "writes", hit[2])
            self.vec_sp = (first, rows, end, pc)
        for first, rows in foot.acc_read:
            hit = _busy(self.acc_load, first, rows, t)
            if hit:
                return Race("accumulator", first, rows, t, hit[3], "writes", hit[2])
            self.acc_vector_reads.append((first, rows, end, pc))
        for first, rows in foot.acc_write:
            for records, does in ((self.acc_load, "writes"), (self.acc_store, "reads")):
                hit = _busy(records, first, rows, t)
                if hit:
                    return Race("accumulator", first, rows, t, hit[3], does, hit[2])
            self.acc_compute_writes.append((first, rows, done, pc))
        return None

    def dma_load(self, pc: int, first: int, rows: int, t: int, done: int) -> Race | None:
        for rec, does in ((self.mma_a, "reads"), (self.mma_b, "reads"), (self.vec_sp, "reads")):
            if rec[2] > t and rec[0] < first + rows and first < rec[0] + rec[1]:
                return Race("scratchpad", first, rows, t, rec[3], does, rec[2])
        for bank in range(first // self.bank_rows, (first + rows - 1) // self.bank_rows + 1):
            self.sp_writes[bank].append((first, rows, done, pc))
        return None

    def dma_load_acc(self, pc: int, first: int, rows: int, t: int, done: int) -> Race | None:
        for records, does in (
            (self.acc_compute_writes, "writes"),
            (self.acc_vector_reads, "reads"),
            (self.acc_store, "reads"),
        ):
            hit = _busy(records, first, rows, t)
            if hit:
                return Race("accumulator", first, rows, t, hit[3], does, hit[2])
        self.acc_load.append((first, rows, done, pc))
        return None

    def dma_store(self, pc: int, first: int, rows: int, t: int, read_end: int) -> Race | None:
        for records in (self.acc_load, self.acc_compute_writes):
            hit = _busy(records, first, rows, t)
            if hit:
                return Race("accumulator", first, rows, t, hit[3], "writes", hit[2])
        self.acc_store.append((first, rows, read_end, pc))
        return None
