"""A persistent, content-addressed cache of model responses, in one SQLite file.

A response is stored under the hash of exactly what was asked (endpoint, model, the
final messages, sampling parameters) in `ROOT/responses.sqlite3`: a handful of files
however many answers there are, where one JSON file per answer made 100,000 files.

Why SQLite and how it is opened:

* WAL mode with `synchronous=NORMAL`: `put` (one answer) and `put_many` (answers that
  arrived together) commit before they return, and a committed WAL transaction survives
  the death of the process (`kill -9`) because it is in the operating system's page cache
  by then. So a killed run loses only the requests that were in flight, and a re-run asks
  the model only for those and the ones never sent. (After a power loss the last few
  commits may be lost: they read as misses and are asked again.)
* Several processes may read and write at once (Dagster runs checkpoints in parallel
  processes): WAL lets readers proceed during a write, and `busy_timeout` makes a writer
  wait its turn instead of failing.
* One connection per process and thread: a connection is never shared across a fork or
  between threads.

Only answers are cached. Errors are not: they are retried on the next run.

The earlier layout, one JSON file per answer at `ROOT/ab/abcdef....json`, is still read
on a miss, and a hit there is copied into the database, so an existing cache folder keeps
serving. `request_key` is unchanged, so every old key stays valid.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..records import canonical_json, normalize_messages, sha256_hex

CACHE_FORMAT = 1
DB_NAME = "responses.sqlite3"
BUSY_TIMEOUT_MS = 60_000  # a writer waits this long for another process's write before giving up

_fork_generation = 0  # bumped in a forked child: a connection is never carried across a fork


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)

# Rows are appended in rowid order and found through the index on `key`: a random 64-hex
# key as the table's own primary key would scatter every insert across the whole table.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    stored_at REAL NOT NULL
)
"""
# WAL pages between checkpoints (about 40 MB): each checkpoint syncs the database file,
# which at SQLite's default of 1000 pages cost more than the inserts themselves.
WAL_AUTOCHECKPOINT_PAGES = 10_000


_INSERT = "INSERT OR REPLACE INTO responses (key, record, stored_at) VALUES (?, ?, ?)"


class CacheWriteError(OSError):
    """A record could not be stored (disk full, read-only folder, a lock held too long).

    An OSError, so callers that treat a failed cache write as "costs a re-ask, not the run"
    handle it with the filesystem errors they already expect.
    """


def request_key(base_url: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 of what was asked: the same request always maps to the same answer.

    `messages` are the final messages sent (system prompt already applied); they are
    normalized here so whitespace and role case do not split the cache. `base_url` is
    the manifest's (so `local` stays `local` whatever port the server got).
    """
    return sha256_hex(
        canonical_json(
            {
                "base_url": base_url.rstrip("/"),
                "model": model,
                "messages": normalize_messages(messages),
                "params": params,
            }
        )
    )


class ResponseCache:
    """`ResponseCache(root)`: `.get(key)` -> record or None, `.put(key, record)`.

    Nothing is created until the first `put`; a cache that was never written to reads as
    empty. Safe to use from several threads and processes at once.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        self._legacy: bool | None = None  # whether ROOT holds per-file entries (looked at once)

    # -- the database --------------------------------------------------------

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.generation == _fork_generation:
            return conn
        if not create and not self.db_path.exists():
            return None
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._set_up(conn)
        except BaseException:
            conn.close()
            raise
        local.conn, local.generation = conn, _fork_generation
        return conn

    @staticmethod
    def _set_up(conn: sqlite3.Connection) -> None:
        """WAL mode and the table. Processes opening a new file at once may find it locked even
        with a busy timeout (SQLite does not wait while the journal mode changes): try again."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")  # stored in the file: set once, by whoever creates it
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.05)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record for `key`, or None (missing or unreadable entries are misses)."""
        try:
            conn = self._connection(create=False)
            row = conn.execute("SELECT record FROM responses WHERE key = ?", (key,)).fetchone() if conn else None
        except sqlite3.Error:
            row = None  # a locked or damaged database costs a re-ask, not the run
        if row is not None:
            try:
                record = json.loads(row[0])
            except ValueError:
                record = None
            if isinstance(record, dict):
                return record
        return self._legacy_get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store an answer, committed before returning: a process killed afterwards keeps it."""
        self.put_many([(key, record)])

    def put_many(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store several answers in one transaction, committed before returning.

        One commit per answer costs more than the answer's own row at thousands of
        answers a second; answers that arrive together are stored together instead.
        """
        now = time.time()
        rows = [(key, json.dumps(record, ensure_ascii=False, separators=(",", ":")), now) for key, record in entries]
        if not rows:
            return
        try:
            conn = self._connection(create=True)
            if len(rows) == 1:
                conn.execute(_INSERT, rows[0])
            else:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_INSERT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise CacheWriteError(f"{self.db_path}: {exc}") from exc

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def count(self) -> int:
        """Answers in the database (per-file entries of the earlier layout not yet copied are not counted).

        A method, not `__len__`: an empty cache must not be falsy where `if cache:` means "caching on".
        """
        conn = self._connection(create=False)
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] if conn else 0

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation == _fork_generation:
            conn.close()
        self._local.conn = None

    # -- the earlier one-file-per-answer layout --------------------------------

    def path_for(self, key: str) -> Path:
        """Where the earlier layout kept `key`'s answer (read on a miss, never written)."""
        return self.root / key[:2] / f"{key}.json"

    def _has_legacy(self) -> bool:
        if self._legacy is None:
            try:
                with os.scandir(self.root) as entries:
                    self._legacy = any(e.is_dir() and len(e.name) == 2 for e in entries)
            except OSError:
                self._legacy = False
        return self._legacy

    def _legacy_get(self, key: str) -> dict[str, Any] | None:
        if not self._has_legacy():
            return None
        try:
            with open(self.path_for(key), "rb") as handle:
                entry = json.loads(handle.read())
        except (OSError, ValueError):
            return None  # missing, or a torn file from a power loss: ask again
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("record"), dict):
            return None
        record = entry["record"]
        try:
            self.put(key, record)  # copied over, so the next lookup is one query
        except OSError:
            pass
        return record

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files the earlier layout's killed runs left (they never read as entries)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for tmp in self.root.glob("*/.*.tmp"):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
        return removed
