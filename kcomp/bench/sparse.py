"""The sparse suite: a sparse weight times dense activations, kcomp against dense and sparse peers.

    kcomp bench sparse [--cases group1x16_90_1024x1024x128,planted_90_768x3072x512] [--quick] [--json]

A case is PATTERN_SPARSITY_MxKxN: W (M x K, pruned or planted to SPARSITY percent zeros) times X
(K x N).  Patterns: `bsr4x4`, `group1x16`, `nm2:4` (its sparsity is 50% whatever the case says) and
`planted` (whole 4x4 blocks at random, then the rows and columns randomly permuted, compiled as
bsr4x4: only rearrangement recovers the blocks); `bsr16x16` has the blocks of the accelerator's
matrix unit.  Systems, timed interleaved in one run:
`kcomp` (the sparse kernel, rearranged), `kcomp_no_rearrange`, `kcomp_dense` (the same product with
a dense W, default schedule), `torch` (dense mm, 2 threads), `torch_sparse` (torch's CSR times dense)
and `scipy` (scipy.sparse CSR times dense; single-threaded).  Every kcomp kernel is checked against
the numpy reference first and the peers' results against kcomp's.  `extra` has the block counts
before and after rearrangement, the planted count, the explicit zeros, and the accelerator's cycles
for the sparse and the dense product when the accelerator maps them (`accel_cycles_sparse`,
`accel_cycles_dense`).  A `_linear` case is torch's Linear layout instead, Y = X·Wᵀ with X n x k
(peers: `torch.nn.functional.linear`, torch CSR and scipy CSR times Xᵀ; no accelerator run).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

import kcomp
from kcomp.bench.report import print_footer, suite_table
from kcomp.bench.torch_peer import THREADS, suite_end, suite_start
from kcomp.errors import UsageError
from kcomp.sparse import block_count, parse_format, prune
from kcomp.targets.base import interleave

Progress = Callable[[str], None]
PATTERNS = ("bsr4x4", "bsr16x16", "group1x16", "nm2:4", "planted")
_CASE = re.compile(r"(bsr4x4|bsr16x16|group1x16|nm2:4|planted)_(\d+)_(\d+)x(\d+)x(\d+)(_linear)?$")
SPMM = """dim M = {m}, K = {k}, N = {n}
kernel spmm(W: f32[M, K]{decl}, X: f32[K, N]) -> (Y: f32[M, N]) {{
    Y[m, n] += W[m, k] * X[k, n]
}}"""
# torch's Linear: the activations row by row, the weight's rows the output's contiguous dimension
LINEAR = """dim M = {m}, K = {k}, N = {n}
kernel linear(X: f32[N, K], W: f32[M, K]{decl}) -> (Y: f32[N, M]) {{
    Y[n, m] += X[n, k] * W[m, k]
}}"""


@dataclass(frozen=True)
class Case:
    pattern: str
    sparsity: int  # percent
    m: int
    k: int
    n: int
    linear: bool = False  # Y = X·Wᵀ with X n x k (torch's Linear) instead of Y = W·X

    @property
    def name(self) -> str:
        return f"{self.pattern}_{self.sparsity}_{self.m}x{self.k}x{self.n}" + ("_linear" if self.linear else "")


def parse_case(text: str) -> Case:
    m = _CASE.match(text.strip())
    if not m:
        raise UsageError(
            f"--cases {text}: expected PATTERN_SPARSITY_MxKxN[_linear], e.g. group1x16_90_1024x1024x128"
            f" (patterns: {', '.join(PATTERNS)})"
        )
    sparsity, dims = int(m[2]), [int(g) for g in m.groups()[2:5]]
    if not 0 <= sparsity <= 100 or min(dims) < 1 or max(dims) > 16384:
        raise UsageError(f"--cases {text}: sparsity is a percentage and dimensions 1..16384")
    return Case(m[1], sparsity, *dims, linear=m[6] is not None)


_SHAPES = ((768, 3072, 128), (768, 3072, 512), (1024, 1024, 128), (1024, 1024, 512))
CASES = tuple(
    Case(p, s, *shape)
    for shape in _SHAPES
    for p, s in (("group1x16", 70), ("group1x16", 80), ("group1x16", 90), ("group1x16", 95),
                 ("bsr4x4", 90), ("bsr16x16", 90), ("nm2:4", 50), ("planted", 90))
) + tuple(Case("group1x16", 90, *shape, linear=True) for shape in _SHAPES)
QUICK_CASES = tuple(
    Case(p, s, 256, 256, 64) for p, s in (("group1x16", 90), ("bsr4x4", 90), ("bsr16x16", 90), ("planted", 90))
)


def weight(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, str, int | None]:
    """The case's sparse weight, the format it is compiled in, and (planted) the planted block count."""
    dense = rng.standard_normal((case.m, case.k)).astype(np.float32)
    if case.pattern != "planted":
        return prune(dense, parse_format(case.pattern), case.sparsity / 100), case.pattern, None
    h = w = 4
    mask = rng.random((-(-case.m // h), -(-case.k // w))) >= case.sparsity / 100
    full = np.kron(mask, np.ones((h, w), np.float32))[: case.m, : case.k] * dense
    planted = block_count(full, (h, w))
    return full[rng.permutation(case.m)][:, rng.permutation(case.k)].copy(), "bsr4x4", planted


def run_suite(
    cases: Iterable[Case] | None = None,
    *,
    budget_s: float = 0.25,
    progress: Progress | None = None,
    roofs: bool = True,
    with_torch: bool = True,
    accel: bool = True,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    info, others, torch_ok = suite_start(roofs, with_torch)
    rows = []
    for case in cases if cases is not None else CASES:
        say(f"sparse {case.name}")
        rows.append(_row(case, budget_s, torch_ok, accel))
    suite_end(info, others)
    return {"suite": "sparse", "machine": info, "rows": rows}


def _row(case: Case, budget_s: float, with_torch: bool, accel: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    w, fmt, planted = weight(case, rng)
    x = rng.uniform(-1, 1, (case.k, case.n)).astype(np.float32)
    row: dict[str, Any] = {
        "case": case.name,
        "params": {"sparsity": float(1 - np.count_nonzero(w) / w.size), "pattern": case.pattern,
                   "m": case.m, "k": case.k, "n": case.n},
        "flops": 2 * case.m * case.k * case.n,  # the dense product's: GFLOP/s are dense-equivalent
        "times_s": {},
        "extra": {"format": fmt, "nonzeros": int(np.count_nonzero(w))},
    }
    if planted is not None:
        row["extra"]["blocks_planted"] = planted
    expected = w.astype(np.float64) @ x.astype(np.float64)
    text = LINEAR if case.linear else SPMM
    if case.linear:  # the activations as rows: X is n x k, Y n x m
        x, expected = np.ascontiguousarray(x.T), expected.T
    calls: dict[str, Callable[[], object]] = {}
    variants = (
        ("kcomp", text.format(m=case.m, k=case.k, n=case.n, decl=f" sparse({fmt})"), True),
        ("kcomp_no_rearrange", text.format(m=case.m, k=case.k, n=case.n, decl=f" sparse({fmt})"), False),
        ("kcomp_dense", text.format(m=case.m, k=case.k, n=case.n, decl=""), True),
    )
    for system, source, rearranged in variants:
        try:
            sparse = system != "kcomp_dense"
            k = kcomp.compile(source, weights={"W": w} if sparse else None, rearrange=rearranged)
            if not k.check(seed=1).ok:
                row["extra"][f"{system}_error"] = "wrong result against the reference: not timed"
                continue
            inputs = {"X": x} if sparse else {"X": x, "W": w}
            if not np.allclose(k(**inputs), expected, rtol=1e-3, atol=1e-3):
                row["extra"][f"{system}_error"] = "wrong result on the case's inputs: not timed"
                continue
            calls[system] = k.timer(inputs=inputs)
            for report in k.built.sparse:
                suffix = "" if rearranged else "_no_rearrange"
                row["extra"][f"blocks{suffix}"] = report.blocks
                row["extra"]["blocks_before"] = report.blocks_before
                row["extra"][f"explicit_zeros{suffix}"] = report.explicit_zeros
        except Exception as e:  # a failed system is a recorded result, never a crashed suite
            row["extra"][f"{system}_error"] = f"{type(e).__name__}: {e}"
    _peers(w, x, expected, row, calls, with_torch, case.linear)
    times, errors = interleave(calls, budget_s=budget_s * len(calls))
    for system, message in errors.items():
        row["extra"][f"{system}_error"] = message
    row["times_s"] = {s: m.time_s for s, m in times.items()}
    if accel and not case.linear:
        row["extra"].update(accel_cycles(case, w, fmt))
    return row


def _peers(w, x, expected, row, calls, with_torch: bool, linear: bool = False) -> None:
    """torch dense, torch CSR and scipy CSR calls (each checked), or the reason one is missing.
    `linear`: x holds the activations as rows (torch's `linear`; the CSR peers multiply by x's
    transpose, a view, and return the transposed view)."""
    if with_torch:
        import torch

        torch.set_num_threads(THREADS)
        tw, tx = torch.from_numpy(w), torch.from_numpy(x)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            csr = tw.to_sparse_csr()
        if linear:
            dense_fn, sparse_fn = (lambda: torch.nn.functional.linear(tx, tw)), (lambda: torch.mm(csr, tx.t()).t())
        else:
            dense_fn, sparse_fn = (lambda: torch.mm(tw, tx)), (lambda: torch.mm(csr, tx))
        for system, fn in (("torch", dense_fn), ("torch_sparse", sparse_fn)):
            with torch.no_grad():
                got = fn().numpy()
            if np.allclose(got, expected, rtol=1e-3, atol=1e-3):
                calls[system] = fn
            else:
                row["extra"][f"{system}_error"] = f"{system}'s result differs from the reference"
    else:
        row["extra"]["torch_error"] = "torch not available"
    try:
        import scipy.sparse as sp
    except ImportError:
        row["extra"]["scipy_error"] = "scipy is not installed (pip install scipy)"
        return
    m = sp.csr_matrix(w)
    scipy_fn = (lambda: (m @ x.T).T) if linear else (lambda: m @ x)
    if np.allclose(scipy_fn(), expected, rtol=1e-3, atol=1e-3):
        calls["scipy"] = scipy_fn
    else:
        row["extra"]["scipy_error"] = "scipy's result differs from the reference"


TARGET = "accel"


@cache
def _dense_cycles(m: int, k: int, n: int) -> int:
    """The accelerator's cycles for the dense product (shared by the cases of one shape)."""
    kernel = kcomp.compile(SPMM.format(m=m, k=k, n=n, decl=""), target=TARGET)
    check = kernel.check(seed=1)
    if not check.ok:
        raise RuntimeError("the dense product's result on the accelerator differs from the reference")
    return int(check.report.cycles)


def accel_cycles(case: Case, w: np.ndarray, fmt: str) -> dict[str, Any]:
    """`accel_cycles_sparse` (the weight's zero tiles skipped: targets/accel/compiler/sparse.py) and
    `accel_cycles_dense`, both checked against the reference, or `accel_error`: why not."""
    try:
        dense = _dense_cycles(case.m, case.k, case.n)
        kernel = kcomp.compile(
            SPMM.format(m=case.m, k=case.k, n=case.n, decl=f" sparse({fmt})"), target=TARGET, weights={"W": w}
        )
        check = kernel.check(seed=1)
    except Exception as e:  # a failure is a recorded result
        return {"accel_error": f"{type(e).__name__}: {e}"}
    if not check.ok:
        return {"accel_error": "the sparse product's result on the accelerator differs from the reference"}
    return {"accel_cycles_sparse": int(check.report.cycles), "accel_cycles_dense": dense}


def ratios(row: dict[str, Any]) -> dict[str, float]:
    t = row["times_s"]
    return {s: t[s] / t["kcomp"] for s in t if s != "kcomp" and "kcomp" in t}


def print_report(result: dict[str, Any]) -> None:
    con, t = suite_table(result, "kcomp bench sparse: median ms (speedup of kcomp: other / kcomp)", 170)
    systems = ("kcomp", "kcomp_no_rearrange", "kcomp_dense", "torch", "torch_sparse", "scipy")
    for col in ("case", *systems, "blocks before/after (planted)", "accel sparse/dense"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for row in result["rows"]:
        times, r, x = row["times_s"], ratios(row), row["extra"]
        cells = [f"{times['kcomp'] * 1e3:.3f}" if "kcomp" in times else "-"]
        cells += [f"{times[s] * 1e3:.3f} ({r[s]:.1f}x)" if s in r else "-" for s in systems[1:]]
        planted = f" ({x['blocks_planted']})" if "blocks_planted" in x else ""
        blocks = f"{x.get('blocks_before', '-')}/{x.get('blocks', '-')}{planted}"
        cyc = x.get("accel_cycles_sparse"), x.get("accel_cycles_dense")
        accel = f"{cyc[0] / cyc[1]:.2f}" if all(cyc) else "-"
        t.add_row(row["case"], *cells, blocks, accel)
    con.print(t)
    print_footer(con, result)


__all__ = ["CASES", "QUICK_CASES", "parse_case", "print_report", "run_suite"]
