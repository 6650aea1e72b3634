"""compute_at, inline, materialize, online: each checked differentially (interpreter and compiled C
against the reference), on DAGs with shared intermediates, and every refusal with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import _RUN, EXECUTORS, build, check_schedule, scheduled, unwritten

from kcomp.compare import compare_outputs
from kcomp.errors import ScheduleError, SourceError
from kcomp.loops import Alloc, walk_stmts
from kcomp.passes import apply
from kcomp.printer import format_nest
from kcomp.reference import evaluate
from kcomp.schedule import parse_schedule

SOFTMAX = """kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    e[n, d] = exp(X[n, d] - mx[n])
    s[n] += e[n, d]
    Y[n, d] = e[n, d] / s[n]
}"""
LAYERNORM = """kernel ln(X: f32[N, D], g: f32[D]) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    xc[n, d] = X[n, d] - mean[n]
    var[n] += xc[n, d] * xc[n, d] / D
    Y[n, d] = xc[n, d] * rsqrt(var[n] + 0.00001) * g[d]
}"""
CHAIN = """kernel chain(X: f32[N, D], b: f32[D]) -> (Y: f32[N, D]) {
    t[n, d] = X[n, d] + b[d]
    g[n, d] = t[n, d] * sigmoid(t[n, d])
    Y[n, d] = 2.0 * g[n, d]
}"""
# t feeds a 3-tap stencil (padded at both ends) and a pointwise reader: a shared intermediate.
STENCIL = """kernel st(X: f32[N, W]) -> (Y: f32[N, W], Z: f32[N, W]) {
    t[n, w] = X[n, w] * X[n, w] + 1.0
    Y[n, w] += t[n, w + r - 1] where r < 3
    Z[n, w] = t[n, w] * 3.0
}"""
SM = {"N": 6, "D": 13}
ST = {"N": 3, "W": 11}


def test_compute_at_moves_the_chain_into_the_row_loop():
    nest = check_schedule(SOFTMAX, SM, "compute_at s at n3\ncompute_at e at n2\ncompute_at mx at n1")
    text = format_nest(nest)
    assert text.count("for n") == 1  # one row loop; every intermediate is a local row or scalar
    locals_ = {s.buffer.name: s.buffer.shape for s in walk_stmts(nest.body) if isinstance(s, Alloc)}
    assert locals_ == {"mx": (1,), "e": (1, 13), "s": (1,)}


def test_compute_at_then_schedule_the_fused_loops():
    steps = "compute_at s at n3\ncompute_at e at n2\ncompute_at mx at n1\n"
    steps += "vectorize d reduce\nvectorize d1\nvectorize d2 reduce\nvectorize d3\nparallel n"
    check_schedule(SOFTMAX, {"N": 5, "D": 37}, steps)


def test_compute_at_a_tile_of_rows():
    check_schedule(SOFTMAX, {"N": 7, "D": 9}, "split n3 3\ncompute_at s at n3_o\ncompute_at e at n3_o")


def test_compute_at_with_other_readers_outside_recomputes_for_this_one():
    # e is read by s's nest and by Y's: computed at Y's row loop, the original stays for s.
    nest = check_schedule(SOFTMAX, SM, "compute_at e at n3")
    text = format_nest(nest)
    assert "alloc e: f32[6, 13] global" in text and "alloc e1: f32[1, 13] local" in text
    # ... and once s's nest computes its own too, the global copy disappears.
    nest = check_schedule(SOFTMAX, SM, "compute_at e at n3\ncompute_at e at n2")
    assert "e: f32[6, 13]" not in format_nest(nest)


def test_compute_at_a_stencil_recomputes_the_halo_and_pads():
    nest = check_schedule(STENCIL, ST, "split w1 4\ncompute_at t at w1_o")
    assert "alloc t1: f32[1, 6] local" in format_nest(nest)  # 4 outputs need 6 inputs of t


def test_compute_at_a_stencil_row():
    check_schedule(STENCIL, ST, "compute_at t at n1")
    nest = check_schedule(STENCIL, ST, "compute_at t at n1\ncompute_at t at n2")
    assert "global" not in format_nest(nest)  # both readers compute their own rows


def test_inline_elementwise_chain():
    nest = check_schedule(CHAIN, SM, "inline t\ninline g\nvectorize d\nparallel n")
    assert "alloc" not in format_nest(nest)


def test_inline_into_a_padded_stencil_keeps_the_pad():
    nest = check_schedule(STENCIL, ST, "inline t")
    assert "select(" in format_nest(nest)


def test_inline_into_a_reduction_and_compute_at_the_rest():
    check_schedule(LAYERNORM, SM, "compute_at var at n3\ncompute_at xc at n2\ncompute_at mean at n1")
    check_schedule(SOFTMAX, SM, "inline e\ncompute_at s at n2\ncompute_at mx at n1")


def test_materialize_is_a_checked_no_op():
    _, naive = build(CHAIN, SM)
    assert format_nest(apply(naive, parse_schedule("materialize t"))) == format_nest(naive)
    with pytest.raises(ScheduleError, match="no tensor named 't'"):
        apply(naive, parse_schedule("inline t\nmaterialize t"))


@pytest.mark.parametrize(
    ("kernel", "schedule", "message"),
    [
        (SOFTMAX, "compute_at X at n3", "X is an input"),
        (SOFTMAX, "compute_at Y at n3", "Y is an output"),
        (SOFTMAX, "compute_at mx at n3", "loop n3 does not read mx"),
        (SOFTMAX, "compute_at s at d2", "writes s too"),
        (SOFTMAX, "vectorize d3\ncompute_at s at d3", "loop d3 is vector"),
        (SOFTMAX, "split n 2\ncompute_at mx at n", "was transformed"),
        (SOFTMAX, "compute_at mx at n1\ncompute_at mx at n2", "loop n2 does not read mx"),
        (
            SOFTMAX,
            "compute_at e at n3\ncompute_at e at n2\ninline e",
            "computed inside another loop nest already",
        ),
        (SOFTMAX, "inline s", "computed by 2 nests"),
        (SOFTMAX, "inline Y", "Y is an output"),
        (SOFTMAX, "online e s", "must be computed by an initialisation and one reduction"),
        (SOFTMAX, "online mx mx", "two different tensors"),
        (LAYERNORM, "online mean var", "needs mean"),
        (CHAIN, "inline Y", "Y is an output"),
    ],
)
def test_refusals_name_the_step_and_the_reason(kernel, schedule, message):
    _, naive = build(kernel, SM)
    with pytest.raises((ScheduleError, SourceError), match=message) as info:
        apply(naive, parse_schedule(schedule))
    if isinstance(info.value, ScheduleError):
        assert str(info.value).startswith(schedule.split("\n")[-1] + ":")


def test_compute_at_refuses_a_producer_whose_input_is_overwritten():
    text = """kernel k(X: f32[N]) -> (Y: f32[N], Z: f32[N]) {
    t[i] = X[i] * 2.0
    Z[i] = t[i] + 1.0
    Y[i] = t[i] + Z[i]
}"""
    # t read by Z's nest (before Y) and Y's: inlining is fine, moving t past nothing that writes X.
    check_schedule(text, {"N": 9}, "inline t")
    check_schedule(text, {"N": 9}, "compute_at t at i2")


@pytest.mark.parametrize("where", ["top", "fused"])
def test_online_softmax_matches_the_two_pass_form(where):
    steps = (
        "online mx s"
        if where == "top"
        else "compute_at s at n3\ncompute_at e at n2\ncompute_at mx at n1\nonline mx s"
    )
    nest = check_schedule(SOFTMAX, SM, steps)
    assert "select(" in format_nest(nest)


SPECIAL_ROWS = [
    [-np.inf, -np.inf, 1.0, 2.0, -np.inf],  # starts with -inf: no NaN may appear
    [-np.inf] * 5,  # all -inf: NaN, as the two-pass form gives
    [3e38, -3e38, 88.0, 89.0, 0.0],  # huge values: the rescale must not overflow
    [np.inf, 1.0, 2.0, 3.0, 4.0],  # +inf: NaN, as the two-pass form gives
    [1.0, 1.0, 1.0, 1.0, 1.0],
    [-1e-30, 5.0, -80.0, 5.0, 40.0],
]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_online_softmax_on_rows_with_infinities_and_large_values(executor):
    kernel = SOFTMAX.replace("(Y: f32[N, D])", "(Y: f32[N, D], s: f32[N])").replace(
        "    s[n] += e", "    s[n] += e"
    )
    program, naive = build(kernel, {"N": len(SPECIAL_ROWS), "D": 5})
    nest = apply(naive, parse_schedule("online mx s"))
    inputs = {"X": np.array(SPECIAL_ROWS, np.float32)}
    with np.errstate(all="ignore"):
        expected = evaluate(program, inputs)
    arrays = {"X": inputs["X"].copy(), **{b.name: unwritten(b.shape, b.dtype.numpy) for b in program.outputs}}
    _RUN[executor](nest, arrays)
    result = compare_outputs(program, {b.name: arrays[b.name] for b in program.outputs}, expected)
    assert all(c.ok for c in result.values()), {k: str(c) for k, c in result.items()}
    assert np.isnan(arrays["Y"][1]).all() and np.isfinite(arrays["Y"][0]).all()


def test_online_refuses_a_sum_that_is_not_relative_to_the_max():
    text = """kernel k(X: f32[N, D]) -> (s: f32[N]) {
    mx[n] max= X[n, d]
    s[n] += exp(X[n, d]) * mx[n]
}"""
    _, naive = build(text, SM)
    with pytest.raises(ScheduleError, match="not exp"):
        apply(naive, parse_schedule("online mx s"))


def test_fused_schedules_replay_from_their_text():
    steps = parse_schedule("compute_at s at n3\ncompute_at e at n2\ncompute_at mx at n1\nonline mx s")
    assert parse_schedule(str(steps)) == steps
    assert format_nest(scheduled(SOFTMAX, SM, steps)) == format_nest(scheduled(SOFTMAX, SM, str(steps)))
