"""The search space: every action is legal, every path's schedule replays to the same nest (and
computes what the reference does), the default scheduler's schedule is reachable and is what the
priors favour, and different paths to the same code share one key."""

from __future__ import annotations

import random

import numpy as np
import pytest
from cpu_nests import cpu_target

from kcomp import interp
from kcomp.api import load_module
from kcomp.compare import compare_outputs
from kcomp.data import random_inputs
from kcomp.errors import ScheduleError
from kcomp.loops.verify import verify
from kcomp.passes import apply
from kcomp.pipeline import front
from kcomp.printer import canonical, structural_hash
from kcomp.reference import evaluate
from kcomp.schedule import Schedule, parse_schedule
from kcomp.search.fusion import FUSION_STEPS
from kcomp.search.loop_rules import split_factors
from kcomp.search.rules import Action
from kcomp.search.space import Space, State

AVX2 = cpu_target("avx2", 4)
MATMUL = "kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) { C[i, j] += A[i, k] * B[k, j] }"
KERNELS = {
    "matmul": (MATMUL, {"M": 13, "N": 20, "K": 9}),
    "softmax": (
        "kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {\n    mx[n] max= X[n, d]\n"
        "    e[n, d] = exp(X[n, d] - mx[n])\n    s[n] += e[n, d]\n    Y[n, d] = e[n, d] / s[n]\n}",
        {"N": 6, "D": 19},
    ),
    "conv": (
        "kernel conv(X: f32[C, H, W], F: f32[K, C, 3, 3]) -> (Y: f32[K, H, W]) {\n"
        "    Y[k, h, w] += X[c, h + r - 1, w + s - 1] * F[k, c, r, s]\n}",
        {"C": 3, "H": 7, "W": 9, "K": 4},
    ),
}


def space_of(text: str, shapes: dict[str, int], target: object = AVX2) -> Space:
    module = load_module(text)
    return Space(front(module, module.kernel(None), shapes), target)


def walk(state: State, rng: random.Random) -> State:
    """A random path to a terminal state, checking on the way that every action offered is legal."""
    while not state.is_terminal():
        actions = state.actions()
        assert actions, f"no legal action at {state.phase} {state.cursor}"
        assert abs(sum(a.prior for a in actions) - 1.0) < 1e-9
        for a in actions:
            state.apply(a)  # raises ScheduleError if an offered action were illegal
        state = state.apply(rng.choice(actions))
    return state


def check_runs_like_reference(space: Space, schedule: Schedule) -> None:
    program = space.program
    nest = apply(space.naive, schedule)
    verify(nest)
    inputs = random_inputs(program, np.random.default_rng(0))
    arrays = {**{k: v.copy() for k, v in inputs.items()}}
    arrays |= {b.name: np.full(b.shape, np.nan, b.dtype.numpy) for b in program.outputs}
    interp.run(nest, arrays)
    result = compare_outputs(
        program, {b.name: arrays[b.name] for b in program.outputs}, evaluate(program, inputs)
    )
    assert all(c.ok for c in result.values()), f"{result}\n{schedule}"


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_random_paths_give_legal_schedules_that_replay(name):
    text, shapes = KERNELS[name]
    space = space_of(text, shapes)
    rng = random.Random(7)
    for _ in range(3):
        state = walk(space.root(), rng)
        schedule = state.schedule()
        assert parse_schedule(str(schedule)) == schedule
        replayed = apply(space.naive, schedule)
        assert canonical(replayed) == canonical(state.nest)
        assert state.key() == structural_hash(replayed)
        check_runs_like_reference(space, schedule)


@pytest.mark.parametrize("name", ["matmul_1024", "softmax", "conv"])
def test_the_default_schedule_is_one_recipe_action_per_nest_and_the_highest_prior_path(name):
    space = (
        space_of(MATMUL, {"M": 1024, "N": 1024, "K": 1024})
        if name == "matmul_1024"
        else space_of(*KERNELS[name])
    )
    assert space.default.steps  # the default scheduler did something to reach
    state = space.root()
    while not state.is_terminal():
        best = state.actions()[0]
        assert best.label.startswith(("default recipe", "fusion: default")), best.label
        state = state.apply(best)
    assert state.schedule() == space.default


def test_the_gemm_recipe_is_reachable_decision_by_decision():
    """Searching the GEMM nest, the actions that spell the default's steps exist (and lead the
    priors of their slots), and the code they make has the recipe action's key."""
    space = space_of(MATMUL, {"M": 1024, "N": 1024, "K": 1024})
    gemm = space.default_steps[space.nest_order[0]]
    state = space.root()
    searched = state.apply(next(a for a in state.actions() if a.label.startswith("search nest")))
    remaining = list(gemm)
    while remaining:
        actions = searched.actions()
        step_actions = [a for a in actions if a.steps and list(a.steps) == remaining[: len(a.steps)]]
        chosen = max(step_actions, key=lambda a: len(a.steps)) if step_actions else None
        if chosen is None:
            chosen = next(a for a in actions if not a.steps)  # this slot is not one the default uses
        else:
            remaining = remaining[len(chosen.steps) :]
        assert chosen.prior == max(a.prior for a in actions), (chosen.label, actions[0].label)
        searched = searched.apply(chosen)
    whole = state.apply(state.actions()[0])
    assert whole.key() == searched.key()  # transposition: two paths, one node
    while not searched.is_terminal():
        searched = searched.apply(searched.actions()[0])
    assert searched.schedule() == space.default


