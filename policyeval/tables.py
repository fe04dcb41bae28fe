"""Parquet and JSONL tables: explicit schemas in, atomic writes out.

A write goes to a temporary file beside the target and is renamed over it, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def write_parquet(rows: pd.DataFrame | Iterable[dict[str, Any]], path: str | os.PathLike, schema: pa.Schema) -> Path:
    table = to_arrow(rows, schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read JSON Lines, naming the line of the first malformed record."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON ({exc.msg})", line=number) from None
            if not isinstance(value, dict):
                raise InputError(path, "each line must be a JSON object", line=number)
            rows.append(value)
    return rows
