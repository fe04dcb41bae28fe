"""Import red-team findings (JSON Lines) as eval items of a pack.

A finding is a prompt that got a model to misbehave; kept as an eval item, it becomes
a regression test for every later checkpoint. One JSON object per line:

    {"prompt": "...", "category": "firearm_modification"}
    {"messages": [...], "category": "...", "expected": "refuse", "id": "RT-12", "note": "...", "severity": "high"}

`expected` defaults to the category's disallowed-side behavior, since findings are
usually successful attacks. The item id is derived from content like every other item;
the finding's own id is kept in the note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..policy.model import SEVERITIES, PolicyPack
from ..records import EvalItem
from ..tables import iter_jsonl
from .seeds import make_item

FIELDS = {"prompt", "messages", "category", "expected", "id", "note", "severity"}
ROLES = {"system", "user", "assistant", "tool", "developer"}


def check_messages(value: Any, path: Path, line: int) -> list[dict[str, Any]]:
    """A chat as a list of {role, content} objects with at least one user turn."""
    if not isinstance(value, list) or not value:
        raise InputError(path, "'messages' must be a non-empty list of chat messages", line=line)
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(path, f"messages[{index}] needs a role ({', '.join(sorted(ROLES))})", line=line)
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InputError(path, f"messages[{index}].content must be text or a list of parts", line=line)
    if not any(m["role"] == "user" for m in value):
        raise InputError(path, "the chat has no user message", line=line)
    return value


def chat_of(record: dict[str, Any], path: Path, line: int) -> list[dict[str, Any]]:
    """The chat of a line that has exactly one of `prompt` (text) or `messages`."""
    has_prompt, has_messages = record.get("prompt") is not None, record.get("messages") is not None
    if has_prompt == has_messages:
        raise InputError(path, "each line needs exactly one of 'prompt' or 'messages'", line=line)
    if has_prompt:
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise InputError(path, "'prompt' must be non-empty text", line=line)
        return [{"role": "user", "content": record["prompt"]}]
    return check_messages(record["messages"], path, line)


def import_redteam(path: str | Path, pack: PolicyPack) -> list[EvalItem]:
    """Items from a red-team findings file, in file order."""
    path = Path(path)
    vocabulary = set(pack.behaviors)
    category_ids = [c.id for _, c in pack.categories()]
    items = []
    for line, record in iter_jsonl(path):
        unknown = sorted(set(record) - FIELDS)
        if unknown:
            raise InputError(path, f"unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})", line=line)
        messages = chat_of(record, path, line)
        category_id = record.get("category")
        if category_id not in category_ids:
            raise InputError(path, f"unknown category {category_id!r} for pack {pack.id!r} (known: {', '.join(category_ids)})", line=line)
        category = pack.category(category_id)
        expected = record.get("expected") or category.expected.disallowed
        if expected not in vocabulary:
            raise InputError(path, f"behavior {expected!r} is not in the pack's vocabulary ({', '.join(sorted(vocabulary))})", line=line)
        severity = record.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise InputError(path, f"unknown severity {severity!r} (use {', '.join(SEVERITIES)})", line=line)
        note_parts = [f"redteam id={record['id']}" if record.get("id") is not None else "redteam"]
        if record.get("note"):
            note_parts.append(str(record["note"]))
        items.append(
            make_item(
                pack, category, messages, expected, source="redteam", generator="redteam",
                note=": ".join(note_parts), severity=severity,
            )
        )
    return items
