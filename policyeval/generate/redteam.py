"""Import red-team findings (JSON Lines) as eval items of a pack.

A finding is a prompt that got a model to misbehave; kept as an eval item, it becomes
a regression test for every later checkpoint. One JSON object per line:

    {"prompt": "...", "category": "firearm_modification"}
    {"messages": [...], "category": "...", "expected": "refuse", "id": "RT-12", "note": "...", "severity": "high",
     "found_at": "2026-11-17"}

`expected` defaults to the category's disallowed-side behavior, since findings are
usually successful attacks. The item id is derived from content like every other item;
the finding's own id is kept in the note. `found_at` (an ISO 8601 date or date-time)
says when the finding was made; the emerging-risk report counts findings over time by it.

`read_findings` checks the format alone, with no pack: a finding no category covers
(no `category`, or one the pack does not define) is what `policyeval.emerging` looks
for. `import_redteam` turns findings into eval items and requires a known category.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..policy.model import SEVERITIES, PolicyPack
from ..records import EvalItem
from ..tables import iter_jsonl
from .seeds import make_item

FIELDS = {"prompt", "messages", "category", "expected", "id", "note", "severity", "found_at"}
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


@dataclass(frozen=True)
class Finding:
    """One line of a findings file, checked for shape but not against a pack."""

    path: str
    line: int
    messages: tuple[dict[str, Any], ...]
    category_id: str | None
    expected: str | None
    finding_id: str | None
    note: str | None
    severity: str | None
    found_at: datetime | None  # timezone-aware, UTC


def _found_at(value: Any, path: Path, line: int) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        text = value.strip()
        moment = datetime.fromisoformat(text) if "T" in text or " " in text else datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise InputError(path, f"'found_at' must be an ISO 8601 date or date-time such as 2026-11-17, got {value!r}", line=line) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def read_findings(path: str | Path) -> list[Finding]:
    """Every finding of a file, in file order; a malformed line stops with its file and line."""
    path = Path(path)
    findings = []
    for line, record in iter_jsonl(path):
        unknown = sorted(set(record) - FIELDS)
        if unknown:
            raise InputError(path, f"unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})", line=line)
        messages = chat_of(record, path, line)
        category = record.get("category")
        if category is not None and (not isinstance(category, str) or not category.strip()):
            raise InputError(path, "'category' must be a non-empty category id", line=line)
        severity = record.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise InputError(path, f"unknown severity {severity!r} (use {', '.join(SEVERITIES)})", line=line)
        expected = record.get("expected")
        if expected is not None and not isinstance(expected, str):
            raise InputError(path, "'expected' must be a behavior name", line=line)
        findings.append(Finding(
            path=str(path), line=line, messages=tuple(messages),
            category_id=category.strip() if category is not None else None,
            expected=expected or None,
            finding_id=str(record["id"]) if record.get("id") is not None else None,
            note=str(record["note"]) if record.get("note") else None,
            severity=severity,
            found_at=_found_at(record.get("found_at"), path, line),
        ))
    return findings


def import_redteam(path: str | Path, pack: PolicyPack) -> list[EvalItem]:
    """Items from a red-team findings file, in file order."""
    path = Path(path)
    vocabulary = set(pack.behaviors)
    category_ids = [c.id for _, c in pack.categories()]
    items = []
    for finding in read_findings(path):
        line = finding.line
        category_id = finding.category_id
        if category_id not in category_ids:
            raise InputError(path, f"unknown category {category_id!r} for pack {pack.id!r} (known: {', '.join(category_ids)})", line=line)
        category = pack.category(category_id)
        expected = finding.expected or category.expected.disallowed
        if expected not in vocabulary:
            raise InputError(path, f"behavior {expected!r} is not in the pack's vocabulary ({', '.join(sorted(vocabulary))})", line=line)
        note_parts = [f"redteam id={finding.finding_id}" if finding.finding_id is not None else "redteam"]
        if finding.note:
            note_parts.append(finding.note)
        items.append(
            make_item(
                pack, category, list(finding.messages), expected, source="redteam", generator="redteam",
                note=": ".join(note_parts), severity=finding.severity,
            )
        )
    return items
