"""kcomp/fold_inits.py: every reduction's register tile starts from its identity where the schedule
allows, also when removing an earlier initialisation nest renumbers the later ones' loops (the
steps after it are renamed to match), unfolding renames them back, and the folded schedule computes
what the plain one does."""

from __future__ import annotations

from kcomp.api import compile, load_module
from kcomp.fold_inits import fold_inits, unfold_inits
from kcomp.lower import lower
from kcomp.pipeline import front
from kcomp.schedule import CacheWrite, Schedule, Vectorize, parse_schedule

TWO_CONVS = """
dim C = 16, H = 20, W = 28
kernel two(X: f32[C, H, W], F: f32[C, C, 3, 3], G: f32[C, C, 3, 3]) -> (Z: f32[C, H, W]) {
    Y[k, h, w] += X[c, h + r - 1, w + s - 1, pad=0.0] * F[k, c, r, s] where h < H, w < W, r < 3, s < 3
    T[k, h, w] = relu(Y[k, h, w])
    Z[k, h, w] += T[c, h + r - 1, w + s - 1, pad=0.0] * G[k, c, r, s] where r < 3, s < 3
}
"""


def test_every_reduction_of_the_default_is_folded_and_correct():
    kernel = compile(TWO_CONVS)
    writes = [s for s in kernel.built.schedule.steps if isinstance(s, CacheWrite)]
    assert len(writes) == 2 and all(s.init for s in writes), str(kernel.built.schedule)
    assert kernel.check(seed=1).ok


def test_the_steps_after_a_fold_are_renamed_to_the_loops_they_meant():
    module = load_module(TWO_CONVS)
    program = front(module, module.kernel(None), {})
    naive = lower(program)
    plain = parse_schedule(
        "vectorize w_init\ncache_write Y at h\nvectorize w_init1\ncache_write Z at h2\n", "<test>"
    )
    folded = fold_inits(naive, plain.steps)
    assert folded[1] == CacheWrite("Y", "h", True) and folded[3] == CacheWrite("Z", "h2", True)
    assert folded[2] == Vectorize("w_init")  # Z's fill loop, once Y's fill nest is gone
    assert unfold_inits(naive, Schedule(folded)) == plain  # names back to where the fill nest stays
    for schedule in (plain, Schedule(folded)):
        assert compile(TWO_CONVS, schedule=schedule).check(seed=2).ok
