"""CPU ISA levels (targets/cpu/isa.py): target specs, the -march each level hands gcc, kernels built for a
level compared with the reference, and the refusal to run code this CPU lacks the instructions for."""

from __future__ import annotations

import itertools
import json
import platform
from pathlib import Path

import numpy as np
import pytest

import kcomp.api
from kcomp.cli import main
from kcomp.config import Config
from kcomp.errors import BuildError, UsageError
from kcomp.targets import get_target
from kcomp.targets.cpu import build as cpu_build
from kcomp.targets.cpu import host, isa, runtime
from kcomp.targets.cpu.target import CpuTarget

N = 257  # not a multiple of any vector width
AXPY = f"""
dim N = {N}
kernel axpy(X: f32[N], Z: f32[N], a: f32 = 1.5) -> (Y: f32[N]) {{
    Y[i] = X[i] * a + Z[i]
}}
"""
MATMUL = Path(__file__).resolve().parents[1] / "examples" / "matmul.kc"
MATMUL_SHAPES = {"M": 24, "N": 20, "K": 16}
LEVEL_MARCH = [("avx512", "x86-64-v4", 512), ("avx2", "x86-64-v3", 256), ("scalar", "x86-64", 128)]
# Flags of machines other than this one, for messages that must not depend on the host.
AVX2_HOST = isa.LEVELS["avx2"].needs
SSE_HOST = isa.LEVELS["scalar"].needs | {"ssse3", "sse4_1", "sse4_2"}

x86_only = pytest.mark.skipif(
    platform.machine().lower() not in isa.X86_MACHINES, reason="the ISA levels are x86-64 levels"
)


def runs_here(level: str) -> bool:
    return not isa.missing_flags(level)


