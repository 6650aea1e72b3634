"""The operator suite: kcomp's default schedule on kernels nobody tuned, against torch and Inductor.

    kcomp bench ops [--cases matmul_nt,softmax_outer/small] [--quick] [--json]

Each case of `ops_cases.CASES` runs at two scales (`--quick`: small only): compiled with the default
scheduler, checked against the numpy reference, then timed interleaved with torch eager (2 threads)
and torch.compile (compiled and warmed first, its compile time in `extra.torch_compile_s`); torch's
result is compared with kcomp's.  `times_s` keys: `kcomp`, `torch`, `torch_compile`; `params` has the
sizes and `scale`.  At the small scale `extra.api_call_s` is the Python-API call (`k(*arrays)`, fresh
outputs) timed beside them, so `api_call_s - times_s.kcomp` is the call's cost on top of the kernel.
The machine section has `call_overhead_s`: that difference on a 16-element kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import kcomp
from kcomp.bench.ops_cases import CASES, OpCase
from kcomp.bench.report import print_footer, suite_table
from kcomp.bench.torch_peer import suite_end, suite_start, time_systems
from kcomp.errors import UsageError
from kcomp.targets.base import interleave

Progress = Callable[[str], None]
SCALES = ("small", "large")
QUICK_CASES = ("matmul_nt", "conv2d_3x3", "softmax_outer", "sum_first", "cross_entropy", "silu")
TINY = "kernel tiny(X: f32[16]) -> (Y: f32[16]) { Y[i] = X[i] * 2.0 + 1.0 }"


def parse_case(text: str) -> str:
    """`name` (both scales) or `name/small`, `name/large`."""
    name, _, scale = text.strip().partition("/")
    if name not in CASES:
        raise UsageError(f"--cases {text}: no ops case named {name!r}; cases: {', '.join(CASES)}")
    if scale and scale not in SCALES:
        raise UsageError(f"--cases {text}: the scale is small or large, not {scale!r}")
    return text.strip()


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    quick: bool = False,
    budget_s: float = 0.25,
    progress: Progress | None = None,
    roofs: bool = True,
    with_torch: bool = True,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    info, others, torch_ok = suite_start(roofs, with_torch)
    info["call_overhead_s"] = call_overhead(budget_s)
    rows = []
    for name, scale in _selected(cases, quick):
        say(f"ops {name}/{scale}")
        rows.append(_row(CASES[name], scale, budget_s, torch_ok))
    suite_end(info, others)
    return {"suite": "ops", "machine": info, "rows": rows}


def _selected(cases: Iterable[str] | None, quick: bool) -> list[tuple[str, str]]:
    if cases is None:
        return [(name, scale) for name in CASES for scale in (("small",) if quick else SCALES)]
    out = []
    for text in cases:
        name, _, scale = text.partition("/")
        out += [(name, s) for s in ((scale,) if scale else ("small",) if quick else SCALES)]
    return out


def call_overhead(budget_s: float) -> float:
    """Seconds a Python-API call of a 16-element kernel costs on top of its bound C call."""
    k = kcomp.compile(TINY)
    x = np.random.default_rng(0).uniform(0.1, 1.0, 16).astype(np.float32)
    times, _errors = interleave({"api": lambda: k(x), "bound": k.timer(seed=0)}, budget_s=budget_s)
    return max(0.0, times["api"].time_s - times["bound"].time_s)


def _row(case: OpCase, scale: str, budget_s: float, with_torch: bool) -> dict[str, Any]:
    shapes = case.small if scale == "small" else case.large
    row: dict[str, Any] = {
        "case": case.name,
        "params": {**shapes, "scale": scale},
        "flops": None,
        "times_s": {},
        "extra": {},
    }
    calls: dict[str, Callable[[], object]] = {}
    try:
        k = kcomp.compile(case.source, shapes=shapes)
        row["flops"] = k.built.program.flops
        row["extra"]["schedule"] = str(k.built.schedule)
        check = k.check(seed=0)
        if not check.ok:
            row["extra"]["kcomp_error"] = f"wrong result (max rel err {check.max_rel_err:.3g}): not timed"
            return row
        calls["kcomp"] = k.timer(seed=0)
        inputs = k.random_inputs(seed=1)[0]
        expected = np.asarray(k(**inputs))
        if scale == "small":
            arrays = tuple(inputs[b.name] for b in k.built.program.inputs)
            calls["kcomp_api"] = lambda: k(*arrays)
    except Exception as e:  # a case kcomp cannot build is a recorded result, never a crashed suite
        row["extra"]["kcomp_error"] = f"{type(e).__name__}: {e}"
        return row
    times = time_systems(calls, row, budget_s, case.torch if with_torch else None, inputs, expected)
    for system, t in times.items():
        if system == "kcomp_api":
            row["extra"]["api_call_s"] = t
        else:
            row["times_s"][system] = t
    return row


def ratios(row: dict[str, Any]) -> dict[str, float]:
    """kcomp's speed against torch and Inductor (other time / kcomp time)."""
    t = row["times_s"]
    return {s: t[s] / t["kcomp"] for s in ("torch", "torch_compile") if s in t and "kcomp" in t}


def summary(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per scale and peer: the geomean and the lowest of kcomp's ratios, and how many cases."""
    out: dict[str, dict[str, float]] = {}
    for scale in SCALES:
        for peer in ("torch", "torch_compile"):
            r = [
                ratios(x)[peer] for x in result["rows"] if x["params"]["scale"] == scale and peer in ratios(x)
            ]
            if r:
                out[f"{scale}/{peer}"] = {
                    "geomean": float(np.exp(np.mean(np.log(r)))),
                    "min": float(min(r)),
                    "cases": len(r),
                }
    return out


def options(args: Any) -> dict[str, Any]:
    return {"quick": bool(getattr(args, "quick", False))}


def print_report(result: dict[str, Any]) -> None:
    con, t = suite_table(result, "kcomp bench ops: default schedules, median time (ratios: other / kcomp)", 130)
    for col in ("case", "scale", "kcomp", "torch", "inductor", "vs torch", "vs inductor", "API call"):
        t.add_column(col, justify="left" if col in ("case", "scale") else "right")
    for row in result["rows"]:
        times, r, x = row["times_s"], ratios(row), row["extra"]
        cells = [
            f"{times[s] * 1e3:.3f} ms" if s in times else "-" for s in ("kcomp", "torch", "torch_compile")
        ]
        cells += [f"{r[s]:.2f}x" if s in r else "-" for s in ("torch", "torch_compile")]
        api = x.get("api_call_s")
        t.add_row(row["case"], row["params"]["scale"], *cells, f"{api * 1e6:.1f} us" if api else "-")
    con.print(t)
    for key, s in summary(result).items():
        scale, peer = key.split("/")
        name = "torch eager" if peer == "torch" else "torch.compile"
        con.print(
            f"{scale}: geomean {s['geomean']:.2f}x {name} (lowest {s['min']:.2f}x) over {s['cases']} cases"
        )
    overhead = result["machine"].get("call_overhead_s")
    if overhead is not None:
        con.print(
            f"Python call overhead (16-element kernel, API call minus bound call): {overhead * 1e6:.2f} us"
        )
    print_footer(con, result)


__all__ = ["CASES", "QUICK_CASES", "options", "parse_case", "print_report", "run_suite", "summary"]
