"""The simulator: runs a `Program` on numpy state and times it, instruction by instruction.

    result = simulate(program, {"A": a, "B": b, "C": c}, AccelConfig.load("small"))   # c written in place

Timed, not stepped: the model computes each instruction's issue, unit start/end and retirement from
the state the earlier ones left (unit-free times, the DRAM channel's next free cycle, token signal
times), so a 1024³ GEMM's quarter-million instructions take seconds.  The three queues advance in
order of their heads' issue cycles, so every instruction is processed at a time no earlier than the
previous one and the functional (numpy) effects are applied in the machine's real order; a read that
overlaps an unsynchronized write from another queue is reported as a race instead of silently
reading whichever value the processing order happened to give.  The rules are docs/accel-isa.md's
"Timing model"; the per-instruction costs are isa.py's table.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Mapping

import numpy as np

from kcomp.errors import UsageError
from kcomp.targets.accel.machine.asm import format_instr
from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.errors import SimError
from kcomp.targets.accel.machine.isa import FLOAT_ONLY, NUM_TOKENS, OPS, Program, Queue, Unit
from kcomp.targets.accel.machine.races import Race, Races
from kcomp.targets.accel.machine.result import SimResult, Timeline, ideal_cycles
from kcomp.targets.accel.machine.semantics import INDEX_ENTRIES, Machine

NUMPY_DTYPES = {"f32": np.float32, "i8": np.int8, "i32": np.int32}
QUEUES = ("load", "compute", "store")
DMA_SP, DMA_ACC_IN, DMA_GATHER, DMA_IDX, DMA_OUT, MMA, VEC, FENCE, DMA_SET = range(9)
BLOCKED = 1 << 60  # a head that waits on a token nobody has signalled yet
EXHAUSTED = 1 << 61  # a queue with nothing left
STALLS = (
    "token_wait.load",
    "token_wait.compute",
    "token_wait.store",
    "fence",
    "matrix_vector_switch",
    "dma_bandwidth",
    "bank_conflict",
)


def simulate(
    program: Program,
    dram: Mapping[str, np.ndarray],
    cfg: AccelConfig | None = None,
    *,
    check_races: bool = True,
) -> SimResult:
    """Run `program` on `cfg` (default: the default config) with DRAM buffers `dram` (by buffer name,
    C-contiguous, shape and dtype as declared; outputs are written in place) and time it.

    SimError (naming the PC and the instruction) for an address out of range, a DMA outside its buffer,
    an instruction the config cannot run, a race between queues (`check_races`) or a deadlock."""
    cfg = cfg or AccelConfig.load(None)
    started = time.perf_counter()
    machine = Machine(cfg, _bind(program, dram))
    queues, halt = _plan(program, cfg)
    engine = _Engine(program, cfg, machine, check_races)
    with np.errstate(all="ignore"):  # inf / nan from exp or 1/0 are values, as on the hardware
        engine.run(queues)
    return engine.result(halt, time.perf_counter() - started)


def _bind(program: Program, dram: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Flat views of the caller's arrays, by buffer id; UsageError for a missing or mismatched one."""
    flats = []
    for buf in program.buffers:
        if buf.name not in dram:
            raise UsageError(
                f"no DRAM array for buffer {buf.name!r} ({buf.dtype} {'x'.join(map(str, buf.shape))})"
            )
        array = dram[buf.name]
        want = np.dtype(NUMPY_DTYPES[buf.dtype])
        if not isinstance(array, np.ndarray) or array.shape != buf.shape or array.dtype != want:
            got = f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
            raise UsageError(f"DRAM array {buf.name!r} is {got}; the program declares {want} {buf.shape}")
        if not array.flags.c_contiguous:
            raise UsageError(f"DRAM array {buf.name!r} must be C-contiguous (np.ascontiguousarray)")
        flats.append(array.reshape(-1))
    for ins in program.instrs:
        if (
            ins.op in ("dma.store", "dma.store.i")
            and ins.args[1] < len(flats)
            and not flats[ins.args[1]].flags.writeable
        ):
            raise UsageError(f"DRAM array {program.buffers[ins.args[1]].name!r} is stored to but read-only")
    return flats


