"""Sparse weights given at compile time: from the API (`weights={"W": array}`) or the command line
(`--weights W=FILE.npy`), checked against their declarations and attached to the program."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from kcomp.errors import UsageError
from kcomp.program import Program
from kcomp.sparse.format import validate


def load_weights(items: list[str] | None) -> dict[str, np.ndarray]:
    """`NAME=FILE.npy` items as arrays (never unpickled)."""
    out: dict[str, np.ndarray] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"--weights {item}: expected NAME=FILE.npy")
        try:
            out[name.strip()] = np.load(path.strip(), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UsageError(f"--weights {item}: cannot read {path.strip()}: {e}") from None
    return out


def bind_weights(program: Program, weights: Mapping[str, Any] | None) -> Program:
    """`program` carrying the values of its sparse inputs (`Program.bound`), each checked."""
    weights = dict(weights or {})
    sparse = program.sparse
    unknown = sorted(set(weights) - set(sparse))
    if unknown:
        names = {b.name for b in program.inputs}
        why = "has no input named" if unknown[0] not in names else "does not declare sparse the input"
        declared = ", ".join(sorted(sparse)) or "none"
        raise UsageError(
            f"weight {unknown[0]}: kernel '{program.name}' {why} {unknown[0]} (its sparse inputs: {declared})"
        )
    missing = sorted(set(sparse) - set(weights))
    if missing:
        raise UsageError(
            f"kernel '{program.name}': sparse input {missing[0]} needs its values at compile time:"
            f" --weights {missing[0]}=FILE.npy or weights={{'{missing[0]}': array}}"
            " (`kcomp prune` makes one from a dense weight)"
        )
    if not sparse:
        return program
    bound = dict(program.bound)
    for b in program.inputs:
        if b.name in sparse:
            value = weights[b.name]
            if hasattr(value, "detach"):  # a torch tensor
                value = value.detach().cpu().numpy()
            bound[b.name] = validate(b.name, sparse[b.name], value, b.shape)
    return replace(program, bound=bound)
