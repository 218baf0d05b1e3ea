"""The job table on disk: one SQLite file (standard library, WAL mode) under ``--data-dir``.

Knows rows, not threads or HTTP: :class:`fomm.app.jobs.JobQueue` writes a job's row at each change
of state and reads them all back at start, so a restart of ``fomm serve`` keeps its jobs. The
files (uploads, results) stay in the job's folder; the row stores where.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from fomm.errors import FommError

try:
    import fcntl
except ImportError:  # Windows: no lock; one server per data folder is then up to the user
    fcntl = None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,      -- JSON: what the run function needs (JobQueue's dump/load)
    total INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,                -- JSON
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    restarts INTEGER NOT NULL DEFAULT 0  -- times the server stopped while the job was running
)
"""
COLUMNS = (
    "id",
    "folder",
    "status",
    "payload",
    "total",
    "done",
    "error",
    "result",
    "created_at",
    "started_at",
    "finished_at",
    "restarts",
)


class JobStore:
    """Rows of jobs in ``path`` (created if missing); safe to call from several threads.

    Args:
        path: the SQLite file, e.g. ``<data-dir>/jobs.sqlite3``.

    Raises:
        FommError: another server holds this store (``<path>.lock``, until it closes it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._owner = _lock_file(self.path.with_name(self.path.name + ".lock"))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    def put(self, row: dict[str, Any]) -> None:
        """Insert or replace one job's row; ``payload`` and ``result`` are JSON-encoded here."""
        values = {
            **row,
            "payload": json.dumps(row["payload"]),
            "result": None if row.get("result") is None else json.dumps(row["result"]),
        }
        marks = ", ".join("?" for _ in COLUMNS)
        with self._lock:
            if self._closed:  # a worker outlived the shutdown: the row keeps its last state
                return
            self._db.execute(
                f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES ({marks})",
                [values.get(name) for name in COLUMNS],
            )

    def delete(self, job_ids: list[str]) -> None:
        """Forget these jobs (their files are the caller's)."""
        with self._lock:
            if self._closed:
                return
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])

    def rows(self) -> list[dict[str, Any]]:
        """Every job, oldest first, with ``payload`` and ``result`` decoded."""
        with self._lock:
            cursor = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY created_at")
            rows = [dict(zip(COLUMNS, values, strict=True)) for values in cursor.fetchall()]
        for row in rows:
            row["payload"] = json.loads(row["payload"])
            row["result"] = None if row["result"] is None else json.loads(row["result"])
        return rows

    def ping(self) -> bool:
        """True when the database answers (for /healthz)."""
        try:
            with self._lock:
                self._db.execute("SELECT count(*) FROM jobs").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        """Close the database; later writes are ignored (a job left "running" runs again)."""
        with self._lock:
            self._closed = True
            self._db.close()
            if self._owner is not None:
                os.close(self._owner)  # releases the lock
                self._owner = None


def _lock_file(path: Path) -> int | None:
    """Hold an exclusive lock on ``path`` (two servers on one folder would run jobs twice)."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise FommError(
            f"another fomm serve is using {path.parent} (its jobs would run twice); "
            "stop it or give another --data-dir"
        ) from err
    return fd
