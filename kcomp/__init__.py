"""kcomp: a kernel compiler.  `kcomp.compile(path_or_source)` gives a callable, checked kernel."""

from kcomp.api import CheckResult, CompiledKernel, compile
from kcomp.errors import BuildError, CheckFailed, KcompError, ScheduleError, SourceError, UsageError
from kcomp.version import __version__

__all__ = [
    "BuildError",
    "CheckFailed",
    "CheckResult",
    "CompiledKernel",
    "KcompError",
    "ScheduleError",
    "SourceError",
    "UsageError",
    "__version__",
    "compile",
]
