"""The tuning database: every trial `kcomp tune` measured, and the best one `kcomp compile` picks.

records.py   Trial, Status, Key, key_for: what a row says and what it is valid for
store.py     TuningDB: the SQLite file (schema, migrations, concurrency, JSON lines)
salvage.py   reading what a damaged file still holds
lookup.py    tuned_schedule: the best record for a workload, as the pipeline asks for it
"""
