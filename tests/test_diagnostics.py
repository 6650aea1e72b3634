"""The malformed-program corpus: each file in tests/diagnostics/ starts with
`# expect: LINE:COL: message`, and `kcomp compile` must report exactly that, with exit code 2,
the source line and a caret, and no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcomp.cli import main
from kcomp.errors import SourceError
from kcomp.parse import parse

CORPUS = sorted((Path(__file__).parent / "diagnostics").glob("*.kc"))


def _expectation(path: Path) -> tuple[int, int, str]:
    m = re.match(r"# expect: (\d+):(\d+): (.*)", path.read_text().splitlines()[0])
    assert m, f"{path} lacks its '# expect: LINE:COL: message' header"
    return int(m[1]), int(m[2]), m[3]


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_diagnostic(path: Path, capsys, tmp_path):
    line, col, message = _expectation(path)
    code = main(["compile", str(path), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    first, source_line, caret = err.splitlines()[:3]
    assert first.startswith(f"{path}:{line}:{col}: error: "), first
    assert message in first
    assert source_line.strip() == path.read_text().splitlines()[line - 1].strip()
    assert caret.strip().startswith("^") and caret.index("^") == col + 1  # two spaces of indent


def test_source_error_carries_position():
    with pytest.raises(SourceError, match="unknown tensor 'Q'") as info:
        from kcomp.check import check

        m = parse("dim M = 4\nkernel f(A: f32[M]) -> (B: f32[M]) {\n  B[i] = Q[i]\n}\n", "x.kc")
        check(m, m.kernels[0])
    assert (info.value.span.line, info.value.span.col) == (3, 10)


def test_unknown_shape_flag_names_the_dimensions(capsys):
    code = main(["compile", "examples/matmul.kc", "--shape", "Q=3", "--emit", "ir"])
    err = capsys.readouterr().err
    assert code == 2
    assert "has no dimension 'Q'" in err and "K, M, N" in err


def test_unbound_dimension_names_the_flag(tmp_path, capsys):
    src = tmp_path / "free.kc"
    src.write_text("kernel f(A: f32[P]) -> (B: f32[P]) {\n  B[i] = A[i]\n}\n")
    assert main(["compile", str(src), "--emit", "c"]) == 2
    err = capsys.readouterr().err
    assert "unbound dimension 'P'" in err and "--shape P=" in err
    assert main(["compile", str(src), "--shape", "P=16", "--emit", "ir"]) == 0


def test_missing_file_is_a_usage_error(capsys):
    assert main(["run", "no/such/file.kc"]) == 2
    assert "cannot read no/such/file.kc" in capsys.readouterr().err


def test_several_kernels_need_a_choice(tmp_path, capsys):
    src = tmp_path / "two.kc"
    src.write_text(
        "dim N = 4\n"
        "kernel a(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] }\n"
        "kernel b(X: f32[N]) -> (Y: f32[N]) { Y[i] = X[i] * 2.0 }\n"
    )
    assert main(["compile", str(src), "--emit", "ir"]) == 2
    assert "choose one with --kernel" in capsys.readouterr().err
    assert main(["compile", str(src), "--kernel", "b", "--emit", "ir"]) == 0
