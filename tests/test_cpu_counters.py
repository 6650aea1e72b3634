"""The CPU target's counters (targets/cpu/counters.py, targets/cpu/perf.py): assembly counts on
handwritten disassembly and on kernels gcc built, the perf_event probe and counting (through software
events, which virtual machines without hardware counters still have), and the label a measurement
carries."""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kcomp.api import compile
from kcomp.targets.cpu import counters, perf
from kcomp.targets.cpu.target import CpuTarget

ROW_REDUCE = Path(__file__).resolve().parents[1] / "examples" / "row_reduce.kc"
DISASSEMBLY = """
Disassembly of section .text:

0000000000001080 <frame_dummy>:
    1080:	push   %rbp
    1081:	mov    %rsp,%rbp
    1084:	vmovaps %ymm0,(%rbp)
    1088:	vaddps %ymm1,%ymm0,%ymm0

0000000000001140 <kc_k._omp_fn.0>:
    1140:	vmovups (%rsi),%ymm0
    1144:	vfmadd231ps (%rdx),%ymm1,%ymm0
    1149:	vmulpd %zmm2,%zmm3,%zmm4
    114f:	vaddss %xmm1,%xmm0,%xmm0
    1153:	vfnmadd213sd %xmm2,%xmm1,%xmm0
    1158:	vucomiss %xmm0,%xmm1
    115c:	vmovaps %ymm0,0x20(%rsp)
    1162:	vaddps 0x40(%rsp,%rax,4),%ymm1,%ymm1
    1168:	vmovaps (%rbp),%ymm5
    116c:	vpaddd %ymm1,%ymm2,%ymm3
    1170:	vxorps %xmm0,%xmm0,%xmm0
    1174:	mov    %rax,0x8(%rsp)
    1179:	call   1030 <expf@plt>

0000000000001200 <kc_k>:
    1200:	push   %rbp
    1201:	mov    %rsp,%rbp
    1204:	vmovss %xmm0,-0x4(%rbp)
    1209:	vsqrtss %xmm0,%xmm0,%xmm0
    120d:	vcmpltps %xmm1,%xmm2,%xmm3
"""
# An outer loop (1300-1330) around an inner one (1304-1310); the jump back at 1320 goes to a block
# outside any loop, as gcc lays code out.
LOOPS = """
0000000000001300 <kc_loops>:
    1300:	vxorps %xmm0,%xmm0,%xmm0
    1304:	vaddps (%rax),%ymm0,%ymm0
    1308:	add    $0x20,%rax
    130c:	cmp    %rax,%rdx
    1310:	jne    1304 <kc_loops+0x4>
    1314:	vaddss %xmm1,%xmm0,%xmm0
    1318:	vmovaps %ymm0,0x20(%rsp)
    131c:	dec    %rcx
    1320:	jne    1300 <kc_loops>
    1324:	ret
"""


# -- assembly counts ---------------------------------------------------------------------------------
def test_assembly_counts_tell_packed_from_scalar_and_find_spills():
    c = counters.count_assembly(DISASSEMBLY)
    # packed: vfmadd231ps, vmulpd, vaddps (a folded reload), vcmpltps; frame_dummy is the C runtime's
    assert c["asm.vector_fp"] == 4
    assert c["asm.scalar_fp"] == 4  # vaddss, vfnmadd213sd, vucomiss, vsqrtss
    assert c["asm.fma"] == 2  # vfmadd231ps, vfnmadd213sd
    # stack moves of vector registers: two through %rsp; `(%rbp)` only where %rbp is the frame pointer
    # (kc_k), not in the OpenMP body that uses it as a data pointer; an integer register is no spill
    assert c["asm.spills"] == 3
    assert c["asm.vector_bits"] == 512
    assert counters.count_assembly("")["asm.vector_bits"] == 0


def test_an_innermost_loop_weighs_more():
    c = counters.count_assembly(LOOPS)
    hot = counters.HOT_WEIGHT
    # the packed add of the inner loop counts HOT_WEIGHT times; the outer loop's scalar add and spill once
    assert (c["asm.vector_fp"], c["asm.scalar_fp"], c["asm.spills"]) == (hot, 1, 1)


def test_a_vectorized_kernel_counts_packed_arithmetic_and_the_naive_one_scalar():
    shapes = {"N": 4, "D": 1024}
    vectorized = compile(ROW_REDUCE, shapes=shapes).built
    naive = compile(ROW_REDUCE, shapes=shapes, schedule="none").built
    assert "vectorize" in str(vectorized.schedule)
    v = counters.assembly_counts(vectorized.artifact.path, vectorized.artifact.key)
    n = counters.assembly_counts(naive.artifact.path, naive.artifact.key)
    # the loop along a row is packed; summing the lanes once per row is scalar, and weighs less
    assert v["asm.vector_fp"] > v["asm.scalar_fp"] > 0 and v["asm.vector_bits"] >= 128
    # gcc keeps a float sum in order without -ffast-math: the naive reduction stays scalar
    assert n["asm.scalar_fp"] > n["asm.vector_fp"]


