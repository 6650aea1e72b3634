"""docs/accel-isa.md's instruction tables are the ones isa.py's table generates."""

from __future__ import annotations

from pathlib import Path

from kcomp.targets.accel.machine import OPS
from kcomp.targets.accel.machine.isa_docs import BEGIN, END, reference, splice

DOC = Path(__file__).resolve().parents[2] / "docs" / "accel-isa.md"


def test_docs_show_the_table():
    text = DOC.read_text()
    assert BEGIN in text and END in text
    assert splice(text) == text, (
        "regenerate: python -m kcomp.targets.accel.machine.isa_docs docs/accel-isa.md"
    )
    for mnemonic in OPS:
        assert f"| `{mnemonic}` | 0x{OPS[mnemonic].opcode:02x} |" in reference()


def test_opcodes_are_unique_and_fields_fit_the_word():
    assert len({spec.opcode for spec in OPS.values()}) == len(OPS)
    assert 0 not in {spec.opcode for spec in OPS.values()}
    assert all(24 + sum(f.bits for f in spec.fields) <= 128 for spec in OPS.values())
