"""`targets.base.bench`, the timer behind every `profile`: warm-up, at least five timed calls, the
median, and the tuner's cut-off for hopeless candidates."""

from __future__ import annotations

import itertools
import time

from kcomp.targets.base import bench


def _sleeper(seconds: float):
    calls = []

    def fn():
        calls.append(1)
        time.sleep(seconds)

    return fn, calls


def test_at_least_five_timed_calls_after_a_warm_up():
    fn, calls = _sleeper(0.002)
    m = bench(fn, budget_s=0.001, warmup_s=0.0)
    assert m.counters["repeats"] >= 5 and len(calls) == m.counters["repeats"] + m.counters["warmup_calls"]
    assert m.counters["min_s"] <= m.time_s <= m.counters["max_s"] and m.time_s >= 0.002


def test_a_first_call_over_the_cutoff_is_the_figure():
    fn, calls = _sleeper(0.02)
    m = bench(fn, budget_s=0.5, cutoff_s=0.005)
    assert len(calls) == 1 and m.counters["cut_short"] == 1 and m.counters["repeats"] == 1
    assert m.time_s >= 0.02
    fn, calls = _sleeper(0.002)
    m = bench(fn, budget_s=0.001, warmup_s=0.0, cutoff_s=1.0)  # under the cutoff: timed as usual
    assert "cut_short" not in m.counters and len(calls) >= 6


def test_interleave_alternates_systems_and_records_failures():
    from kcomp.targets.base import interleave

    log: list[str] = []

    def system(name):
        return lambda: log.append(name)

    def broken():
        raise RuntimeError("no such kernel")

    times, errors = interleave(
        {"a": system("a"), "b": system("b"), "bad": broken}, budget_s=0.001, rounds=4, warmup_s=0.0
    )
    assert set(times) == {"a", "b"} and errors == {"bad": "RuntimeError: no such kernel"}
    timed = log[8:]  # one first call and three warm-up calls each
    switches = sum(1 for x, y in itertools.pairwise(timed) if x != y)
    assert switches == 2 * 4 - 1  # a-block, b-block, in every round
    assert times["a"].counters["repeats"] == timed.count("a") >= 5
