"""The counters a CPU measurement carries: hardware counters where perf_event works, else counters
derived from the build, always labelled with which (`counter_source`).

    hardware   hw.cycles, hw.instructions, hw.cache_misses, hw.dtlb_misses    per call (targets/cpu/perf.py)
    derived    asm.vector_fp, asm.scalar_fp, asm.fma, asm.spills, asm.vector_bits   read from the library's
               machine code; the tuner adds est.l1_bytes, est.l2_bytes, est.dram_bytes (the cost model's
               traffic of the scheduled nest: search/measure.py, where the nest is known)

The assembly counts answer what gcc made of a schedule: whether the arithmetic is in packed
(`addps`, `vfmadd231pd`) or scalar (`addss`) form, and whether vector registers go through the stack
frame (spills and reloads, or a local array gcc kept in memory).  They are static counts over the
kernel's functions (the entry point, its OpenMP bodies and helpers; not the C runtime's), an
instruction inside an innermost loop counting `HOT_WEIGHT` times: the sixteen scalar adds that sum
a vector's lanes once per row then weigh less than the packed adds of the loop along the row.  (An
innermost loop is the range from a backward jump's target to the jump that holds no other such
range; a deeper weighting by nesting depth would trust backward jumps too far, as gcc also jumps
back to shared blocks.)  objdump reads them in milliseconds; they are cached per library key, since
the tuner profiles many trials and times some twice.
"""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kcomp.targets.cpu import perf
from kcomp.targets.cpu.build import Library
from kcomp.targets.cpu.isa import X86_MACHINES

OBJDUMP = "objdump"
OBJDUMP_TIMEOUT_S = 30
HARDWARE_SHARE = 0.25  # of the timing budget spent on the calls counted after timing
# the C runtime's functions in every shared library: not the kernel's code
RUNTIME = frozenset(
    {"_init", "_fini", "deregister_tm_clones", "register_tm_clones", "__do_global_dtors_aux", "frame_dummy"}
)
FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
INSTRUCTION = re.compile(r"^\s*(?P<at>[0-9a-f]+):\s+(?P<op>[a-z][a-z0-9]*)\s*(?P<args>.*)$")
ADDRESS = re.compile(r"^[0-9a-f]+$")  # a direct jump's operand, once the `<symbol+offset>` is cut off
HOT_WEIGHT = 10.0  # how many times an instruction of an innermost loop counts (a guess at its trips)
# floating-point arithmetic, compares included (AT&T mnemonics, an optional AVX `v`): the suffix
# says packed (ps, pd, ph) or scalar (ss, sd, sh)
FP = re.compile(
    r"^v?(?:(?P<fma>fn?m(?:add|sub)(?:add|sub)?\d{3})|add|sub|mul|div|sqrt|max|min|rcp(?:14|28)?"
    r"|rsqrt(?:14|28)?|round|rndscale|hadd|hsub|addsub|dp|cmp[a-z_]*?|u?comi)(?P<form>p[sdh]|s[sdh])$"
)
VECTOR_REGISTER = re.compile(r"%(?P<width>[xyz])mm\d+")
WIDTH_BITS = {"x": 128, "y": 256, "z": 512}
STACK = re.compile(r"\(%rsp[,)]")
FRAME = re.compile(r"\(%rbp[,)]")


def profile_counters(
    library: Library, call: Callable[[], object], time_s: float, budget_s: float, *, cut_short: bool = False
) -> dict[str, Any]:
    """The counters of one CPU measurement of `library` (`call`: its bound call, `time_s`: the
    measured median): hardware counts over a quarter of `budget_s` more calls where perf_event
    works, else the assembly counts, labelled `counter_source` "hardware" or "derived" (with
    `counter_note` saying why derived).  A measurement `cut_short` (one call past the tuner's
    cutoff) gets the cheap derived counts: a hopeless candidate must not cost more calls."""
    support = perf.support()
    note = support.reason
    if support.ok and not cut_short:
        calls = max(1, min(1000, int(HARDWARE_SHARE * budget_s / max(time_s, 1e-9))))
        counted = perf.count(call, calls)
        if counted is not None:
            return {"counter_source": "hardware", "hw.calls": calls, **counted}
        note = "perf_event counters could not be opened for this process's threads"
    elif support.ok:
        note = "cut short: one call past the cutoff, not counted again"
    asm = assembly_counts(library.path, library.key)
    if not asm:
        note += f"; no assembly counts ({OBJDUMP} failed, or not an x86-64 host)"
    return {"counter_source": "derived", "counter_note": note, **asm}


