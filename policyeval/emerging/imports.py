"""The two imports the emerging-risk analysis reads, as one kind of record.

Red-team findings (`generate.redteam.read_findings`) and sampled deployment
conversations (`deployment.conversations.load_conversations`) are read by their own
importers, so a malformed line fails with the same file:line message everywhere. Both
become a `RiskRecord`, scrubbed of personal data before it exists: deployment
conversations by their importer, findings (prompt and note) here, with the same
scrubber. Nothing downstream (clusters, examples, drafts) can then hold an e-mail
address or a phone number.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..deployment.conversations import NO_CATEGORY, load_conversations
from ..deployment.scrub import PLACEHOLDERS, PiiScrubber
from ..errors import InputError
from ..generate.redteam import read_findings
from ..records import message_text

REDTEAM, DEPLOYMENT = "redteam", "deployment"
SOURCES = (REDTEAM, DEPLOYMENT)
RECORD_COLUMNS = ["source", "record_id", "file", "line", "timestamp", "category_id", "prompt_text", "response_text",
                  "severity", "note"]


@dataclass(frozen=True)
class RiskRecord:
    """One finding or conversation: what was asked, what the model said (deployment only), where it came from."""

    source: str  # redteam | deployment
    record_id: str
    file: str  # file name, for people; the folder is in the asset's metadata
    line: int
    timestamp: datetime | None  # aware UTC; a finding without `found_at` has none
    category_id: str  # NO_CATEGORY when the record names none
    prompt_text: str  # every user turn, scrubbed
    response_text: str = ""  # deployment only, scrubbed
    severity: str = ""
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Imported:
    """The records of one folder and how much personal data was scrubbed from them."""

    records: tuple[RiskRecord, ...]
    files: tuple[str, ...]
    scrubbed: dict[str, int]


def jsonl_files(folder: str | Path) -> list[Path]:
    """`*.jsonl` directly under `folder`, sorted by name; none when the folder does not exist."""
    folder = Path(folder)
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected a folder of .jsonl files)")
    return sorted(p for p in folder.glob("*.jsonl") if p.is_file())


def user_text(messages: Iterable[dict]) -> str:
    """Every user turn of a chat, in order: a multi-turn attack is in all of them."""
    return "\n".join(message_text(m) for m in messages if m.get("role") == "user").strip()


def read_redteam(folder: str | Path, scrubber: PiiScrubber | None = None) -> Imported:
    """Every finding of every `*.jsonl` file in `folder`, scrubbed."""
    scrubber = scrubber if scrubber is not None else PiiScrubber()
    records, files = [], jsonl_files(folder)
    for path in files:
        for finding in read_findings(path):
            records.append(RiskRecord(
                source=REDTEAM,
                record_id=scrubber.scrub(finding.finding_id) if finding.finding_id else f"{path.name}:{finding.line}",
                file=path.name,
                line=finding.line,
                timestamp=finding.found_at,
                category_id=finding.category_id or NO_CATEGORY,
                prompt_text=scrubber.scrub(user_text(finding.messages)),
                severity=finding.severity or "",
                note=scrubber.scrub(finding.note or ""),
            ))
    return Imported(tuple(records), tuple(p.name for p in files), _counts(scrubber))


def read_deployment(folder: str | Path, scrubber: PiiScrubber | None = None) -> Imported:
    """Every conversation of every `*.jsonl` file in `folder` (the deployment-log layout), scrubbed on read."""
    scrubber = scrubber if scrubber is not None else PiiScrubber()
    records, files = [], jsonl_files(folder)
    for path in files:
        for conversation in load_conversations(path, scrubber, allow_empty=True).conversations:  # a quiet day is normal
            records.append(RiskRecord(
                source=DEPLOYMENT,
                record_id=conversation.conversation_id,
                file=path.name,
                line=conversation.line,
                timestamp=conversation.timestamp,
                category_id=conversation.category_id,
                prompt_text=user_text(conversation.messages),
                response_text=conversation.response_text,
            ))
    return Imported(tuple(records), tuple(p.name for p in files), _counts(scrubber))


def _counts(scrubber: PiiScrubber) -> dict[str, int]:
    return {kind: n for kind, n in sorted(scrubber.counts.items()) if n}


def records_to_frame(records: Iterable[RiskRecord]) -> pd.DataFrame:
    """Records as a table (the import assets' output); timestamps as UTC, missing as NaT."""
    rows = [{column: getattr(r, column) for column in RECORD_COLUMNS} for r in records]
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["line"] = frame["line"].astype("int64")
    return frame


def records_from_frame(frame: pd.DataFrame) -> list[RiskRecord]:
    """The inverse of `records_to_frame`."""
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"not a table of risk records: no column {missing[0]!r}")
    records = []
    for row in frame[RECORD_COLUMNS].itertuples(index=False):
        stamp = None if pd.isna(row.timestamp) else pd.Timestamp(row.timestamp).to_pydatetime()
        records.append(RiskRecord(
            source=str(row.source), record_id=str(row.record_id), file=str(row.file), line=int(row.line), timestamp=stamp,
            category_id=str(row.category_id), prompt_text=str(row.prompt_text), response_text=_text(row.response_text),
            severity=_text(row.severity), note=_text(row.note),
        ))
    return records


_PLACEHOLDER = re.compile(r"\[([A-Z]+(?:\+[A-Z]+)*)\]")


def placeholder_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Scrubbing placeholders (`[EMAIL]`, `[PHONE]`, ...) in a records table: what was scrubbed
    from it, as an import reports it, recomputed from the table alone."""
    kinds = set(PLACEHOLDERS.values())
    counts: Counter = Counter()
    for column in ("record_id", "prompt_text", "response_text", "note"):
        for text in frame[column].dropna().astype(str) if column in frame.columns else ():
            for match in _PLACEHOLDER.findall(text):
                counts.update(k for k in match.split("+") if k in kinds)
    return dict(sorted(counts.items()))


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


__all__ = ["DEPLOYMENT", "REDTEAM", "SOURCES", "Imported", "RiskRecord", "jsonl_files", "placeholder_counts", "read_deployment", "read_redteam",
           "records_from_frame", "records_to_frame", "user_text"]
