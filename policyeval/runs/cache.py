"""A persistent, content-addressed cache of model responses.

A response is stored under the hash of exactly what was asked (endpoint, model, the
final messages, sampling parameters), one small JSON file per answer at
`ROOT/ab/abcdef....json`. Each file is written beside its target and renamed over it,
so a run killed midway leaves only complete answers behind and a re-run asks the model
only for the rest. Lookups open one known path: no listing, so 20k items stay fast.

Only answers are cached. Errors are not: they are retried on the next run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ..records import canonical_json, normalize_messages, sha256_hex

CACHE_FORMAT = 1


def request_key(base_url: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 of what was asked: the same request always maps to the same answer file.

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
    """`ResponseCache(root)`: `.get(key)` -> record or None, `.put(key, record)`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._made: set[str] = set()
        self._lock = threading.Lock()
        self._counter = 0

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record for `key`, or None (missing or unreadable files are misses)."""
        try:
            with open(self.path_for(key), "rb") as handle:
                entry = json.loads(handle.read())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None  # a torn file from a power loss: ask again
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("record"), dict):
            return None
        return entry["record"]

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store an answer atomically: readers see the old state or the whole new file."""
        directory = self.root / key[:2]
        if key[:2] not in self._made:
            directory.mkdir(parents=True, exist_ok=True)
            self._made.add(key[:2])
        data = json.dumps(
            {"format": CACHE_FORMAT, "key": key, "record": record}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        with self._lock:
            self._counter += 1
            tmp = directory / f".{key}.{os.getpid()}.{self._counter}.tmp"
        try:
            # No fsync: rename-after-write survives a killed process, which is what
            # resuming needs; after a power loss a torn file reads as a miss.
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.path_for(key))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by killed runs (they never read as entries); returns how many."""
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
