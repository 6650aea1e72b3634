"""`kcomp prune` and `kcomp sparsity`: sparse weights for users who start dense, and what the
rearrangement would make of them.

    kcomp prune W.npy --format group1x16 --sparsity 0.9 -o W90.npy
    kcomp sparsity W90.npy --format bsr4x4 [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from kcomp.errors import UsageError
from kcomp.sparse import block_count, parse_format, prune, rearrange, validate
from kcomp.sparse.format import as_matrix


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("prune", help="magnitude-prune a dense .npy weight into a sparse format")
    p.add_argument("weight", help="a .npy file: rows x columns (more dimensions are flattened into columns)")
    p.add_argument("--format", required=True, help="csr, bsrHxW, group1xG or nmN:M (docs/sparse.md)")
    p.add_argument("--sparsity", type=float, default=0.9, help="fraction of zeros to reach (default 0.9)")
    p.add_argument("-o", "--output", required=True, help="where to write the pruned .npy")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("sparsity", help="a sparse weight's blocks before and after rearrangement")
    s.add_argument("weight", help="a .npy file")
    s.add_argument("--format", required=True, help="csr, bsrHxW, group1xG or nmN:M")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def _load(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"{path}: cannot read it as .npy: {e}") from None
    if arr.ndim < 2:
        raise UsageError(f"{path}: a weight needs 2 or more dimensions, this one has shape {arr.shape}")
    return arr


def cmd_prune(args: argparse.Namespace) -> int:
    fmt = parse_format(args.format)
    dense = validate(args.weight, parse_format("csr"), _load(args.weight), _load(args.weight).shape)
    out = prune(dense, fmt, args.sparsity)
    validate(args.output, fmt, out, out.shape)  # the structure the format promises
    try:
        np.save(Path(args.output), out, allow_pickle=False)
    except OSError as e:
        raise UsageError(f"-o {args.output}: cannot write it: {e}") from None
    mat = as_matrix(out)
    result = {
        "output": args.output,
        "format": fmt.name,
        "shape": list(out.shape),
        "sparsity": float(1.0 - np.count_nonzero(out) / out.size),
        "blocks": block_count(mat, fmt.block),
    }
    _print(result, args.json, f"wrote {args.output}: {fmt.name}, sparsity {result['sparsity']:.3f}, {result['blocks']} blocks")
    return 0


def cmd_sparsity(args: argparse.Namespace) -> int:
    fmt = parse_format(args.format)
    arr = _load(args.weight)
    mat = as_matrix(validate(args.weight, fmt, arr, arr.shape))
    start = time.perf_counter()
    r = rearrange(mat, fmt.block)
    result = {
        "format": fmt.name,
        "shape": list(arr.shape),
        "nonzeros": int(np.count_nonzero(mat)),
        "blocks_before": r.blocks_before,
        "blocks_after": r.blocks_after,
        "rearrange_s": time.perf_counter() - start,
    }
    _print(
        result,
        args.json,
        f"{fmt.name}: {result['nonzeros']} nonzeros in {r.blocks_before} blocks; rearranged:"
        f" {r.blocks_after} blocks ({result['rearrange_s']:.2f} s)",
    )
    return 0


def _print(result: dict, as_json: bool, line: str) -> None:
    print(json.dumps(result) if as_json else line)


COMMANDS = {"prune": cmd_prune, "sparsity": cmd_sparsity}
