"""Errors of the accelerator toolchain (both exit code 2: the program given to it is bad).

`EncodingError`: an instruction that cannot be encoded (an operand outside its field) or bytes that
are not a program (unknown opcode, reserved bits set, truncated); the message names the word index.
`SimError`: a program the machine cannot run (an address out of range, DMA outside a DRAM buffer, a
race between queues, a deadlock); the message names the PC and the instruction's text.
"""

from __future__ import annotations

from kcomp.errors import KcompError


class EncodingError(KcompError):
    """An instruction or a binary that does not follow docs/accel-isa.md's encoding."""


class SimError(KcompError):
    """A program the simulated machine cannot run; the message names the PC and the instruction."""
