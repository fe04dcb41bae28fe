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
from typing import Any, Iterable

import pandas as pd

from ..errors import InputError, PolicyevalError
from ..policy.model import PolicyPack
from ..records import ITEM_SCHEMA, EvalItem
from ..tables import read_parquet, write_parquet
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


def read_items(path: str | Path) -> list[EvalItem]:
    """Items from Parquet (ITEM_SCHEMA) or JSON Lines.

    A JSONL line needs `id` (or `item_id`) and `messages` or `prompt`; it may carry
    `category`/`category_id`, `expected`/`expected_behavior` and any other item column.
    """
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl_items(path)
    frame = read_parquet(path, ITEM_SCHEMA)
    frame = frame.astype(object).where(frame.notna(), None)
    items = []
    for number, row in enumerate(frame.to_dict("records")):
        try:
            items.append(EvalItem.from_row(row))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(path, f"row {number}: messages are not a JSON list of chat messages ({exc})") from None
    return items


_ITEM_COLUMNS = set(ITEM_SCHEMA.names)


def _read_jsonl_items(path: Path) -> list[EvalItem]:
    if not path.exists():
        raise InputError(path, "no such file")
    items = []
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON ({exc.msg})", line=line) from None
            if not isinstance(record, dict):
                raise InputError(path, "each line must be a JSON object", line=line)
            item_id = record.get("id", record.get("item_id"))
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id).strip() == "":
                raise InputError(path, "each line needs an 'id'", line=line)
            messages = record.get("messages")
            if isinstance(messages, str):
                try:
                    messages = json.loads(messages)
                except json.JSONDecodeError:
                    raise InputError(path, "'messages' is text but not a JSON list", line=line) from None
            if messages is not None and record.get("prompt") is not None:
                raise InputError(path, "a line needs exactly one of 'prompt' or 'messages'", line=line)
            if messages is None:
                prompt = record.get("prompt")
                if not isinstance(prompt, str) or not prompt.strip():
                    raise InputError(path, "each line needs 'messages' or a non-empty 'prompt'", line=line)
                messages = [{"role": "user", "content": prompt}]
            messages = check_messages(messages, path, line)
            row = {k: v for k, v in record.items() if k in _ITEM_COLUMNS}
            row.update(
                item_id=str(item_id),
                messages=messages,
                category_id=record.get("category_id", record.get("category")) or "",
                expected_behavior=record.get("expected_behavior", record.get("expected")) or "",
                source=record.get("source") or "jsonl",
            )
            items.append(EvalItem.from_row(row))
    return items

