"""Progress lines for long steps: items done of total, from cache, errors, rate.

A full evaluation on a local model takes about an hour; a step that says nothing until
it ends looks hung. `ProgressReporter` is the `progress` callback of the runner: it
counts rows as they finish and hands a one-line summary to `emit` (a run log, a
terminal) at most every `every_s` seconds, and once at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .runner import OK


@dataclass
class ProgressReporter:
    total: int
    emit: Callable[[str], None]
    label: str = "items"
    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    cached: int = 0
    errors: int = 0
    _started: float = field(default=0.0, init=False)
    _last: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._started = self._last = self.clock()

    def __call__(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.cached += bool(row.get("cached"))
        self.errors += row.get("status", OK) != OK
        now = self.clock()
        if now - self._last >= self.every_s or self.done == self.total:
            self._last = now
            self.emit(self.line())

    def line(self) -> str:
        elapsed = max(self.clock() - self._started, 1e-9)
        share = self.done / self.total if self.total else 1.0
        return (f"{self.label}: {self.done}/{self.total} done ({share:.0%}), {self.cached} from cache, "
                f"{self.errors} errors, {self.done / elapsed:.1f}/s")
