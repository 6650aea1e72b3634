"""The target registry and the commands that ask it: families, plugins from KCOMP_TARGETS, specs, and
the errors a user sees when a target is not what a command needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kcomp.cli import main
from kcomp.config import Config, config
from kcomp.errors import UsageError
from kcomp.targets import TARGETS, families, get_target, target_class
from kcomp.targets.accel.target import AccelTarget
from kcomp.targets.cpu.target import CpuTarget

MATMUL = str(Path(__file__).resolve().parents[1] / "examples" / "matmul.kc")
TINY = ["--shape", "M=16", "--shape", "N=16", "--shape", "K=16"]


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch):
    """Set KCOMP_TARGETS for one test (the configuration and the registry's cache are read anew)."""

    def set_to(value: str) -> None:
        monkeypatch.setenv("KCOMP_TARGETS", value)
        config.cache_clear()
        target_class.cache_clear()

    yield set_to
    monkeypatch.delenv("KCOMP_TARGETS", raising=False)
    config.cache_clear()
    target_class.cache_clear()


def test_families_are_imported_when_used():
    assert set(TARGETS) == {"cpu", "accel", "cuda"} and all(":" in where for where in TARGETS.values())
    assert target_class("cpu") is CpuTarget and target_class("accel") is AccelTarget
    assert target_class("cuda").__name__ == "CudaTarget"


def test_specs_are_normalised_by_their_target(tmp_path: Path):
    assert get_target(" CPU:AVX2 ").name == "cpu:avx2"
    assert get_target("Accel:SMALL").name == "accel:small"
    assert get_target("CUDA").name == "cuda:sm_80" and get_target("cuda:SM_90").name == "cuda:sm_90"
    config_file = tmp_path / "Big.toml"
    config_file.write_text('name = "big"\ndim = 32\n')
    assert get_target(f"accel:{config_file}").cfg.dim == 32  # a file name keeps its case


def test_kcomp_targets_parses_and_rejects():
    assert Config.from_env({"KCOMP_TARGETS": "a=m.n:C, B = x:Y"}).targets == (("a", "m.n:C"), ("b", "x:Y"))
    for bad in ("a", "a=m", "=m:C", "a=:C", "a=m:"):
        with pytest.raises(UsageError, match=r"KCOMP_TARGETS: .*: expected family=module:Class"):
            Config.from_env({"KCOMP_TARGETS": bad})


def test_a_plugin_that_does_not_load_says_why(plugins):
    plugins("gone=no_such_module:Target,odd=kcomp.errors:UsageError,half=kcomp.errors:Nothing")
    assert {"gone", "odd", "half"} <= set(families())
    with pytest.raises(
        UsageError, match=r"target 'gone': cannot load no_such_module:Target: No module named"
    ):
        get_target("gone")
    with pytest.raises(
        UsageError, match=r"target 'odd': kcomp.errors:UsageError is not a kcomp.targets.base.Target"
    ):
        get_target("odd")
    with pytest.raises(UsageError, match=r"target 'half': cannot load kcomp.errors:Nothing"):
        get_target("half")
    with pytest.raises(
        UsageError, match=r"unknown target 'tpu'; known targets: accel, cpu, cuda, gone, half, odd"
    ):
        get_target("tpu")


def test_sim_wants_a_simulated_target(capsys):
    assert main(["sim", MATMUL, *TINY, "--target", "cpu"]) == 2
    assert "kcomp sim runs simulated targets; cpu is not one (use kcomp run)" in capsys.readouterr().err
    assert main(["sim", MATMUL, *TINY, "--target", "accel:small", "--emit", "schedule"]) == 0
    assert capsys.readouterr().out.startswith("# schedule: default (accelerator mapping rules)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gemm", "--target", "accel"], "--target belongs to `kcomp bench examples` and `kcomp bench accel`"),
        (["accel", "--shape", "M=4"], "--shape belongs to `kcomp bench examples`"),
        (["accel", "--target", "cpu"], "kcomp bench accel simulates; cpu is not a simulated target"),
    ],
)
def test_bench_target_flags(capsys, argv: list[str], message: str):
    assert main(["bench", *argv, "--cases", "gemm_16x16x16" if argv[0] == "accel" else "8x8x8"]) == 2
    assert message in capsys.readouterr().err


def test_a_target_s_package_is_imported_only_when_it_is_used():
    """In a fresh process: compiling for the CPU never loads the accelerator's modules."""
    script = (
        "import sys, kcomp\n"
        "kcomp.compile('kernel s(X: f32[8]) -> (Y: f32[8]) { Y[i] = X[i] * 2.0 }').check()\n"
        "print(sorted(m for m in sys.modules if m.startswith('kcomp.targets.accel')))\n"
        "kcomp.compile('kernel s(X: f32[8]) -> (Y: f32[8]) { Y[i] = X[i] * 2.0 }', target='cpu:scalar')\n"
        "import kcomp.targets\n"
        "kcomp.targets.get_target('accel')\n"
        "print('kcomp.targets.accel.target' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