# -- static checks ------------------------------------------------------------------------------
_KIND = {
    "dma.load": DMA_SP,
    "dma.load.pad": DMA_SP,
    "dma.load.acc": DMA_ACC_IN,
    "dma.load.acc.pad": DMA_ACC_IN,
    "dma.load.acc.t": DMA_ACC_IN,
    "dma.load.t": DMA_SP,
    "dma.store.t": DMA_OUT,
    "dma.load.acc.g": DMA_GATHER,
    "dma.load.idx": DMA_IDX,
    "dma.fill": DMA_SET,
    "dma.fill.i": DMA_SET,
    "dma.store": DMA_OUT,
    "dma.store.i": DMA_OUT,
    "mma": MMA,
}


def _plan(program: Program, cfg: AccelConfig) -> tuple[list[list[tuple]], int | None]:
    """Each queue's instructions as tuples the engine reads fast, after every static check, and the
    halt's PC (None without one).  A tuple: (pc, kind, waits, signals, args, cycles, latency,
    semantics, footprint (vector ops only), mnemonic)."""
    queues: list[list[tuple]] = [[], [], []]
    compute = queues[Queue.COMPUTE]
    sp_rows, acc_rows, dim = cfg.sp_rows, cfg.acc_rows, cfg.dim
    halt = None
    for pc, ins in enumerate(program.instrs):
        op, args = ins.op, ins.args
        if halt is not None:
            raise _error(program, pc, f"instruction after halt (pc {halt}) never runs")
        if (ins.wait or ins.signal) and not _tokens_ok(ins.wait, ins.signal):
            raise _error(program, pc, f"tokens must be distinct t0..t{NUM_TOKENS - 1}")
        if op == "mma":  # NOTE: the fast path for the bulk of a program; _check has the messages
            acc, a, b, m, k, mode = args
            if (
                a + m > sp_rows
                or b + k > sp_rows
                or acc + m > acc_rows
                or k > dim
                or not (m and k and mode < 2)
            ):
                raise _error(program, pc, _check(program, cfg, op, args) or "bad operands")
            compute.append((pc, MMA, ins.wait, ins.signal, args, m, dim, None, None, op))
            continue
        if op == "halt":
            halt = pc
            continue
        spec = OPS[op]
        problem = _check(program, cfg, op, args)
        if problem:
            raise _error(program, pc, problem)
        kind = _KIND.get(op, VEC if spec.unit is Unit.VECTOR else FENCE)
        foot = spec.footprint(args) if kind == VEC else None
        cycles, latency = spec.cycles(cfg, args), spec.latency(cfg)
        q = args[0] if kind == FENCE else spec.queue
        queues[q].append((pc, kind, ins.wait, ins.signal, args, cycles, latency, spec.semantics, foot, op))
    return queues, halt


def _tokens_ok(*lists: tuple[int, ...]) -> bool:
    return all(
        len(set(ts)) == len(ts) and all(type(t) is int and 0 <= t < NUM_TOKENS for t in ts) for ts in lists
    )


