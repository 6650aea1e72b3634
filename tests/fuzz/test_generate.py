"""The program generator (kcomp.fuzz.generate): every program parses and type-checks, programs are
deterministic per seed, and they cover the language features the fuzzer is for."""

from __future__ import annotations

import random

from kcomp.fuzz.generate import generate
from kcomp.fuzz.run import campaign_types, program_for
from kcomp.parse import parse
from kcomp.pipeline import front

SEEDS = 2000


def test_every_program_parses_and_type_checks():
    for seed in range(SEEDS):
        text = generate(random.Random(seed)).render()
        module = parse(text, f"<seed {seed}>")
        front(module, module.kernel(None), {})  # raises a SourceError with the position if not


def test_deterministic_per_seed():
    for seed in range(50):
        assert generate(random.Random(seed)).render() == generate(random.Random(seed)).render()
    assert program_for(0, 3) == program_for(0, 3)
    assert program_for(0, 3).render() != program_for(1, 3).render()


def test_features_covered():
    texts = [generate(random.Random(seed)).render() for seed in range(400)]
    joined = "\n".join(texts)
    for feature in (
        "+=",
        "max=",
        "min=",
        "*=",
        "argmax=",
        "argmin=",
        "pad=",
        "where",
        "select(",
        "exp(",
        "tanh(",
        "sqrt(",
        "//",
        "%",
        "i32[",
        "f64[",
        "f32[]",
        "2*",
    ):
        assert feature in joined, feature
    multi = [t for t in texts if t.count("\n") >= 5]
    assert len(multi) > 100  # several statements, intermediates consumed later


def test_a_campaign_draws_only_the_types_its_targets_lower():
    assert campaign_types(["cpu", "accel"]) is None and campaign_types(["cuda"]) is None
    types = campaign_types(["accel"])
    assert types == frozenset({"f32", "i32"})
    texts = [program_for(5, k, types).render() for k in range(300)]
    assert not any("f64" in t or "i64" in t for t in texts)
    assert sum(": i32[" in t for t in texts) > 30  # integer programs and i32 gathers are still drawn
    module = parse(texts[0], "<accel>")
    front(module, module.kernel(None), {})
