"""Cost models that rank schedules without running them: an analytical roofline estimate of a
scheduled loop nest, and a learned correction fitted on the trials measured so far.

    analytical   time = sum over top-level nests of max(compute, L1, L2, DRAM traffic) + overheads
      compute    per statement: vector instructions (a multiply feeding an add is one FMA; exp and
                 friends ~10) and loads, over the issue width, divided by the threads of a parallel
                 loop around it; a local tile whose accesses are constant after unrolling lives in
                 registers (free) unless it needs more registers than the target has (spills)
      traffic    per cache level: the outermost loop whose footprint (distinct cache lines of the
                 accesses inside it) fits the level moves that footprint once per trip of the loops
                 around it
      overheads  a serial loop iteration, a guard, a parallel region entered
    learned      log(measured) = log(analytical) + bias + w . features  (ridge regression on the
                 measured trials: numpy only, pulled towards the analytical estimate when few)

The analytical figures are also what profile guidance reads: a schedule whose traffic terms
dominate its compute term is memory-bound.  A target's `estimate(nest, schedule)` is what MCTS asks:
loop-nest targets use `estimate` here with their `Machine`; others (the accelerator) fill an
`Estimate` from their own model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kcomp.affine import affine, interval
from kcomp.expr import Binary, BinaryOp, Buffer, Cast, Expr, Load, Scope, Select, Unary, UnaryOp, Var, walk
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store
from kcomp.search.loop_rules import top_nests

LINE = 64  # bytes per cache line
SLOW_UNARY = frozenset(
    {UnaryOp.EXP, UnaryOp.LOG, UnaryOp.LOG1P, UnaryOp.EXPM1, UnaryOp.TANH, UnaryOp.ERF, UnaryOp.SIGMOID}
)
FEATURES = ("compute", "l1", "l2", "dram", "overhead", "spills", "regions", "vector", "parallel")
TRAFFIC = ("l1_bytes", "l2_bytes", "bytes")  # bytes moved into L1, into L2, and from DRAM
SUMMED = ("compute", "l1", "l2", "dram", "overhead", "spills", "regions", "time", "flops", *TRAFFIC)


@dataclass(frozen=True)
class Machine:
    """What the estimate assumes of the hardware (rough x86 figures; the learned model corrects them)."""

    lanes: int = 8  # f32 lanes per vector register
    cores: int = 1
    ghz: float = 3.0
    issue: float = 2.0  # vector FMAs (and loads) per cycle
    registers: int = 16
    l1_bytes: int = 32 << 10
    l2_bytes: int = 1 << 20
    l3_bytes: int = 16 << 20
    l1_bw: float = 32.0  # bytes per cycle per core, L2 -> L1
    l2_bw: float = 16.0  # bytes per cycle per core, L3 -> L2
    dram_gbps: float = 20.0  # all cores together
    region_s: float = 3e-6  # entering a parallel region

    @classmethod
    def of(cls, target: object) -> Machine:
        lanes = max(1, getattr(target, "vector_bits", 0) // 32)
        cores = max(1, getattr(target, "threads", None) or getattr(target, "cores", 1))
        return cls(lanes=lanes, cores=cores, registers=32 if lanes >= 16 else 16)


@dataclass
class Estimate:
    """The analytical figures of one scheduled nest, in seconds (plus counts)."""

    compute: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    dram: float = 0.0
    overhead: float = 0.0
    spills: float = 0.0
    regions: float = 0.0
    vector: float = 0.0  # fraction of the statement instances that run in vector lanes
    parallel: float = 0.0  # fraction that run under a parallel loop
    time: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0  # DRAM traffic
    l1_bytes: float = 0.0  # moved into L1 (from L2)
    l2_bytes: float = 0.0  # moved into L2 (from L3)

    def features(self) -> np.ndarray:
        """What the learned model reads: times and counts as log(1 + microseconds), fractions as they are."""
        raw = [(f, getattr(self, f)) for f in FEATURES]
        return np.array([x if f in ("vector", "parallel") else math.log(x * 1e6 + 1.0) for f, x in raw])

    @property
    def memory_bound(self) -> bool:
        return max(self.l1, self.l2, self.dram) > self.compute

    def traffic(self) -> dict[str, float]:
        """Bytes per call moved into each cache level, as the counters a measurement without hardware
        counters carries (labelled `est.`: the model's figures, not counted ones)."""
        return {"est.l1_bytes": self.l1_bytes, "est.l2_bytes": self.l2_bytes, "est.dram_bytes": self.bytes}


@dataclass
class _Access:
    buffer: Buffer
    index: tuple[Expr, ...]
    loops: tuple[Loop, ...]  # enclosing loops, outermost first


@dataclass
class _Walk:
    machine: Machine
    out: Estimate = field(default_factory=Estimate)
    accesses: list[_Access] = field(default_factory=list)
    work: float = 0.0


def estimate(nest: LoopNest, machine: Machine) -> Estimate:
    """The analytical estimate of `nest` (see the module docstring)."""
    total = Estimate()
    work = vector = parallel = 0.0
    for top in top_nests(nest.body):
        w = _Walk(machine)
        _visit(w, (top,), (), registers=set())
        seen: dict[int, float] = {}
        traffic = [
            _traffic(top, w.accesses, cap, seen)
            for cap in (machine.l1_bytes, machine.l2_bytes, machine.l3_bytes)
        ]
        threads = _threads(top, machine.cores)
        cycle = 1.0 / (machine.ghz * 1e9)
        e = w.out
        e.l1 = traffic[0] / (machine.l1_bw * threads) * cycle
        e.l2 = traffic[1] / (machine.l2_bw * threads) * cycle
        e.dram = traffic[2] / (machine.dram_gbps * 1e9)
        e.l1_bytes, e.l2_bytes, e.bytes = traffic
        e.time = max(e.compute, e.l1, e.l2, e.dram) + e.overhead
        for f in SUMMED:
            setattr(total, f, getattr(total, f) + getattr(e, f))
        work, vector, parallel = work + w.work, vector + e.vector, parallel + e.parallel
    total.vector = vector / work if work else 0.0
    total.parallel = parallel / work if work else 0.0
    return total


def _threads(top: Loop, cores: int) -> float:
    """The speedup threads give the nest: the extent of a parallel loop over its share per core."""
    stack: list[Stmt] = [top]
    while stack:
        s = stack.pop()
        if isinstance(s, Loop) and s.kind is LoopKind.PARALLEL:
            return s.extent / math.ceil(s.extent / cores)
        if not isinstance(s, Store):
            stack.extend(s.body)
    return 1.0


def _visit(w: _Walk, body: tuple[Stmt, ...], loops: tuple[Loop, ...], registers: set[Buffer]) -> None:
    m = w.machine
    for s in body:
        if isinstance(s, Loop):
            inner = (*loops, s)
            if s.kind in (LoopKind.SERIAL, LoopKind.PARALLEL):
                trips = math.prod(lp.extent for lp in inner if lp.kind is not LoopKind.VECTOR)
                w.out.overhead += 0.5 * trips / (m.ghz * 1e9) / _par(inner, m.cores)
            if s.kind is LoopKind.PARALLEL:
                w.out.regions += math.prod(lp.extent for lp in loops)
                w.out.overhead += m.region_s * math.prod(lp.extent for lp in loops)
            _visit(w, s.body, inner, registers)
        elif isinstance(s, Alloc):
            local = s.buffer.scope is Scope.LOCAL and s.buffer.size <= m.registers * m.lanes * 2
            _visit(w, s.body, loops, registers | ({s.buffer} if local else set()))
        elif isinstance(s, Guard):
            w.out.overhead += 0.5 * _vector_instances(loops, m.lanes) / (m.ghz * 1e9) / _par(loops, m.cores)
            _visit(w, s.body, loops, registers)
        else:
            _statement(w, s, loops, registers)


def _instances(loops: tuple[Loop, ...]) -> float:
    return float(math.prod(lp.extent for lp in loops))


def _vector_instances(loops: tuple[Loop, ...], lanes: int) -> float:
    """Iterations, a vector loop counting one per vector of lanes."""
    return float(
        math.prod(math.ceil(lp.extent / lanes) if lp.kind is LoopKind.VECTOR else lp.extent for lp in loops)
    )


def _par(loops: tuple[Loop, ...], cores: int) -> float:
    p = next((lp.extent for lp in loops if lp.kind is LoopKind.PARALLEL), 1)
    return p / math.ceil(p / cores)


def _statement(w: _Walk, s: Store, loops: tuple[Loop, ...], registers: set[Buffer]) -> None:
    """Cycles of one statement: issue-bound (instructions), or latency-bound when an accumulation
    has fewer independent chains (unrolled rows x vectors) than FMA latency x issue width."""
    m = w.machine
    vec = next((lp for lp in reversed(loops) if lp.kind is LoopKind.VECTOR), None)
    lanes = 1.0
    if vec is not None and s.buffer.dtype.itemsize == 4:
        lanes = vec.extent / math.ceil(vec.extent / m.lanes)
    instances = _instances(loops) / lanes
    k = max((n for n, lp in enumerate(loops) if lp.kind in (LoopKind.SERIAL, LoopKind.PARALLEL)), default=-1)
    fast = list(loops[k + 1 :])  # unrolled and vector loops inside the innermost serial one

    def copies(index: tuple[Expr, ...], sharing: bool) -> float:
        """Instances of the fast loops an access is shared by (sharing) or split over (not sharing)."""
        used = {v for e in index for v in _vars(e)}
        return math.prod(
            (math.ceil(lp.extent / m.lanes) if lp.kind is LoopKind.VECTOR else lp.extent)
            for lp in fast
            if (lp.var not in used) == sharing
        )

    mem = spill = 0.0
    for buf, index in [(s.buffer, s.index), *((ld.buffer, ld.index) for ld in _loads(s))]:
        w.accesses.append(_Access(buf, index, loops))
        if buf in registers and all(v in {lp.var for lp in fast} for e in index for v in _vars(e)):
            spill += 2.0 if buf.size > (m.registers - 3) * m.lanes else 0.0
            continue  # a register (constant offsets once unrolled)
        cost = 1.0
        if vec is not None and lanes > 1.0:
            inside = [vec.var in _vars(e) for e in index]
            contiguous = not any(inside[:-1]) and (affine(index[-1]) or {}).get(vec.var) == 1
            cost = 1.0 if not any(inside) or contiguous else lanes  # broadcast, vector, or lane by lane
        mem += cost / copies(index, sharing=True)
    ops = max(_ops(s.value), 1.0)
    per = max(ops, mem) / m.issue + spill
    if any(ld.buffer is s.buffer for ld in _loads(s)) and fast:
        per = max(per, 4.0 / copies(s.index, sharing=False))  # FMA latency over independent chains
    w.out.compute += instances * per / _par(loops, m.cores) / (m.ghz * 1e9)
    w.out.spills += spill * instances
    n = _instances(loops)
    w.out.flops += n * ops
    w.work += n
    w.out.vector += n if lanes > 1 else 0.0
    w.out.parallel += n if any(lp.kind is LoopKind.PARALLEL for lp in loops) else 0.0


def _loads(s: Store) -> list[Load]:
    return [n for e in (s.value, *s.index) for n in walk(e) if isinstance(n, Load)]


def _vars(e: Expr) -> list[Var]:
    return [n for n in walk(e) if isinstance(n, Var)]


def _ops(e: Expr) -> float:
    """Arithmetic instructions of a value (index arithmetic excluded); a multiply feeding an add or
    subtract is one FMA."""
    match e:
        case Binary(op=op, lhs=a, rhs=b):
            fused = op in (BinaryOp.ADD, BinaryOp.SUB) and any(
                isinstance(x, Binary) and x.op is BinaryOp.MUL for x in (a, b)
            )
            own = 0.0 if fused else 4.0 if op in (BinaryOp.DIV, BinaryOp.POW) else 1.0
            return own + _ops(a) + _ops(b)
        case Unary(op=op, x=x):
            return (10.0 if op in SLOW_UNARY else 1.0) + _ops(x)
        case Select(cond=c, then=t, other=o):
            return 1.0 + _ops(c) + _ops(t) + _ops(o)
        case Cast(x=x):
            return 1.0 + _ops(x)
    return 0.0


def _footprint(loop: Loop, accesses: list[_Access]) -> float:
    """Bytes (whole cache lines) of the distinct elements the accesses touch while `loop` runs once."""
    per_buffer: dict[Buffer, float] = {}
    for a in accesses:
        if loop not in a.loops:
            continue
        depth = a.loops.index(loop)
        ranges = {lp.var: (lp.extent if k >= depth else 1) for k, lp in enumerate(a.loops)}
        spans = []
        for e, size in zip(a.index, a.buffer.shape, strict=True):
            iv = interval(e, ranges)
            spans.append(size if iv is None else min(size, iv[1] - iv[0] + 1))
        item = a.buffer.dtype.itemsize
        last = math.ceil(spans[-1] * item / LINE) * LINE if spans else item
        fp = math.prod(spans[:-1]) * last
        per_buffer[a.buffer] = max(per_buffer.get(a.buffer, 0.0), fp)
    return sum(per_buffer.values())


def _traffic(loop: Loop, accesses: list[_Access], capacity: int, seen: dict, trips: float = 1.0) -> float:
    """Bytes moved into a cache of `capacity` while the nest runs (see the module docstring);
    `seen` remembers footprints by loop across the levels."""
    children = top_nests(loop.body)
    if id(loop) not in seen:
        seen[id(loop)] = _footprint(loop, accesses)
    if seen[id(loop)] <= capacity or not children:
        return seen[id(loop)] * trips
    return sum(_traffic(c, accesses, capacity, seen, trips * loop.extent) for c in children)


class LearnedModel:
    """`log(time) = log(analytical) + bias + w . standardised features`, ridge-fitted on measured trials."""

    def __init__(self, ridge: float = 3.0):
        self.ridge = ridge
        self.x: list[np.ndarray] = []
        self.y: list[float] = []
        self.bias = 0.0
        self.w: np.ndarray | None = None
        self.mean = self.std = None

    def add(self, est: Estimate, measured_s: float) -> None:
        self.x.append(est.features())
        self.y.append(math.log(measured_s) - math.log(max(est.time, 1e-12)))
        self._fit()

    def _fit(self) -> None:
        """The median residual as the bias (one wild timing, say a cold first call, moves it little),
        and the ridge fit on the residuals around it, clipped to a factor of e^2 either way."""
        y = np.array(self.y)
        self.bias = float(np.median(y))
        if len(self.y) < 3:
            self.w = None
            return
        x = np.array(self.x)
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - self.mean) / self.std
        r = np.clip(y - self.bias, -2.0, 2.0)
        self.w = np.linalg.solve(z.T @ z + self.ridge * np.eye(z.shape[1]), z.T @ r)

    def predict(self, est: Estimate) -> float:
        """Predicted seconds."""
        log_t = math.log(max(est.time, 1e-12)) + self.bias
        if self.w is not None:
            z = (est.features() - self.mean) / self.std
            log_t += float(np.clip(z @ self.w, -3.0, 3.0))
        return math.exp(log_t)


__all__ = ["Estimate", "LearnedModel", "Machine", "estimate"]
