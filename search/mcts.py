"""Monte Carlo Tree Search over a `Space`, rewarded by measured speedups (docs/search.md, "MCTS").

    MCTS().run(space, measurer, budget, db, seed=0) -> TuneResult

One round: `simulations` descents per candidate wanted, then one batch of measurements.

    select     from the root, PUCT: Q/best + c * P * sqrt(N) / (1 + n) over the children admitted by
               progressive widening (ceil(c_w * N^alpha) of them, highest prior first), P the space's
               prior scaled by profile guidance, Q a node's mean and best value mixed
    expand     the first state not in the table; nodes are keyed by `State.key()`, so two decision
               paths that make the same code share one node (a transposition table)
    roll out   complete the state `rollouts` times: the highest guided prior in every slot, then with
               a share of the decisions drawn by prior; the cost model (analytical estimate x learned
               correction) predicts each leaf's time; the best prediction, as a speedup over the
               default, is backed up along the path
    measure    the batch: the unmeasured leaves with the fastest predictions, one per kind first (a
               share drawn from the next ones to keep the model honest); each trial's reward is backed
               up with weight `measured_weight` along its path, grafted into the tree, and trains the
               model

Reward: speedup over the default schedule (trial 0), shaped by the trial's counters (penalties for
stall cycles on the accelerator, cache misses or register spills on the CPU, and unstable timings);
failures score 0 and the search goes on.  Q is normalised by the best value seen, so UCT sees
[0, 1].  Profile guidance reads the best trial: memory-bound (accelerator DMA stalls; on the CPU,
hardware cache and TLB misses or, without them, estimated DRAM traffic against the measured time;
else the analytical traffic over compute) favours tiling, staging and cache actions (and, on the
accelerator, double buffering and larger tiles); compute-bound (scalar code or spills in the
CPU's assembly, among others) favours vectorize, unroll and parallel.  Everything random draws from one
`random.Random(seed)`, and every collection is walked in a fixed order: a seed gives one run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kcomp.db.records import Trial
from kcomp.db.store import TuningDB
from kcomp.errors import ScheduleError
from kcomp.loops import LoopNest
from kcomp.passes import apply
from kcomp.printer import structural_hash
from kcomp.schedule import Schedule
from kcomp.search.cost_model import Estimate, LearnedModel, Machine
from kcomp.search.measure import Measurer
from kcomp.search.rules import Action
from kcomp.search.space import Space, State
from kcomp.search.strategy import Budget, Session, TuneResult

MEMORY_KINDS = {"split": 1.5, "order": 1.2, "stage": 1.5, "cache_write": 1.5}
COMPUTE_KINDS = {"vectorize": 1.5, "unroll": 1.5, "parallel": 1.3}
DMA_KINDS = {"double_buffer": 2.0, "tile": 1.5}
# What CPU counters count as a memory-bound, or badly compiled, kernel (docs/search.md, "Profile guidance")
MISSES = 5.0  # hardware: last-level cache misses per 1000 instructions
TLB_MISSES = 2.0  # hardware: dTLB misses per 1000 instructions
FULL_MISSES = 20.0  # hardware: the cache-miss rate that takes the full CPU penalty
VECTOR_SHARE = 0.5  # derived: packed FP instructions under this share of all FP: mostly scalar code
SPILLS = 0.3  # derived: vector-register stack moves per FP instruction past which registers ran out
DRAM_SHARE = 0.5  # derived: the share of the measured time the estimated DRAM traffic would take


@dataclass
class _Node:
    state: State
    n: float = 0.0
    w: float = 0.0
    best: float = 0.0  # the best value backed up through this node
    children: dict[str, str] = field(default_factory=dict)  # action label -> child key
    admitted: list[Action] = field(default_factory=list)  # legal actions admitted by widening
    tried: set[str] = field(default_factory=set)  # labels checked for legality
    closed: bool = False  # nothing below is left to measure: selection passes it by

    def q(self, mix: float) -> float:
        """The node's value: mean and best mixed (a search wants the best leaf, not the average)."""
        return (1.0 - mix) * self.w / self.n + mix * self.best if self.n else 0.0


@dataclass
class _Leaf:
    state: State
    path: list[str]  # tree keys from the root down to the node the rollout started from
    trajectory: list[tuple[State, Action]]  # the rollout's states below that node
    predicted_s: float
    est: Estimate


