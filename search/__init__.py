"""Autotuning: search spaces, strategies, isolated measurement and the tuning database (docs/search.md).

measure.py        Measurer, Candidate, Trial, Status, Executor / LocalExecutor
db.py             TuningDB (SQLite), Key, key_for
strategy.py       Space / State protocols, Strategy, Budget, Session, TuneResult
random_search.py  RandomSearch, the baseline
space.py          the search space of one kernel: Space (the decisions), State, Action
mcts.py           MCTS, the default strategy
cost_model.py     the analytical estimate and the learned correction MCTS ranks candidates by
"""

from kcomp.search.db import Key, TuningDB, key_for
from kcomp.search.mcts import MCTS
from kcomp.search.measure import Candidate, Executor, LocalExecutor, Measurer, Status, Trial
from kcomp.search.random_search import RandomSearch
from kcomp.search.strategy import Budget, Session, Space, State, Strategy, TuneResult

__all__ = [
    "MCTS",
    "Budget",
    "Candidate",
    "Executor",
    "Key",
    "LocalExecutor",
    "Measurer",
    "RandomSearch",
    "Session",
    "Space",
    "State",
    "Status",
    "Strategy",
    "Trial",
    "TuneResult",
    "TuningDB",
    "key_for",
]
