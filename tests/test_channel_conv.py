"""The convolution rule's channel form (kcomp/channel_conv.py): the kernels it must take (rows that
waste lanes in the row form, strided windows), the ones it must leave to the row form, and every
schedule it makes checked against the reference, for 1, 2 and 3 cores (the per-thread packing,
the fallback to one packed copy, the parallel loop it then picks)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kcomp.api import compile, load_module
from kcomp.autoschedule import default_schedule
from kcomp.lower import lower
from kcomp.pipeline import front
from kcomp.schedule import Layout, Pack, Parallel, Vectorize


def conv(S: int = 1, P: int = 1) -> str:
    """A 2-D convolution of stride S and padding P (the filter's size R is a dimension)."""
    return (
        f"dim OH = (H + 2 * {P} - R) // {S} + 1, OW = (W + 2 * {P} - R) // {S} + 1\n"
        "kernel c(X: f32[N, C, H, W], F: f32[K, C, R, R]) -> (Y: f32[N, K, OH, OW]) {\n"
        f"    Y[n, k, h, w] += X[n, c, {S} * h + r - {P}, {S} * w + s - {P}, pad=0.0] * F[k, c, r, s]\n}}"
    )


def schedule_for(source: str, cores: int, **shapes: int):
    module = load_module(source)
    program = front(module, module.kernel(None), shapes)
    target = SimpleNamespace(vector_bits=512, cores=cores)
    return default_schedule(program, lower(program), target)


def channel_form(schedule) -> bool:
    return any(isinstance(s, Vectorize) and s.loop == "k_i" for s in schedule.steps) and any(
        isinstance(s, Layout) for s in schedule.steps
    )


TAKES = {  # shapes where the channel form fills more lanes, or reads a strided window for free
    "row_56": (conv(), dict(N=1, C=8, K=32, H=14, W=56, R=3)),
    "stride_2": (conv(S=2), dict(N=2, C=4, K=16, H=22, W=22, R=3)),
    "alexnet_like": (conv(S=4, P=2), dict(N=1, C=3, K=32, H=31, W=31, R=5)),
    "odd_rows": (conv(), dict(N=3, C=4, K=16, H=15, W=15, R=3)),
    "channel_tail": (conv(), dict(N=1, C=4, K=40, H=10, W=20, R=3)),
}


@pytest.mark.parametrize("cores", [1, 2, 3])
@pytest.mark.parametrize("name", list(TAKES))
def test_the_channel_form_fires_and_matches_the_reference(name, cores):
    source, shapes = TAKES[name]
    schedule = schedule_for(source, cores, **shapes)
    assert channel_form(schedule), str(schedule)
    assert any(isinstance(s, Pack) and s.tensor == "F" for s in schedule.steps)
    if cores > 1:
        assert any(isinstance(s, Parallel) for s in schedule.steps)
    kernel = compile(source, schedule=schedule, shapes=shapes)
    for seed in (1, 2):
        assert kernel.check(seed=seed).ok


LEAVES = {
    "few_channels": (conv(), dict(N=1, C=8, K=8, H=14, W=56, R=3)),
    "full_vectors_along_the_row": (conv(), dict(N=1, C=8, K=32, H=12, W=48, R=3)),
    "prime_row": (conv(), dict(N=1, C=8, K=32, H=12, W=37, R=3)),
    "no_row_loop": (
        "dim OL = (L + 2 - 3) // 2 + 1\n"
        "kernel c1(X: f32[N, C, L], F: f32[K, C, 3]) -> (Y: f32[N, K, OL]) {\n"
        "    Y[n, k, o] += X[n, c, 2 * o + t - 1, pad=0.0] * F[k, c, t] where t < 3\n}",
        dict(N=1, C=8, K=32, L=200),
    ),
}


@pytest.mark.parametrize("name", list(LEAVES))
def test_the_row_form_keeps_what_the_channel_form_does_not_help(name):
    source, shapes = LEAVES[name]
    schedule = schedule_for(source, 2, **shapes)
    assert not channel_form(schedule), str(schedule)
    assert compile(source, schedule=schedule, shapes=shapes).check(seed=3).ok


def test_the_default_on_this_machine_is_correct():
    source, shapes = TAKES["row_56"]
    kernel = compile(source, shapes=shapes)
    assert kernel.check(seed=4).ok