def _check(program: Program, cfg: AccelConfig, op: str, a: tuple[int, ...]) -> str | None:
    """Why the instruction cannot run on `cfg`, or None."""
    for f, raw in zip(OPS[op].fields, a, strict=True):  # an Instr may be built without make()
        if not f.lo <= raw <= f.hi:
            return f"{f.name}={raw} is out of range {f.lo}..{f.hi}"
    foot = OPS[op].footprint(a)
    for mem, ranges, limit in (
        ("scratchpad", foot.sp_read + foot.sp_write, cfg.sp_rows),
        ("accumulator", foot.acc_read + foot.acc_write, cfg.acc_rows),
    ):
        for first, count in ranges:
            if first + count > limit:
                return (
                    f"{mem} rows {first}..{first + count - 1} are out of range (the {mem} has {limit} rows)"
                )
    if op in ("dma.fill", "dma.fill.i"):
        return None
    if op == "dma.load.idx":
        slot, buf, off, rows, _ = a
        b = program.buffers[buf] if buf < len(program.buffers) else None
        if b is None or b.dtype != "i32":
            return f"buffer {buf} is not an i32 buffer of the program (indices are i32)"
        if slot + rows > INDEX_ENTRIES or off + rows > b.size:
            return f"entries {slot}..{slot + rows - 1} of {INDEX_ENTRIES}, elements {off}..{off + rows - 1} of {b.size}"
        return None
    if op.startswith("dma."):
        buf, off, rows, cols, stride = a[1:6]
        if buf >= len(program.buffers):
            return f"buffer {buf} does not exist (the program declares {len(program.buffers)})"
        b = program.buffers[buf]
        want = cfg.dtype if op in ("dma.load", "dma.load.pad", "dma.load.t") else cfg.acc_dtype
        want = "i32" if op == "dma.store.i" else want
        converts = (
            op in ("dma.store", "dma.store.t") and b.dtype == "i32" and want == "f32"
        )  # NOTE: rounded (isa.py)
        words = op.startswith("dma.load.acc") and b.dtype == "i32"  # NOTE: its bit patterns (isa.py)
        if b.dtype != want and not converts and not words:
            return f"buffer {b.name} is {b.dtype}; {op} on a {cfg.dtype} machine moves {want}"
        fills = a[7] if op.endswith(".pad") or op == "dma.load.acc.g" else 0
        if b.dtype == "i32" and fills in (1, 2):
            return f"fill={OPS[op].fields[7].choices[fills]} is not an i32; an i32 buffer's pad comes from dma.fill.i"
        lead = a[6] if op.endswith(".pad") else 0
        if op.endswith(".pad") and a[7] and want != "f32":
            return f"fill={OPS[op].fields[7].choices[a[7]]} needs f32 memory; {op} on a {cfg.dtype} machine moves {want}"
        if lead + cols > cfg.dim:
            return f"lead={lead} + cols={cols} exceeds the row width dim={cfg.dim}"
        step = a[6] if op == "dma.load.t" else 1 if op in ("dma.load.acc.t", "dma.store.t") else None
        last = (
            off + (rows - 1) * stride + cols
            if step is None
            else off + (cols - 1) * stride + (rows - 1) * step + 1
        )
        if op == "dma.load.acc.g":
            return (
                f"slot={a[6]} + rows={rows} exceeds the {INDEX_ENTRIES}-entry index buffer"
                if a[6] + rows > INDEX_ENTRIES
                else None
            )
        if cols and last > b.size:
            return f"DMA reaches element {last - 1} of buffer {b.name}, which has {b.size} elements"
        if op == "dma.store.t" and cols > 1 and stride < rows:
            return f"stride={stride} < rows={rows}: the stored columns would overlap in DRAM"
        if op in ("dma.store", "dma.store.i") and rows > 1 and stride < cols:
            return f"stride={stride} < cols={cols}: the stored rows would overlap in DRAM"
    if op == "mma" and a[4] > cfg.dim:
        return f"k={a[4]} exceeds dim={cfg.dim}"
    if op in FLOAT_ONLY and cfg.acc_dtype != "f32":
        return f"{op} needs f32 accumulators; this machine accumulates in {cfg.acc_dtype}"
    return None


def _error(program: Program, pc: int, message: str) -> SimError:
    return SimError(f"pc {pc} `{format_instr(program.instrs[pc], program.buffers)}`: {message}")