@dataclass
class Guidance:
    """Prior multipliers per action kind read from the measurements, and whether to favour larger tiles."""

    kinds: dict[str, float] = field(default_factory=dict)
    larger_tiles: bool = False

    def weight(self, action: Action) -> float:
        if not action.steps and not action.choice:
            return 1.0
        w = self.kinds.get(action.kind, 1.0)
        if self.larger_tiles and action.size > 1:
            w *= 1.0 + math.log2(action.size) / 8
        return w


def flatten(counters: Any, prefix: str = "") -> dict[str, float]:
    """Numeric counters with nested dicts flattened to dotted names."""
    out: dict[str, float] = {}
    for k, v in dict(counters or {}).items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def stall_fraction(counters: dict[str, float]) -> float:
    """Accelerator: the share of cycles the compute waited on data (DMA bandwidth, load tokens)."""
    cycles = counters.get("cycles", 0.0)
    if cycles <= 0:
        return 0.0
    waits = sum(
        v for k, v in counters.items() if k.startswith("stalls.") and ("dma" in k or k.endswith("compute"))
    )
    return min(1.0, waits / cycles)


def cpu_waste(counters: dict[str, float]) -> float:
    """CPU, in [0, 1]: with hardware counters, last-level cache misses per 1000 instructions over
    `FULL_MISSES`; with counters derived from the build, vector-register spills and reloads per
    floating-point instruction of the kernel's code."""
    if counters.get("hw.instructions", 0.0) > 0:
        return min(1.0, _per_kilo(counters, "hw.cache_misses") / FULL_MISSES)
    return min(1.0, _per_fp(counters, "asm.spills") or 0.0)


def cpu_bound(counters: dict[str, float], time_s: float | None) -> str | None:
    """What a CPU trial's counters say limits it: "memory", "compute", or None (the estimate decides).

    Hardware: memory when last-level cache or dTLB misses per 1000 instructions reach `MISSES` or
    `TLB_MISSES` (few misses rule out DRAM, not L2: None).  Derived: compute when gcc left the
    arithmetic mostly scalar (packed under `VECTOR_SHARE` of the FP instructions) or vector registers
    spill (over `SPILLS` stack moves per FP instruction); memory when the estimated DRAM bytes, at the
    cost model's bandwidth, would take `DRAM_SHARE` of the measured time or more."""
    if counters.get("hw.instructions", 0.0) > 0:
        missing = _per_kilo(counters, "hw.cache_misses") >= MISSES
        return "memory" if missing or _per_kilo(counters, "hw.dtlb_misses") >= TLB_MISSES else None
    vector, spills = _per_fp(counters, "asm.vector_fp"), _per_fp(counters, "asm.spills")
    if vector is not None and spills is not None and (vector < VECTOR_SHARE or spills > SPILLS):
        return "compute"
    dram_s = counters.get("est.dram_bytes", 0.0) / (Machine().dram_gbps * 1e9)
    return "memory" if time_s and dram_s >= DRAM_SHARE * time_s else None


def _per_kilo(counters: dict[str, float], key: str) -> float:
    return 1000 * counters.get(key, 0.0) / counters["hw.instructions"]


def _per_fp(counters: dict[str, float], key: str) -> float | None:
    """A count per floating-point instruction of the kernel's assembly (None: no FP instructions)."""
    fp = counters.get("asm.vector_fp", 0.0) + counters.get("asm.scalar_fp", 0.0)
    return counters.get(key, 0.0) / fp if fp > 0 else None


def penalty(counters: Any) -> float:
    """The share of a trial's reward its counters take away (at most 0.3): accelerator stall cycles,
    CPU cache misses or spills (`cpu_waste`, up to 0.1), and CPU timings whose spread (max - min over
    min) says the figure is unstable."""
    c = flatten(counters)
    p = 0.5 * stall_fraction(c) + 0.1 * cpu_waste(c)
    if c.get("min_s", 0.0) > 0 and "max_s" in c:
        p += 0.05 * min(1.0, (c["max_s"] - c["min_s"]) / c["min_s"])
    return min(0.3, p)


def guidance(trial: Any, est: Estimate | None) -> Guidance:
    """Prior multipliers from the best trial: DMA-bound on the accelerator; else memory- or
    compute-bound as the CPU counters say (`cpu_bound`), or failing them as the estimate says."""
    c = flatten(getattr(trial, "counters", {}))
    if stall_fraction(c) > 0.1:
        return Guidance(dict(DMA_KINDS), larger_tiles=True)
    bound = cpu_bound(c, getattr(trial, "time_s", None))
    if bound is None and est is not None:
        bound = "memory" if est.memory_bound else "compute"
    if bound is None:
        return Guidance()
    return Guidance(dict(MEMORY_KINDS if bound == "memory" else COMPUTE_KINDS))


