"""The CPU target's library cache, runtime argument checks, profiling and the target registry."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cpu_nests import F32, I32, N, b, map1

from kcomp.config import Config
from kcomp.errors import BuildError, UsageError
from kcomp.expr import (
    BinaryOp,
    Buffer,
    Load,
    Unary,
    UnaryOp,
    Var,
)
from kcomp.loops import Loop, LoopKind, LoopNest, Store
from kcomp.targets import TARGETS, Measurement, get_target
from kcomp.targets.cpu import build as cpu_build
from kcomp.targets.cpu.target import CpuTarget


# -- the library cache ----------------------------------------------------------------------------------
def test_cache_hit_does_not_run_gcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = CpuTarget(cfg=Config(cache_dir=tmp_path / "cache", threads=1))
    x, out = Buffer("x", I32, (4,)), Buffer("out", I32, (4,))
    source = t.emit(map1("cached", (x,), out, lambda i: b(BinaryOp.ADD, Load(x, (i,)), i)))
    first = t.build(source)
    assert not first.cached and first.path.parent == tmp_path / "cache" / "lib"
    mtime = first.path.stat().st_mtime_ns

    def no_gcc(cmd: list[str]) -> None:
        raise AssertionError(f"gcc ran on a cache hit: {cmd}")

    monkeypatch.setattr(cpu_build, "_run_gcc", no_gcc)
    second = t.build(source)
    assert second.cached and second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert oct((tmp_path / "cache" / "lib").stat().st_mode & 0o777) == "0o700"
    got = np.empty(4, np.int32)
    t.run(second, [np.array([5, 6, 7, 8], np.int32), got])
    assert got.tolist() == [5, 7, 9, 11]
    with pytest.raises(AssertionError, match="gcc ran"):
        t.build(source + "\n")  # a different source is a different key


def test_concurrent_builds_of_one_source(tmp_path: Path) -> None:
    t = CpuTarget(cfg=Config(cache_dir=tmp_path / "cache", threads=1))
    x, out = Buffer("x", F32, (8,)), Buffer("out", F32, (8,))
    source = t.emit(map1("racy", (x,), out, lambda i: Unary(UnaryOp.SQRT, Load(x, (i,)))))
    start = threading.Barrier(4)

    def build_once(_: int):
        start.wait()
        return t.build(source)

    with ThreadPoolExecutor(4) as pool:
        libs = list(pool.map(build_once, range(4)))
    assert len({lib.path for lib in libs}) == 1
    assert not [
        p for p in (tmp_path / "cache" / "lib").iterdir() if p.name.startswith(".")
    ]  # no temp files left
    got = np.empty(8, np.float32)
    t.run(libs[0], [np.arange(8, dtype=np.float32), got])
    np.testing.assert_allclose(got, np.sqrt(np.arange(8, dtype=np.float32)), rtol=1e-7)


def test_cache_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    shared.chmod(0o700)
    (shared / "lib").chmod(0o777)
    t = CpuTarget(cfg=Config(cache_dir=shared, threads=1))
    with pytest.raises(UsageError, match=r"writable by group or others \(mode 777\).*chmod go-w"):
        t.build("int x;")


def test_cache_dir_owned_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine"
    t = CpuTarget(cfg=Config(cache_dir=mine, threads=1))
    real_uid = os.getuid()
    monkeypatch.setattr(cpu_build.os, "getuid", lambda: real_uid + 1)
    with pytest.raises(UsageError, match=r"owned by uid \d+, not by you.*KCOMP_CACHE_DIR"):
        t.build("int x;")


def test_config_from_env(tmp_path: Path) -> None:
    cfg = Config.from_env({"KCOMP_CACHE_DIR": str(tmp_path / "k"), "KCOMP_THREADS": "3"})
    assert cfg.lib_dir == tmp_path / "k" / "lib" and cfg.threads == 3
    assert Config.from_env({"XDG_CACHE_HOME": str(tmp_path)}).lib_dir == tmp_path / "kcomp" / "lib"
    with pytest.raises(UsageError, match="KCOMP_THREADS='many': expected a positive integer"):
        Config.from_env({"KCOMP_THREADS": "many"})


def test_bad_source_raises_build_error_with_kept_source(target: CpuTarget) -> None:
    with pytest.raises(BuildError, match=r"gcc rejected the generated C \(kept at .*\.failed\.c\)") as info:
        target.build("void kc_broken(void) { this is not C; }")
    kept = Path(str(info.value).split("kept at ")[1].split(")")[0])
    assert kept.read_text() == "void kc_broken(void) { this is not C; }"
    assert "error" in str(info.value)


# -- the runtime's argument checks and the registry ----------------------------------------------------
def test_runtime_rejects_bad_arguments(target: CpuTarget) -> None:
    x, out = Buffer("x", F32, (4, 4)), Buffer("out", F32, (4, 4))
    i, j = Var("i"), Var("j")
    body = (
        Loop(i, 4, LoopKind.SERIAL, (Loop(j, 4, LoopKind.SERIAL, (Store(out, (i, j), Load(x, (j, i))),)),)),
    )
    lib = target.build(target.emit(LoopNest("transpose", (x,), (out,), (), body)))
    good, res = np.ones((4, 4), np.float32), np.empty((4, 4), np.float32)
    readonly = np.empty((4, 4), np.float32)
    readonly.flags.writeable = False
    cases = [
        ([good], r"takes 2 arguments \(x, out\), got 1"),
        ([good.astype(np.float64), res], "argument x: expected dtype float32, got float64"),
        ([np.ones((4, 5), np.float32), res], r"argument x: expected shape \(4, 4\), got \(4, 5\)"),
        ([np.ones((4, 8), np.float32)[:, ::2], res], "argument x: must be C-contiguous"),
        ([good, readonly], "argument out: output array is read-only"),
        ([good, good], "argument out shares memory with x"),
        ([[1.0] * 16, res], "argument x: expected a numpy array, got list"),
    ]
    for args, message in cases:
        with pytest.raises(UsageError, match=message):
            target.run(lib, args)
    target.run(lib, [np.arange(16, dtype=np.float32).reshape(4, 4), res])
    np.testing.assert_array_equal(res, np.arange(16, dtype=np.float32).reshape(4, 4).T)


def test_profile_returns_median_measurement(target: CpuTarget, rng: np.random.Generator) -> None:
    x, out = Buffer("x", F32, (N,)), Buffer("out", F32, (N,))
    lib = target.build(
        target.emit(
            map1("timed", (x,), out, lambda i: Unary(UnaryOp.TANH, Load(x, (i,))), kind=LoopKind.PARALLEL)
        )
    )
    m = target.profile(
        lib, [rng.uniform(-1, 1, N).astype(np.float32), np.empty(N, np.float32)], budget_s=0.01
    )
    assert isinstance(m, Measurement) and 0 < m.counters["min_s"] <= m.time_s <= m.counters["max_s"]
    assert m.counters["repeats"] >= 5 and m.counters["threads"] == 2


def test_registry() -> None:
    assert isinstance(get_target("cpu"), CpuTarget) and "cpu" in TARGETS
    t = get_target("cpu")
    assert t.name == "cpu" and t.cores >= 1 and t.vector_bits in (0, 128, 256, 512)
    with pytest.raises(UsageError, match="unknown target 'tpu'; known targets: accel, cpu"):
        get_target("tpu")
