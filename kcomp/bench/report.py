"""A suite result as strict JSON (`--json`) or as a table for people.

Every suite returns the same shape ({"suite", "machine", "rows": [{"case", "params", "flops",
"times_s", "extra"}]}), so one printer serves them all.  Derived figures (GFLOP/s, % of the FMA peak,
the kcomp/numpy speed ratio, the roofline bound) are computed here from `times_s` and `machine`, never stored.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

SYSTEM_ORDER = ("kcomp", "numpy", "torch")


def to_json(result: dict[str, Any]) -> str:
    """One line of strict JSON (no NaN/Infinity: those are written as the strings "nan", "inf")."""
    return json.dumps(_finite(result), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def systems(result: dict[str, Any]) -> list[str]:
    """Every system timed or attempted in any row: the usual three first, then the rest by name."""
    seen = {s for row in result["rows"] for s in row["times_s"]}
    seen |= {k.removesuffix("_error") for row in result["rows"] for k in row["extra"] if k.endswith("_error")}
    return [s for s in SYSTEM_ORDER if s in seen] + sorted(seen - set(SYSTEM_ORDER))


def gflops(row: dict[str, Any], system: str) -> float | None:
    t = row["times_s"].get(system)
    return row["flops"] / t / 1e9 if t and row.get("flops") else None


def machine_line(m: dict[str, Any]) -> str:
    """The machine and its roofs in one line, e.g. for the table's title."""
    parts = [f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('isa', '?')}"]
    if "fma_peak_gflops" in m:
        parts.append(f"FMA peak {m['fma_peak_gflops']:.1f} GFLOP/s")
    if "copy_gbps" in m:
        parts.append(f"copy {m['copy_gbps']:.1f} GB/s")
    if "blas_kernel" in m:
        library = f" ({m['blas_library']})" if m.get("blas_library") else ""
        parts.append(f"numpy BLAS {m['blas_kernel']}{library}")
    if m.get("threads"):
        parts.append("threads " + ", ".join(f"{s} {n}" for s, n in m["threads"].items()))
    parts += [
        f"{key.removesuffix('_error')} not measured: {why}"
        for key, why in m.items()
        if key.endswith("_error")
    ]
    return " | ".join(parts)


def print_footer(con: Console, result: dict[str, Any]) -> None:
    """The lines under a suite's table: a load warning, then every failure."""
    warning = load_warning(result["machine"])
    if warning:
        con.print(f"[yellow]warning[/] {warning}", highlight=False)
    for line in failures(result):
        con.print(f"[red]failed[/] {line}", highlight=False)


def suite_table(result: dict[str, Any], title: str, width: int) -> tuple[Console, Table]:
    """A console (at least `width` wide when not a terminal, so files and pipes get whole rows) and
    an empty table titled `title` with the machine line as its caption."""
    con = Console()
    if not con.is_terminal:
        con.width = max(con.width, width)
    return con, Table(title=title, caption=machine_line(result["machine"]), caption_justify="left")


def roofline(row: dict[str, Any], m: dict[str, Any]) -> tuple[float, str] | None:
    """The row's attainable GFLOP/s and which roof sets it: min(FMA peak, intensity x copy GB/s),
    intensity being flops per byte of compulsory traffic (`extra["min_bytes"]`)."""
    peak, bandwidth, nbytes = m.get("fma_peak_gflops"), m.get("copy_gbps"), row["extra"].get("min_bytes")
    if not (peak and bandwidth and nbytes and row.get("flops")):
        return None
    memory = row["flops"] / nbytes * bandwidth
    return (peak, "compute") if peak <= memory else (memory, "memory")


def _cell(row: dict[str, Any], system: str, peak: float | None) -> str:
    t = row["times_s"].get(system)
    if t is None:
        return "[red]failed[/]" if f"{system}_error" in row["extra"] else "-"
    rate = gflops(row, system)
    if rate is None:
        return f"{t * 1e3:.3f} ms"
    share = f" ({100 * rate / peak:.1f}%)" if peak else ""
    return f"{rate:.2f}{share}"


def table(result: dict[str, Any]) -> Table:
    """Per case: each system's GFLOP/s (% of FMA peak), kcomp/numpy speed ratio, the roofline
    bound (compute or memory), schedule."""
    m = result["machine"]
    peak = m.get("fma_peak_gflops")
    names = systems(result)
    unit = "GFLOP/s (% of FMA peak)" if any(r.get("flops") for r in result["rows"]) else "median time"
    t = Table(title=f"kcomp bench {result['suite']}: {unit}", caption=machine_line(m), caption_justify="left")
    t.add_column("case", no_wrap=True)
    for name in names:
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("kcomp/numpy\n(speed)", justify="right")
    t.add_column("roofline\nGFLOP/s", justify="right")
    t.add_column("schedule")
    for row in result["rows"]:
        tk, tn = row["times_s"].get("kcomp"), row["times_s"].get("numpy")
        ratio = f"{tn / tk:.3f}x" if tk and tn else "-"
        cells = [_cell(row, name, peak) for name in names]
        roof = roofline(row, m)
        bound = f"{roof[0]:.1f} {roof[1]}" if roof else "-"
        t.add_row(row["case"], *cells, ratio, bound, str(row["extra"].get("schedule_source", "-")))
    return t


def failures(result: dict[str, Any]) -> list[str]:
    """'case: system: reason' for every system that could not run a case."""
    return [
        f"{row['case']}: {key.removesuffix('_error')}: {reason}"
        for row in result["rows"]
        for key, reason in row["extra"].items()
        if key.endswith("_error")
    ]


def load_warning(m: dict[str, Any]) -> str | None:
    """A sentence when other processes competed for the cores during the run.

    `other_cpu_cores` (cores other processes kept busy, on average; machine.OtherCpu) decides
    when present: more than a quarter of a core means the timings shared the CPU.  Older
    results only have the load average, which counts the benchmark's own threads too, so there
    only the load before the run started is judged (above half the cores)."""
    cores = m.get("cores") or 1
    others = m.get("other_cpu_cores")
    if others is not None:
        if others <= 0.25:
            return None
        return (
            f"other processes kept {others:.2f} of {cores} cores busy on average during the run,"
            " so these figures (roofs included) are unreliable"
        )
    start = (m.get("load_avg_1m") or {}).get("start")
    if start is None or start <= cores / 2:
        return None
    return (
        f"load average was {start:.1f} on {cores} cores when the run started: other processes"
        " shared the CPU, so these figures (roofs included) are unreliable"
    )


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    con = console or Console()
    if console is None and not con.is_terminal:
        con.width = max(con.width, 140)  # a pipe or a file: no terminal to wrap for
    con.print(table(result))
    print_footer(con, result)
