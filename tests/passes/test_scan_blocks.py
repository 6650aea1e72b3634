"""scan_blocks: a scan's recurrence computed in blocks (pass 1 the block totals, a short scan of the
offsets, pass 2 each block from its offset), checked differentially (loop interpreter and compiled
C against the reference) for every scan operation and modifier, tails and parallel blocks; its
refusals; the register the emitters keep a recurrence's carried element in; and the default
scheduler's rule for a scan too long for its lines."""

from __future__ import annotations

import pytest
from helpers import build, check_schedule, cpu_target, loop_names, scheduled

from kcomp.autoschedule import default_schedule
from kcomp.loops import Alloc, Loop, walk_stmts
from kcomp.schedule import Parallel, ScanBlocks, Vectorize

SCANS = """
kernel s(X: f32[B, N]) -> (C: f32[B, N], R: f32[B, N], P: f32[B, N], Q: f32[B, N], E: f32[B, N]) {
    C[b, i] += X[b, i] * 2.0 - 1.0 scan i
    R[b, i] += X[b, i] scan reverse i
    P[b, i] max= X[b, i] scan i
    Q[b, i] *= 1.0 + X[b, i] * 0.01 scan reverse exclusive i
    E[b, i] min= X[b, i] scan exclusive i
}
"""
ONE = "kernel s(x: f32[N]) -> (y: f32[N]) { y[i] += x[i] scan i }"


def _scan_loops(text: str, shapes: dict[str, int]) -> list[str]:
    """The printed names of the loops each scan's recurrence runs over (the innermost of each nest)."""
    _, nest = build(text, shapes)
    names = loop_names(nest)
    return [n for n in names if n.startswith("i")]


@pytest.mark.parametrize("n,blocks", [(37, 4), (40, 4), (9, 4), (6, 5), (33, 2)])
def test_every_scan_in_blocks_matches_the_reference(n, blocks):
    shapes = {"B": 3, "N": n}
    loops = _scan_loops(SCANS, shapes)
    assert len(loops) == 5
    steps = "\n".join(f"scan_blocks {name} {blocks}" for name in reversed(loops))
    nest = check_schedule(SCANS, shapes, steps, seed=n)
    assert sum(isinstance(s, Alloc) and s.buffer.name.endswith("_blocks") for s in walk_stmts(nest.body)) == 5


def test_the_blocks_run_in_parallel_and_pass_one_vectorized():
    nest = check_schedule(
        ONE, {"N": 1002}, "scan_blocks i 6\nvectorize i_t reduce\nparallel i_b\nparallel i_b1", seed=3
    )
    kinds = [s.kind.value for s in walk_stmts(nest.body) if isinstance(s, Loop)]
    assert kinds == ["parallel", "vector", "serial", "parallel", "serial"]


def test_the_lines_stay_independent():
    check_schedule(SCANS, {"B": 4, "N": 21}, "parallel b\nscan_blocks i 3", seed=5)


@pytest.mark.parametrize(
    "text,step,match",
    [
        (ONE, "scan_blocks i 1", "must number 2 to 10"),
        (ONE, "scan_blocks i 11", "must number 2 to 10"),
        (ONE, "scan_blocks i 0", "must be a positive integer"),
        ("kernel s(x: f32[N]) -> (y: f32[N]) { y[i] = x[i] * 2.0 }", "scan_blocks i 2", "is not a scan"),
        ("kernel s(x: f32[M, N]) -> (y: f32[N]) { y[i] += x[j, i] }", "scan_blocks j 2", "is not a scan"),
    ],
)
def test_refusals_name_the_reason(text, step, match):
    with pytest.raises(Exception, match=match):
        scheduled(text, {"N": 10, "M": 4} if "M" in text else {"N": 10}, step)


def test_a_serial_recurrence_carries_its_element_in_a_register():
    _, nest = build(ONE, {"N": 300})
    source = cpu_target().emit(nest)
    assert "y_carry[0] = (float)((y_carry[0] + x[i]))" in source.replace("  ", " ")
    check_schedule(ONE, {"N": 300}, "")


def test_the_default_rule_blocks_a_long_scan_and_leaves_many_lines_alone():
    target = cpu_target()
    program, nest = build(ONE, {"N": 1 << 16})
    steps = default_schedule(program, nest, target).steps
    assert ScanBlocks("i", 2 * target.cores) in steps and Vectorize("i_t", reduce=True) in steps
    assert Parallel("i_b") in steps and Parallel("i_b1") in steps
    check_schedule(ONE, {"N": 1 << 16}, default_schedule(program, nest, target), seed=9)
    program, nest = build(SCANS, {"B": 64, "N": 1 << 12})
    steps = default_schedule(program, nest, target).steps
    assert not any(isinstance(s, ScanBlocks) for s in steps)
    assert Parallel("b") in steps
