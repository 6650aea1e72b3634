"""The tuning database: one SQLite row per measured trial, kept across runs, machines and versions.

    db = TuningDB.open(path)                        # created (WAL mode) and migrated as needed
    key = key_for(program, target)                  # workload hash x target spec x hardware fingerprint
    db.record(replace(trial, key=key))              # one short transaction: a killed run keeps its trials
    db.known(key, schedule.hash)                    # a schedule measured before (resume never re-measures)
    db.best(key)                                    # the fastest ok row for this workload on this hardware
    db.best_other_hardware(key)                     # ok rows from other machines: seeds, never trusted

Keys are described in records.py.  Schedules are stored as text and read back with `parse_schedule`;
nothing read from the file is unpickled or evaluated.

Schema (`meta` holds `schema_version`; `MIGRATIONS[n]` takes a file from version n to n + 1):
    trials(id, workload, workload_text, target, hardware, kcomp_version, schedule, schedule_hash,
           status, time_s, counters JSON, error, created, strategy, run_id)
Concurrency: WAL journal, a busy timeout and one statement per write, so processes writing one file
at once wait for each other instead of failing.  A damaged file is a `UsageError` naming it; `salvage`
(salvage.py) reads what SQLite can still recover (`kcomp db export` does it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from kcomp.config import Config, config
from kcomp.db.records import Key, Status, Trial
from kcomp.errors import SourceError, UsageError
from kcomp.schedule import parse_schedule
from kcomp.version import __version__

BUSY_TIMEOUT_S = 60.0
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: the trials table
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE trials (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            workload TEXT NOT NULL,
            workload_text TEXT NOT NULL,
            target TEXT NOT NULL,
            hardware TEXT NOT NULL,
            kcomp_version TEXT NOT NULL,
            schedule TEXT NOT NULL,
            schedule_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            time_s REAL,
            counters TEXT NOT NULL DEFAULT '{}',
            error TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL)""",
        "CREATE INDEX trials_schedule ON trials (workload, target, hardware, schedule_hash)",
    ),
    # 1 -> 2: which strategy and which run measured a trial; the index behind `best`
    (
        "ALTER TABLE trials ADD COLUMN strategy TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE trials ADD COLUMN run_id TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX trials_best ON trials (workload, target, status, time_s)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = (
    "id",
    "workload",
    "workload_text",
    "target",
    "hardware",
    "kcomp_version",
    "schedule",
    "schedule_hash",
    "status",
    "time_s",
    "counters",
    "error",
    "created",
    "strategy",
    "run_id",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM trials"


def default_path(cfg: Config | None = None) -> Path:
    """`Config.db_path` (KCOMP_TUNING_DB), else `<cache dir>/tuning.db`."""
    cfg = cfg or config()
    return cfg.db_path or cfg.cache_dir / "tuning.db"


class DatabaseCorrupt(UsageError):
    """The file is not a readable tuning database."""


def _error(path: Path, e: sqlite3.Error) -> UsageError:
    text = str(e)
    if text.startswith(_NOT_OURS):
        return UsageError(f"{path} is {text}: give another --db")
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return UsageError(
            f"tuning database {path}: {text} (another process held it for {BUSY_TIMEOUT_S:g} s)"
        )
    if isinstance(e, sqlite3.OperationalError) and ("readonly" in text or "unable to open" in text):
        return UsageError(f"tuning database {path}: {text}")
    return DatabaseCorrupt(
        f"tuning database {path} is damaged ({text}).\n"
        f"  `kcomp db export --db {path} rows.jsonl` saves the rows that can still be read; then move the"
        f" file away (a new one is created) and `kcomp db import rows.jsonl`.  `--no-db`, `--db OTHER` or"
        f" KCOMP_NO_DB=1 work without it."
    )


class TuningDB:
    """A connection to one tuning database file.  Methods raise `UsageError`, never sqlite3 errors."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn, self.path = conn, path

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True, check: bool = False) -> TuningDB:
        """Open (and with `create`, create) the file, in WAL mode, migrated to `SCHEMA_VERSION`.
        `check` also reads every page (`PRAGMA quick_check`), so damage is found now, not mid-run."""
        path = Path(path).expanduser().absolute() if path is not None else default_path()
        if not create and not path.is_file():
            raise UsageError(f"no tuning database at {path}")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"tuning database {path}: cannot create its folder: {e.strerror}") from None
        uri = f"file:{quote(str(path))}?mode={'rwc' if create else 'rw'}"
        conn = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _wal(conn)
            _migrate(conn, path)
            if check:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise _error(path, e) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> TuningDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _error(self.path, e) from None

    # ---------------------------------------------------------------- writing

    def record(self, trial: Trial) -> Trial:
        """Store `trial` (its `key` must be set) in one short transaction; the stored trial, with its id."""
        if trial.key is None:
            raise ValueError("TuningDB.record: the trial has no key (use key_for(program, target))")
        k = trial.key
        created = trial.created or time.time()
        version = trial.version or __version__
        row = (
            k.workload,
            k.workload_text,
            k.target,
            k.hardware,
            version,
            str(trial.schedule),
            trial.schedule.hash,
            Status(trial.status).value,
            trial.time_s,
            json.dumps(dict(trial.counters), sort_keys=True),
            trial.error,
            created,
            trial.strategy,
            trial.run_id,
        )
        try:
            cur = self.conn.execute(
                f"INSERT INTO trials ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * len(row))})", row
            )
        except sqlite3.Error as e:
            raise _error(self.path, e) from None
        return replace(trial, id=cur.lastrowid, created=created, version=version)

    # ---------------------------------------------------------------- reading

    def known(self, key: Key, schedule_hash: str) -> Trial | None:
        """The latest trial of this schedule for this workload, target and hardware (any status)."""
        return self._first(
            f"{_SELECT} WHERE workload = ? AND target = ? AND hardware = ? AND schedule_hash = ?"
            " ORDER BY id DESC",
            (key.workload, key.target, key.hardware, schedule_hash),
        )

    def best(self, key: Key) -> Trial | None:
        """The fastest ok trial for this workload, target and hardware."""
        return self._first(
            f"{_SELECT} WHERE workload = ? AND target = ? AND hardware = ? AND status = 'ok'"
            " ORDER BY time_s, id",
            (key.workload, key.target, key.hardware),
        )

    def best_other_hardware(self, key: Key, limit: int = 8) -> list[Trial]:
        """Ok trials of this workload and target measured on other hardware, the fastest row per
        schedule, fastest first: starting points for a new search, not answers."""
        rows = self._rows(
            f"{_SELECT} WHERE workload = ? AND target = ? AND hardware != ? AND status = 'ok'"
            " ORDER BY time_s, id",
            (key.workload, key.target, key.hardware),
        )
        out: dict[str, Trial] = {}
        for trial in _trials(rows):
            out.setdefault(trial.schedule.hash, trial)
            if len(out) >= limit:
                break
        return list(out.values())

    def get(self, trial_id: int) -> Trial | None:
        return self._first(f"{_SELECT} WHERE id = ?", (trial_id,))

    def trials(
        self,
        workload: str | None = None,
        target: str | None = None,
        hardware: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[Trial]:
        """Trials matching every given field, oldest first (the newest `limit` when given)."""
        where, args = [], []
        for column, value in (
            ("workload", workload),
            ("target", target),
            ("hardware", hardware),
            ("status", status),
            ("run_id", run_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return _trials(self._rows(sql, tuple(args)))[::-1]

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM trials")[0][0]

    def _first(self, sql: str, args: tuple[Any, ...]) -> Trial | None:
        try:
            cursor = self.conn.execute(sql, args)
            for row in cursor:  # NOTE: a row whose schedule no longer parses is skipped, not fatal
                trial = _trial(row)
                if trial is not None:
                    return trial
        except sqlite3.Error as e:
            raise _error(self.path, e) from None
        return None

    # ---------------------------------------------------------------- JSON lines

    def export_jsonl(self, fp: IO[str]) -> int:
        """Every row as one JSON object per line, oldest first; the number written."""
        try:
            cursor = self.conn.execute(_SELECT + " ORDER BY id")
            n = 0
            for row in cursor:
                fp.write(json.dumps(row_object(row), sort_keys=True) + "\n")
                n += 1
        except sqlite3.Error as e:
            raise _error(self.path, e) from None
        return n

    def import_jsonl(self, fp: IO[str], name: str = "<input>") -> tuple[int, int]:
        """Rows from JSON lines (as `export_jsonl` writes them) appended with new ids; a row already
        present (same key, schedule, status, time and creation time) is skipped.  (imported, skipped)."""
        # NOTE: every line is checked before the first is written: a bad file imports nothing.
        trials = [_from_object(line, f"{name}:{n}") for n, line in enumerate(fp, 1) if line.strip()]
        imported = skipped = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for trial in trials:
                k = trial.key
                assert k is not None
                duplicate = self.conn.execute(
                    "SELECT 1 FROM trials WHERE workload = ? AND target = ? AND hardware = ?"
                    " AND schedule_hash = ? AND status = ? AND time_s IS ? AND created = ?",
                    (
                        k.workload,
                        k.target,
                        k.hardware,
                        trial.schedule.hash,
                        trial.status.value,
                        trial.time_s,
                        trial.created,
                    ),
                ).fetchone()
                if duplicate:
                    skipped += 1
                else:
                    self.record(trial)
                    imported += 1
            self.conn.execute("COMMIT")
        except BaseException as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise _error(self.path, e) from None
            raise
        return imported, skipped


# ------------------------------------------------------------------------------------ schema


def _wal(conn: sqlite3.Connection) -> None:
    """WAL journal.  NOTE: switching modes needs an exclusive lock that the busy handler does not wait
    for, so two processes creating one file at once retry here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_NOT_OURS = "an SQLite file, but not a kcomp tuning database"


def schema_version(conn: sqlite3.Connection) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise sqlite3.DatabaseError(_NOT_OURS)
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _migrate(conn: sqlite3.Connection, path: Path, upto: int = SCHEMA_VERSION) -> None:
    """Apply `MIGRATIONS` from the file's version to `upto`, in one transaction."""
    if schema_version(conn) >= upto:
        if schema_version(conn) > SCHEMA_VERSION:
            raise UsageError(
                f"tuning database {path} has schema version {schema_version(conn)}; this kcomp"
                f" ({__version__}) knows up to {SCHEMA_VERSION}: upgrade kcomp or use another --db"
            )
        return
    conn.execute("BEGIN IMMEDIATE")  # NOTE: re-read under the write lock: another process may have migrated
    try:
        for version in range(schema_version(conn), upto):
            for sql in MIGRATIONS[version]:
                conn.execute(sql)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(upto),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------------ rows


def row_object(row: tuple[Any, ...]) -> dict[str, Any]:
    obj = dict(zip(COLUMNS, row, strict=True))
    try:
        obj["counters"] = json.loads(obj["counters"] or "{}")
    except (TypeError, ValueError):
        obj["counters"] = {}
    return obj


def _trial(row: tuple[Any, ...]) -> Trial | None:
    """A row as a Trial; None when its schedule or status is no longer understood."""
    obj = row_object(row)
    try:
        schedule = parse_schedule(obj["schedule"], f"<trial {obj['id']}>")
        status = Status(obj["status"])
    except (SourceError, ValueError, TypeError):
        return None
    return Trial(
        schedule,
        status,
        time_s=obj["time_s"],
        counters=obj["counters"],
        error=obj["error"] or "",
        id=obj["id"],
        key=Key(obj["workload"], obj["target"], obj["hardware"], obj["workload_text"]),
        strategy=obj["strategy"] or "",
        run_id=obj["run_id"] or "",
        created=obj["created"],
        version=obj["kcomp_version"],
    )


def _trials(rows: list[tuple[Any, ...]]) -> list[Trial]:
    return [t for t in map(_trial, rows) if t is not None]


_TEXT_FIELDS = ("workload", "workload_text", "target", "hardware", "kcomp_version", "schedule", "status")


def _from_object(line: str, where: str) -> Trial:
    """One JSON line as a Trial, every field checked; the schedule hash is recomputed, not trusted."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object")
    for name in _TEXT_FIELDS:
        if not isinstance(obj.get(name), str):
            raise UsageError(f"{where}: field '{name}' must be a string")
    for name in ("error", "strategy", "run_id"):
        if not isinstance(obj.get(name, ""), str):
            raise UsageError(f"{where}: field '{name}' must be a string")
    time_s, created, counters = obj.get("time_s"), obj.get("created", 0.0), obj.get("counters", {})
    if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, int | float)):
        raise UsageError(f"{where}: field 'time_s' must be a number or null")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise UsageError(f"{where}: field 'created' must be a number")
    if not isinstance(counters, dict):
        raise UsageError(f"{where}: field 'counters' must be an object")
    try:
        status = Status(obj["status"])
    except ValueError:
        raise UsageError(
            f"{where}: unknown status {obj['status']!r} (one of {', '.join(s.value for s in Status)})"
        ) from None
    try:
        schedule = parse_schedule(obj["schedule"], f"{where} schedule")
    except SourceError as e:
        raise UsageError(f"{where}: the schedule does not parse: {e}") from None
    key = Key(obj["workload"], obj["target"], obj["hardware"], obj["workload_text"])
    return Trial(
        schedule,
        status,
        time_s=None if time_s is None else float(time_s),
        counters=counters,
        error=obj.get("error", ""),
        key=key,
        strategy=obj.get("strategy", ""),
        run_id=obj.get("run_id", ""),
        created=float(created),
        version=obj["kcomp_version"],
    )
