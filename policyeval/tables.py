"""Parquet and JSONL tables: explicit schemas in, atomic writes out.

A write goes to a temporary file beside the target and is renamed over it, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError


def is_blank(value: Any) -> bool:
    """A cell with nothing in it: None, NA, NaN, or only white space."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-able dicts (missing values as None), for content hashes."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


STALE_TEMP_S = 3600  # a temporary file older than this was left by a killed writer


def _file_mode() -> int:
    """What a new file gets under the process umask (mkstemp alone makes every file owner-only,
    which leaves a team's shared data folder unreadable to the team)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _new_temp(path: Path) -> tuple[int, str]:
    """A temporary file beside `path` with the umask's mode; temporaries a killed writer left are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STALE_TEMP_S
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass  # another writer's, or gone already
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _file_mode())
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_arrow(rows: pd.DataFrame | Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows or a DataFrame as a table of exactly `schema` (extra columns dropped, missing ones null)."""
    if isinstance(rows, pd.DataFrame):
        records = rows.to_dict("records")
    else:
        records = list(rows)
    columns = {}
    for f in schema:
        values = [_clean(r.get(f.name)) for r in records]
        columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(columns, schema=schema)


def _clean(value: Any) -> Any:
    # pandas gives NaN for missing values in object columns; Arrow wants None.
    if isinstance(value, float) and value != value:
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _temp_beside(path: Path) -> str:
    """A fresh, empty temporary file in the target's folder (so the final rename is atomic)."""
    fd, tmp = _new_temp(path)
    os.close(fd)
    return tmp


def write_parquet(rows: pd.DataFrame | Iterable[dict[str, Any]], path: str | os.PathLike, schema: pa.Schema) -> Path:
    """Write a whole table at once (atomically). For long streams of rows use `ParquetStreamWriter`."""
    table = to_arrow(rows, schema)
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class ParquetStreamWriter:
    """Write rows to Parquet in batches, atomically, holding at most `batch_size` rows in memory.

        with ParquetStreamWriter(path, RESPONSE_SCHEMA) as writer:
            for row in rows:
                writer.write(row)

    Rows are converted exactly as `to_arrow` converts them and go to a temporary file beside
    `path`, one row group per batch. Only a clean exit from the `with` block (or `close()`)
    renames the file over `path`; an exception (or `abort()`) removes it and leaves any
    earlier `path` untouched. A process killed midway may leave the hidden `.NAME.*.tmp`
    file behind, never a partial `path`.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, batch_size: int = 1000):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self.schema = schema
        self.batch_size = batch_size
        self.rows_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._tmp: str | None = None
        self._writer: pq.ParquetWriter | None = None
        self._closed = False

    def __enter__(self) -> "ParquetStreamWriter":
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> "ParquetStreamWriter":
        if self._closed:
            raise ValueError(f"writer for {self.path} is already closed")
        if self._writer is None:
            self._tmp = _temp_beside(self.path)
            try:
                self._writer = pq.ParquetWriter(self._tmp, self.schema)
            except BaseException:
                self._remove_temp()
                raise
        return self

    def write(self, row: dict[str, Any]) -> None:
        """Add one row; a full batch goes to disk at once."""
        if self._writer is None:
            self.open()
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def write_many(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def flush(self) -> None:
        """Write the buffered rows as one row group."""
        if not self._buffer:
            return
        if self._writer is None:
            self.open()
        table = to_arrow(self._buffer, self.schema)
        self._buffer = []
        assert self._writer is not None
        self._writer.write_table(table)
        self.rows_written += table.num_rows

    def close(self) -> Path:
        """Write what is left, finish the file and put it in place."""
        if self._closed:
            return self.path
        try:
            self.open()
            self.flush()
            assert self._writer is not None and self._tmp is not None
            self._writer.close()
            self._writer = None
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; `path` is left as it was."""
        self._closed = True
        self._buffer = []
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the file is being thrown away anyway
                pass
        self._remove_temp()

    def _remove_temp(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def read_parquet(path: str | os.PathLike, schema: pa.Schema | None = None, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a Parquet table, naming the file when it is missing, unreadable or lacks columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(path, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
    needed = list(required) or ([f.name for f in schema if not f.nullable] if schema is not None else [])
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}")
    return table.to_pandas(types_mapper=None)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, naming the line of the first bad one.

    A byte-order mark is accepted; a file holding one JSON array is told so.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)", line=line) from None
            if not text.strip():
                continue
            hint = " (JSON Lines hold one JSON object per line, not a JSON array)" if text.lstrip().startswith("[") else ""
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON ({exc.msg}){hint}", line=line) from None
            if not isinstance(record, dict):
                raise InputError(path, f"each line must be a JSON object{hint}", line=line)
            yield line, record


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every object of a JSON Lines file (see `iter_jsonl` for the errors)."""
    return [record for _, record in iter_jsonl(path)]


def decode_utf8(path: str | os.PathLike, raw: bytes) -> str:
    """Bytes of a text file as str (a byte-order mark is accepted); bad bytes name their line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", line=line) from None


MAX_CSV_FIELD = 64 * 2**20  # a long model response is one cell; the csv module's default is 128 KiB


def csv_rows(path: str | os.PathLike, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, cells) for each row of a CSV text, the header first.

    Blank lines are skipped. Line numbers are physical lines, so a quoted cell holding
    newlines does not shift the rows after it; a malformed row names its line.
    """
    if csv.field_size_limit() < MAX_CSV_FIELD:
        csv.field_size_limit(MAX_CSV_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(path, f"malformed CSV ({exc})", line=start) from None
        end = reader.line_num
        if cells:
            yield start, cells


def read_csv_columns(path: str | os.PathLike, columns: Iterable[str]) -> pd.DataFrame:
    """A CSV as text cells (only empty cells are missing), naming any absent column.

    Every row must have as many cells as the header and at least one row must follow
    it; any problem with the file's shape names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    rows = csv_rows(path, decode_utf8(path, path.read_bytes()))
    first = next(rows, None)
    if first is None:
        raise InputError(path, "empty file: expected a header row and data rows", line=1)
    header_line, header = first
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise InputError(path, f"column(s) {', '.join(duplicated)} appear twice in the header", line=header_line)
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(path, f"no column(s) {', '.join(missing)} (columns: {', '.join(header)})", line=header_line)
    records: list[list[str | None]] = []
    for line, cells in rows:
        if len(cells) != len(header):
            raise InputError(path, f"{len(cells)} fields but the header has {len(header)}", line=line)
        records.append([cell if cell != "" else None for cell in cells])
    if not records:
        raise InputError(path, "no data rows: only a header", line=header_line)
    return pd.DataFrame(records, columns=header, dtype=object)

