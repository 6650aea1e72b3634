"""`schedule KERNEL for TARGET { steps }` blocks in a `.kc` file: parsed into `Module.schedules`, found
by `Module.schedule_for`, and every bad block reported at its exact `file:line:col`."""

from __future__ import annotations

import pytest

from kcomp.cli import main
from kcomp.errors import SourceError
from kcomp.parse import parse
from kcomp.schedule import Schedule, Split, Unroll, parse_schedule
from kcomp.syntax import ScheduleBlock
from kcomp.targets import get_target

KERNEL = """\
dim M = 8, N = 16, K = 4
kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""
STEPS = """
    split i 6            # comments allowed
    split j 16; unroll i_i
"""
SOURCE = KERNEL + "\nschedule matmul for cpu {" + STEPS + "}\n"  # the block opens on line 6


def _error(source: str, message: str, line: int, col: int) -> SourceError:
    with pytest.raises(SourceError, match=message) as info:
        parse(source, "m.kc")
    span = info.value.span
    assert (span.file, span.line, span.col) == ("m.kc", line, col), str(info.value)
    assert span.text == source.splitlines()[line - 1].expandtabs(1)  # the whole line, for the caret
    return info.value


def test_block_gives_the_schedule_of_its_text():
    m = parse(SOURCE, "m.kc")
    (block,) = m.schedules
    assert isinstance(block, ScheduleBlock)
    assert (block.kernel, block.target) == ("matmul", "cpu")
    assert block.schedule == parse_schedule(STEPS)
    assert block.schedule == Schedule((Split("i", 6), Split("j", 16), Unroll("i_i")))
    assert (block.span.file, block.span.line, block.span.col) == ("m.kc", 6, 10)
    assert [k.name for k in m.kernels] == ["matmul"]


def test_block_text_round_trips():
    s = parse(SOURCE).schedules[0].schedule
    assert str(s) == "split i 6\nsplit j 16\nunroll i_i\n"
    assert parse_schedule(str(s)) == s
    again = parse(KERNEL + "schedule matmul for cpu {\n" + str(s) + "}\n").schedules[0].schedule
    assert again == s and again.hash == s.hash


def test_schedule_for_picks_kernel_and_target():
    source = (
        KERNEL.replace("matmul", "mm")
        + KERNEL.split("\n", 1)[1]
        + "schedule matmul for accel { split i 2 }\n"
        + "schedule mm for cpu { unroll i }\n"
        + "schedule matmul for cpu { split i 4 }\n"
    )
    m = parse(source)
    assert [(b.kernel, b.target) for b in m.schedules] == [
        ("matmul", "accel"),
        ("mm", "cpu"),
        ("matmul", "cpu"),
    ]
    assert m.schedule_for("matmul", "cpu").schedule == Schedule((Split("i", 4),))
    assert m.schedule_for("matmul", "accel").schedule == Schedule((Split("i", 2),))
    assert m.schedule_for("mm", "cpu").schedule == Schedule((Unroll("i"),))
    assert m.schedule_for("mm", "accel") is None
    assert m.schedule_for("matmul", "cuda") is None
    # A target with an ISA level uses its family's block.
    assert m.schedule_for("matmul", get_target("cpu:avx2").family) is m.schedule_for("matmul", "cpu")


def test_a_file_without_blocks_has_none():
    m = parse(KERNEL)
    assert m.schedules == ()
    assert m.schedule_for("matmul", "cpu") is None


def test_block_may_come_before_its_kernel_and_be_empty():
    m = parse("schedule matmul for cpu {}\n" + KERNEL)
    assert m.schedule_for("matmul", "cpu").schedule == Schedule()


def test_one_line_block_and_braces_in_comments():
    m = parse(KERNEL + "schedule matmul for cpu { split i 6; unroll i_i }  # } after the block\n")
    assert m.schedules[0].schedule == Schedule((Split("i", 6), Unroll("i_i")))
    m = parse(KERNEL + "schedule matmul for cpu {\n  split i 6  # not the end: }\n}\n")
    assert m.schedules[0].schedule == Schedule((Split("i", 6),))


def test_schedule_and_for_are_still_names_inside_kernels():
    m = parse(
        "kernel f(schedule: f32[4]) -> (for: f32[4]) {\n  for[i] = schedule[i]\n}\nschedule f for cpu {}\n"
    )
    assert [d.name for d in m.kernels[0].inputs + m.kernels[0].outputs] == ["schedule", "for"]
    assert m.schedule_for("f", "cpu") is not None


# --- errors, each at its own line:col ---------------------------------------------------------------


def test_unknown_step_points_into_the_block():
    e = _error(
        SOURCE.replace("unroll", "unrol"),
        r"unknown schedule step 'unrol'; steps are: bind, cache_read",
        8,
        17,
    )
    assert e.span.length == 5


def test_bad_number_on_the_block_line():
    source = KERNEL + "schedule matmul for cpu { split i 6; split j x }\n"
    _error(source, r"split: expected an integer, found 'x'", 5, 46)


def test_missing_factor_points_past_the_last_word():
    _error(SOURCE.replace("split i 6", "split i"), r"split: missing number \(usage: split LOOP", 7, 13)


def test_non_positive_factor_points_at_the_step():
    _error(
        SOURCE.replace("split j 16", "split j 0"), r"split: factor must be a positive integer, not 0", 8, 5
    )


def test_tabs_count_as_one_column():
    source = KERNEL + "schedule matmul for cpu {\n\tsplit\ti\tq\n}\n"
    e = _error(source, r"split: expected an integer, found 'q'", 6, 10)
    assert str(e).splitlines()[2].index("^") == 11  # two spaces of indent, caret under the q


def test_block_for_unknown_kernel():
    _error(
        KERNEL + "schedule matmull for cpu {}\n",
        r"schedule block for unknown kernel 'matmull'; did you mean 'matmul'\?",
        5,
        10,
    )
    _error(KERNEL + "schedule conv for cpu {}\n", r"unknown kernel 'conv'; the file defines matmul", 5, 10)
    _error("schedule conv for cpu {}\n", r"unknown kernel 'conv'; the file defines no kernel", 1, 10)


def test_two_blocks_for_one_kernel_and_target():
    source = SOURCE + "schedule matmul for accel {}\nschedule  matmul for cpu { unroll i }\n"
    _error(
        source,
        r"a second schedule block for kernel 'matmul' on target 'cpu' \(the first is at line 6\)",
        11,
        11,
    )


def test_unclosed_block():
    _error(
        KERNEL + "schedule matmul for cpu {\n  split i 4\n",
        r"schedule block is never closed: expected '\}'",
        5,
        25,
    )


@pytest.mark.parametrize(
    ("tail", "message", "col"),
    [
        ("schedule matmul cpu {}", r"unexpected 'cpu', expected 'for'", 17),
        (
            "schedule matmul for cpu split i 4",
            r"unexpected 'split', expected '\{' and the schedule steps",
            25,
        ),
        ("schedule matmul for cpu:avx2 {}", r"unexpected ':', expected '\{' and the schedule steps", 24),
        ("schedule 3 for cpu {}", r"unexpected '3', expected a name", 10),
        ("schedule matmul for { split i 4 }", r"unexpected '\{', expected a name", 21),
    ],
)
def test_malformed_block_header(tail, message, col):
    _error(KERNEL + tail + "\n", message, 5, col)


def test_cli_reports_a_bad_step_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.kc"
    path.write_text(SOURCE.replace("split j 16", "split j sixteen"))
    code = main(["compile", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    first, source_line, caret = err.splitlines()[:3]
    assert (
        first
        == f"{path}:8:13: error: split: expected an integer, found 'sixteen' (usage: split LOOP FACTOR [guard|peel])"
    )
    assert source_line == "      split j sixteen; unroll i_i"
    assert caret == "              ^~~~~~~"
