"""Exceptions users see.  Every `KcompError` is printed by the CLI as a message, never as a traceback.

`exit_code` follows the CLI contract: 2 for bad input (program, schedule, flags, files), 1 for a check
that failed.  `SourceError` carries a position and renders `file:line:col: error: ...` with the source
line and a caret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int
    col: int
    text: str = ""  # the whole source line, for the caret display
    length: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class KcompError(Exception):
    exit_code = 2


class SourceError(KcompError):
    """An error in a `.kc` file, reported at a position."""

    def __init__(self, message: str, span: Span | None):
        super().__init__(message)
        self.message = message
        self.span = span

    def __str__(self) -> str:
        if self.span is None:
            return f"error: {self.message}"
        head = f"{self.span}: error: {self.message}"
        if not self.span.text:
            return head
        caret = " " * (self.span.col - 1) + "^" + "~" * max(0, min(self.span.length, 80) - 1)
        return f"{head}\n  {self.span.text}\n  {caret}"


class UsageError(KcompError):
    """Bad flags, files or arguments (shapes that do not match, unknown kernel names, ...)."""


class ScheduleError(KcompError):
    """An illegal schedule step; the message names the step and the reason."""


class Unsupported(ScheduleError):
    """The target cannot run this kernel under any schedule (an accelerator that maps contractions
    only, say): outside what it does, not a schedule's or the program's fault.  The fuzzer counts
    these as `unsupported`, not as failures."""


class BuildError(KcompError):
    """The target toolchain rejected generated code: a kcomp bug, reported with the compiler output."""

    exit_code = 1


class KernelFault(KcompError):
    """A target's run-time checks caught the kernel misbehaving while it ran (the CUDA emulation's
    report of a race, an out-of-bounds access or a divergent barrier): a wrong kernel, as a result
    that differs from the reference is, whatever its outputs.  The fuzzer counts these as `race`."""

    exit_code = 1


class CheckFailed(KcompError):
    """A result that does not match the reference within the numeric policy."""

    exit_code = 1