class MCTS:
    name = "mcts"

    def __init__(
        self,
        *,
        batch_size: int = 8,
        simulations: int = 6,
        rollouts: int = 2,
        c_puct: float = 1.5,
        widen: tuple[float, float] = (2.0, 0.5),
        measured_weight: float = 4.0,
        explore: float = 0.25,
        max_mix: float = 0.5,
        mutate: float = 0.3,
        cost: Callable[[LoopNest, Schedule], Estimate] | None = None,
    ):
        self.batch_size, self.simulations, self.rollouts = batch_size, simulations, rollouts
        self.c_puct, self.widen, self.measured_weight, self.explore = c_puct, widen, measured_weight, explore
        self.max_mix, self.mutate = max_mix, mutate
        self.cost = cost  # (nest, schedule) -> Estimate; default: the target's estimate

    def run(
        self,
        space: Space,
        measurer: Measurer,
        budget: Budget,
        db: TuningDB | None,
        *,
        seed: int = 0,
        progress: Callable[[Session, Trial], None] | None = None,
        resume: bool = False,
    ) -> TuneResult:
        session = Session(
            measurer, db, budget, strategy=self.name, seed=seed, progress=progress, resume=resume
        )
        default = session.start()
        search = _Search(self, space, random.Random(seed))
        search.calibrate(default)
        # NOTE: the best records of other hardware (the CPU model changes between machines) are
        # starting points, measured here first: they train the cost model, not trusted as answers.
        seeds = db.best_other_hardware(session.key, limit=self.batch_size) if db is not None else []
        first = search.outside([t.schedule for t in seeds])
        while not session.done:
            want = min(self.batch_size, session.remaining or self.batch_size)
            leaves, first = (first, []) if first else (search.propose(want, session), [])
            if not leaves:
                break  # the space is exhausted
            trials = session.evaluate([leaf.state.schedule() for leaf in leaves])
            for leaf, trial in zip(leaves, trials, strict=True):
                if trial is not None:
                    search.observe(leaf, trial, session.speedup(trial))
        return session.result()


