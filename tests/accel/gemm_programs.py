"""A hand-written GEMM program generator: C[M, N] = A[M, K] @ B[K, N] on the accelerator.

Tiles C into tm x tn blocks and K into tk chunks; a step loads one chunk of A (tm x tk, as tk/dim
column panels of tm rows) and of B (tk x tn, as tn/dim panels of tk rows) and multiplies them into
the block's accumulator rows.  With `double_buffer`, steps alternate between two scratchpad buffers
(each in its own bank when they fit) and blocks between two accumulator buffers, so loads, compute
and stores overlap.  Edge tiles are handled (partial rows, cols < dim, k < dim).

Tokens (counting semaphores between the queues):
    t0  load -> compute    a step's data has landed            (last DMA of a step signals)
    t1  compute -> load    a step's scratchpad buffer is free   (last mma of a step signals)
    t2  compute -> store   a block's accumulator rows are final (last mma of a block signals)
    t3  store -> compute   a block's accumulator buffer is free (last store of a block signals)

The shape of what a backend emits for a tensorized contraction; the backend replaces it.
"""

from __future__ import annotations

import math

from kcomp.targets.accel.machine.config import AccelConfig
from kcomp.targets.accel.machine.isa import Buffer, Instr, Program, make

DATA, STEP_FREE, BLOCK_READY, ACC_FREE = 0, 1, 2, 3


def gemm_program(
    M: int,
    N: int,
    K: int,
    cfg: AccelConfig,
    *,
    tm: int = 64,
    tn: int = 64,
    tk: int = 64,
    double_buffer: bool = True,
    mma_rows: int = 0,
    relu: bool = False,
) -> Program:
    """The program; `mma_rows` (default tm) caps the rows of one mma instruction."""
    dim, nbuf = cfg.dim, 2 if double_buffer else 1
    buffers = (
        Buffer("A", cfg.dtype, (M, K)),
        Buffer("B", cfg.dtype, (K, N)),
        Buffer("C", cfg.acc_dtype, (M, N)),
    )
    a_rows, b_rows, acc_rows = tm * math.ceil(tk / dim), tk * math.ceil(tn / dim), tm * math.ceil(tn / dim)
    a_base, b_base = _place(cfg, [a_rows] * nbuf + [b_rows] * nbuf, nbuf)
    if acc_rows * nbuf > cfg.acc_rows:
        raise ValueError(f"{nbuf} accumulator blocks of {acc_rows} rows exceed {cfg.acc_rows}")
    program: list[Instr] = []
    step = 0
    for block, (i0, j0) in enumerate((i, j) for i in range(0, M, tm) for j in range(0, N, tn)):
        rows, cols = min(tm, M - i0), min(tn, N - j0)
        acc0 = block % nbuf * acc_rows
        for k0 in range(0, K, tk):
            depth = min(tk, K - k0)
            a0, b0 = a_base[step % nbuf], b_base[step % nbuf]
            loads = [
                make("dma.load", sp=a0 + kb // dim * tm, buf=0, off=i0 * K + k0 + kb, rows=rows,
                     cols=min(dim, depth - kb), stride=K)
                for kb in range(0, depth, dim)
            ] + [
                make("dma.load", sp=b0 + nb // dim * tk, buf=1, off=k0 * N + j0 + nb, rows=depth,
                     cols=min(dim, cols - nb), stride=N)
                for nb in range(0, cols, dim)
            ]  # fmt: skip
            computes = [
                make("mma", acc=acc0 + nb // dim * tm + r, a=a0 + kb // dim * tm + r, b=b0 + nb // dim * tk + kb,
                     m=min(mma_rows or tm, rows - r), k=min(dim, depth - kb),
                     mode="accumulate" if k0 or kb else "overwrite")
                for nb in range(0, cols, dim)
                for kb in range(0, depth, dim)
                for r in range(0, rows, mma_rows or tm)
            ]  # fmt: skip
            if step >= nbuf:
                loads[0] = _with(loads[0], wait=(STEP_FREE,))
            loads[-1] = _with(loads[-1], signal=(DATA,))
            computes[0] = _with(computes[0], wait=(DATA, ACC_FREE) if k0 == 0 and block >= nbuf else (DATA,))
            last_step = k0 + tk >= K
            computes[-1] = _with(computes[-1], signal=(STEP_FREE, BLOCK_READY) if last_step else (STEP_FREE,))
            program += loads + computes
            step += 1
        stores = [
            make("dma.store", acc=acc0 + nb // dim * tm, buf=2, off=i0 * N + j0 + nb, rows=rows,
                 cols=min(dim, cols - nb), stride=N, act="relu" if relu else "none")
            for nb in range(0, cols, dim)
        ]  # fmt: skip
        stores[0] = _with(stores[0], wait=(BLOCK_READY,))
        stores[-1] = _with(stores[-1], signal=(ACC_FREE,))
        program += stores
    program.append(make("halt"))
    return Program(buffers, tuple(program))


def _with(ins: Instr, *, wait: tuple[int, ...] = (), signal: tuple[int, ...] = ()) -> Instr:
    return Instr(ins.op, ins.args, tuple(sorted({*ins.wait, *wait})), tuple(sorted({*ins.signal, *signal})))


def _place(cfg: AccelConfig, sizes: list[int], nbuf: int) -> tuple[list[int], list[int]]:
    """Scratchpad bases of the A and B buffers: each at a bank boundary when all fit that way (so a
    DMA into one never conflicts with the matrix unit reading another), else packed."""
    bases, at = [], 0
    for size in sizes:
        bases.append(at)
        at = math.ceil((at + size) / cfg.bank_rows) * cfg.bank_rows
    if at > cfg.sp_rows:
        bases = [sum(sizes[:i]) for i in range(len(sizes))]
        if sum(sizes) > cfg.sp_rows:
            raise ValueError(f"buffers of {sizes} rows exceed the scratchpad's {cfg.sp_rows}")
    return bases[:nbuf], bases[nbuf:]
