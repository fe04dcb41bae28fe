"""What a reviewer reads about each cluster: its size and sources, its most telling terms,
when it was seen (per ISO week and per day), the categories it sits nearest to, and two or
three representative examples, redacted.

Examples are the candidates nearest the cluster's centroid (distinct texts only). They are
already scrubbed of personal data by the importers; here they are truncated
(`reports.redaction.truncate`), and a deployment response is never shown, only its
length: a response graded harmful may hold what the report warns about.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..policy.model import SEVERITIES
from ..reports.redaction import TRUNCATE_AT, truncate
from .clustering import UNCLUSTERED
from .imports import DEPLOYMENT, REDTEAM
from .text import fit

EXAMPLE_CHARS = TRUNCATE_AT  # the reports' limit
N_TERMS = 8
N_EXAMPLES = 3
NEAR_COPY = 0.6  # cosine similarity above which two examples are one request reworded


@dataclass(frozen=True)
class Example:
    source: str
    record_id: str
    where: str  # file:line
    when: str  # ISO date, or "" when the finding is undated
    text: str  # scrubbed and truncated
    response_chars: int  # length of the deployment response (never shown); 0 for findings


@dataclass(frozen=True)
class ClusterSummary:
    cluster: int
    size: int
    redteam: int
    deployment: int
    terms: tuple[str, ...]  # words and word pairs, heaviest first
    words: tuple[str, ...]  # single words, heaviest first: what a draft is named after
    first_seen: str
    last_seen: str
    undated: int
    per_week: tuple[tuple[str, int], ...]  # (ISO week "2026-W47", records), in order
    per_day: tuple[tuple[str, int], ...]  # (ISO date, records), in order
    reasons: tuple[tuple[str, int], ...]  # why its members are candidates
    labels: tuple[str, ...]  # category ids the records named that the pack does not define
    nearest_category: str  # the category most members are nearest to
    nearest_similarity: float  # the highest similarity of a member to it
    severity: str  # the highest severity red-teamers gave; "" when none did
    examples: tuple[Example, ...]


def iso_week(stamp: pd.Timestamp) -> str:
    year, week, _ = stamp.isocalendar()
    return f"{year}-W{week:02d}"


def top_terms(matrix, members: np.ndarray, names: Sequence[str], n: int = N_TERMS) -> tuple[str, ...]:
    """The heaviest terms of the members' mean vector; a word already inside a kept phrase is skipped."""
    weights = np.asarray(matrix[members].mean(axis=0)).ravel()
    order = sorted(range(len(names)), key=lambda i: (-weights[i], names[i]))
    kept: list[str] = []
    for i in order:
        if weights[i] <= 0 or len(kept) >= n:
            break
        term = names[i]
        if not term:
            continue
        if any(term in k.split() for k in kept if " " in k) or any(term == k for k in kept):
            continue
        if " " in term:
            kept = [k for k in kept if k not in term.split()]
        kept.append(term)
    return tuple(kept[:n])


def summarize(candidates: pd.DataFrame) -> list[ClusterSummary]:
    """One summary per cluster (UNCLUSTERED members left out), ordered by cluster number.

    `candidates` holds the candidate rows of `analysis.screened_frame`: the record columns
    with `cluster`, `reason` and `nearest_category`/`similarity`.
    """
    frame = candidates.reset_index(drop=True)
    if not len(frame):
        return []
    vectorizer, matrix = fit(frame["prompt_text"].astype(str).tolist())
    names = vectorizer.get_feature_names_out().tolist()
    summaries = []
    for cluster in sorted(c for c in set(frame["cluster"].astype(int)) if c != UNCLUSTERED):
        members = np.flatnonzero(frame["cluster"].astype(int).to_numpy() == cluster)
        rows = frame.iloc[members]
        stamps = pd.to_datetime(rows["timestamp"], utc=True)
        dated = stamps.dropna().sort_values()
        weeks = Counter(iso_week(s) for s in dated)
        days = Counter(s.date().isoformat() for s in dated)
        nearest = Counter(rows["nearest_category"].astype(str))
        top_category = min(nearest, key=lambda c: (-nearest[c], c)) if nearest else ""
        severities = [s for s in rows.loc[rows["source"] == REDTEAM, "severity"].astype(str) if s in SEVERITIES]
        labels = sorted({str(c) for c, reason in zip(rows["category_id"], rows["reason"]) if reason == "unknown_label"}
                        | {str(c) for c, s in zip(rows["category_id"], rows["source"]) if s == REDTEAM and str(c) != "(none)"})
        summaries.append(ClusterSummary(
            cluster=cluster,
            size=len(rows),
            redteam=int((rows["source"] == REDTEAM).sum()),
            deployment=int((rows["source"] == DEPLOYMENT).sum()),
            terms=top_terms(matrix, members, names),
            words=top_terms(matrix, members, [n if " " not in n else "" for n in names], 5),
            first_seen=dated.iloc[0].date().isoformat() if len(dated) else "",
            last_seen=dated.iloc[-1].date().isoformat() if len(dated) else "",
            undated=int(stamps.isna().sum()),
            per_week=tuple(sorted(weeks.items())),
            per_day=tuple(sorted(days.items())),
            reasons=tuple(sorted(Counter(rows["reason"].astype(str)).items())),
            labels=tuple(labels),
            nearest_category=top_category,
            nearest_similarity=float(rows.loc[rows["nearest_category"] == top_category, "similarity"].max()) if top_category else 0.0,
            severity=min(severities, key=SEVERITIES.index) if severities else "",
            examples=representatives(frame, matrix, members),
        ))
    return summaries


def representatives(frame: pd.DataFrame, matrix, members: np.ndarray, n: int = N_EXAMPLES) -> tuple[Example, ...]:
    """The members nearest the centroid, nearest first (ties: file order), one per distinct text,
    and paraphrases of an example already chosen (similarity `NEAR_COPY` or more) only when
    nothing else is left: a finding and the same request in traffic say one thing, not two."""
    centroid = np.asarray(matrix[members].mean(axis=0)).ravel()
    scores = np.asarray(matrix[members] @ centroid).ravel()
    order = sorted(range(len(members)), key=lambda j: (-round(float(scores[j]), 9), int(members[j])))
    distinct, seen = [], set()
    for j in order:
        key = str(frame.iloc[int(members[j])]["prompt_text"]).strip().lower()
        if key not in seen:
            seen.add(key)
            distinct.append(j)
    chosen: list[int] = []
    for j in distinct:
        if len(chosen) < n and all(float((matrix[members[j]] @ matrix[members[c]].T).toarray()[0, 0]) < NEAR_COPY for c in chosen):
            chosen.append(j)
    chosen += [j for j in distinct if j not in chosen][: n - len(chosen)]
    out = []
    for j in sorted(chosen, key=order.index):
        row = frame.iloc[int(members[j])]
        stamp = row["timestamp"]
        out.append(Example(
            source=str(row["source"]),
            record_id=str(row["record_id"]),
            where=f"{row['file']}:{int(row['line'])}",
            when="" if pd.isna(stamp) else pd.Timestamp(stamp).date().isoformat(),
            text=truncate(str(row["prompt_text"]), EXAMPLE_CHARS),
            response_chars=len(str(row["response_text"] or "")) if row["source"] == DEPLOYMENT else 0,
        ))
    return tuple(out)
