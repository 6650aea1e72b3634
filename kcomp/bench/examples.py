"""The examples suite: every `.kc` example with the schedule kcomp picks against its naive loops.

    kcomp bench examples [--cases softmax,matmul] [--target T] [--shape N=V ...] [--json]

This is the check behind "the default scheduler beats naive loops": each row times the kernel with
the schedule DESIGN.md's precedence picks (the file's block, else the default scheduler) and with
`--schedule none`, in the same run, after checking both against the reference.  `times_s` has
`kcomp` and `naive`; `extra.speedup` is naive / kcomp.  The examples are read from the `examples/`
folder of the checkout kcomp runs from (or the current directory's), so this suite needs a source
checkout, not only an installed package.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import kcomp
from kcomp.bench import machine as host_machine
from kcomp.bench.report import print_footer, suite_table
from kcomp.errors import UsageError
from kcomp.targets import DEFAULT

Progress = Callable[[str], None]


def examples_dir() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "examples").is_dir() and any((base / "examples").glob("*.kc")):
            return base / "examples"
    raise UsageError(
        "kcomp bench examples needs the examples/ folder of a kcomp checkout (run it from there)"
    )


def all_cases() -> tuple[str, ...]:
    try:
        return tuple(sorted(p.stem for p in examples_dir().glob("*.kc")))
    except UsageError:
        return ()


QUICK_CASES = ("softmax", "row_reduce", "transpose", "gelu_chain")


def parse_case(text: str) -> str:
    name = text.strip().removesuffix(".kc")
    if not (examples_dir() / f"{name}.kc").is_file():
        raise UsageError(f"--cases {text}: no example named {name!r}; examples: {', '.join(all_cases())}")
    return name


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    budget_s: float = 0.25,
    shapes: dict[str, dict[str, int]] | None = None,
    progress: Progress | None = None,
    roofs: bool = True,
    target: str = DEFAULT,
    shape: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Time each example under its chosen schedule and under its target's naive one, on `target`;
    `shapes` overrides dimensions per example (tests use small ones), `shape` for every example."""
    say = progress or (lambda _msg: None)
    names = list(cases) if cases is not None else list(all_cases())
    others = host_machine.OtherCpu()
    info: dict[str, Any] = {
        **host_machine.describe_host(),
        "load_avg_1m": {"start": host_machine.load_average()},
    }
    if roofs:
        info.update(host_machine.measure_roofs())
    rows = []
    for name in names:
        say(f"example {name}")
        rows.append(_row(name, {**(shapes or {}).get(name, {}), **(shape or {})}, budget_s, target))
    info["load_avg_1m"]["end"] = host_machine.load_average()
    info["other_cpu_cores"] = others.stop()
    return {"suite": "examples", "machine": info, "rows": rows}


def _row(name: str, shapes: dict[str, int], budget_s: float, target: str) -> dict[str, Any]:
    path = examples_dir() / f"{name}.kc"
    row: dict[str, Any] = {"case": name, "params": dict(shapes), "flops": None, "times_s": {}, "extra": {}}
    row["extra"]["target"] = target
    for system, schedule in (("kcomp", None), ("naive", "none")):
        try:
            start = time.perf_counter()
            k = kcomp.compile(path, target=target, shapes=shapes or None, schedule=schedule)
            row["extra"][f"{system}_compile_s"] = time.perf_counter() - start
            row["params"] = dict(k.built.program.dims)
            row["flops"] = k.built.program.flops
            if system == "kcomp":
                row["extra"]["schedule_source"] = k.built.schedule_source
            check = k.check(seed=0)
            if not check.ok:
                row["extra"][f"{system}_error"] = (
                    f"wrong result (max rel err {check.max_rel_err:.3g}): not timed"
                )
                continue
            row["times_s"][system] = k.benchmark(seed=0, budget_s=budget_s).time_s
        except Exception as e:  # a failed system is a recorded result, never a crashed suite
            row["extra"][f"{system}_error"] = f"{type(e).__name__}: {e}"
    t = row["times_s"]
    if "kcomp" in t and "naive" in t:
        row["extra"]["speedup"] = t["naive"] / t["kcomp"]
    return row


def print_report(result: dict[str, Any]) -> None:

    con, t = suite_table(result, "kcomp bench examples: median time", 140)
    for col in ("example", "kcomp", "naive", "speedup", "schedule"):
        t.add_column(col, justify="left" if col in ("example", "schedule") else "right")
    for row in result["rows"]:
        times = row["times_s"]
        cells = [f"{times[s] * 1e3:.3f} ms" if s in times else "-" for s in ("kcomp", "naive")]
        speed = row["extra"].get("speedup")
        t.add_row(
            row["case"],
            *cells,
            f"{speed:.1f}x" if speed else "-",
            str(row["extra"].get("schedule_source", "-")),
        )
    con.print(t)
    print_footer(con, result)