def test_assembly_counts_are_cached_by_library_key(monkeypatch):
    built = compile(ROW_REDUCE, shapes={"N": 8, "D": 32}).built
    counters._cached_counts.cache_clear()
    runs = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: runs.append(a) or real_run(*a, **k))
    first = counters.assembly_counts(built.artifact.path, built.artifact.key)
    assert counters.assembly_counts(built.artifact.path, built.artifact.key) == first
    assert len(runs) == 1


def test_assembly_counts_of_a_missing_objdump_are_empty(monkeypatch, tmp_path):
    monkeypatch.setattr(counters, "OBJDUMP", "kcomp-no-such-objdump")
    assert counters.assembly_counts(tmp_path / "lib.so", "no-such-key") == {}


# -- perf_event ----------------------------------------------------------------------------------------
def test_the_probe_answers_without_raising():
    s = perf.support()
    assert isinstance(s.ok, bool) and perf.available() is s.ok
    assert s.ok or s.reason.startswith("perf_event")


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOENT, "not supported"), (errno.EACCES, "not permitted"), (errno.EIO, "failed")],
)
def test_a_refused_counter_is_a_reason_never_an_error(monkeypatch, code, words):
    def refuse(*args, **kwargs):
        raise OSError(code, "refused")

    monkeypatch.setattr(perf, "_open", refuse)
    perf.support.cache_clear()
    try:
        s = perf.support()
        assert not s.ok and words in s.reason
        assert perf.count(lambda: None, 3) is None
    finally:
        perf.support.cache_clear()


# The software clock events every Linux kernel has stand in for cycles and instructions: the same
# system call, attribute layout, per-thread counters and reads as hardware events.
TASK_CLOCK, PAGE_FAULTS = (1, 1), (1, 2)


def _spin(seconds: float) -> None:
    """Busy for `seconds` of this thread's CPU time (however loaded the machine is)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_counting_covers_the_threads_that_exist_and_those_started(monkeypatch):
    monkeypatch.setattr(perf, "EVENTS", {"cycles": TASK_CLOCK, "instructions": PAGE_FAULTS})
    go, done, stop = threading.Event(), threading.Event(), False

    def worker():  # started before counting, like the OpenMP pool a first call started
        while not stop:
            if go.wait(0.01):
                go.clear()
                _spin(0.02)
                done.set()

    existing = threading.Thread(target=worker)
    existing.start()

    def call():  # the calling thread waits (off the CPU) while the other threads work
        go.set()
        done.wait()
        done.clear()
        started = threading.Thread(target=_spin, args=(0.02,))
        started.start()
        started.join()

    try:
        counted = perf.count(call, 2)
    finally:
        stop = True
        existing.join()
    if counted is None:
        pytest.skip("perf_event_open is not permitted here, not even for software events")
    # task-clock nanoseconds per call: both threads' 20 ms spins, not just the waiting caller's time
    assert counted["hw.cycles"] > 30e6, counted
    assert set(counted) == {"hw.cycles", "hw.instructions"}


# -- the measurement's label ---------------------------------------------------------------------------
def test_a_measurement_says_which_counters_it_carries(monkeypatch):
    built = compile(ROW_REDUCE, shapes={"N": 8, "D": 32}).built
    target, lib = built.target, built.artifact
    assert isinstance(target, CpuTarget)
    args = built.arguments(*_arrays(built))
    m = target.profile(lib, args, budget_s=0.005)
    expected = "hardware" if perf.available() else "derived"
    assert m.counters["counter_source"] == expected
    assert any(k.startswith("hw." if expected == "hardware" else "asm.") for k in m.counters)

    monkeypatch.setattr(perf, "support", lambda: perf.Support(False, "perf_event not supported (test)"))
    derived = counters.profile_counters(lib, lambda: None, 1e-3, 0.01)
    assert derived["counter_source"] == "derived" and derived["counter_note"].endswith("(test)")
    assert derived["asm.vector_fp"] > 0

    monkeypatch.setattr(perf, "support", lambda: perf.Support(True))
    monkeypatch.setattr(perf, "count", lambda call, calls: {"hw.cycles": 10.0, "hw.instructions": 20.0})
    hardware = counters.profile_counters(lib, lambda: None, 1e-3, 0.01)
    assert hardware == {
        "counter_source": "hardware",
        "hw.calls": 2,
        "hw.cycles": 10.0,
        "hw.instructions": 20.0,
    }
    cut = counters.profile_counters(lib, lambda: None, 1e-3, 0.01, cut_short=True)
    assert cut["counter_source"] == "derived" and "cut short" in cut["counter_note"]


def _arrays(built):
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = {b.name: rng.uniform(0.5, 1.5, b.shape).astype(np.float32) for b in built.program.inputs}
    outputs = {b.name: np.zeros(b.shape, np.float32) for b in built.program.outputs}
    return inputs, outputs, {}
