"""`kcomp bench torch`: real model blocks (bench/torch_models.py) as torch eager vs torch.compile
(Inductor) vs torch.compile(backend="kcomp"), timed interleaved in one run.

Each row: `times_s` with `torch`, `torch_compile`, `kcomp`; `extra` with the share of the graph's ops
and of its flops that ran in kcomp kernels (`kcomp_share_ops`, `kcomp_share_flops`), the ops left to
eager torch with the reason, both compile times, and kcomp's largest difference from eager.  Torch
runs with 2 intra-op threads (kcomp's kernels use the machine's 2 cores), under no_grad.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from kcomp.bench.report import print_footer, suite_table
from kcomp.bench.torch_peer import THREADS, suite_end, suite_start
from kcomp.errors import UsageError
from kcomp.targets.base import interleave

CASES = ("mlp", "encoder_layer", "resnet_block", "mobilenet_block")
QUICK_CASES = ("mlp", "mobilenet_block")


def parse_case(text: str) -> str:
    if text.strip() not in CASES:
        raise UsageError(f"--cases {text}: no torch case named {text!r}; cases: {', '.join(CASES)}")
    return text.strip()


def run_suite(
    cases: Iterable[str] | None = None,
    *,
    budget_s: float = 0.5,
    progress: Callable[[str], None] | None = None,
    roofs: bool = False,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    info, others, torch_ok = suite_start(roofs, True)
    rows = []
    if torch_ok:
        for name in cases or CASES:
            say(f"torch {name}")
            rows.append(_row(name, budget_s))
    suite_end(info, others)
    return {"suite": "torch", "machine": info, "rows": rows}


def _row(name: str, budget_s: float) -> dict[str, Any]:
    import torch

    # NOTE: both import torch at their top; the CLI imports this module at start, so they load on use
    make = importlib.import_module("kcomp.bench.torch_models").make
    from_torch = importlib.import_module("kcomp.torch").from_torch
    module, inputs = make(name)
    row: dict[str, Any] = {"case": name, "params": {"input": list(inputs[0].shape)}, "flops": None,
                           "times_s": {}, "extra": {}}  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    calls: dict[str, Callable[[], object]] = {}
    try:
        with torch.no_grad():
            want = module(*inputs)
            calls["torch"] = lambda: module(*inputs)
            start = time.perf_counter()
            inductor = torch.compile(module)
            inductor(*inputs)
            row["extra"]["torch_compile_s"] = time.perf_counter() - start
            calls["torch_compile"] = lambda: inductor(*inputs)
        try:
            start = time.perf_counter()
            kc = from_torch(module, inputs)
            row["extra"]["kcomp_compile_s"] = time.perf_counter() - start
            got = kc(*inputs)
            row["extra"]["max_abs_err"] = float((got - want).abs().max())
            explanation = kc.explanation
            row["flops"] = sum(r.flops for r in explanation.ops)
            row["extra"]["kcomp_share_ops"] = explanation.share()
            row["extra"]["kcomp_share_flops"] = explanation.share("flops")
            row["extra"]["eager_ops"] = sorted(
                {f"{r.op}: {r.reason}" for r in explanation.ops if r.where == "eager"}
            )
            calls["kcomp"] = lambda: kc(*inputs)
        except Exception as e:  # a failure is a recorded result, never a crashed suite
            row["extra"]["kcomp_error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        times, errors = interleave(calls, budget_s=budget_s * len(calls))
        row["times_s"] = {system: m.time_s for system, m in times.items()}
        row["extra"].update({f"{s}_error": m for s, m in errors.items()})
    finally:
        torch.set_num_threads(before)
    return row


def print_report(result: dict[str, Any]) -> None:
    con, table = suite_table(result, "kcomp as a torch.compile backend vs torch eager and Inductor", 150)
    for col in ("case", "eager ms", "Inductor ms", "kcomp ms", "vs eager", "vs Inductor", "ops in kcomp",
                "flops in kcomp"):  # fmt: skip
        table.add_column(col, justify="left" if col == "case" else "right")
    ratios = []
    for row in result["rows"]:
        t, x = row["times_s"], row["extra"]
        ms = [f"{t[s] * 1e3:.3f}" if s in t else "-" for s in ("torch", "torch_compile", "kcomp")]
        vs = [
            f"{t[s] / t['kcomp']:.2f}x" if s in t and "kcomp" in t else "-"
            for s in ("torch", "torch_compile")
        ]
        if "kcomp" in t and "torch_compile" in t:
            ratios.append(t["torch_compile"] / t["kcomp"])
        shares = [f"{x[k]:.0%}" if k in x else "-" for k in ("kcomp_share_ops", "kcomp_share_flops")]
        table.add_row(row["case"], *ms, *vs, *shares)
    con.print(table)
    if ratios:
        con.print(f"geomean vs Inductor: {float(np.exp(np.mean(np.log(ratios)))):.2f}x")
    print_footer(con, result)