def assembly_counts(path: Path, key: str) -> dict[str, float]:
    """`asm.*` of the library at `path` (empty when objdump fails or the host is not x86-64);
    cached by `key`, the library's content hash."""
    return dict(_cached_counts(key, str(path)))


@functools.lru_cache(maxsize=512)
def _cached_counts(key: str, path: str) -> tuple[tuple[str, float], ...]:
    if platform.machine().lower() not in X86_MACHINES:
        return ()
    try:
        done = subprocess.run(
            [OBJDUMP, "-d", "--no-show-raw-insn", "-j", ".text", path],
            capture_output=True,
            text=True,
            timeout=OBJDUMP_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    return tuple(count_assembly(done.stdout).items())


def count_assembly(text: str) -> dict[str, float]:
    """The `asm.*` counts of objdump's AT&T disassembly `text`, innermost loops weighted (module docstring):

    asm.vector_fp    packed FP arithmetic instructions (any register width), compares included
    asm.scalar_fp    scalar FP arithmetic instructions
    asm.fma          fused multiply-adds among them, packed or scalar
    asm.spills       instructions moving a vector register to or from the stack frame
                     (`(%rsp)`, or `(%rbp)` in a function that set %rbp up as its frame pointer)
    asm.vector_bits  the widest register of a packed FP instruction (0: none)
    """
    counts = {"asm.vector_fp": 0.0, "asm.scalar_fp": 0.0, "asm.fma": 0.0, "asm.spills": 0.0}
    widest = 0
    for body in _functions(text).values():
        hot = _innermost_loops(body)
        frame = any(op == "mov" and args == "%rsp,%rbp" for _, op, args in body)
        for at, op, args in body:
            weight = HOT_WEIGHT if any(start <= at <= end for start, end in hot) else 1.0
            widths = [m["width"] for m in VECTOR_REGISTER.finditer(args)]
            fp = FP.match(op)
            if fp:
                packed = fp["form"].startswith("p")
                counts["asm.vector_fp" if packed else "asm.scalar_fp"] += weight
                counts["asm.fma"] += weight if fp["fma"] else 0.0
                if packed and widths:
                    widest = max(widest, *(WIDTH_BITS[w] for w in widths))
            if widths and (STACK.search(args) or (frame and FRAME.search(args))):
                counts["asm.spills"] += weight
    return {**counts, "asm.vector_bits": float(widest)}


def _innermost_loops(body: list[tuple[int, str, str]]) -> list[tuple[int, int]]:
    """Address ranges from a backward jump's target to the jump that contain no other such range."""
    ranges = {
        (int(args, 16), at)
        for at, op, args in body
        if op.startswith("j") and ADDRESS.match(args) and int(args, 16) <= at
    }
    return [r for r in ranges if not any(o != r and r[0] <= o[0] and o[1] <= r[1] for o in ranges)]


def _functions(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """The kernel's functions in a disassembly: name -> [(address, mnemonic, operands)], the C
    runtime's left out."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    current: list[tuple[int, str, str]] | None = None
    for line in text.splitlines():
        header = FUNCTION.match(line)
        if header:
            current = None if header["name"] in RUNTIME else out.setdefault(header["name"], [])
            continue
        insn = INSTRUCTION.match(line)
        if insn and current is not None:
            current.append((int(insn["at"], 16), insn["op"], _operands(insn["args"])))
    return out


def _operands(args: str) -> str:
    """The operands without objdump's trailing comment (`# 2010 <table>`, `<sym+0x10>`)."""
    return args.split("#", 1)[0].split("<", 1)[0].strip()


__all__ = ["assembly_counts", "count_assembly", "profile_counters"]
