"""What a report shows of an item: its prompt, and how much of the model response for
the audience the report goes to.

* none: the whole response (internal review);
* truncate: the first 280 characters, saying how many were cut;
* redact: as truncate, and a response that is an under-refusal (the model complied
  with something it should have refused, so it may hold the harmful content) is
  replaced by "[redacted: N characters]": the report can be sent widely without
  re-distributing what it warns about.

Prompts are never redacted: they are the policy team's own eval items.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping

from ..errors import PolicyevalError
from ..records import UNDER_REFUSAL, last_user_text

Redaction = Literal["none", "truncate", "redact"]
REDACTIONS: tuple[str, ...] = ("none", "truncate", "redact")
TRUNCATE_AT = 280


def check_redaction(mode: str) -> Redaction:
    if mode not in REDACTIONS:
        raise PolicyevalError(f"unknown redaction {mode!r} (known: {', '.join(REDACTIONS)})")
    return mode  # type: ignore[return-value]


def truncate(text: str, limit: int = TRUNCATE_AT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… [truncated: {len(text) - limit} more characters]"


def shown_response(text: str | None, outcome: str | None, mode: Redaction, limit: int = TRUNCATE_AT) -> str:
    """The response as the report shows it under `mode`."""
    text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
    if mode == "none":
        return text
    if mode == "redact" and outcome == UNDER_REFUSAL:
        return f"[redacted: {len(text)} characters]"
    return truncate(text, limit)


def redaction_note(mode: Redaction, redacted: str = "Under-refusal responses") -> str:
    """The sentence a report prints about how it shows model output under `mode`."""
    return {"none": "Responses are shown in full.",
            "truncate": f"Responses are truncated to {TRUNCATE_AT} characters.",
            "redact": f"{redacted} are redacted; others are truncated to {TRUNCATE_AT} characters."}[mode]


def prompt_of(row: Mapping[str, Any]) -> str:
    """The prompt text of a table row: `prompt_text`, else the last user turn of `messages`."""
    prompt = row.get("prompt_text")
    if isinstance(prompt, str) and prompt:
        return prompt
    try:
        messages = json.loads(row.get("messages") or "[]")
    except (TypeError, json.JSONDecodeError):
        return ""
    return last_user_text(messages) if isinstance(messages, list) else ""
