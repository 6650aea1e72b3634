"""What a target contributes to the search space: its rules (search/space.py walks them).

The space decides one *unit* at a time (a top-level loop nest on the CPU, a contraction group on the
accelerator), most work first; within a unit it goes through the rules' phases, each with a number
of slots (one per band loop, per input, per tiled loop...).  Every unit starts with the space's own
`recipe` phase: the default schedule's steps for the unit, whole, or search it.  A target returns its
rules from `Target.search_rules()`; the space never asks which target it is.

    class MyRules:                                   # satisfies `Rules`
        phases = ("split", "order")                  # decided after the recipe, in this order
        def units(self, naive, default) -> Units: ...          # what to decide, in which order
        def enter(self, state) -> Plan: ...                    # a unit starts: what its slots need
        def candidates(self, state) -> list[Action]: ...       # the slot under state.cursor
        def advance(self, state, action, nest) -> Plan | None: # after `action` (None: refuse it)
        def finishes(self, action) -> bool: ...                # whether it completes the unit

An `Action` is a decision: the steps it appends (none: "leave as is"), a prior (the space normalises
them per slot), a `kind` (the family profile guidance scales priors by), a `size`, and a `choice`
(what a decision whose steps come later records: an accelerator tile size, say).  Actions whose steps
raise `ScheduleError`, or that `advance` refuses, are dropped, so every path ends in a legal schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kcomp.loops import LoopNest
from kcomp.schedule import Schedule, Step

if TYPE_CHECKING:
    from kcomp.search.space import State

DEFAULT_BOOST = 8.0  # prior multiplier of the choices the default scheduler makes


@dataclass(frozen=True)
class Action:
    """A decision (module docstring)."""

    label: str
    steps: tuple[Step, ...]
    prior: float
    kind: str
    size: int = 0
    choice: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Units:
    """The units of one kernel: `order` (indices, decided in this order), `work` (a unit's share of the
    kernel's work: iterations, say), the default schedule's steps per unit (what its recipe applies)."""

    order: tuple[int, ...]
    work: tuple[int, ...]
    default_steps: tuple[tuple[Step, ...], ...]


class Plan(Protocol):
    """What the decisions taken so far in a unit tell its later slots."""

    def slots(self, phase: str) -> int:
        """How many decisions `phase` takes in this unit."""
        ...

    def describe(self, names: dict) -> str:
        """The plan as text for the state's key (`names`: the nest's printed names)."""
        ...


class Rules(Protocol):
    phases: tuple[str, ...]

    def units(self, naive: LoopNest, default: Schedule) -> Units: ...

    def enter(self, state: State) -> Plan: ...

    def candidates(self, state: State) -> list[Action]: ...

    def advance(self, state: State, action: Action, nest: LoopNest) -> Plan | None: ...

    def finishes(self, action: Action) -> bool: ...
