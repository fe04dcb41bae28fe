"""Assemble an eval set from a pack, and read and write items tables.

Generation is deterministic for a given pack and options: seeds, template expansions
and mutations are pure functions of the pack, rows are sorted by category then item
id, and the Parquet file has an explicit schema, so the same pack yields the same file.
Synthesis is the one non-deterministic step and is reported separately.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from ..errors import InputError, PolicyevalError
from ..policy.model import PolicyPack
from ..records import ITEM_SCHEMA, EvalItem
from ..tables import iter_jsonl, read_parquet, write_parquet
from .dedupe import DedupeReport, dedupe_items
from .mutations import mutation_items
from .redteam import check_messages
from .seeds import GENERATOR, GENERATOR_VERSION, seed_items
from .synthesis import SynthesisConfig, SynthesisReport, synthesize
from .templates import template_items

__all__ = [
    "GENERATOR", "GENERATOR_VERSION", "EvalSetResult", "Shortfall", "generate_eval_set",
    "items_to_frame", "read_items", "summarize", "write_items",
]


@dataclass(frozen=True)
class Shortfall:
    """A category with fewer items of a behavior than its `min_items` asks for."""

    category_id: str
    expected_behavior: str
    have: int
    want: int

    def __str__(self) -> str:
        return f"{self.category_id}: {self.have} {self.expected_behavior} item(s), min_items asks for {self.want}"


@dataclass
class EvalSetResult:
    items: list[EvalItem]
    summary: pd.DataFrame  # category_id, expected_behavior, source, n
    dedupe: DedupeReport | None = None
    synthesis: SynthesisReport | None = None
    shortfalls: list[Shortfall] = field(default_factory=list)

    def counts(self, *keys: str) -> dict[Any, int]:
        """Item counts grouped by summary columns, e.g. counts("source")."""
        grouped = self.summary.groupby(list(keys))["n"].sum()
        return {k: int(v) for k, v in grouped.items()}


def generate_eval_set(
    pack: PolicyPack,
    *,
    mutations: bool = True,
    max_mutations_per_item: int | None = None,
    synthesis: SynthesisConfig | None = None,
    dedupe: bool = True,
    extra_items: Iterable[EvalItem] = (),
    progress: bool = False,
) -> EvalSetResult:
    """The pack's eval set: seeds, template expansions, their mutations, imported
    `extra_items`, optional synthesis, then duplicate removal.

    Mutations are applied to every seed and template item, should-refuse and benign
    look-alikes alike (under- and over-refusal probes); `max_mutations_per_item` caps
    how many of the category's listed kinds each item gets.
    """
    if max_mutations_per_item is not None and max_mutations_per_item < 0:
        raise PolicyevalError("max_mutations_per_item cannot be negative")
    items: list[EvalItem] = []
    for _, category in pack.categories():
        base = seed_items(pack, category) + template_items(pack, category)
        items.extend(base)
        if mutations and category.mutations:
            items.extend(mutation_items(base, list(category.mutations), max_mutations_per_item))

    category_ids = {c.id for _, c in pack.categories()}
    for item in extra_items:
        if item.category_id not in category_ids:
            raise PolicyevalError(f"item {item.item_id} has category {item.category_id!r}, which pack {pack.id!r} does not define")
        items.append(item)

    synthesis_report = None
    if synthesis is not None:
        synthesized, synthesis_report = synthesize(pack, synthesis, existing=items, progress=progress)
        items.extend(synthesized)

    dedupe_report = None
    if dedupe:
        items, dedupe_report = dedupe_items(items)
    else:  # exact repeats of one id would still collide as keys downstream
        unique: dict[str, EvalItem] = {}
        for item in items:
            unique.setdefault(item.item_id, item)
        items = list(unique.values())

    items.sort(key=lambda i: (i.category_id, i.item_id))
    return EvalSetResult(
        items=items,
        summary=summarize(items),
        dedupe=dedupe_report,
        synthesis=synthesis_report,
        shortfalls=_shortfalls(pack, items),
    )


def summarize(items: Iterable[EvalItem]) -> pd.DataFrame:
    counts = Counter((i.category_id, i.expected_behavior, i.source) for i in items)
    rows = [{"category_id": c, "expected_behavior": e, "source": s, "n": n} for (c, e, s), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["category_id", "expected_behavior", "source", "n"])


def _shortfalls(pack: PolicyPack, items: list[EvalItem]) -> list[Shortfall]:
    have = Counter((i.category_id, i.expected_behavior) for i in items)
    out = []
    for _, category in pack.categories():
        for behavior, want in category.min_items.items():
            if have[(category.id, behavior)] < want:
                out.append(Shortfall(category.id, behavior, have[(category.id, behavior)], want))
    return out


# ---------------------------------------------------------------------------
# Items tables


def items_to_frame(items: Iterable[EvalItem]) -> pd.DataFrame:
    """Items as a DataFrame with exactly the ITEM_SCHEMA columns."""
    return pd.DataFrame([i.to_row() for i in items], columns=ITEM_SCHEMA.names)


def write_items(items: Iterable[EvalItem], path: str | Path) -> Path:
    """Write items to Parquet with the explicit item schema (atomically)."""
    return write_parquet([i.to_row() for i in items], path, ITEM_SCHEMA)


ITEM_FILE_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json")
PARQUET, JSONL = "parquet", "jsonl"

ITEM_COLUMNS = frozenset(ITEM_SCHEMA.names)
_TEXT_COLUMNS = ITEM_COLUMNS - {"item_id", "messages"}


def items_file_kind(path: Path) -> str:
    """`parquet` or `jsonl` by the file's suffix; a missing file, a folder or another suffix is an InputError."""
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not an items file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return PARQUET
    if suffix in ITEM_FILE_SUFFIXES:
        return JSONL
    raise InputError(
        path, f"unknown items file type {suffix or '(no extension)'!r}: use .parquet, or JSON Lines (.jsonl, .ndjson, .json)"
    )