def nonzero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random values with magnitude in [0.1, 1) and a random sign: never zero."""
    mag = rng.uniform(0.1, 1.0, size=shape)
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return np.ascontiguousarray((mag * sign).astype(np.float32))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240612)


# -- specs --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("level", "march", "bits"), LEVEL_MARCH)
def test_forced_level_spec(level: str, march: str, bits: int) -> None:
    for spec in (f"cpu:{level}", f"  CPU:{level.upper()} ", f"Cpu : {level.title()}"):
        assert isa.parse_cpu_spec(spec) == (level, march)
    t = get_target(f"CPU:{level.upper()}")
    assert isinstance(t, CpuTarget)
    assert (t.isa, t.arch, t.vector_bits, t.name) == (level, march, bits, f"cpu:{level}")
    assert f"cpu:{level} (" in t.describe() and f"ISA level {level}" in t.describe()
    assert f"-march={march}" in t.describe()


def test_plain_cpu_is_the_host_level_tuned_natively() -> None:
    assert isa.parse_cpu_spec("cpu") == (host.isa_level(), "native")
    for t in (get_target(" cpu "), CpuTarget()):
        assert isinstance(t, CpuTarget)
        assert (t.isa, t.arch, t.name) == (host.isa_level(), "native", "cpu")
        assert t.vector_bits == isa.LEVELS[host.isa_level()].vector_bits


def test_constructor_level_and_arch() -> None:
    assert (CpuTarget(isa="AVX2").isa, CpuTarget(isa="AVX2").arch) == ("avx2", "x86-64-v3")
    assert (CpuTarget(arch="x86-64-v4").isa, CpuTarget(arch="x86-64-v4").arch) == ("avx512", "x86-64-v4")
    assert (CpuTarget(arch="native").isa, CpuTarget(arch="native").arch) == (host.isa_level(), "native")
    custom = CpuTarget(isa="avx2", arch="haswell")
    assert (custom.isa, custom.arch, custom.vector_bits) == ("avx2", "haswell", 256)


def test_spec_errors() -> None:
    valid = "valid levels: avx512, avx2, scalar"
    with pytest.raises(UsageError, match=rf"unknown cpu ISA level 'sse4' in target 'cpu:sse4'; {valid}"):
        get_target("CPU:SSE4")
    with pytest.raises(UsageError, match=rf"unknown cpu ISA level '' in target 'cpu:'; {valid}"):
        get_target("cpu:")
    with pytest.raises(UsageError, match=r"'gpu:avx2' is not a cpu target; expected cpu or cpu:LEVEL"):
        isa.parse_cpu_spec("gpu:avx2")
    with pytest.raises(UsageError, match=r"unknown target 'tpu:avx2'; known targets: accel, cpu"):
        get_target("tpu:avx2")
    with pytest.raises(UsageError, match=rf"unknown cpu ISA level 'avx3'; {valid}"):
        CpuTarget(isa="avx3")
    with pytest.raises(
        UsageError, match=r"-march=haswell is not an ISA level's \(x86-64-v4, x86-64-v3, x86-64\)"
    ):
        CpuTarget(arch="haswell")


# -- the host ---------------------------------------------------------------------------------------------
def test_isa_level_from_flags() -> None:
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
    assert host.isa_level(frozenset(avx512 | {"avx2", "fma"})) == "avx512"
    assert host.isa_level(frozenset((avx512 - {"avx512dq"}) | {"avx2", "fma"})) == "avx2"
    assert host.isa_level(frozenset({"avx", "avx2", "fma"})) == "avx2"
    assert host.isa_level(frozenset({"avx", "avx2"})) == "scalar"  # no FMA
    assert host.isa_level(frozenset({"sse2", "avx"})) == "scalar"
    assert host.isa_level(frozenset()) == "scalar"


def test_host_level_matches_proc_cpuinfo() -> None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    lines = [line for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")]
    flags = set(lines[0].partition(":")[2].split()) if lines else set()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        want = "avx512"
    elif {"avx2", "fma"} <= flags:
        want = "avx2"
    else:
        want = "scalar"
    assert host.isa_level() == want
    assert isa.runnable_levels() == [n for n in isa.LEVELS if isa.LEVELS[n].needs <= flags]


def test_levels_nest_and_widen() -> None:
    levels = list(isa.LEVELS.values())
    assert [lv.name for lv in levels] == ["avx512", "avx2", "scalar"]
    for wider, narrower in itertools.pairwise(levels):
        assert narrower.needs < wider.needs and narrower.vector_bits < wider.vector_bits
    assert {"sse2", "avx2", "fma", "bmi2", "movbe"} <= isa.LEVELS["avx2"].needs
    assert "avx" not in isa.LEVELS["scalar"].needs
    assert isa.runnable_levels(AVX2_HOST) == ["avx2", "scalar"]


# -- flags reach gcc ---------------------------------------------------------------------------------------
PROBE = """
#if defined(__AVX512F__)
#define KC_BITS 512
#elif defined(__AVX2__)
#define KC_BITS 256
#else
#define KC_BITS 128
#endif
_Static_assert(KC_BITS == {bits}, "compiled for the wrong ISA level");
int kc_probe(void) {{ return KC_BITS; }}
"""


@pytest.mark.parametrize(("level", "march", "bits"), LEVEL_MARCH)
def test_flags_carry_the_level(level: str, march: str, bits: int) -> None:
    assert f"-march={march}" in cpu_build.flags(CpuTarget(isa=level).arch)
    keys = {cpu_build.cache_key("int x;", cpu_build.flags(lv.march)) for lv in isa.LEVELS.values()}
    assert len(keys) == len(isa.LEVELS)  # one source, three libraries


@x86_only
@pytest.mark.parametrize(("level", "march", "bits"), LEVEL_MARCH)
def test_gcc_builds_for_the_level_even_when_the_host_lacks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str, march: str, bits: int
) -> None:
    commands: list[list[str]] = []
    real_gcc = cpu_build._run_gcc

    def recording_gcc(cmd: list[str]):
        commands.append(cmd)
        return real_gcc(cmd)

    monkeypatch.setattr(cpu_build, "_run_gcc", recording_gcc)
    t = CpuTarget(isa=level, cfg=Config(cache_dir=tmp_path / "cache", threads=1))
    lib = t.build(PROBE.format(bits=bits))  # the static assert fails unless gcc saw the level's -march
    assert lib.path.exists() and not lib.cached
    assert len(commands) == 1 and f"-march={march}" in commands[0]
    wrong = next(b for _, _, b in LEVEL_MARCH if b != bits)
    with pytest.raises(BuildError, match="compiled for the wrong ISA level"):
        t.build(PROBE.format(bits=wrong))


def test_forced_level_off_x86_cannot_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isa.platform, "machine", lambda: "aarch64")
    t = CpuTarget(isa="avx2", cfg=Config(cache_dir=tmp_path / "cache", threads=1))
    with pytest.raises(
        UsageError, match=r"cpu:avx2 is an x86-64 level; this host is aarch64.*use --target cpu"
    ):
        t.build("int kc_probe(void) { return 0; }")


# -- kernels built for a level against the reference -------------------------------------------------------
@x86_only
@pytest.mark.parametrize("level", ["scalar", "avx2", "avx512"])
def test_level_runs_and_matches_reference(rng: np.random.Generator, level: str) -> None:
    if not runs_here(level):
        pytest.skip(f"this CPU lacks {level}: {', '.join(isa.missing_flags(level))}")
    k = kcomp.api.compile(AXPY, target=f"cpu:{level}")
    assert k.target.name == f"cpu:{level}" and f"-march={isa.LEVELS[level].march}" in k.target.describe()
    x, z = nonzero(rng, N), nonzero(rng, N)
    assert k.check(inputs={"X": x, "Z": z}, params={"a": -0.75}).ok
    np.testing.assert_allclose(k(x, z, a=-0.75), x * np.float32(-0.75) + z, rtol=1e-5, atol=1e-6)
    mm = kcomp.api.compile(MATMUL, target=f"cpu:{level}", shapes=MATMUL_SHAPES)
    a, b = nonzero(rng, 24, 16), nonzero(rng, 16, 20)
    result = mm.check(inputs={"A": a, "B": b})
    assert result.ok, result
    np.testing.assert_allclose(mm(a, b), a @ b, rtol=1e-5, atol=1e-6)


@x86_only
@pytest.mark.parametrize("level", ["avx512", "avx2"])
def test_level_the_host_lacks_builds_but_refuses_to_run(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    if runs_here(level):
        pytest.skip(f"this CPU has {level}")
    k = kcomp.api.compile(AXPY, target=f"cpu:{level}")  # cross-compiling is allowed
    assert k.source and k.built.artifact.path.exists()

    def no_load(library):
        raise AssertionError("a kernel this CPU cannot run was loaded")

    monkeypatch.setattr(runtime, "load", no_load)
    pattern = (
        rf"this CPU lacks {level} \(missing .*{isa.missing_flags(level)[0]}.*\); code built for cpu:{level}"
    )
    with pytest.raises(UsageError, match=pattern + r" cannot run here; use --target cpu"):
        k.check()
    with pytest.raises(UsageError, match=pattern):
        k(nonzero(rng, N), nonzero(rng, N))
    with pytest.raises(UsageError, match=pattern):
        k.target.profile(k.built.artifact, [nonzero(rng, N), nonzero(rng, N), 1.5, np.empty(N, np.float32)])


def test_refusal_names_missing_flags_and_the_levels_that_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isa.host, "flags", lambda: AVX2_HOST)
    with pytest.raises(
        UsageError,
        match=r"^this CPU lacks avx512 \(missing avx512bw, avx512cd, avx512dq, avx512f, avx512vl\); "
        r"code built for cpu:avx512 cannot run here; use --target cpu or cpu:avx2$",
    ):
        isa.check_runnable("avx512", "x86-64-v4")
    isa.check_runnable("avx2", "x86-64-v3")
    isa.check_runnable("avx512", "native")  # built for this host by definition
    monkeypatch.setattr(isa.host, "flags", lambda: SSE_HOST)
    with pytest.raises(
        UsageError, match=r"lacks avx2 \(missing abm, avx, avx2, .*use --target cpu or cpu:scalar$"
    ):
        isa.check_runnable("avx2", "x86-64-v3")


# -- the command line --------------------------------------------------------------------------------------
@x86_only
def test_cli_run_check_json_for_a_level(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "axpy.kc"
    src.write_text(AXPY)
    code = main(["run", str(src), "--target", "cpu:scalar", "--check", "--json", "--seed", "3"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1, out
    result = json.loads(lines[0])
    assert result["ok"] is True and result["target"] == "cpu:scalar" and result["kernel"] == "axpy"
    assert result["outputs"]["Y"]["ok"] is True


def test_cli_unknown_level_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "axpy.kc"
    src.write_text(AXPY)
    assert main(["run", str(src), "--target", "cpu:avx1024", "--check", "--json"]) == 2
    err = capsys.readouterr().err
    assert "unknown cpu ISA level 'avx1024'" in err and "avx512, avx2, scalar" in err
    assert "Traceback" not in err


def test_the_l2_size_comes_from_sysfs_or_the_fallback(tmp_path, monkeypatch):
    for n, (level, kind, size) in enumerate(
        [("1", "Data", "32K"), ("1", "Instruction", "32K"), ("2", "Unified", "1024K")]
    ):
        index = tmp_path / f"index{n}"
        index.mkdir()
        for name, text in (("level", level), ("type", kind), ("size", size)):
            (index / name).write_text(text + "\n")
    monkeypatch.setattr(host, "CACHES", tmp_path)
    host.l2_bytes.cache_clear()
    try:
        assert host.l2_bytes() == 1 << 20
        monkeypatch.setattr(host, "CACHES", tmp_path / "missing")
        host.l2_bytes.cache_clear()
        assert host.l2_bytes() == host.L2_FALLBACK
    finally:
        host.l2_bytes.cache_clear()
    assert host._size("2M") == 2 << 20 and host._size("512K") == 512 << 10 and host._size("big") == 0
