"""A campaign inbox: the label files people dropped in, imported one by one.

Each file is imported all-or-nothing on its own, so one bad file neither stops the clean
ones nor is half imported; the rejected files are listed with their problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import InputError
from .annotations import ImportResult


@dataclass(frozen=True)
class InboxImport:
    imported: list[tuple[str, ImportResult]]
    rejected: list[tuple[str, list[tuple[int | None, str]]]]  # file name, (line, problem)

    def imported_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"file": name, "labels": r.labels_read, "added": r.added, "unchanged": r.unchanged, "replaced": r.replaced, "unlabeled": r.unlabeled} for name, r in self.imported],
            columns=["file", "labels", "added", "unchanged", "replaced", "unlabeled"],
        )

    def rejected_table(self) -> pd.DataFrame:
        rows = [{"file": name, "line": line, "problem": problem} for name, problems in self.rejected for line, problem in problems]
        return pd.DataFrame(rows, columns=["file", "line", "problem"])


def import_inbox(files: list[Path], run_import: Callable[[Path], ImportResult]) -> InboxImport:
    """Import each file on its own: a rejected file is recorded and does not stop the others."""
    imported, rejected = [], []
    for path in files:
        try:
            imported.append((path.name, run_import(path)))
        except InputError as exc:
            problems = getattr(exc, "problems", None)
            listed = [(p.line, p.message) for p in problems] if problems else [(None, str(exc))]
            rejected.append((path.name, listed))
    return InboxImport(imported, rejected)
