"""Every reproducer the invalid-input fuzzer (kcomp/fuzz/mutate.py) found stays diagnosed.

Each folder of tests/fuzz/mutants/ holds a mutant's files and `commands.txt` (one `kcomp ...` command
per line, run in that folder in order while they succeed); an optional `expect` file names the class
it must have now (default `diagnosed`: exit code 2 with a message, no traceback).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from kcomp.fuzz.mutate import classify, run_case

MUTANTS = Path(__file__).parent / "mutants"
CASES = sorted(p for p in MUTANTS.iterdir() if p.is_dir())


def load(folder: Path) -> tuple[dict[str, bytes], list[list[str]], str]:
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name not in ("commands.txt", "expect")}
    commands = [shlex.split(line)[1:] for line in (folder / "commands.txt").read_text().splitlines() if line]
    expect = (folder / "expect").read_text().strip() if (folder / "expect").exists() else "diagnosed"
    return files, commands, expect


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
def test_reproducer(folder: Path) -> None:
    files, commands, expect = load(folder)
    r = run_case(files, commands)
    assert classify(r["rc"], r["out"], r["err"], same=r["same"]) == expect, r["err"][-2000:]
