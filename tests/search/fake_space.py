"""A tiny search space over matmul schedules (split i, split j, unroll or not), standing in for
kcomp.search.space in tests: 3 x 3 x 2 = 18 schedules, all legal for M, N >= 4."""

from __future__ import annotations

from dataclasses import dataclass

from kcomp.schedule import Schedule, parse_schedule

DECISIONS = (
    ("split i 1", "split i 2", "split i 4"),
    ("split j 1", "split j 2", "split j 4"),
    ("", "unroll i_i"),
)
SIZE = 18


@dataclass(frozen=True)
class State:
    chosen: tuple[str, ...] = ()

    def actions(self) -> list[str]:
        return list(DECISIONS[len(self.chosen)]) if not self.is_terminal() else []

    def apply(self, action: str) -> State:
        return State((*self.chosen, action))

    def is_terminal(self) -> bool:
        return len(self.chosen) == len(DECISIONS)

    def schedule(self) -> Schedule:
        return parse_schedule("\n".join(self.chosen))


class Space:
    def __init__(self, program=None, target=None, *, fused_default=True):
        self.program, self.target = program, target

    def root(self) -> State:
        return State()
