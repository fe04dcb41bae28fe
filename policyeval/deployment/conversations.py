"""Sampled deployment conversations, read from JSON Lines and scrubbed as they are read.

One conversation per line:

    {"timestamp": "2026-03-02T14:05:00Z", "messages": [{"role": "user", ...}, {"role": "assistant", ...}],
     "category": "firearm_modification", "conversation_id": "c-981"}

or `prompt` + `response` strings instead of `messages`. With `messages`, the last
message is the response being measured and must be the assistant's; the ones before
it are the prompt. `category` and `conversation_id` are optional. A timestamp without
a UTC offset is taken as UTC.

Personal data is scrubbed here, before a record exists, so nothing downstream (grades,
rates, reports) can hold it. A malformed line stops the import with the file and line.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import last_user_text
from ..tables import iter_jsonl
from .scrub import PiiScrubber

NO_CATEGORY = "(none)"


@dataclass(frozen=True)
class DeploymentConversation:
    """One sampled conversation, already scrubbed of personal data."""

    line: int
    timestamp: datetime  # timezone-aware, UTC
    conversation_id: str
    category_id: str
    messages: tuple[dict[str, Any], ...]  # the prompt: every message before the response
    response_text: str

    @property
    def prompt_text(self) -> str:
        return last_user_text(list(self.messages))


@dataclass(frozen=True)
class DeploymentImport:
    """The conversations of one file and how much personal data was scrubbed from them."""

    path: str
    conversations: tuple[DeploymentConversation, ...]
    scrubbed: dict[str, int] = field(default_factory=dict)  # placeholder kind -> replacements


def load_conversations(path: str | os.PathLike, scrubber: PiiScrubber | None = None,
                       allow_empty: bool = False) -> DeploymentImport:
    """Read, check and scrub every line of a deployment JSONL file. An empty file is an error
    unless `allow_empty` (a folder of daily files, where a quiet day is normal)."""
    scrubber = scrubber if scrubber is not None else PiiScrubber()
    before = Counter(scrubber.counts)
    conversations = [_conversation(Path(path), line, record, scrubber) for line, record in iter_jsonl(path)]
    if not conversations and not allow_empty:
        raise InputError(path, "no conversations (the file is empty)")
    scrubbed = {kind: n - before.get(kind, 0) for kind, n in scrubber.counts.items() if n - before.get(kind, 0)}
    return DeploymentImport(str(path), tuple(conversations), dict(sorted(scrubbed.items())))


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 string as an aware UTC datetime; ValueError when it is not one."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an ISO 8601 string such as 2026-03-02T14:05:00Z")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _conversation(path: Path, line: int, record: dict[str, Any], scrubber: PiiScrubber) -> DeploymentConversation:
    def bad(message: str) -> InputError:
        return InputError(path, message, line=line)

    if "timestamp" not in record:
        raise bad("missing `timestamp`")
    try:
        timestamp = parse_timestamp(record["timestamp"])
    except ValueError as exc:
        raise bad(f"`timestamp` {exc}") from None

    has_messages = "messages" in record
    has_pair = "prompt" in record or "response" in record
    if has_messages and has_pair:
        raise bad("give either `messages` or `prompt` and `response`, not both")
    if has_messages:
        messages, response = _split_messages(record["messages"], bad)
    elif has_pair:
        prompt, response = record.get("prompt"), record.get("response")
        if not isinstance(prompt, str):
            raise bad("`prompt` must be a string")
        if not isinstance(response, str):
            raise bad("`response` must be a string")
        messages = [{"role": "user", "content": prompt}]
    else:
        raise bad("needs `messages`, or `prompt` and `response`")

    category = record.get("category")
    if category is not None and not isinstance(category, str):
        raise bad("`category` must be a string")
    conversation_id = record.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, (str, int)):
        raise bad("`conversation_id` must be a string or an integer")

    return DeploymentConversation(
        line=line,
        timestamp=timestamp,
        conversation_id=scrubber.scrub(str(conversation_id)) if conversation_id is not None else f"line-{line}",
        category_id=category.strip() if category and category.strip() else NO_CATEGORY,
        messages=tuple(_scrub_message(m, scrubber) for m in messages),
        response_text=scrubber.scrub(response),
    )


def _split_messages(messages: Any, bad) -> tuple[list[dict[str, Any]], str]:
    if not isinstance(messages, list) or not messages:
        raise bad("`messages` must be a non-empty list of {role, content} objects")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad(f"`messages[{index}]` must be an object with a `role`")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad(f"`messages[{index}].content` must be text or a list of parts")
    last = messages[-1]
    if last["role"].strip().lower() != "assistant":
        raise bad("the last message must be the assistant's response")
    content = last.get("content")
    if isinstance(content, list):
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if len(messages) < 2:
        raise bad("`messages` needs the prompt before the assistant's response")
    return list(messages[:-1]), content or ""


def _scrub_message(message: dict[str, Any], scrubber: PiiScrubber) -> dict[str, Any]:
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = scrubber.scrub(content)
    elif isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": scrubber.scrub(part["text"])}
            parts.append(part)
        out["content"] = parts
    return out
