"""The tuning database: records and queries, JSON lines, schema migration, two writers at once, damaged
files (a message, never a traceback; export salvages what is readable) and compile's lookup."""

from __future__ import annotations

import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import pytest

import kcomp
from kcomp.cli import main
from kcomp.config import config
from kcomp.db.records import Key, Status, Trial, key_for
from kcomp.db.store import SCHEMA_VERSION, TuningDB, _migrate, schema_version
from kcomp.errors import UsageError
from kcomp.schedule import parse_schedule
from kcomp.targets import get_target
from kcomp.targets.base import Target

DEFAULT = Target.default_label  # the CPU's default-scheduler label

KEY = Key("a" * 64, "cpu", "hw-a", "kernel x(A: f32[4]) -> (B: f32[4])")


def trial(text: str, status: Status = Status.OK, time_s: float | None = 1e-3, key: Key = KEY, **kw) -> Trial:
    return Trial(parse_schedule(text), status, time_s, key=key, **kw)


def test_record_known_best_and_other_hardware(tmp_path):
    with TuningDB.open(tmp_path / "t.db") as db:
        a = db.record(trial("split i 2", time_s=2e-3, strategy="random", run_id="r1"))
        b = db.record(trial("split i 4", time_s=1e-3, counters={"cycles": 5}))
        db.record(trial("split i 8", Status.CRASH, None, error="killed by signal SIGSEGV"))
        db.record(trial("split i 16", time_s=1e-6, key=replace(KEY, hardware="hw-b")))
        db.record(trial("split i 32", time_s=1e-7, key=replace(KEY, target="cpu:avx2")))
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert a.id is not None and b.id > a.id and a.version == kcomp.__version__ and a.created > 0
        best = db.best(KEY)
        assert best.id == b.id and best.counters == {"cycles": 5} and best.key == KEY
        assert db.known(KEY, parse_schedule("split i 8").hash).status == Status.CRASH
        assert db.known(KEY, parse_schedule("split i 3").hash) is None
        assert [str(t.schedule) for t in db.best_other_hardware(KEY)] == ["split i 16\n"]
        assert db.get(a.id).strategy == "random" and db.get(a.id).run_id == "r1"
        assert [t.id for t in db.trials(target="cpu", hardware="hw-a", status="ok")] == [a.id, b.id]
        assert len(db.trials(limit=2)) == 2 and db.count() == 5


def test_schedules_are_read_back_as_text_never_evaluated(tmp_path):
    with TuningDB.open(tmp_path / "t.db") as db:
        db.record(trial("split i 2", time_s=5e-3))
        db.conn.execute('UPDATE trials SET schedule = \'__import__("os").system("exit 1")\', time_s = 1e-9')
        db.record(trial("split i 4", time_s=2e-3))
        assert str(db.best(KEY).schedule) == "split i 4\n"  # the row that does not parse is skipped


def test_record_needs_a_key(tmp_path):
    with TuningDB.open(tmp_path / "t.db") as db, pytest.raises(ValueError, match="has no key"):
        db.record(Trial(parse_schedule("split i 2"), Status.OK, 1e-3))


def test_export_import_round_trip(tmp_path):
    with TuningDB.open(tmp_path / "a.db") as a:
        a.record(trial("split i 2", counters={"repeats": 7}))
        a.record(trial("split i 4", Status.TIMEOUT, None, error="no result within 4 s"))
        text = io.StringIO()
        assert a.export_jsonl(text) == 2
    with TuningDB.open(tmp_path / "b.db") as b:
        assert b.import_jsonl(io.StringIO(text.getvalue())) == (2, 0)
        assert b.import_jsonl(io.StringIO(text.getvalue())) == (0, 2)  # already there
        rows = b.trials()
        assert [(str(t.schedule), t.status, t.counters, t.error) for t in rows] == [
            ("split i 2\n", Status.OK, {"repeats": 7}, ""),
            ("split i 4\n", Status.TIMEOUT, {}, "no result within 4 s"),
        ]
        lines = text.getvalue().splitlines()
        bad = json.loads(lines[0]) | {"schedule": "split i zero"}
        with pytest.raises(UsageError, match=r"rows.jsonl:2: the schedule does not parse"):
            b.import_jsonl(io.StringIO(lines[0] + "\n" + json.dumps(bad) + "\n"), "rows.jsonl")
        with pytest.raises(UsageError, match=r"x:1: unknown status 'great'"):
            b.import_jsonl(io.StringIO(json.dumps(json.loads(lines[0]) | {"status": "great"})), "x")
        with pytest.raises(UsageError, match=r"x:1: not valid JSON"):
            b.import_jsonl(io.StringIO("{"), "x")
        assert b.count() == 2  # a bad file imports nothing


