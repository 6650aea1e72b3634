"""Salvage of a damaged tuning database: every row that can still be read, as JSON lines.

`kcomp db export` of a file SQLite refuses falls back here: rows are read table-scan by table-scan
where pages are intact, then through a copy with a fresh header, then with the `sqlite3` shell's
`.recover` where the shell has it.  Nothing read is evaluated; rows become the same JSON objects
`TuningDB.export_jsonl` writes, so they import again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from kcomp.db.store import COLUMNS, row_object


def salvage(path: Path, fp: IO[str]) -> int:
    """Write as JSON lines the rows SQLite can still read from a damaged file; the number written.

    Rows are read in id order until the first bad page, then one id at a time (rows on readable pages
    survive a bad one); a file whose header is destroyed is read through a copy with a fresh header;
    and the `sqlite3` shell's `.recover` adds what it finds, where the shell supports it."""
    seen: set[tuple[Any, ...]] = set()

    def emit(rows: Iterator[tuple[Any, ...]]) -> None:
        for row in rows:
            ident = tuple(row[1:])
            if len(row) == len(COLUMNS) and ident not in seen:
                seen.add(ident)
                fp.write(json.dumps(row_object(row), sort_keys=True) + "\n")

    emit(_read_rows(path))
    with tempfile.TemporaryDirectory(prefix="kcomp-salvage-") as tmp:
        if not seen:
            emit(_read_rows(_with_fresh_header(path, Path(tmp) / "header.db")))
        recovered = _recover(path, Path(tmp) / "recovered.db")
        if recovered is not None:
            emit(_read_rows(recovered))
    return len(seen)


def _read_rows(path: Path | None) -> Iterator[tuple[Any, ...]]:
    """Rows in id order until the first error, then the remaining ids one by one."""
    if path is None:
        return
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        columns = [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
    except sqlite3.Error:
        return
    wanted = ", ".join(c if c in columns else f"'' AS {c}" for c in COLUMNS)
    select, last = f"SELECT {wanted} FROM trials", 0
    try:
        try:
            for row in conn.execute(select + " ORDER BY id"):
                last = row[0]
                yield row
            return
        except sqlite3.Error:
            pass
        try:
            top_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'trials'").fetchone()
            top = int(top_row[0]) if top_row else last + 100_000
        except (sqlite3.Error, TypeError, ValueError):
            top = last + 100_000
        for trial_id in range(last + 1, top + 1):
            try:
                row = conn.execute(select + " WHERE id = ?", (trial_id,)).fetchone()
            except sqlite3.Error:
                continue
            if row is not None:
                yield row
    finally:
        conn.close()


def _with_fresh_header(path: Path, out: Path) -> Path | None:
    """A copy of `path` whose first 100 bytes (the file header) come from a new, empty database."""
    try:
        data = bytearray(path.read_bytes())
    except OSError:
        return None
    for page_size in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
        if len(data) < 2 * page_size or len(data) % page_size:
            continue
        fresh = out.with_suffix(".fresh")
        fresh.unlink(missing_ok=True)
        conn = sqlite3.connect(fresh)
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("CREATE TABLE x (y)")
        conn.commit()
        conn.close()
        header = bytearray(fresh.read_bytes()[:100])
        header[18:20] = b"\x01\x01"  # rollback journal: no -wal file needed
        header[28:32] = (len(data) // page_size).to_bytes(4, "big")
        header[32:40] = bytes(8)  # no freelist
        out.write_bytes(bytes(header) + bytes(data[100:]))
        try:
            conn = sqlite3.connect(f"file:{quote(str(out))}?mode=ro", uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.close()
            return out
        except sqlite3.Error:
            continue
    return None


def _recover(path: Path, out: Path) -> Path | None:
    """`sqlite3 PATH .recover` replayed into a fresh scratch database (SQLite's own recovery; some
    builds of the shell lack it, then this returns None)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None
    try:
        dump = subprocess.run([shell, str(path), ".recover"], capture_output=True, text=True, timeout=300)
        if "INSERT" not in dump.stdout:
            return None
        subprocess.run([shell, str(out)], input=dump.stdout, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out.is_file() else None


# ------------------------------------------------------------------------------------ compile's lookup