def read_items(path: str | Path) -> list[EvalItem]:
    """Eval items from Parquet (ITEM_SCHEMA, e.g. from `generate`) or JSON Lines.

    A JSONL line (.jsonl, .ndjson or .json) is an object with `id` (or `item_id`) and
    exactly one of `messages` (a list of chat messages, or that list as JSON text) or
    `prompt` (text, sent as one user message); it may carry `category`/`category_id`,
    `expected`/`expected_behavior` and any other item column. Every problem is an
    InputError naming the file and the line (JSONL) or row (Parquet): a missing file,
    bad JSON, a missing or duplicate id, unusable messages, no items at all.
    """
    path = Path(path)
    items = _read_parquet_items(path) if items_file_kind(path) == PARQUET else _read_jsonl_items(path)
    if not items:
        raise InputError(path, "no items")
    return items


def _read_parquet_items(path: Path) -> list[EvalItem]:
    frame = read_parquet(path, ITEM_SCHEMA)
    frame = frame.astype(object).where(frame.notna(), None)
    seen: dict[str, int] = {}
    return [parquet_row_item(path, number, row, seen) for number, row in enumerate(frame.to_dict("records"), start=1)]


def parquet_row_item(path: Path, number: int, row: dict[str, Any], seen: dict[str, int] | None = None, build: bool = True) -> EvalItem | None:
    """One items-table row, checked and named by its row number; `seen` (id -> row) catches duplicates."""
    item_id = row.get("item_id")
    if item_id is None or str(item_id).strip() == "":
        raise InputError(path, f"row {number}: no item_id")
    item_id = row["item_id"] = str(item_id)
    if seen is not None:
        if item_id in seen:
            raise InputError(path, f"row {number}: duplicate item_id {item_id!r} (first on row {seen[item_id]})")
        seen[item_id] = number
    messages = row.get("messages")
    try:
        if isinstance(messages, str):
            messages = json.loads(messages)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"row {number} (item {item_id}): messages are not valid JSON ({exc.msg})") from None
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InputError(path, f"row {number} (item {item_id}): messages are not a JSON list of chat messages")
    row["messages"] = messages
    return EvalItem.from_row(row) if build else None


def _read_jsonl_items(path: Path) -> list[EvalItem]:
    return list(iter_jsonl_items(path, seen={}))


def iter_jsonl_items(path: Path, seen: dict[str, int] | None = None, build: bool = True) -> Iterator[EvalItem | None]:
    """Items of a JSONL file one line at a time, each checked and named by its line; `seen`
    (id -> line) catches duplicate ids, `build=False` only checks (a first pass before any call)."""
    for line, record in iter_jsonl(path):
        item_id = record.get("id")
        if item_id is None:
            item_id = record.get("item_id")
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id).strip() == "":
            raise InputError(path, "each line needs an 'id' (or 'item_id'): non-empty text or an integer", line=line)
        item_id = str(item_id)
        if seen is not None:
            if item_id in seen:
                raise InputError(path, f"duplicate id {item_id!r} (first on line {seen[item_id]})", line=line)
            seen[item_id] = line
        messages, prompt = record.get("messages"), record.get("prompt")
        if messages is not None and prompt is not None:
            raise InputError(path, "a line needs exactly one of 'prompt' or 'messages'", line=line)
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError:
                raise InputError(path, "'messages' is text but not a JSON list", line=line) from None
        if messages is None:
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError(path, "each line needs 'messages' or a non-empty 'prompt'", line=line)
            messages = [{"role": "user", "content": prompt}]
        messages = check_messages(messages, path, line)
        row = {k: v for k, v in record.items() if k in ITEM_COLUMNS}
        row.update(
            item_id=item_id,
            messages=messages,
            category_id=record.get("category_id", record.get("category")) or "",
            expected_behavior=record.get("expected_behavior", record.get("expected")) or "",
            source=record.get("source") or "jsonl",
        )
        for column in _TEXT_COLUMNS:
            value = row.get(column)
            if value is not None and not isinstance(value, str):
                raise InputError(path, f"'{column}' must be text, not {type(value).__name__}", line=line)
        yield EvalItem.from_row(row) if build else None
