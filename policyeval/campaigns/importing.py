"""Reading human label files all-or-nothing: every problem found, nothing half imported.

A returned batch with one typo should not cost the annotator a round trip per mistake,
so a file is checked completely and every problem is reported with its file and line
(and data row) before anything is written. Only a clean file is merged, and the merged
table is written atomically.

Merging is idempotent: a label already stored with the same value is left alone, so
importing the same file twice changes nothing (the table is not even rewritten). A
label that would change a stored one is a conflict and rejects the file, unless the
caller asks to replace (a deliberate correction).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import InputError
from ..tables import csv_rows, decode_utf8


@dataclass(frozen=True, order=True)
class ImportProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ImportRejected(InputError):
    """A label file with problems; carries all of them. Nothing was imported."""

    SHOWN = 5

    def __init__(self, path: object, problems: list[ImportProblem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.message))
        parts = [(f"line {p.line}: " if p.line is not None else "") + p.message for p in self.problems[: self.SHOWN]]
        more = len(self.problems) - self.SHOWN
        message = f"{len(self.problems)} problem(s), nothing imported: " + "; ".join(parts)
        super().__init__(path, message + (f"; and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class CsvRecord:
    line: int  # physical line where the record starts (the header is line 1)
    row: int  # 1-based data row
    cells: dict[str, str]


class Problems:
    """Collects the problems of one file."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[ImportProblem] = []

    def add(self, message: str, line: int | None = None) -> None:
        self.items.append(ImportProblem(str(self.path), line, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ImportRejected(self.path, self.items)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text(path: Path, problems: Problems) -> str | None:
    """The file as UTF-8 text (a byte-order mark is accepted), or None with a problem recorded."""
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    try:
        return decode_utf8(path, path.read_bytes())
    except InputError as exc:
        problems.add(exc.message, line=exc.line)
        return None


def csv_header(text: str) -> list[str]:
    """The header cells of a CSV text (empty if it has none or is malformed)."""
    try:
        return [h.strip() for h in next(csv.reader(io.StringIO(text, newline="")), [])]
    except csv.Error:
        return []


def read_csv(path: Path, text: str, required: Iterable[str], problems: Problems) -> list[CsvRecord] | None:
    """Records of a CSV with their lines; None (with problems) if its shape is unusable.

    A row shorter than the header is padded with empty cells (some tools drop trailing
    empty cells); a longer one is a problem of its line.
    """
    rows = csv_rows(path, text)
    try:
        first = next(rows, None)
    except InputError as exc:
        problems.add(exc.message, line=exc.line)
        return None
    if first is None:
        problems.add("empty file: expected a header row", line=1)
        return None
    header_line, header = first
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        problems.add(f"column(s) {', '.join(duplicated)} appear twice in the header", line=header_line)
    missing = [c for c in required if c not in header]
    if missing:
        problems.add(f"missing column(s) {', '.join(missing)} (columns: {', '.join(header)})", line=header_line)
    if duplicated or missing:
        return None

    records: list[CsvRecord] = []
    row_number = 0
    try:
        for line, cells in rows:
            if not any(c.strip() for c in cells):
                continue
            row_number += 1
            if len(cells) > len(header):
                problems.add(f"row {row_number}: {len(cells)} cells but the header has {len(header)}", line=line)
                continue
            cells = cells + [""] * (len(header) - len(cells))
            records.append(CsvRecord(line, row_number, dict(zip(header, cells))))
    except InputError as exc:
        problems.add(exc.message, line=exc.line)
        return None
    if not row_number:
        problems.add("no data rows: only a header", line=header_line)
    return records


def match_label(value: str, vocabulary: tuple[str, ...]) -> str | None:
    """The vocabulary entry `value` names (surrounding space and case ignored), or None."""
    wanted = value.strip().lower()
    for label in vocabulary:
        if label.lower() == wanted:
            return label
    return None


@dataclass(frozen=True)
class MergeResult:
    table: pd.DataFrame
    added: int
    unchanged: int
    replaced: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced)


def merge_labels(existing: pd.DataFrame, new: pd.DataFrame, key: list[str], value: str, replace: bool,
                 problems: Problems, what: str) -> MergeResult:
    """Merge `new` into `existing` on `key`: same value is a no-op, another value a conflict."""
    stored = {tuple(r[k] for k in key): r for r in existing.to_dict("records")}
    added = unchanged = replaced = 0
    for record in new.to_dict("records"):
        k = tuple(record[c] for c in key)
        old = stored.get(k)
        if old is None:
            stored[k] = record
            added += 1
        elif old[value] == record[value]:
            unchanged += 1
        elif replace:
            stored[k] = record
            replaced += 1
        else:
            source = f" (imported from {old.get('source_file')})" if old.get("source_file") else ""
            line = record.get("source_line")
            line = None if line is None or pd.isna(line) else int(line)
            where = f"row {record['source_row']}" if line is not None else f"task {record['source_row']}"
            problems.add(f"{where}: {what} {' / '.join(map(str, k))} is already labeled "
                         f"{old[value]!r}{source}, this file says {record[value]!r} (replace to correct it)",
                         line=line)
    problems.raise_if_any()
    table = pd.DataFrame(sorted(stored.values(), key=lambda r: tuple(str(r[c]) for c in key)),
                         columns=list(existing.columns))
    return MergeResult(table, added, unchanged, replaced)
