"""The accelerator's parameters, read from TOML (docs/accel-isa.md, "Configuration").

    cfg = AccelConfig.load(None)            # targets/accel/machine/default.toml
    cfg = AccelConfig.load("small")         # a packaged config by name (small.toml)
    cfg = AccelConfig.load("my.toml")       # a file: keys it omits take the default's values

Sizes the ISA and the simulator use are derived here once (`sp_rows`, `acc_rows`, `bank_rows`, ...),
so the assembler, simulator and backend agree on them.  A bad file is a `UsageError` naming the file
and the key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from kcomp.errors import UsageError

INPUT_DTYPES = {"f32": ("f32", 4), "i8": ("i32", 1)}  # input dtype -> (accumulator dtype, input bytes)
MAX_DIM = 128  # `cols` and `k` operands are 8-bit fields
MAX_INT = 2**31 - 1  # every integer key (a counter, size or cycle count the simulator holds)
MAX_ROWS = 1 << 16  # row addresses are 16-bit fields
PACKAGED = ("default", "small", "os")
DATAFLOWS = ("ws", "os")  # weight-stationary, output-stationary matrix unit (docs/accel-isa.md)


@dataclass(frozen=True, slots=True)
class AccelConfig:
    """One accelerator.  Defaults are default.toml's; every size is in the unit its name says."""

    name: str = "default"
    dim: int = 16
    dtype: str = "f32"
    scratchpad_kib: int = 256
    banks: int = 4
    accumulator_kib: int = 64
    dma_bytes_per_cycle: int = 32
    dma_latency: int = 100
    vector_lanes: int = 16
    issue_per_queue: int = 1
    vector_latency: int = 4
    vector_slow_op_cycles: int = 4
    dataflow: str = "ws"
    source: str = field(default="<defaults>", compare=False)  # the file it came from, for messages

    def __post_init__(self) -> None:
        _check(self)

    # -- derived sizes --------------------------------------------------------------------------
    @property
    def acc_dtype(self) -> str:
        """The accumulator dtype: f32 for f32 inputs, i32 for i8 inputs."""
        return INPUT_DTYPES[self.dtype][0]

    @property
    def input_bytes(self) -> int:
        return INPUT_DTYPES[self.dtype][1]

    @property
    def sp_row_bytes(self) -> int:
        return self.dim * self.input_bytes

    @property
    def sp_rows(self) -> int:
        """Scratchpad rows, each `dim` input elements."""
        return self.scratchpad_kib * 1024 // self.sp_row_bytes

    @property
    def bank_rows(self) -> int:
        """Rows per scratchpad bank; bank `b` holds rows `b*bank_rows .. (b+1)*bank_rows - 1`."""
        return self.sp_rows // self.banks

    @property
    def acc_rows(self) -> int:
        """Accumulator rows, each `dim` 32-bit elements."""
        return self.accumulator_kib * 1024 // (self.dim * 4)

    @property
    def vector_row_cycles(self) -> int:
        """Cycles the vector unit takes per accumulator row for a simple op."""
        return math.ceil(self.dim / self.vector_lanes)

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> AccelConfig:
        """The config in TOML file `path`; None is the default; a packaged name ("small") when no
        such file exists.  Keys the file omits take the default's values."""
        if path is None:
            return cls.packaged("default")
        file = Path(path)
        if not file.exists() and str(path) in PACKAGED:
            return cls.packaged(str(path))
        try:
            text = file.read_text()
        except OSError as e:
            raise UsageError(f"{path}: cannot read accelerator config: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: cannot read accelerator config: not a UTF-8 text file") from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def packaged(cls, name: str) -> AccelConfig:
        """One of the configs shipped with kcomp (`PACKAGED`)."""
        return cls.from_toml(packaged_text(name), source=f"{name}.toml")

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<toml>") -> AccelConfig:
        """Parse TOML text; `source` names it in errors."""
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{source}: invalid TOML: {e}") from None
        return cls.from_dict(table, source=source)

    @classmethod
    def from_dict(cls, table: dict[str, Any], *, source: str = "<dict>") -> AccelConfig:
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise UsageError(f"{source}: unknown key {key!r}; known keys: {', '.join(known)}")
            want = str if known[key].type == "str" else int
            if type(value) is not want:  # NOTE: bool is an int subclass; `type(...) is` rejects it
                raise UsageError(f"{source}: key {key!r} must be {want.__name__}, not {value!r}")
            values[key] = value
        try:
            return cls(**values, source=source)
        except UsageError as e:
            raise UsageError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The keys of a config file (round trip: `AccelConfig.from_dict(cfg.to_dict()) == cfg`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"accel {self.name}: {self.dim}x{self.dim} {self.dtype} {self.dataflow.upper()}, scratchpad {self.scratchpad_kib} KiB "
            f"in {self.banks} banks, accumulator {self.accumulator_kib} KiB, DMA {self.dma_bytes_per_cycle} "
            f"B/cycle + {self.dma_latency} cycles"
        )


def _check(cfg: AccelConfig) -> None:
    """Raise UsageError (naming the key) for a config no machine can have."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, int) and value <= 0:
            raise UsageError(f"key {f.name!r} must be positive, got {value}")
        if isinstance(value, int) and value > MAX_INT:
            raise UsageError(f"key {f.name!r} must be at most {MAX_INT}, got {value}")
    if cfg.dataflow not in DATAFLOWS:
        raise UsageError(f"key 'dataflow' must be one of {', '.join(DATAFLOWS)}, got {cfg.dataflow!r}")
    if cfg.dtype not in INPUT_DTYPES:
        raise UsageError(f"key 'dtype' must be one of {', '.join(INPUT_DTYPES)}, got {cfg.dtype!r}")
    if cfg.dim > MAX_DIM:
        raise UsageError(f"key 'dim' must be at most {MAX_DIM}, got {cfg.dim}")
    for key, rows, unit in (
        ("scratchpad_kib", cfg.sp_rows, cfg.sp_row_bytes),
        ("accumulator_kib", cfg.acc_rows, cfg.dim * 4),
    ):
        if rows == 0 or getattr(cfg, key) * 1024 % unit:
            raise UsageError(
                f"key {key!r}: {getattr(cfg, key)} KiB is not a whole number of {unit}-byte rows"
            )
        if rows > MAX_ROWS:
            raise UsageError(f"key {key!r}: {rows} rows exceed the ISA's {MAX_ROWS} row addresses")
    if cfg.sp_rows % cfg.banks:
        raise UsageError(f"key 'banks': {cfg.sp_rows} scratchpad rows do not split into {cfg.banks} banks")


def packaged_text(name: str) -> str:
    """The TOML text of a config shipped with kcomp (`PACKAGED`)."""
    if name not in PACKAGED:
        raise UsageError(f"no packaged accelerator config {name!r}; packaged: {', '.join(PACKAGED)}")
    return resources.files("kcomp.targets.accel.machine").joinpath(f"{name}.toml").read_text()
