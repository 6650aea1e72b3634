"""Autotuning: search spaces, strategies and isolated measurement (docs/search.md).

rules.py          what a target contributes to the space: `Rules`, `Action`, `Units`
space.py          the search space of one kernel: Space (walks the target's rules), State
loop_rules.py     the loop-transformation rules (split, order, unroll, vectorize, stage, ...)
cost_model.py     the roofline estimate of a loop nest and the learned correction MCTS ranks by
strategy.py       Space / State protocols, Strategy, Budget, Session, TuneResult
random_search.py  RandomSearch, the baseline
mcts.py           MCTS, the default strategy
measure.py        Measurer, Candidate, Executor / LocalExecutor: building and timing in workers
cluster.py        RayExecutor, ray_session: the same jobs on a Ray cluster (`--executor ray`)

The tuning database the search writes is in the core (kcomp.db): `kcomp compile` reads it.  This
package's modules are imported by name (nothing is re-exported here), so a target can use the
space's building blocks without loading the strategies.
"""