def test_migration_from_version_1(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    _migrate(conn, path, upto=1)
    conn.execute(
        "INSERT INTO trials (workload, workload_text, target, hardware, kcomp_version, schedule,"
        " schedule_hash, status, time_s, counters, error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            KEY.workload,
            KEY.workload_text,
            "cpu",
            "hw-a",
            "0.0.1",
            "split i 2\n",
            "h",
            "ok",
            1e-3,
            "{}",
            "",
            1.0,
        ),
    )
    assert schema_version(conn) == 1
    conn.close()
    with TuningDB.open(path) as db:
        assert schema_version(db.conn) == SCHEMA_VERSION == 2
        old = db.best(KEY)
        assert str(old.schedule) == "split i 2\n" and old.version == "0.0.1" and old.strategy == ""
        db.record(trial("split i 4", time_s=1e-4, strategy="random"))
        assert db.best(KEY).strategy == "random"


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "new.db"
    with TuningDB.open(path) as db:
        db.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(UsageError, match=r"has schema version 99; this kcomp .* knows up to 2"):
        TuningDB.open(path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(UsageError, match="an SQLite file, but not a kcomp tuning database"):
        TuningDB.open(other)
    with pytest.raises(UsageError, match="no tuning database at"):
        TuningDB.open(tmp_path / "missing.db", create=False)


WRITER = """
import sys, time
from pathlib import Path
from kcomp.schedule import parse_schedule
from kcomp.db.records import Key, Status, Trial
from kcomp.db.store import TuningDB

db = TuningDB.open(sys.argv[1])
go = Path(sys.argv[1] + ".go")
while not go.exists():
    time.sleep(0.005)
for n in range(int(sys.argv[3])):
    db.record(Trial(parse_schedule(f"split i {n + 1}"), Status.OK, 1e-3, key=Key("w", "cpu", "hw"),
                    run_id=sys.argv[2]))
    time.sleep(0.001)  # let the other writer in: the test is about interleaved transactions
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"  # created by the writers themselves, at the same moment
    n = 300
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n)], stderr=subprocess.PIPE)
        for tag in ("a", "b")
    ]
    time.sleep(1.0)
    (tmp_path / "shared.db.go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with TuningDB.open(path) as db:
        rows = db.trials()
        assert len(rows) == 2 * n and len({t.id for t in rows}) == 2 * n
        assert sorted(t.run_id for t in rows) == ["a"] * n + ["b"] * n
        interleaved = sum(1 for x, y in itertools.pairwise(rows) if x.run_id != y.run_id)
        assert interleaved > 1, "the writers did not overlap; the test proved nothing"


# ---------------------------------------------------------------------------------------- damaged files


def damaged_db(path, rows: int = 300, where: str = "page") -> None:
    with TuningDB.open(path) as db:
        for n in range(rows):
            db.record(trial(f"split i {n + 1}", time_s=1e-3 * (n + 1), counters={"pad": "z" * 300}))
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:
        if where == "page":
            f.seek(4096 * 20)
            f.write(b"\xa5" * 4096 * 2)
        else:
            f.write(b"\xa5" * 100)  # the header


def expect_exit(capsys, argv: list[str], code: int) -> str:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    return captured.err


@pytest.mark.parametrize("where", ["page", "header"])
def test_damaged_database_message_and_salvage(tmp_path, capsys, monkeypatch, matmul_file, where):
    import fake_space

    path = tmp_path / "bad.db"
    damaged_db(path, where=where)
    err = expect_exit(capsys, ["db", "list", "--db", str(path), "--limit", "1000"], 2)
    assert f"tuning database {path} is damaged" in err and f"kcomp db export --db {path}" in err
    monkeypatch.setitem(sys.modules, "kcomp.search.space", fake_space)
    err = expect_exit(capsys, ["tune", str(matmul_file), "--strategy", "random", "--db", str(path)], 2)
    assert f"tuning database {path} is damaged" in err
    out = tmp_path / "rows.jsonl"
    err = expect_exit(capsys, ["db", "export", "--db", str(path), str(out)], 1)
    salvaged = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"salvaged {len(salvaged)} trials" in err
    if where == "page":
        assert 280 <= len(salvaged) < 300  # two bad pages held a few rows; the rest is kept
    else:
        assert len(salvaged) == 300  # read through a fresh header: nothing lost
    with TuningDB.open(tmp_path / "fresh.db") as db, out.open() as fp:
        assert db.import_jsonl(fp) == (len(salvaged), 0)
    if where == "page":
        return  # compile's lookup reads an index and a few rows: this damage is not in its way
    # compile does not fail over a damaged database: it uses the default and says why
    monkeypatch.setenv("KCOMP_TUNING_DB", str(path))
    config.cache_clear()
    assert main(["compile", str(matmul_file), "--emit", "schedule"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"# schedule: {DEFAULT}; the tuning database is not used: tuning database {path}")


# ---------------------------------------------------------------------------------------- compile's lookup


def record_for(matmul_file, text: str, time_s: float, **changes) -> Trial:
    program = kcomp.compile(matmul_file, schedule="default").built.program
    key = replace(key_for(program, get_target("cpu")), **changes)
    with TuningDB.open(config().db_path) as db:
        return db.record(Trial(parse_schedule(text), Status.OK, time_s, key=key))


def emitted_schedule(capsys, *argv: str) -> list[str]:
    assert main(["compile", *argv, "--emit", "schedule"]) == 0
    return capsys.readouterr().out.splitlines()


def test_compile_and_run_use_the_best_record_for_this_hardware(matmul_file, capsys, monkeypatch):
    file = str(matmul_file)
    assert emitted_schedule(capsys, file)[0] == f"# schedule: {DEFAULT}"  # no database file yet
    record_for(matmul_file, "split i 4\n", 2e-6)
    best = record_for(matmul_file, "split i 2\nsplit j 4\n", 1e-6)
    record_for(matmul_file, "split i 1\n", 1e-9, hardware="another machine")  # never used directly
    record_for(matmul_file, "split j 1\n", 1e-9, target="cpu:scalar")
    lines = emitted_schedule(capsys, file)
    assert lines == [
        f"# schedule: tuning database ({config().db_path}, trial {best.id}, 1 µs)",
        "split i 2",
        "split j 4",
    ]
    assert main(["run", file, "--check", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["schedule_source"].startswith("tuning database (")
    # deterministic builds: --schedule, another shape (another workload), KCOMP_NO_DB=1
    assert emitted_schedule(capsys, file, "--schedule", "default")[0] == f"# schedule: {DEFAULT}"
    assert emitted_schedule(capsys, file, "--shape", "M=16")[0] == f"# schedule: {DEFAULT}"
    monkeypatch.setenv("KCOMP_NO_DB", "1")
    config.cache_clear()
    assert emitted_schedule(capsys, file)[0] == f"# schedule: {DEFAULT}"


def test_a_record_that_no_longer_applies_falls_back_to_the_default(matmul_file, capsys):
    stale = record_for(matmul_file, "split q 2\n", 1e-6)
    first = emitted_schedule(capsys, str(matmul_file))[0]
    assert first.startswith(f"# schedule: {DEFAULT}; trial {stale.id} of the tuning database")
    assert "no longer applies (split q 2: no loop named 'q'" in first


def test_no_database_file_is_cheap_and_creates_nothing(matmul_file):
    kcomp.compile(matmul_file)
    assert not os.path.exists(config().db_path)
