"""Schedules as data (kcomp/schedule.py): the text form and JSON round-trip, the hash is stable, and
every malformed step is a `SourceError` at the word that is wrong."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcomp.errors import SourceError
from kcomp.schedule import (
    NONE,
    STEP_TYPES,
    Bind,
    CacheRead,
    CacheWrite,
    ComputeAt,
    DoubleBuffer,
    Epilogue,
    Fuse,
    Inline,
    Layout,
    Materialize,
    Online,
    Pack,
    Parallel,
    Phases,
    ScanBlocks,
    Reorder,
    Schedule,
    Split,
    Tile,
    Unroll,
    Vectorize,
    Welford,
    parse_schedule,
)

# One line of every step type (and every optional word), with the step it means.
EXAMPLES = [
    ("split i 6", Split("i", 6)),
    ("split i 6 peel", Split("i", 6, "peel")),
    ("tile i j 32 64", Tile(("i", "j"), (32, 64))),
    ("tile i 8", Tile(("i",), (8,))),
    ("reorder k_o i_o j_o k_i", Reorder(("k_o", "i_o", "j_o", "k_i"))),
    ("fuse i_o j_o", Fuse("i_o", "j_o")),
    ("vectorize j_i", Vectorize("j_i")),
    ("vectorize k_i reduce", Vectorize("k_i", reduce=True)),
    ("parallel i_o", Parallel("i_o")),
    ("unroll i_i", Unroll("i_i")),
    ("cache_write C at j_o", CacheWrite("C", "j_o")),
    ("cache_read B at k_o", CacheRead("B", "k_o")),
    ("pack B at k_o block 1 16", Pack("B", "k_o", 1, 16)),
    ("layout T 1 0", Layout("T", (1, 0))),
    ("double_buffer", DoubleBuffer()),
    ("double_buffer A B", DoubleBuffer(("A", "B"))),
    ("compute_at e at n", ComputeAt("e", "n")),
    ("inline t", Inline("t")),
    ("materialize t", Materialize("t")),
    ("online mx s", Online("mx", "s")),
    ("epilogue Z at j_o", Epilogue("Z", "j_o")),
    ("welford mean var", Welford("mean", "var")),
    ("cache_read X at h stride 3 2", CacheRead("X", "h", 3, 2)),
    ("phases h", Phases("h")),
    ("scan_blocks i 8", ScanBlocks("i", 8)),
    ("bind i_o blockIdx.x", Bind("i_o", "blockIdx", "x")),
    ("bind i_i threadIdx.z", Bind("i_i", "threadIdx", "z")),
]
EVERYTHING = Schedule(tuple(step for _, step in EXAMPLES))


def test_examples_cover_every_step_type():
    assert {type(step) for _, step in EXAMPLES} == set(STEP_TYPES.values())


@pytest.mark.parametrize(("text", "step"), EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_text_round_trip_per_step(text, step):
    s = parse_schedule(text)
    assert s == Schedule((step,))
    assert str(s) == text + "\n"
    assert parse_schedule(str(s)) == s


def test_text_round_trip_of_every_step_together():
    assert parse_schedule(str(EVERYTHING)) == EVERYTHING
    assert str(EVERYTHING).splitlines() == [t for t, _ in EXAMPLES]


def test_default_tail_is_not_printed():
    s = parse_schedule("split i 4 guard")
    assert s == Schedule((Split("i", 4),)) and str(s) == "split i 4\n"


def test_empty_schedule():
    assert parse_schedule("") == NONE == Schedule()
    assert parse_schedule("  # nothing but a comment\n\n ; ;\n") == NONE
    assert str(NONE) == ""
    assert NONE.to_json() == []


@pytest.mark.parametrize(("text", "step"), EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_json_round_trip_per_step(text, step):
    s = Schedule((step,))
    data = json.loads(json.dumps(s.to_json()))
    assert data[0]["step"] == text.split()[0]
    assert Schedule.from_json(data) == s


def test_json_round_trip_of_every_step_together():
    text = json.dumps(EVERYTHING.to_json())
    assert Schedule.from_json(json.loads(text)) == EVERYTHING


def test_json_form_is_plain_data():
    assert Schedule((Tile(("i", "j"), (4, 8)), Vectorize("j_i", True))).to_json() == [
        {"step": "tile", "loops": ["i", "j"], "factors": [4, 8]},
        {"step": "vectorize", "loop": "j_i", "reduce": True},
    ]


def test_json_fills_defaults():
    assert Schedule.from_json([{"step": "split", "loop": "i", "factor": 4}]) == Schedule((Split("i", 4),))


def test_hash_is_sha256_of_canonical_text():
    a = parse_schedule("split i 6\nsplit j 16\nunroll i_i\n")
    b = parse_schedule("split i 6   # the same steps, written differently\nsplit j 16 guard; unroll i_i")
    assert a == b and a.hash == b.hash
    assert re.fullmatch(r"[0-9a-f]{64}", a.hash)
    assert a.hash == parse_schedule(str(a)).hash == Schedule.from_json(a.to_json()).hash
    # A fixed value: the key of the cache and the tuning database must not drift between runs.
    assert NONE.hash == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_different_schedules_hash_differently():
    texts = [
        "split i 6",
        "split i 8",
        "split j 6",
        "split i 6 peel",
        "unroll i",
        "parallel i",
        "",
        str(EVERYTHING),
    ]
    hashes = {parse_schedule(t).hash for t in texts}
    assert len(hashes) == len(texts)
    assert parse_schedule("split i 6\nsplit j 6").hash != parse_schedule("split j 6\nsplit i 6").hash


def test_comments_and_semicolons():
    text = "# a tiled matmul\nsplit i 6 # rows\n\n  split j 16;unroll i_i ;  ; parallel i_o # ; split k 4\n"
    assert parse_schedule(text) == Schedule(
        (Split("i", 6), Split("j", 16), Unroll("i_i"), Parallel("i_o")),
    )


# --- errors ---------------------------------------------------------------------------------------


def _error(text: str, message: str, col: int, line: int = 1) -> SourceError:
    with pytest.raises(SourceError, match=message) as info:
        parse_schedule(text, "s.sched")
    span = info.value.span
    assert (span.file, span.line, span.col) == ("s.sched", line, col), str(info.value)
    return info.value


def test_unknown_step_lists_the_known_steps():
    e = _error(
        "split i 4\n  frob i",
        r"unknown schedule step 'frob'; steps are: bind, cache_read, cache_write, compute_at, double_buffer, epilogue, fuse",
        3,
        2,
    )
    assert ", ".join(sorted(STEP_TYPES)) in e.message
    assert e.span.length == 4 and e.span.text == "  frob i"


def test_error_after_a_semicolon_points_inside_the_line():
    _error("split i 4;  frob i", "unknown schedule step 'frob'", 13)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("split", r"split: missing argument \(usage: split LOOP FACTOR \[guard\|peel\]\)", 7),
        ("split i", r"split: missing number \(usage: split LOOP", 9),
        ("fuse i_o", r"fuse: missing argument \(usage: fuse OUTER INNER\)", 10),
        ("cache_write C", r"cache_write: expected 'at' \(usage: cache_write TENSOR at LOOP \[init\]\)", 15),
        ("cache_read B at", r"cache_read: missing argument", 17),
        (
            "pack B at k_o block 1",
            r"pack: missing number \(usage: pack TENSOR at LOOP block DIM FACTOR\)",
            23,
        ),
    ],
)
def test_missing_argument_points_past_the_last_word(text, message, col):
    _error(text, message, col)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("split i 4 peel 2", r"split: unexpected '2'", 16),
        ("fuse a b c", r"fuse: unexpected 'c'", 10),
        ("parallel i j", r"parallel: expected 'reduce' \(usage: parallel LOOP \[reduce\]\)", 12),
        ("unroll i j", r"unroll: unexpected 'j'", 10),
        ("vectorize j reduce x", r"vectorize: unexpected 'x'", 20),
        ("cache_write C at j k", r"cache_write: unexpected 'k'", 20),
        ("pack B at k block 0 4 4", r"pack: unexpected '4'", 23),
    ],
)
def test_extra_argument(text, message, col):
    _error(text, message, col)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("split i x", r"split: expected an integer, found 'x'", 9),
        ("split i 4.0", r"split: expected an integer, found '4.0'", 9),
        ("tile i j 4 4.5", r"tile: expected an integer, found '4\.5'", 12),
        ("pack B at k block one 4", r"pack: expected an integer, found 'one'", 19),
        ("layout T 1 z", r"layout: expected an integer, found 'z'", 12),
    ],
)
def test_non_integer_number(text, message, col):
    _error(text, message, col)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("split 4 4", r"split: expected a name, found '4'", 7),
        ("parallel 3", r"parallel: expected a name, found '3'", 10),
        ("reorder i 2j", r"reorder: expected a name, found '2j'", 11),
        ("cache_read B-1 at k", r"cache_read: expected a name, found 'B-1'", 12),
        ("tile i 4 j 8", r"tile: expected a name, found '4'", 8),
    ],
)
def test_name_expected(text, message, col):
    _error(text, message, col)


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("split i 0", r"split: factor must be a positive integer, not 0", 1),
        ("  split i -4", r"split: factor must be a positive integer, not -4", 3),
        ("pack B at k block 1 0", r"pack: factor must be a positive integer, not 0", 1),
        ("tile i j 4 0", r"tile: give one positive factor per loop", 1),
    ],
)
def test_non_positive_factor(text, message, col):
    _error(text, message, col)


def test_pack_dimension_is_not_negative():
    _error("pack B at k block -1 4", r"pack: dimension must be 0 or more, not -1", 1)


@pytest.mark.parametrize("text", ["tile i j 4", "tile i 4 8", "tile 4 8", "tile"])
def test_tile_needs_one_factor_per_loop(text):
    _error(text, r"tile: give the loops, then one factor per loop \(usage: tile LOOP\.\.\. FACTOR\.\.\.", 1)


@pytest.mark.parametrize(("text", "verb"), [("reorder i j i", "reorder"), ("tile i i 4 4", "tile")])
def test_a_loop_named_twice(text, verb):
    _error(text, rf"{verb}: a loop is named twice", 1)


@pytest.mark.parametrize("text", ["reorder", "reorder i"])
def test_reorder_needs_two_loops(text):
    _error(text, r"reorder: name at least two loops \(usage: reorder LOOP LOOP\.\.\.\)", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layout T 0 0", r"layout: 0 0 is not a permutation of 0\.\.1"),
        ("layout T 1 2", r"layout: 1 2 is not a permutation of 0\.\.1"),
        ("layout T -1 0", r"layout: -1 0 is not a permutation of 0\.\.1"),
        ("layout T", r"layout: name the tensor and its dimensions in the new order"),
    ],
)
def test_layout_needs_a_permutation(text, message):
    _error(text, message, 1)


@pytest.mark.parametrize(("text", "col"), [("split i 4 cut", 11), ("split i 4 4", 11)])
def test_split_tail_is_guard_or_peel(text, col):
    word = text.split()[-1]
    _error(text, rf"split: tail must be 'guard' or 'peel', not '{word}'", col)


def test_vectorize_takes_only_reduce():
    _error("vectorize j_i sum", r"vectorize: expected 'reduce' \(usage: vectorize LOOP \[reduce\]\)", 15)


def test_pack_needs_its_keywords():
    _error("pack B at k_o 1 16", r"pack: expected 'block'", 15)
    _error("pack B in k_o block 1 16", r"pack: expected 'at'", 8)


def test_positions_inside_a_larger_file():
    """`first_line`/`first_col` shift the first line only; later lines start at column 1."""
    for text, line, col in [("frob i", 7, 24), ("split i 4\n   frob i", 8, 4), ("split i 4;frob", 7, 34)]:
        with pytest.raises(SourceError, match="unknown schedule step 'frob'") as info:
            parse_schedule(text, "f.kc", 7, 24)
        assert (info.value.span.file, info.value.span.line, info.value.span.col) == ("f.kc", line, col)


# --- malformed JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"step": "split"}, r"a schedule in JSON is a list of steps"),
        ("split i 4", r"a schedule in JSON is a list of steps"),
        ([["split", "i", 4]], r"schedule step 0: expected an object with a known 'step'"),
        ([{"step": "frob"}], r"schedule step 0: expected an object with a known 'step'"),
        ([{"step": ["split"]}], r"schedule step 0: expected an object with a known 'step'"),
        ([{"loop": "i"}], r"schedule step 0: expected an object with a known 'step'"),
        (
            [{"step": "unroll", "loop": "i"}, {"step": "split", "loop": "i"}],
            r"schedule step 1 \(split\): .*factor",
        ),
        (
            [{"step": "split", "loop": "i", "factor": "4"}],
            r"step 0 \(split\): factor must be an integer, not '4'",
        ),
        ([{"step": "split", "loop": "i", "factor": 4.0}], r"factor must be an integer, not 4\.0"),
        ([{"step": "split", "loop": "i", "factor": True}], r"factor must be an integer, not True"),
        ([{"step": "split", "loop": "i j", "factor": 4}], r"loop must be a name, not 'i j'"),
        ([{"step": "unroll", "loop": 3}], r"loop must be a name, not 3"),
        ([{"step": "vectorize", "loop": "j", "reduce": 1}], r"reduce must be true or false, not 1"),
        ([{"step": "tile", "loops": ["i"], "factors": ["8"]}], r"factors must be a list of integers"),
        ([{"step": "reorder", "loops": "ij"}], r"loops must be a list of names, not 'ij'"),
        ([{"step": "split", "loop": "i", "factor": 0}], r"split: factor must be a positive integer, not 0"),
        (
            [{"step": "split", "loop": "i", "factor": 4, "tail": "cut"}],
            r"split: tail must be 'guard' or 'peel'",
        ),
        ([{"step": "tile", "loops": ["i", "j"], "factors": [4]}], r"tile: give one positive factor per loop"),
        ([{"step": "layout", "tensor": "T", "order": [0, 2]}], r"layout: 0 2 is not a permutation of 0\.\.1"),
    ],
)
def test_malformed_json(data, message):
    with pytest.raises(SourceError, match=message):
        Schedule.from_json(data)


# --- property: any schedule survives both round trips ----------------------------------------------

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_factors = st.integers(1, 512)


@st.composite
def _tiles(draw) -> Tile:
    loops = draw(st.lists(_names, min_size=1, max_size=3, unique=True))
    return Tile(tuple(loops), tuple(draw(st.lists(_factors, min_size=len(loops), max_size=len(loops)))))


_steps = st.one_of(
    st.builds(Split, _names, _factors, st.sampled_from(["guard", "peel"])),
    _tiles(),
    st.lists(_names, min_size=2, max_size=4, unique=True).map(lambda ls: Reorder(tuple(ls))),
    st.builds(Fuse, _names, _names),
    st.builds(Vectorize, _names, st.booleans()),
    st.builds(Parallel, _names),
    st.builds(Unroll, _names),
    st.builds(CacheWrite, _names, _names),
    st.builds(CacheRead, _names, _names),
    st.builds(Pack, _names, _names, st.integers(0, 4), _factors),
    st.permutations(range(4))
    .flatmap(lambda p: st.integers(1, 4).map(lambda n: tuple(x for x in p if x < n)))
    .flatmap(lambda order: st.builds(Layout, _names, st.just(order))),
    st.lists(_names, max_size=3, unique=True).map(lambda ts: DoubleBuffer(tuple(ts))),
)


@given(st.lists(_steps, max_size=8).map(lambda steps: Schedule(tuple(steps))))
def test_any_schedule_round_trips(s):
    assert parse_schedule(str(s)) == s
    assert Schedule.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert parse_schedule(str(s)).hash == s.hash


# -- double_buffer (the accelerator's buffering step) -----------------------------------------------
def test_double_buffer_round_trips_with_and_without_tensors():
    s = parse_schedule("tile i j k 64 64 64\ndouble_buffer\ndouble_buffer X W")
    assert s.steps[1:] == (DoubleBuffer(), DoubleBuffer(("X", "W")))
    assert str(s).endswith("double_buffer\ndouble_buffer X W\n")
    assert parse_schedule(str(s)) == s
    assert s.to_json()[1:] == [
        {"step": "double_buffer", "tensors": []},
        {"step": "double_buffer", "tensors": ["X", "W"]},
    ]
    assert Schedule.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_double_buffer_errors():
    with pytest.raises(SourceError, match="double_buffer: a tensor is named twice"):
        parse_schedule("double_buffer A A")
    with pytest.raises(
        SourceError, match=r"double_buffer: expected a name, found '3' \(usage: double_buffer"
    ):
        parse_schedule("double_buffer 3")
    with pytest.raises(SourceError, match="tensors must be a list of names"):
        Schedule.from_json([{"step": "double_buffer", "tensors": [1]}])
