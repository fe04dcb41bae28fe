"""One day of sampled deployment traffic: the conversations stamped on that day, scrubbed
as they are read, with what was left out and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..errors import InputError, PolicyevalError
from .conversations import DeploymentConversation, load_conversations
from .scrub import PiiScrubber


@dataclass(frozen=True)
class DayImport:
    conversations: list[DeploymentConversation]
    scrubbed: dict[str, int]  # personal-data kind -> replacements made
    outside_day: int  # records in the day's files stamped on another day: left out
    empty_files: list[str]


def import_day(files: list[Path], day: date) -> DayImport:
    """The day's conversations; a malformed file stops the day, naming file and line, since
    a report over part of a day would read as the whole of it."""
    scrubber = PiiScrubber()
    kept, outside, empty = [], 0, []
    for path in files:
        try:
            imported = load_conversations(path, scrubber, allow_empty=True)
        except InputError as exc:
            raise PolicyevalError(f"{exc}: fix or move the file aside; this day is not reported until then") from None
        if not imported.conversations:
            empty.append(path.name)
        for conversation in imported.conversations:
            if conversation.timestamp.date() == day:
                kept.append(conversation)
            else:
                outside += 1
    return DayImport(kept, {kind: n for kind, n in sorted(scrubber.counts.items()) if n}, outside, empty)
