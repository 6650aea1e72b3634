"""phases: a gather-form transposed convolution split into one dense nest per output residue,
checked differentially (interpreter and compiled C against the reference), with its refusals, and
the default scheduler's rule that takes it."""

from __future__ import annotations

import pytest
from helpers import build, check_schedule, loop_names, scheduled

from kcomp.autoschedule import default_schedule
from kcomp.errors import ScheduleError
from kcomp.expr import BinaryOp, Select, walk
from kcomp.loops import Store, walk_stmts
from kcomp.loops.common import body_exprs
from kcomp.schedule import Phases
from kcomp.targets.cpu.target import CpuTarget

# stride 2, padding 1, output padding 1 (torch's conv_transpose2d(X, F, 2, 1, 1))
CONVT2 = """dim OH = 2 * H, OW = 2 * W
kernel convt(X: f32[N, C, H, W], F: f32[C, K, 3, 3]) -> (Y: f32[N, K, OH, OW]) {
    Y[n, k, h, w] += select((h + 1 - r) % 2 == 0 and (w + 1 - s) % 2 == 0, X[n, c, (h + 1 - r) // 2, (w + 1 - s) // 2, pad=0.0], 0.0) * F[c, k, r, s] where r < 3, s < 3, c < C
}"""
# stride 3, dilation 2, a 4-tap kernel: gcd(2, 3) = 1, so every residue has its own taps
CONVT1D = """dim OL = 3 * L - 2
kernel ct(X: f32[C, L], F: f32[C, K, 4]) -> (Y: f32[K, OL]) {
    Y[k, o] += X[c, (o + 3 - 2 * t) // 3, pad=0.0] * select((o + 3 - 2 * t) % 3 == 0, F[c, k, t], 0.0) where t < 4, c < C
}"""
# dilation 2 at stride 4: gcd 2, so half the residues never meet a tap and lose their nest
EVEN = """dim OL = 4 * L
kernel ct(X: f32[L], F: f32[3]) -> (Y: f32[OL]) {
    Y[o] += select((o - 2 * t) % 4 == 0, X[(o - 2 * t) // 4, pad=0.0], 0.0) * F[t] where t < 3
}"""
UPSAMPLE = """dim OL = 2 * L
kernel up(X: f32[L]) -> (Y: f32[OL]) {
    Y[o] += select(o % 2 == 0, X[o // 2], 0.0)
}"""


def _selects(nest) -> int:
    return sum(isinstance(n, Select) for e in body_exprs(nest.body) for n in walk(e))


@pytest.mark.parametrize(
    "schedule",
    [
        "phases h",
        "phases h\nphases w\nphases w2",
        "phases w\nphases h\nphases h2",
        "phases h\nphases w\nphases w2\nsplit w 4\nvectorize w_i\nparallel n",
    ],
)
def test_transposed_conv2d_phases_match_the_reference(schedule):
    check_schedule(CONVT2, {"N": 2, "C": 3, "K": 2, "H": 5, "W": 6}, schedule)


def test_all_four_phases_are_dense():
    nest = scheduled(CONVT2, {"N": 1, "C": 2, "K": 2, "H": 4, "W": 4}, "phases h\nphases w\nphases w2")
    assert _selects(nest) == 0
    updates = [s for s in walk_stmts(nest.body) if isinstance(s, Store) and s.buffer.name == "Y"]
    assert len(updates) == 1 + 4  # the initialisation and one nest per (h, w) residue
    # no modulo or floor division is left in the four dense nests
    ops = {n.op for s in updates[1:] for e in (*s.index, s.value) for n in walk(e) if hasattr(n, "op")}
    assert not ops & {BinaryOp.MOD, BinaryOp.FLOORDIV}


@pytest.mark.parametrize("length", [4, 5])
def test_stride_three_with_dilation(length):
    check_schedule(CONVT1D, {"C": 3, "K": 2, "L": length}, "phases o")


def test_residues_without_taps_lose_their_nest():
    nest = check_schedule(EVEN, {"L": 6}, "phases o")
    updates = [s for s in walk_stmts(nest.body) if isinstance(s, Store) and s.buffer.name == "Y"]
    assert len(updates) == 1 + 2  # residues 1 and 3 are never written after the zeroing


def test_a_condition_without_taps_drops_the_masked_residue():
    nest = check_schedule(UPSAMPLE, {"L": 7}, "phases o")
    assert _selects(nest) == 0


@pytest.mark.parametrize(
    ("text", "shapes", "step", "why"),
    [
        (CONVT2, {"N": 1, "C": 2, "K": 2, "H": 4, "W": 4}, "phases c", "alone"),
        (CONVT2, {"N": 1, "C": 2, "K": 2, "H": 4, "W": 4}, "phases n", "no condition"),
        (
            """kernel a(X: f32[L]) -> (Y: f32[L]) { Y[o] = select(o % 2 == 0, X[o], 0.0) }""",
            {"L": 8},
            "phases o",
            "not accumulated",
        ),
        (
            """dim OL = 2 * L
kernel b(X: f32[L], F: f32[3]) -> (Y: f32[OL]) {
    Y[o] += X[(o - t) // 2, pad=0.0] * F[t] + select((o - t) % 2 == 0, 1.0, 0.0)
}""",
            {"L": 6},
            "phases o",
            "no condition",
        ),
        (EVEN, {"L": 6}, "split o 3\nphases o_o", "alone"),  # Y[o_o * 3 + o_i]
    ],
)
def test_refusals_name_the_reason(text, shapes, step, why):
    with pytest.raises(ScheduleError, match=why):
        scheduled(text, shapes, step)


def test_the_default_scheduler_splits_every_phased_loop():
    program, nest = build(CONVT2, {"N": 2, "C": 8, "K": 16, "H": 8, "W": 20})
    schedule = default_schedule(program, nest, CpuTarget())
    assert sum(isinstance(s, Phases) for s in schedule.steps) == 3
    check_schedule(CONVT2, {"N": 2, "C": 8, "K": 16, "H": 8, "W": 20}, schedule, ("c",))


def test_the_default_scheduler_leaves_plain_convolutions_alone():
    text = """kernel conv(X: f32[C, L], F: f32[K, C, 3]) -> (Y: f32[K, L]) {
    Y[k, o] += X[c, o + t - 1, pad=0.0] * F[k, c, t] where t < 3
}"""
    program, nest = build(text, {"C": 4, "K": 8, "L": 40})
    assert not any(isinstance(s, Phases) for s in default_schedule(program, nest, CpuTarget()).steps)
    assert "o" in loop_names(nest)
