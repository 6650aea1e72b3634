"""The fusion suite: fused kernels against the same schedule without fusion, torch and Inductor.

    kcomp bench fusion [--cases softmax,attention] [--quick] [--json]

Each case is a multi-statement kernel (its `.kc` text below) and the torch function computing the
same thing.  In one run, for each case: `kcomp` (the default schedule, fusion included),
`kcomp_unfused` (the default scheduler with fusion turned off: the same per-nest rules, every
intermediate materialized), `torch` (eager, 2 intra-op threads; `scaled_dot_product_attention` for
attention) and `torch_compile` (Inductor, compiled and warmed before timing; its compile time is in
`extra.torch_compile_s`).  Both kcomp kernels are checked against the numpy reference first, and
torch's output against kcomp's.  `extra` also has the bytes each kcomp kernel moves (estimated: every
top-level nest reads and writes the whole of each global buffer it touches) and, for the
memory-bound cases, the compulsory traffic (inputs read once, outputs written once) per second as a
share of the copy bandwidth measured in the same run.  The systems of a case are timed interleaved
(`targets.base.interleave`: rounds that call each in turn), so load from a neighbour on a shared
machine falls on all of them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

import kcomp
from kcomp.bench.report import print_footer, suite_table
from kcomp.bench.torch_peer import suite_end, suite_start, time_systems
from kcomp.errors import UsageError
from kcomp.loops import Alloc, LoopNest, walk_stmts
from kcomp.loops.dependence import accesses
from kcomp.passes.producers import sequence

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    shapes: dict[str, int]
    quick: dict[str, int]
    memory_bound: bool


_ROWS = {"N": 4096, "D": 1024}
_QUICK_ROWS = {"N": 256, "D": 512}
CASES = {
    c.name: c
    for c in (
        Case(
            "softmax",
            """kernel softmax(X: f32[N, D]) -> (Y: f32[N, D]) {
    mx[n] max= X[n, d]
    e[n, d] = exp(X[n, d] - mx[n])
    s[n] += e[n, d]
    Y[n, d] = e[n, d] / s[n]
}""",
            _ROWS,
            _QUICK_ROWS,
            True,
        ),
        Case(
            "layernorm",
            """kernel layernorm(X: f32[N, D], g: f32[D], b: f32[D]) -> (Y: f32[N, D]) {
    mean[n] += X[n, d] / D
    xc[n, d] = X[n, d] - mean[n]
    var[n] += xc[n, d] * xc[n, d] / D
    Y[n, d] = xc[n, d] * rsqrt(var[n] + 0.00001) * g[d] + b[d]
}""",
            _ROWS,
            _QUICK_ROWS,
            True,
        ),
        Case(
            "rmsnorm",
            """kernel rmsnorm(X: f32[N, D], w: f32[D]) -> (Y: f32[N, D]) {
    ms[n] += X[n, d] * X[n, d] / D
    Y[n, d] = X[n, d] * rsqrt(ms[n] + 0.000001) * w[d]
}""",
            _ROWS,
            _QUICK_ROWS,
            True,
        ),
        Case(
            "gelu_chain",
            """kernel gelu_chain(X: f32[N, D], b: f32[D]) -> (Y: f32[N, D]) {
    t[n, d] = X[n, d] + b[d]
    g[n, d] = 0.5 * t[n, d] * (1.0 + erf(t[n, d] * 0.7071067811865476))
    Y[n, d] = 0.5 * g[n, d]
}""",
            _ROWS,
            _QUICK_ROWS,
            True,
        ),
        Case(
            "elementwise_chain",
            """kernel elementwise_chain(X: f32[N, D], s: f32[D], b: f32[D]) -> (Y: f32[N, D]) {
    t1[n, d] = X[n, d] * s[d]
    t2[n, d] = t1[n, d] + b[d]
    t3[n, d] = sigmoid(t2[n, d])
    t4[n, d] = t3[n, d] * X[n, d]
    t5[n, d] = t4[n, d] - 0.5
    Y[n, d] = relu(t5[n, d])
}""",
            _ROWS,
            _QUICK_ROWS,
            True,
        ),
        Case(
            "gemm_bias_gelu_residual",
            """kernel gemm_bias_gelu_residual(X: f32[M, K], W: f32[K, N], b: f32[N], R: f32[M, N]) -> (Z: f32[M, N]) {
    Y[i, j] = b[j] where i < M
    Y[i, j] += X[i, k] * W[k, j]
    Z[i, j] = 0.5 * Y[i, j] * (1.0 + erf(Y[i, j] * 0.7071067811865476)) + R[i, j]
}""",
            {"M": 512, "N": 3072, "K": 768},
            {"M": 64, "N": 256, "K": 128},
            False,
        ),
        Case(
            "conv_bias_relu",
            """kernel conv_bias_relu(X: f32[B, C, H, W], F: f32[K, C, 3, 3], b: f32[K]) -> (Z: f32[B, K, H, W]) {
    Y[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * F[k, c, r, s] where h < H, w < W, r < 3, s < 3
    Z[n, k, h, w] = relu(Y[n, k, h, w] + b[k])
}""",
            {"B": 1, "C": 64, "K": 64, "H": 56, "W": 56},
            {"B": 1, "C": 8, "K": 16, "H": 14, "W": 14},
            False,
        ),
        Case(
            "attention",
            """kernel attention(Q: f32[B, S, E], K: f32[B, S, E], V: f32[B, S, E]) -> (O: f32[B, S, E]) {
    sc[b, i, j] += Q[b, i, c] * K[b, j, c] * 0.125
    mx[b, i] max= sc[b, i, j]
    p[b, i, j] = exp(sc[b, i, j] - mx[b, i])
    l[b, i] += p[b, i, j]
    acc[b, i, c] += p[b, i, j] * V[b, j, c]
    O[b, i, c] = acc[b, i, c] / l[b, i]
}""",
            {"B": 8, "S": 1024, "E": 64},
            {"B": 2, "S": 128, "E": 64},
            False,
        ),
        Case(
            "attention_causal",
            """kernel attention_causal(Q: f32[B, S, E], K: f32[B, S, E], V: f32[B, S, E]) -> (O: f32[B, S, E]) {
    sc[b, i, j] += Q[b, i, c] * K[b, j, c] * 0.125
    z[b, i, j] = select(j <= i, sc[b, i, j], -inf)
    mx[b, i] max= z[b, i, j]
    p[b, i, j] = exp(z[b, i, j] - mx[b, i])
    l[b, i] += p[b, i, j]
    acc[b, i, c] += p[b, i, j] * V[b, j, c]
    O[b, i, c] = acc[b, i, c] / l[b, i]
}""",
            {"B": 8, "S": 1024, "E": 64},
            {"B": 2, "S": 128, "E": 64},
            False,
        ),
    )
}


def parse_case(text: str) -> str:
    name = text.strip()
    if name not in CASES:
        raise UsageError(f"--cases {text}: no fusion case named {name!r}; cases: {', '.join(CASES)}")
    return name


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
    names = list(cases) if cases is not None else list(CASES)
    info, others, torch_ok = suite_start(roofs, with_torch)
    rows = []
    for name in names:
        say(f"fusion {name}")
        rows.append(_row(CASES[name], quick, budget_s, info, torch_ok))
    suite_end(info, others)
    return {"suite": "fusion", "machine": info, "rows": rows}


def _row(case: Case, quick: bool, budget_s: float, info: dict[str, Any], with_torch: bool) -> dict[str, Any]:
    shapes = case.quick if quick else case.shapes
    row: dict[str, Any] = {
        "case": case.name,
        "params": dict(shapes),
        "flops": None,
        "times_s": {},
        "extra": {},
    }
    try:
        fused = kcomp.compile(case.source, shapes=shapes)
    except Exception as e:  # a case that does not compile is a recorded result, never a crashed suite
        row["extra"]["kcomp_error"] = f"{type(e).__name__}: {e}"
        return row
    built = fused.built
    unfused_schedule = fused.target.default_schedule(built.program, built.naive, fuse=False)
    row["flops"] = built.program.flops
    row["extra"]["schedule"] = str(built.schedule)
    calls: dict[str, Callable[[], object]] = {}
    inputs: dict[str, np.ndarray] | None = None
    reference_out: np.ndarray | None = None
    for system, schedule in (("kcomp", None), ("kcomp_unfused", unfused_schedule)):
        try:
            k = fused if schedule is None else kcomp.compile(case.source, shapes=shapes, schedule=schedule)
            check = k.check(seed=0)
            if not check.ok:
                row["extra"][f"{system}_error"] = (
                    f"wrong result (max rel err {check.max_rel_err:.3g}): not timed"
                )
                continue
            row["extra"][f"{system}_bytes"] = moved_bytes(k.built.nest)
            calls[system] = k.timer(seed=0)
            if inputs is None:
                inputs = k.random_inputs(seed=1)[0]
                reference_out = k(**inputs)
        except Exception as e:  # a failed system is a recorded result, never a crashed suite
            row["extra"][f"{system}_error"] = f"{type(e).__name__}: {e}"
    torch_fn = torch_function(case.name) if with_torch and inputs is not None else None
    row["times_s"].update(time_systems(calls, row, budget_s, torch_fn, inputs, reference_out))
    compulsory = sum(b.size * b.dtype.itemsize for b in (*built.program.inputs, *built.program.outputs))
    row["extra"]["compulsory_bytes"] = compulsory
    t = row["times_s"].get("kcomp")
    if case.memory_bound and t and info.get("copy_gbps"):
        row["extra"]["pct_copy_bandwidth"] = 100 * compulsory / t / 1e9 / info["copy_gbps"]
    return row


def moved_bytes(nest: LoopNest) -> int:
    """Bytes the top-level nests move: each reads and writes the whole of every global buffer it
    touches (local buffers live in cache or registers)."""
    total = 0
    for top in sequence(nest.body):
        written, read = accesses((top,))
        private = {s.buffer for s in walk_stmts((top,)) if isinstance(s, Alloc)}
        for buf in {*written, *read} - private:
            total += buf.size * buf.dtype.itemsize * ((buf in written) + (buf in read))
    return total


def torch_function(name: str) -> Callable[..., Any]:
    """The torch (eager) computation of case `name`, taking the kernel's inputs by name."""
    import torch
    import torch.nn.functional as nnf

    functions: dict[str, Callable[..., Any]] = {
        "softmax": lambda X: torch.softmax(X, -1),
        "layernorm": lambda X, g, b: nnf.layer_norm(X, (X.shape[-1],), g, b, 1e-5),
        "rmsnorm": lambda X, w: X * torch.rsqrt(X.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
        "gelu_chain": lambda X, b: 0.5 * nnf.gelu(X + b),
        "elementwise_chain": lambda X, s, b: torch.relu(torch.sigmoid(X * s + b) * X - 0.5),
        "gemm_bias_gelu_residual": lambda X, W, b, R: nnf.gelu(torch.addmm(b, X, W)) + R,
        "conv_bias_relu": lambda X, F, b: torch.relu(nnf.conv2d(X, F, b, padding=1)),
        "attention": lambda Q, K, V: nnf.scaled_dot_product_attention(Q, K, V),
        "attention_causal": lambda Q, K, V: nnf.scaled_dot_product_attention(Q, K, V, is_causal=True),
    }
    return functions[name]


QUICK_CASES = ("softmax", "layernorm", "gelu_chain", "attention")


def options(args: Any) -> dict[str, Any]:
    return {"quick": bool(getattr(args, "quick", False))}


def ratios(row: dict[str, Any]) -> dict[str, float]:
    """kcomp's speed against each other system of the row (other time / kcomp time)."""
    t = row["times_s"]
    return {
        s: t[s] / t["kcomp"] for s in ("kcomp_unfused", "torch", "torch_compile") if s in t and "kcomp" in t
    }


def print_report(result: dict[str, Any]) -> None:
    con, t = suite_table(result, "kcomp bench fusion: median time (ratios: other / kcomp)", 150)
    heads = (
        "case",
        "kcomp",
        "unfused",
        "torch",
        "inductor",
        "vs unfused",
        "vs torch",
        "vs inductor",
        "% copy bw",
        "MB moved (fused/unfused)",
    )
    for col in heads:
        t.add_column(col, justify="left" if col == "case" else "right")
    for row in result["rows"]:
        times, r, x = row["times_s"], ratios(row), row["extra"]
        cells = [
            f"{times[s] * 1e3:.3f} ms" if s in times else "-"
            for s in ("kcomp", "kcomp_unfused", "torch", "torch_compile")
        ]
        cells += [f"{r[s]:.2f}x" if s in r else "-" for s in ("kcomp_unfused", "torch", "torch_compile")]
        pct = x.get("pct_copy_bandwidth")
        moved = [x.get(f"{s}_bytes") for s in ("kcomp", "kcomp_unfused")]
        t.add_row(
            row["case"],
            *cells,
            f"{pct:.0f}%" if pct else "-",
            " / ".join(f"{m / 1e6:.1f}" if m else "-" for m in moved),
        )
    con.print(t)
    inductor = [ratios(row)["torch_compile"] for row in result["rows"] if "torch_compile" in ratios(row)]
    if inductor:
        geomean = float(np.exp(np.mean(np.log(inductor))))
        con.print(f"geomean kcomp vs torch.compile: {geomean:.2f}x over {len(inductor)} cases")
    print_footer(con, result)


__all__ = ["CASES", "QUICK_CASES", "moved_bytes", "options", "parse_case", "print_report", "run_suite"]
