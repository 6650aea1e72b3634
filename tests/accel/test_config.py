"""AccelConfig: the packaged configs, derived sizes, partial files, and every error naming file and key."""

from __future__ import annotations

import pytest

from kcomp.errors import UsageError
from kcomp.targets.accel.machine import AccelConfig


def test_default_is_the_issue_machine():
    cfg = AccelConfig.load(None)
    assert (cfg.dim, cfg.dtype, cfg.scratchpad_kib, cfg.banks, cfg.accumulator_kib) == (16, "f32", 256, 4, 64)
    assert (cfg.dma_bytes_per_cycle, cfg.dma_latency, cfg.issue_per_queue) == (32, 100, 1)
    assert (cfg.sp_rows, cfg.bank_rows, cfg.acc_rows, cfg.acc_dtype) == (4096, 1024, 1024, "f32")
    assert cfg == AccelConfig()  # the file and the dataclass defaults agree


def test_small_overrides_three_keys():
    small = AccelConfig.load("small")
    assert (small.dim, small.scratchpad_kib, small.dma_bytes_per_cycle) == (8, 64, 16)
    assert small.sp_rows == 64 * 1024 // (8 * 4)
    assert small.dma_latency == AccelConfig().dma_latency


def test_i8_rows_hold_bytes_and_accumulate_in_i32():
    cfg = AccelConfig.from_dict({"dtype": "i8"})
    assert (cfg.input_bytes, cfg.acc_dtype, cfg.sp_rows) == (1, "i32", 256 * 1024 // 16)


def test_partial_file_takes_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\ndim = 32\nbanks = 8\n')
    cfg = AccelConfig.load(path)
    assert (cfg.name, cfg.dim, cfg.banks, cfg.dma_latency) == ("mine", 32, 8, 100)
    assert AccelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("dimm = 4\n", r"bad\.toml: unknown key 'dimm'; known keys: name, dim"),
        ("dim = 0\n", r"bad\.toml: key 'dim' must be positive, got 0"),
        ("dma_latency = -1\n", r"bad\.toml: key 'dma_latency' must be positive"),
        ('dim = "16"\n', r"bad\.toml: key 'dim' must be int, not '16'"),
        ("dim = true\n", r"bad\.toml: key 'dim' must be int, not True"),
        ('dtype = "f16"\n', r"bad\.toml: key 'dtype' must be one of f32, i8, got 'f16'"),
        ("dim = 256\n", r"bad\.toml: key 'dim' must be at most 128"),
        ("banks = 3\n", r"bad\.toml: key 'banks': 4096 scratchpad rows do not split into 3 banks"),
        ("dim = 48\n", r"key 'scratchpad_kib': 256 KiB is not a whole number of 192-byte rows"),
        (
            'dtype = "i8"\ndim = 96\nscratchpad_kib = 3\n',
            r"'accumulator_kib': 64 KiB is not a whole number of 384-byte",
        ),
        ("scratchpad_kib = 8192\n", r"key 'scratchpad_kib': 131072 rows exceed the ISA's 65536"),
        ("dim = [\n", r"bad\.toml: invalid TOML"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        AccelConfig.load(path)


def test_missing_file_and_unknown_packaged_name(tmp_path):
    with pytest.raises(UsageError, match=r"nope\.toml: cannot read accelerator config"):
        AccelConfig.load(tmp_path / "nope.toml")
    with pytest.raises(
        UsageError, match=r"no packaged accelerator config 'huge'; packaged: default, small, os"
    ):
        AccelConfig.packaged("huge")


def test_the_dataflow_key():
    assert AccelConfig.load("os").dataflow == "os" and AccelConfig.load(None).dataflow == "ws"
    assert AccelConfig.load("os").dim == AccelConfig.load(None).dim  # the default machine otherwise
    with pytest.raises(UsageError, match="key 'dataflow' must be one of ws, os"):
        AccelConfig.from_dict({"dataflow": "rs"}, source="x.toml")