def test_two_paths_to_the_same_code_share_one_key():
    """On a scalar single-core target the default leaves unfused nests alone: taking its recipe,
    or searching the nest and leaving every slot as it is, reach the same code at the same slot."""
    scalar = cpu_target("scalar", 1, vector_bits=0)
    space = space_of(*KERNELS["softmax"], target=scalar)
    assert all(isinstance(s, FUSION_STEPS) for s in space.default.steps)  # fusion only
    fusion = space.root()
    root = fusion.apply(next(a for a in fusion.actions() if a.label == "fusion: none"))
    assert root.key() != fusion.key()
    recipe = root.apply(root.actions()[0])
    searched = root.apply(root.actions()[1])
    assert recipe.key() != searched.key()  # not yet: one is at the next nest, the other in this one
    while searched.cursor[0] == root.cursor[0]:
        searched = searched.apply(next(a for a in searched.actions() if not a.steps))
    assert searched is not recipe and searched.key() == recipe.key()
    split = searched.apply(next(a for a in searched.actions() if a.label.startswith("search")))
    split = split.apply(next(a for a in split.actions() if a.steps))
    assert split.key() != searched.key()


def test_factors_include_divisors_non_divisors_and_vector_multiples():
    got = split_factors(1000, 8)
    assert {4, 8, 20, 40, 125, 250} <= set(got)  # divisors near the targets
    assert {3, 6, 7, 16, 24, 32, 48, 64, 512} <= set(got)  # small tiles, vector multiples, powers of two
    assert 63 in got  # equal blocks: 1000 = 16 blocks of 63 (the last one short)
    assert all(1 < f < 1000 for f in got)


def test_a_reduction_loop_offers_vectorize_and_parallel_reduce():
    space = space_of("kernel rows(x: f32[M, N]) -> (s: f32[M]) { s[i] += x[i, j] }", {"M": 4, "N": 4096})
    labels = set()
    rng = random.Random(0)
    for _ in range(20):
        state = space.root()
        while not state.is_terminal():
            labels |= {a.label for a in state.actions()}
            state = state.apply(rng.choice(state.actions()))
    assert any(label.startswith("vectorize j") and label.endswith(" reduce") for label in labels)
    assert any(label.startswith("parallel ") and label.endswith(" reduce") for label in labels)


def test_applying_an_illegal_action_says_which():
    space = space_of(MATMUL, {"M": 8, "N": 8, "K": 8})
    bogus = Action("split q 2", (parse_schedule("split q 2").steps[0],), 1.0, "split")
    with pytest.raises(ScheduleError, match="action 'split q 2' is not legal here"):
        space.root().apply(bogus)


def test_the_accelerator_space_tiles_orders_and_double_buffers():
    pytest.importorskip("kcomp.targets.accel.compiler.mapping")
    from kcomp.targets import get_target
    from kcomp.targets.accel.compiler.backend import mappings

    space = space_of(MATMUL, {"M": 64, "N": 96, "K": 80}, get_target("accel"))
    kinds, rng = set(), random.Random(3)
    keys = {}
    for _ in range(6):
        state = space.root()
        while not state.is_terminal():
            actions = state.actions()
            kinds |= {a.kind for a in actions}
            state = state.apply(rng.choice(actions))
        schedule = state.schedule()
        assert parse_schedule(str(schedule)) == schedule
        mappings(apply(space.naive, schedule), space.target.cfg, schedule)  # the backend accepts it
        keys[str(schedule)] = state.key()
    assert {"recipe", "tile", "order", "double_buffer"} <= kinds
    # double buffering leaves the nest as it is, but it is different code: a different key
    state = space.root().apply(space.root().actions()[1])
    while state.phase != "double_buffer":
        state = state.apply(state.actions()[0])
    on, off = (state.apply(a) for a in state.actions())
    assert structural_hash(on.nest) == structural_hash(off.nest) and on.key() != off.key()


def test_an_unfused_start_puts_no_fusion_first_and_offers_the_fused_default():
    """`kcomp tune --start unfused`: the baseline fusion variant is none, the rules' fusion is still
    an action, and the baseline path replays the default without its fusion steps."""
    text, shapes = KERNELS["softmax"]
    module = load_module(text)
    program = front(module, module.kernel(None), shapes)
    space = Space(program, AVX2, fused_default=False)
    root = space.root()
    labels = [a.label for a in root.actions()]
    assert space.variant(0).label == "fusion: none" and "fusion: none" in labels
    assert any(label.startswith("fusion: default") for label in labels)
    state = root.apply(next(a for a in root.actions() if a.label == "fusion: none"))
    while not state.is_terminal():
        state = state.apply(state.actions()[0])
    unfused = AVX2.default_schedule(program, space.naive, fuse=False)
    assert not any(isinstance(s, FUSION_STEPS) for s in unfused.steps)
    assert canonical(apply(space.naive, state.schedule())) == canonical(apply(space.naive, unfused))