class _Search:
    def __init__(self, cfg: MCTS, space: Space, rng: random.Random):
        self.cfg, self.space, self.rng = cfg, space, rng
        self.cost = cfg.cost or space.target.estimate
        self.model = LearnedModel()
        self.root = space.root()
        self.nodes: dict[str, _Node] = {self.root.key(): _Node(self.root)}
        self.pool: dict[str, _Leaf] = {}  # rollout leaves by key, not yet measured
        self.measured: set[str] = set()
        self.estimates: dict[str, Estimate] = {}
        self.best_value = 1e-9
        self.best_time: float | None = None
        self.default_time: float | None = None
        self.guide = Guidance()
        self.mutate = cfg.mutate
        self._heavy: dict[int, list[int]] = {}
        self.kinds: set[tuple] = {(0, *(space.default_steps[p] for p in self.heavy(0)))}  # measured kinds
        self.session: Session | None = None

    # ---------------------------------------------------------------- the cost model

    def estimate(self, state: State) -> Estimate:
        key = state.key()
        if key not in self.estimates:
            self.estimates[key] = self.cost(state.nest, state.schedule())
        return self.estimates[key]

    def value_of(self, seconds: float) -> float:
        """A predicted or measured time as a speedup over the default."""
        return (self.default_time or seconds) / seconds

    def calibrate(self, default: Trial | None) -> None:
        """Trial 0 (the default schedule) sets the time scale of every prediction."""
        if default is None or not default.ok or not default.time_s:
            return

        est = self.cost(apply(self.space.naive, default.schedule), default.schedule)
        self.model.add(est, default.time_s)
        self.default_time = self.best_time = default.time_s
        self.best_value = 1.0
        self.guide = guidance(default, est)

    # ---------------------------------------------------------------- one round

    def propose(self, want: int, session: Session) -> list[_Leaf]:
        """Run the simulations of a round and pick `want` unmeasured leaves to measure."""
        self.session = session
        runs = self.cfg.simulations * want
        for attempt in range(runs * 4):
            if attempt >= runs and self._fresh(session) >= want:
                break
            # NOTE: short of fresh leaves (a small space, or a tree stuck on one path), roll out wilder
            self.mutate = self.cfg.mutate if attempt < runs else min(1.0, 0.5 + (attempt - runs) / (2 * runs))
            if not self.simulate():
                break
        fresh = [leaf for leaf in self.pool.values() if not session.has_seen(leaf.state.schedule())]
        for leaf in fresh:
            leaf.predicted_s = self.model.predict(leaf.est)  # the model may have learned since
        fresh.sort(key=lambda leaf: leaf.predicted_s)
        # NOTE: one leaf per kind first: leaves that differ only in light nests (a reduction's
        # initialisation) from a measured one, or from a better-predicted pick, tell little.
        kinds, first, again = set(self.kinds), [], []
        for leaf in fresh:
            (again if self.kind(leaf) in kinds else first).append(leaf)
            kinds.add(self.kind(leaf))
        ranked = first + again
        greedy = want - int(self.cfg.explore * want)
        picks, rest = ranked[:greedy], ranked[greedy : greedy + 4 * want]
        while len(picks) < want and rest:
            picks.append(rest.pop(self.rng.randrange(len(rest))))
        for leaf in picks:
            self.pool.pop(leaf.state.key(), None)
        return picks

    def heavy(self, variant: int) -> list[int]:
        """The nests of fusion variant `variant` that carry the work (a tenth of the heaviest's or more)."""
        if variant not in self._heavy:
            get = getattr(self.space, "variant", None)
            work = get(variant).units.work if get is not None and variant > 0 else self.space.work
            self._heavy[variant] = [p for p, w in enumerate(work) if w * 10 >= max(work, default=0)]
        return self._heavy[variant]

    def kind(self, leaf: _Leaf) -> tuple:
        """The fusion variant and the steps of its nests that carry the work."""
        by_nest = getattr(leaf.state, "by_nest", None)
        if by_nest is None:
            return (str(leaf.state.schedule()),)
        variant = max(0, getattr(leaf.state, "variant", 0))
        return (variant, *(by_nest[p] for p in self.heavy(variant)))

    def _fresh(self, session: Session) -> int:
        return sum(1 for leaf in self.pool.values() if not session.has_seen(leaf.state.schedule()))

    def simulate(self) -> bool:
        """One descent, expansion, rollout and backup; False when the tree has nothing left to explore."""
        node, path = self.nodes[self.root.key()], [self.root.key()]
        while not node.state.is_terminal():
            action = self.select(node)
            if action is None:  # a dead end (no legal action), or everything below measured
                self.close(path)
                return len(path) > 1 and not self.nodes[self.root.key()].closed
            child = node.state.apply(action)
            key = child.key()
            node.children[action.label] = key
            fresh = key not in self.nodes
            if fresh:
                self.nodes[key] = _Node(child)
            node = self.nodes[key]
            path.append(key)
            if fresh:
                break
        if node.state.is_terminal() and self.seen(node.state):
            # NOTE: a finite tree runs out: a measured leaf closes, and so does a node whose
            # children all have, so descents go where something is left (a small accelerator space)
            self.close(path)
            return not self.nodes[self.root.key()].closed
        best: float | None = None
        for r in range(self.cfg.rollouts):
            leaf = self.rollout(node.state, path, self.mutate * r / max(1, self.cfg.rollouts - 1))
            if leaf is not None and (best is None or leaf.predicted_s < best):
                best = leaf.predicted_s
        self.backup(path, 0.0 if best is None else self.value_of(best), 1.0)
        return True

    def seen(self, state: State) -> bool:
        """Whether a terminal state's schedule was measured (or answered) in this session."""
        return state.key() in self.measured or (
            self.session is not None and self.session.has_seen(state.schedule())
        )

    def close(self, path: list[str]) -> None:
        """Close the last node of `path`, then each ancestor all of whose legal actions lead to
        closed nodes."""
        self.nodes[path[-1]].closed = True
        for key in reversed(path[:-1]):
            node = self.nodes[key]
            if len(node.tried) < len(node.state.candidates()):
                return
            if any(not self._child_closed(node, a) for a in node.admitted):
                return
            node.closed = True

    def _child_closed(self, node: _Node, action: Action) -> bool:
        child = self.nodes.get(node.children.get(action.label, ""))
        return child is not None and child.closed

    def select(self, node: _Node) -> Action | None:
        self.admit(node)
        if node.admitted and all(self._child_closed(node, a) for a in node.admitted):
            self.admit(node, force=True)  # widen past the limit rather than descend into nothing
        open_ = [a for a in node.admitted if not self._child_closed(node, a)]
        if not open_:
            return None
        total = sum(a.prior * self.guide.weight(a) for a in node.admitted) or 1.0
        parent_q = node.q(self.cfg.max_mix) / self.best_value if node.n else 0.5
        sqrt_n = math.sqrt(max(node.n, 1.0))
        best, best_score = None, -math.inf
        for a in open_:
            child = self.nodes.get(node.children.get(a.label, ""))
            if child is not None and child.n:
                q = min(1.0, child.q(self.cfg.max_mix) / self.best_value)
            else:
                q = max(0.0, parent_q - 0.1)
            visits = child.n if child is not None else 0.0
            score = q + self.cfg.c_puct * (a.prior * self.guide.weight(a) / total) * sqrt_n / (1.0 + visits)
            if score > best_score:
                best, best_score = a, score
        return best

    def admit(self, node: _Node, force: bool = False) -> None:
        """Progressive widening: admit legal actions, highest guided prior first, up to ceil(c * N^alpha)
        (`force`: one more than admitted now, whatever the limit)."""
        c, alpha = self.cfg.widen
        limit = max(1, math.ceil(c * (node.n + 1) ** alpha))
        if force:
            limit = len(node.admitted) + 1
        if len(node.admitted) >= limit:
            return
        pending = [a for a in node.state.candidates() if a.label not in node.tried]
        pending.sort(key=lambda a: -a.prior * self.guide.weight(a))
        for a in pending:
            if len(node.admitted) >= limit:
                break
            node.tried.add(a.label)
            if node.state.is_legal(a):
                node.admitted.append(a)

    def rollout(self, state: State, path: list[str], mutate: float) -> _Leaf | None:
        """Decisions down to a terminal state, predicted by the cost model: the highest guided prior
        (the default's choice, mostly), or with probability `mutate` a prior-weighted random one."""
        trajectory: list[tuple[State, Action]] = []
        while not state.is_terminal():
            options = list(state.candidates())
            while options:
                weights = [a.prior * self.guide.weight(a) for a in options]
                pick = self._draw(weights) if self.rng.random() < mutate else weights.index(max(weights))
                a = options.pop(pick)
                if state.is_legal(a):
                    trajectory.append((state, a))
                    state = state.apply(a)
                    break
            else:
                return None  # a dead end: no legal action
        key = state.key()
        est = self.estimate(state)
        seconds = self.model.predict(est)
        if key not in self.measured and key not in self.pool:
            self.pool[key] = _Leaf(state, list(path), trajectory, seconds, est)
        return self.pool.get(key) or _Leaf(state, list(path), trajectory, seconds, est)

    def _draw(self, weights: list[float]) -> int:
        x = self.rng.random() * sum(weights)
        for n, w in enumerate(weights):
            x -= w
            if x <= 0:
                return n
        return len(weights) - 1

    def backup(self, path: list[str], value: float, weight: float) -> None:
        for key in path:
            node = self.nodes[key]
            node.n += weight
            node.w += weight * value
            node.best = max(node.best, value)
        self.best_value = max(self.best_value, value)

    # ---------------------------------------------------------------- measurements

    def outside(self, schedules: list[Schedule]) -> list[_Leaf]:
        """Leaves for schedules from elsewhere (database records) that apply here, at the root."""

        out = []
        for schedule in schedules:
            try:
                nest = apply(self.space.naive, schedule)
            except ScheduleError:
                continue
            state = _Record(nest, schedule)
            out.append(_Leaf(state, [self.root.key()], [], 0.0, self.cost(nest, schedule)))  # type: ignore[arg-type]
        return out

    def observe(self, leaf: _Leaf, trial: Trial, speedup: float) -> None:
        """A measured leaf: train the model, graft its rollout into the tree, back up its reward."""
        key = leaf.state.key()
        self.measured.add(key)
        self.kinds.add(self.kind(leaf))
        if trial.ok and trial.time_s:
            self.model.add(leaf.est, trial.time_s)
            if self.best_time is None or trial.time_s < self.best_time:
                self.best_time = trial.time_s
                self.guide = guidance(trial, leaf.est)
        reward = speedup * (1.0 - penalty(trial.counters)) if trial.ok else 0.0
        path = list(leaf.path)
        for state, action in leaf.trajectory:
            node = self.nodes[path[-1]]
            child = state.apply(action)
            child_key = child.key()
            node.tried.add(action.label)
            if all(a.label != action.label for a in node.admitted):
                node.admitted.append(action)
            node.children[action.label] = child_key
            self.nodes.setdefault(child_key, _Node(child))
            path.append(child_key)
        self.backup(path, reward, self.cfg.measured_weight)


@dataclass
class _Record:
    """A schedule from outside the tree, standing in for a terminal State in a leaf."""

    nest: LoopNest
    saved: Schedule

    def schedule(self) -> Schedule:
        return self.saved

    def key(self) -> str:

        return structural_hash(self.nest)


__all__ = ["MCTS", "Guidance", "cpu_bound", "guidance", "penalty"]