# -- the engine ---------------------------------------------------------------------------------
class _Engine:
    """The machine's timing state; `run` processes the queues' heads in issue order."""

    def __init__(self, program: Program, cfg: AccelConfig, machine: Machine, check_races: bool):
        self.program, self.cfg, self.machine = program, cfg, machine
        self.races = Races(cfg) if check_races else None
        self.tl = Timeline.empty(len(program.instrs))
        self.stalls = dict.fromkeys(STALLS, 0)
        self.counts = dict.fromkeys(OPS, 0)
        self.busy = {"matrix": 0, "preload": 0, "vector": 0, "dma": 0}
        self.dma_bytes = {"load": 0, "store": 0}
        self.macs = 0
        self.retire = [0, 0, 0]
        self.loaded: set[int] = set()  # buffer ids read by DMA
        self.gathered: dict[int, int] = {}  # buffer id -> bytes its gathers moved
        self.stored: set[int] = set()
        # per scratchpad bank: busy intervals of DMA writes and matrix-unit reads (bank conflicts)
        self.bank_w: list[list[tuple[int, int]]] = [[] for _ in range(cfg.banks)]
        self.bank_r: list[list[tuple[int, int]]] = [[] for _ in range(cfg.banks)]

    def run(self, queues: list[list[tuple]]) -> None:
        # NOTE: the hot loop, kept in one frame with local names: a call or attribute lookup per
        # instruction costs seconds on a million-instruction program.
        cfg, tl, races, stalls, machine = self.cfg, self.tl, self.races, self.stalls, self.machine
        counts, busy = self.counts, self.busy
        t_ready, t_issue, t_start, t_end = tl.ready, tl.issue, tl.start, tl.end
        t_done, t_pre = tl.done, tl.preload
        dim, per_cycle, bank_rows = cfg.dim, cfg.issue_per_queue, cfg.bank_rows
        sp, acc_mem = machine.sp, machine.acc
        bank_w, bank_r, retire = self.bank_w, self.bank_r, self.retire
        heaps: list[list[int]] = [[] for _ in range(NUM_TOKENS)]
        pos, lens, last = [0, 0, 0], [len(x) for x in queues], [-1, -1, -1]
        recent = [deque([-1], maxlen=per_cycle) for _ in range(3)]
        chan_free = mx_free = mx_done = vec_free = vec_done = macs = backlog = idx_done = 0
        wb = wk = -1  # the weights the matrix unit holds: scratchpad rows wb .. wb+wk-1
        os_flow = cfg.dataflow == "os"
        held = held_m = -1  # output-stationary: the accumulator rows of the block the array holds
        bm = ba = bb = bk = bacc = bmode = 0  # mma instructions batched into one numpy product (bm rows)

        def slot(q: int) -> int:
            """The first cycle queue q may issue its next instruction (issue_per_queue a cycle)."""
            dq = recent[q]
            return max(last[q], dq[0] + 1) if len(dq) == per_cycle else max(last[q], 0)

        def head(q: int) -> int:
            """The cycle queue q's next instruction can issue, BLOCKED or EXHAUSTED."""
            p = pos[q]
            if p == lens[q]:
                return EXHAUSTED
            e = queues[q][p]
            t = last[q] + 1 if per_cycle == 1 else slot(q)
            kind = e[1]
            if kind == MMA:
                t = max(t, mx_free, vec_done)
            elif kind == VEC:
                t = max(t, vec_free, mx_done)
            elif kind == FENCE:
                t = max(t, retire[q])
            for tok in e[2]:
                h = heaps[tok]
                if not h:
                    return BLOCKED
                if h[0] > t:
                    t = h[0]
            return t

        def flush() -> None:
            """Apply the batched mma instructions (NOTE: before any other instruction's data effect)."""
            nonlocal bm
            product = sp[ba : ba + bm, :bk] @ sp[bb : bb + bk]
            if bmode:
                acc_mem[bacc : bacc + bm] += product
            else:
                acc_mem[bacc : bacc + bm] = product
            bm = 0

        times = [head(0), head(1), head(2)]
        while True:
            t0, t1, t2 = times
            if t0 <= t1:
                q, t = (0, t0) if t0 <= t2 else (2, t2)
            else:
                q, t = (1, t1) if t1 <= t2 else (2, t2)
            if t >= BLOCKED:
                break
            pc, kind, waits, signals, args, cycles, latency, semantics, foot, op = queues[q][pos[q]]
            pos[q] += 1
            ready = last[q] + 1 if per_cycle == 1 else slot(q)
            last[q] = t
            if per_cycle > 1:
                recent[q].append(t)
            preload = 0
            if kind == MMA:
                acc, a, b, m, k, mode = args
                free = ready = mx_free if mx_free > ready else ready  # a busy unit is not a stall
                if vec_done > free:
                    stalls["matrix_vector_switch"] += vec_done - free
                    free = vec_done
                if t > free:
                    stalls["token_wait.compute"] += t - free
                if not os_flow:
                    if b != wb or k != wk:
                        preload, wb, wk = dim, b, k
                    work = m
                else:  # NOTE: output-stationary: (acc, m) of the block the array holds, or held = -1
                    blocks = (m + dim - 1) // dim
                    if not (mode and blocks == 1 and acc == held and m == held_m) and held >= 0:
                        preload = dim  # drain the held block (the accumulator adds what drains into it)
                    work = blocks * k + (blocks - 1) * dim  # NOTE: the blocks before the last drain inline
                    held, held_m = acc + (blocks - 1) * dim, m - (blocks - 1) * dim
                start, stream = t, t + preload
                end = stream + work
                first, final = a // bank_rows, (a + m - 1) // bank_rows
                if bank_w[first] or bank_w[final]:
                    conflict = _conflict(bank_w, first, final, stream, end, t)
                    if conflict:
                        stalls["bank_conflict"] += conflict
                        end += conflict
                if preload or os_flow:  # B is read while preloading (WS) or while streaming (OS)
                    b_from, b_to = (stream, end) if os_flow else (t, stream)
                    conflict = _conflict(bank_w, b // bank_rows, (b + k - 1) // bank_rows, b_from, b_to, t)
                    _record(bank_r, b // bank_rows, (b + k - 1) // bank_rows, b_from, b_to)
                    if conflict:
                        stalls["bank_conflict"] += conflict
                        end += conflict
                spans = bank_r[first]
                if first == final and spans and spans[-1][1] == stream:
                    spans[-1] = (spans[-1][0], end)  # back-to-back reads of one bank: one busy interval
                else:
                    _record(bank_r, first, final, stream, end)
                mx_free = end
                done = mx_done = end + latency
                busy["matrix"] += end - t
                busy["preload"] += preload
                macs += m * k
                if races:
                    race = races.mma(pc, a, m, b, k, preload, acc, t, end, done)
                    if race:
                        raise self._race(pc, race)
                if bm and b == bb and k == bk and mode == bmode and a == ba + bm and acc == bacc + bm:
                    bm += m
                else:
                    if bm:
                        flush()
                    bm, ba, bb, bk, bacc, bmode = m, a, b, k, acc, mode
            else:
                if bm:
                    flush()
                if kind <= DMA_OUT:
                    if t > ready:
                        stalls[f"token_wait.{QUEUES[q]}"] += t - ready
                    start = chan_free if chan_free > t else t  # one DRAM channel, first come first served
                    if kind == DMA_GATHER and idx_done > start:
                        start = idx_done  # NOTE: the engine reads its indices once they have landed
                    if start > t:  # cycles in which some request waits for the channel (a union, not a sum)
                        stalls["dma_bandwidth"] += start - max(t, backlog)
                        backlog = start
                    end = chan_free = start + cycles
                    busy["dma"] += cycles
                    done = self._dma(pc, kind, args, t, end, end + latency, cycles)
                    if kind == DMA_IDX:
                        idx_done = done
                    if kind == DMA_SP and args[0] < wb + wk and wb < args[0] + args[3]:
                        wb = wk = -1  # the held weights' rows change: the next mma preloads again
                    elif (
                        kind in (DMA_ACC_IN, DMA_GATHER)
                        and args[0] < held + held_m
                        and held < args[0] + args[3]
                    ):
                        held = held_m = -1  # the held block's rows change: drained, then refilled
                elif kind == VEC:
                    free = ready = max(ready, vec_free)
                    if mx_done > free:
                        stalls["matrix_vector_switch"] += mx_done - free
                        free = mx_done
                    if t > free:
                        stalls["token_wait.compute"] += t - free
                    start = t
                    end = vec_free = t + cycles
                    done = end + latency
                    vec_done = max(vec_done, done)
                    busy["vector"] += cycles
                    held = held_m = -1  # NOTE: a vector op may rewrite the held block's rows
                    if races:
                        race = races.vector(pc, foot, t, end, done)
                        if race:
                            raise self._race(pc, race)
                elif kind == DMA_SET:  # NOTE: a register of the DMA engine: no channel time
                    start = end = done = t
                else:  # fence
                    free = max(ready, retire[q])
                    stalls["fence"] += free - ready
                    if t > free:
                        stalls[f"token_wait.{QUEUES[q]}"] += t - free
                    start = end = done = t
                if semantics is not None:
                    try:
                        semantics(machine, args)
                    except SimError as e:  # NOTE: a gather's index outside its buffer
                        raise _error(self.program, pc, str(e)) from None
            if done < retire[q]:
                done = retire[q]  # NOTE: a queue retires in order, so a signal covers everything before it
            retire[q] = done
            for tok in waits:
                heapq.heappop(heaps[tok])
            for tok in signals:
                heapq.heappush(heaps[tok], done)
            t_ready[pc], t_issue[pc], t_start[pc] = ready, t, start
            t_end[pc], t_done[pc], t_pre[pc] = end, done, preload
            counts[op] += 1
            times[q] = head(q)
            if signals or waits:  # other heads may wait on the tokens this one moved
                for other in range(3):
                    if other != q and times[other] != EXHAUSTED:
                        times[other] = head(other)
        if bm:
            flush()
        self.macs = macs * dim
        if t == BLOCKED:
            raise self._deadlock(queues, pos, heaps)

    def _dma(
        self, pc: int, kind: int, args: tuple[int, ...], t: int, end: int, done: int, cycles: int
    ) -> int:
        """A DMA's race checks, bank conflicts and byte counts; its retirement cycle."""
        row, buf, rows = args[0], args[1], args[3]
        cols = args[4] if kind != DMA_IDX else 1
        races = self.races
        race = None
        if kind == DMA_IDX:
            self.dma_bytes["load"] += rows * 4
            self.loaded.add(buf)
        elif kind == DMA_SP:
            self.dma_bytes["load"] += rows * cols * self.cfg.input_bytes
            self.loaded.add(buf)
            first, last = row // self.cfg.bank_rows, (row + rows - 1) // self.cfg.bank_rows
            conflict = _conflict(self.bank_r, first, last, done - cycles, done, t)
            _record(self.bank_w, first, last, done - cycles, done + conflict)
            self.stalls["bank_conflict"] += conflict
            done += conflict
            race = races and races.dma_load(pc, row, rows, t, done)
        elif kind in (DMA_ACC_IN, DMA_GATHER):
            self.dma_bytes["load"] += rows * cols * 4
            if kind == DMA_GATHER:
                self.gathered[buf] = self.gathered.get(buf, 0) + rows * cols * 4
            else:
                self.loaded.add(buf)
            race = races and races.dma_load_acc(pc, row, rows, t, done)
        else:
            self.dma_bytes["store"] += rows * cols * 4
            self.stored.add(buf)
            race = races and races.dma_store(pc, row, rows, t, end)
        if race:
            raise self._race(pc, race)
        return done

    # -- errors (cold) --------------------------------------------------------------------------
    def _race(self, pc: int, race: Race) -> SimError:
        other = format_instr(self.program.instrs[race.other_pc], self.program.buffers)
        return _error(
            self.program,
            pc,
            f"race on {race.memory} rows {race.first}..{race.first + race.rows - 1}: at cycle {race.cycle} "
            f"pc {race.other_pc} `{other}` still {race.other_does} them (until cycle {race.until}); order "
            "the two with a token (signal=tN on the earlier, wait=tN on the later)",
        )

    def _deadlock(self, queues: list[list[tuple]], pos: list[int], heaps: list[list[int]]) -> SimError:
        program = self.program
        blocked = []
        for q in range(3):
            if pos[q] < len(queues[q]):
                pc, waits = queues[q][pos[q]][0], queues[q][pos[q]][2]
                empty = ",".join(f"t{t}" for t in waits if not heaps[t])
                text = format_instr(program.instrs[pc], program.buffers)
                blocked.append(f"{QUEUES[q]} queue at pc {pc} `{text}` waits on {empty}")
        now = max(self.retire)
        return SimError(
            f"deadlock at cycle {now}: every queue with work left is blocked on a token that nothing left "
            f"will signal: {'; '.join(blocked)}"
        )

    # -- the report -----------------------------------------------------------------------------
    def result(self, halt: int | None, wall_s: float) -> SimResult:
        cfg, program = self.cfg, self.program
        cycles = max(self.retire)
        if halt is not None:
            self.counts["halt"] += 1
            tl = self.tl
            tl.ready[halt] = tl.issue[halt] = tl.start[halt] = tl.end[halt] = tl.done[halt] = cycles
            tl.preload[halt] = 0
        compulsory = sum(program.buffers[i].nbytes for i in self.loaded)
        # NOTE: a table read only by gathers: the rows they moved (a repeated index counted again)
        compulsory += sum(
            min(program.buffers[i].nbytes, n) for i, n in self.gathered.items() if i not in self.loaded
        )
        compulsory += sum(program.buffers[i].nbytes for i in self.stored)
        span = max(cycles, 1)
        util = {
            "matrix": self.macs / cfg.dim**2 / span,
            "matrix_busy": self.busy["matrix"] / span,
            "vector": self.busy["vector"] / span,
            "dma": self.busy["dma"] / span,
        }
        return SimResult(
            cycles=cycles,
            ideal_cycles=ideal_cycles(self.macs, compulsory, cfg),
            instructions=sum(self.counts.values()),
            counts={op: n for op, n in self.counts.items() if n},
            macs=self.macs,
            busy=self.busy,
            utilization=util,
            stalls=self.stalls,
            dma_bytes=self.dma_bytes,
            compulsory_bytes=compulsory,
            wall_s=wall_s,
            config=cfg,
            program=program,
            timeline=self.tl,
        )


def _conflict(banks: list[list[tuple[int, int]]], first: int, last: int, s: int, e: int, now: int) -> int:
    """Cycles of [s, e) during which banks first..last are busy with the other side's accesses; drops
    intervals that ended by `now` (nothing processed from now on starts earlier)."""
    total = 0
    for bank in range(first, last + 1):
        spans = banks[bank]
        if spans:
            if spans[0][1] <= now:
                spans[:] = [iv for iv in spans if iv[1] > now]
            for lo, hi in spans:
                overlap = min(e, hi) - max(s, lo)
                if overlap > 0:
                    total += overlap
    return total


def _record(banks: list[list[tuple[int, int]]], first: int, last: int, s: int, e: int) -> None:
    """Add busy interval [s, e) to banks first..last (merged with the last one when they touch)."""
    for bank in range(first, last + 1):
        spans = banks[bank]
        if spans and spans[-1][0] <= s <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], e))
        else:
            spans.append((s, e))
