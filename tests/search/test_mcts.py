"""MCTS against a fake measurer (a deterministic synthetic cost of the schedule: the analytical model
of a hidden machine unlike the one the search assumes, no compilation): it beats uniform random
search at equal budgets, one seed gives one run, failures are recorded and the search goes on; the
reward shaping, profile guidance and cost model by themselves; and one real short run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from cpu_nests import cpu_target

from kcomp.api import load_module
from kcomp.db.records import Status, Trial
from kcomp.lower import lower
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.schedule import parse_schedule
from kcomp.search.cost_model import Estimate, LearnedModel, Machine, estimate
from kcomp.search.mcts import COMPUTE_KINDS, DMA_KINDS, MCTS, MEMORY_KINDS, guidance, penalty
from kcomp.search.random_search import RandomSearch
from kcomp.search.rules import Action
from kcomp.search.space import Space
from kcomp.search.strategy import Budget

AVX2 = cpu_target("avx2", 4)
TOY = """dim M = 96, N = 96, K = 96
kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"""
# The hidden machine: threads cost 20 us to start (the default's two parallel regions per call hurt),
# and 32 vector registers (larger register tiles pay).
HIDDEN = Machine(lanes=8, cores=4, region_s=20e-6, registers=32)


class FakeMeasurer:
    """What `Session` needs of a Measurer; `fail(schedule)` may return a failure status."""

    def __init__(self, source: str, target: object = AVX2, truth=None, fail=None):
        module = load_module(source)
        self.program = front(module, module.kernel(None), {})
        self.target, self.naive, self.fail = target, lower(self.program), fail
        self.default_schedule = target.default_schedule(self.program, self.naive)
        self.truth = truth or (lambda nest, schedule: estimate(nest, HIDDEN))
        self.measured: list[str] = []

    def measure(self, candidates, *, on_trial=None, stop=None):
        out = []
        for schedule in candidates:
            status = self.fail(schedule) if self.fail and schedule != self.default_schedule else None
            if status is not None:
                trial = Trial(schedule, status, error="fake failure")
            else:
                jitter = 1.0 + 0.05 * (int(schedule.hash[:6], 16) / 0xFFFFFF - 0.5)
                seconds = self.truth(apply(self.naive, schedule), schedule).time * jitter
                trial = Trial(schedule, Status.OK, seconds, {"min_s": seconds, "max_s": seconds * 1.02})
            self.measured.append(str(schedule))
            if on_trial:
                on_trial(trial)
            out.append(trial)
        return out


def tune(strategy, measurer, trials: int, seed: int):
    space = Space(measurer.program, measurer.target)
    return strategy.run(space, measurer, Budget(trials=trials), None, seed=seed)


def test_mcts_finds_better_schedules_than_random_search_at_equal_budgets():
    best = {"mcts": [], "random": []}
    for seed in range(3):
        for strategy in (MCTS(), RandomSearch()):
            result = tune(strategy, FakeMeasurer(TOY), 10, seed)
            assert len(result.trials) == 10
            best[strategy.name].append(result.best.time_s)
    for m, r in zip(best["mcts"], best["random"], strict=True):
        assert m <= r
    geomean = {k: math.exp(sum(map(math.log, v)) / len(v)) for k, v in best.items()}
    assert geomean["mcts"] < 0.85 * geomean["random"], geomean


def test_one_seed_gives_one_run():
    runs = [FakeMeasurer(TOY) for _ in range(2)]
    for measurer in runs:
        tune(MCTS(), measurer, 10, seed=5)
    assert runs[0].measured == runs[1].measured
    assert len(runs[0].measured) == 11  # the default, then 10 candidates


def test_failures_are_recorded_and_the_search_goes_on():
    statuses = [Status.CRASH, Status.TIMEOUT, Status.WRONG, Status.BUILD_ERROR, None]
    measurer = FakeMeasurer(TOY, fail=lambda s: statuses[int(s.hash[:4], 16) % len(statuses)])
    result = tune(MCTS(batch_size=4), measurer, 12, seed=0)
    assert len(result.trials) == 12
    assert 0 < result.failures < 12
    assert all(t.time_s is None for t in result.trials if not t.ok)
    everything_fails = FakeMeasurer(TOY, fail=lambda s: Status.CRASH)
    result = tune(MCTS(batch_size=4), everything_fails, 8, seed=0)
    assert len(result.trials) == 8 and result.failures == 8
    assert result.best is result.default


def test_records_of_other_hardware_are_measured_first():
    class OtherHardware:
        def best_other_hardware(self, key, limit):
            return [SimpleNamespace(schedule=parse_schedule(text)) for text in (seeded, "split q 2")]

        def known(self, key, schedule_hash):
            return None

        def record(self, trial):
            return trial

    seeded = "reorder i k j\nvectorize j\nparallel i"
    measurer = FakeMeasurer(TOY)
    space = Space(measurer.program, measurer.target)
    result = MCTS(batch_size=4).run(space, measurer, Budget(trials=6), OtherHardware(), seed=0)
    assert measurer.measured[1] == seeded + "\n"  # right after the default; the illegal one is dropped
    assert len(result.trials) == 6


def test_the_accelerator_space_is_tuned_by_simulated_cycles():
    pytest.importorskip("kcomp.targets.accel.compiler.mapping")
    from kcomp.targets import get_target

    accel = get_target("accel")
    source = TOY.replace("96, N = 96, K = 96", "256, N = 256, K = 256")
    cycles = accel.estimate
    measurer = FakeMeasurer(source, accel, truth=cycles)
    result = tune(MCTS(batch_size=4), measurer, 8, seed=1)
    assert len(result.trials) == 8 and result.failures == 0
    assert result.best.time_s <= result.default.time_s
    assert any("double_buffer" in str(t.schedule) for t in result.trials)


def test_counters_shape_the_reward():
    stalls = {
        "cycles": 1000,
        "stalls": {"token_wait.compute": 300, "dma_bandwidth": 100, "bank_conflict": 50},
    }
    assert penalty(stalls) == pytest.approx(0.2)  # half the share of cycles spent waiting for data
    assert penalty({"cycles": 100, "stalls": {"token_wait.compute": 100}}) == pytest.approx(0.3)  # capped
    assert penalty({"min_s": 1.0, "max_s": 1.5}) == pytest.approx(0.025)  # an unstable timing
    assert penalty({"min_s": 1.0, "max_s": 1.0, "repeats": 5}) == 0.0


def test_profile_guidance_biases_the_priors():
    dma_bound = guidance(
        SimpleNamespace(counters={"cycles": 100, "stalls": {"token_wait.compute": 50}}), None
    )
    assert dma_bound.kinds == DMA_KINDS and dma_bound.larger_tiles
    double = Action("double_buffer", (parse_schedule("double_buffer").steps[0],), 0.5, "double_buffer", 1)
    single = Action("single buffers", (), 0.5, "double_buffer", 0)
    assert dma_bound.weight(double) > dma_bound.weight(single) == 1.0
    big, small = (Action(f"tile i {t}", (), 0.5, "tile", t, (t,)) for t in (256, 16))
    assert dma_bound.weight(big) > dma_bound.weight(small) > 1.0
    memory_bound = guidance(SimpleNamespace(counters={}), Estimate(compute=1.0, dram=3.0))
    assert memory_bound.kinds == MEMORY_KINDS
    assert guidance(SimpleNamespace(counters={}), Estimate(compute=3.0, dram=1.0)).kinds["vectorize"] > 1.0


def test_cpu_counters_shape_the_reward_and_the_priors():
    def best(counters, time_s=1e-3):
        return SimpleNamespace(counters=counters, time_s=time_s)

    memory_est, compute_est = Estimate(compute=1.0, dram=3.0), Estimate(compute=3.0, dram=1.0)
    clean = {"counter_source": "derived", "asm.vector_fp": 100, "asm.scalar_fp": 5, "asm.spills": 0}
    scalar = {**clean, "asm.vector_fp": 10, "asm.scalar_fp": 90}
    spilling = {**clean, "asm.spills": 50}
    # what gcc made of the schedule outweighs a memory-bound estimate: scalar code or spills want
    # vectorize and unroll; clean code leaves the decision to the estimate
    assert guidance(best(scalar), memory_est).kinds == COMPUTE_KINDS
    assert guidance(best(spilling), memory_est).kinds == COMPUTE_KINDS
    assert guidance(best(clean), memory_est).kinds == MEMORY_KINDS
    # estimated DRAM bytes that take most of the measured time at the model's 20 GB/s: memory-bound
    streaming = {**clean, "est.dram_bytes": 20e6}  # 1 ms at 20 GB/s
    assert guidance(best(streaming, 1.5e-3), compute_est).kinds == MEMORY_KINDS
    assert guidance(best(streaming, 10e-3), compute_est).kinds == COMPUTE_KINDS
    # hardware counters: last-level misses per 1000 instructions
    missing = {"counter_source": "hardware", "hw.instructions": 1e6, "hw.cycles": 2e6, "hw.cache_misses": 1e4}
    assert guidance(best(missing), compute_est).kinds == MEMORY_KINDS
    assert guidance(best({**missing, "hw.cache_misses": 100}), compute_est).kinds == COMPUTE_KINDS
    assert guidance(best({**missing, "hw.cache_misses": 0, "hw.dtlb_misses": 5e3}), compute_est).kinds == (
        MEMORY_KINDS
    )
    # the reward: a tenth of the spills per FP instruction, or of the miss rate over 20 per 1000
    assert penalty(spilling) == pytest.approx(0.1 * 50 / 105)
    assert penalty(clean) == penalty(scalar) == 0.0
    assert penalty(missing) == pytest.approx(0.05)
    assert penalty({**missing, "hw.cache_misses": 1e6}) == pytest.approx(0.1)


def test_the_estimate_moves_fewer_bytes_at_each_level_further_out():
    measurer = FakeMeasurer(TOY.replace("96", "256"))
    est = estimate(apply(measurer.naive, measurer.default_schedule), Machine.of(AVX2))
    traffic = est.traffic()
    assert traffic["est.l1_bytes"] >= traffic["est.l2_bytes"] >= traffic["est.dram_bytes"] == est.bytes
    assert traffic["est.dram_bytes"] >= 3 * 256 * 256 * 4  # A, B and C once at least


def test_the_cost_model_ranks_the_obvious_and_learns_a_scale():
    measurer = FakeMeasurer(TOY.replace("96", "256"))
    machine = Machine.of(AVX2)
    naive = estimate(measurer.naive, machine)
    default = estimate(apply(measurer.naive, measurer.default_schedule), machine)
    scalar = estimate(apply(measurer.naive, parse_schedule("reorder i k j\nparallel i")), machine)
    vector = estimate(
        apply(measurer.naive, parse_schedule("reorder i k j\nvectorize j\nparallel i")), machine
    )
    assert default.time < vector.time < scalar.time < naive.time
    assert vector.vector == pytest.approx(1.0, abs=0.01) and scalar.vector < 0.01
    model = LearnedModel()
    for est in (naive, default, scalar, vector):
        model.add(est, 2.0 * est.time)  # a machine twice as slow as assumed
    assert model.predict(default) == pytest.approx(2.0 * default.time, rel=0.05)


def test_a_real_short_run(matmul_file):
    """Real measurement (built, checked against the reference, timed in worker processes)."""
    from kcomp.search.measure import Measurer

    with Measurer(matmul_file, workers=1, budget_s=0.005, timeout_s=30) as measurer:
        space = Space(measurer.program, measurer.target)
        result = MCTS(batch_size=3).run(space, measurer, Budget(trials=5), None, seed=0)
    assert len(result.trials) == 5
    assert result.default.ok and result.best.ok
    assert result.failures == 0, [t.error for t in result.trials if not t.ok]
