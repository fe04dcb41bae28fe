"""Grade a whole responses table, or loose prompt/response texts, with any grader.

A response the checkpoint never produced (status "error") is recorded as an `error`
grade without being shown to the grader: grading an error message would invent a
refusal or a compliance that never happened.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence

import pandas as pd

from ..policy.model import Category, PolicyPack
from ..records import CONTENT_FILTERED, ERROR, NON_VERDICTS, Grade, canonical_json, outcome_of
from .base import DEFAULT_VOCABULARY, Grader

log = logging.getLogger(__name__)

# progress(done, total): called from the calling thread as rows finish.
Progress = Callable[[int, int], None]

GRADE_COLUMNS = ("grader_id", "grader_version", "rubric_hash", "behavior", "outcome",
                 "confidence", "rationale", "propositions", "harmful")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _messages_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("messages")
    if isinstance(raw, list):
        return raw
    if isinstance(raw, str) and raw:
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                return value
        except json.JSONDecodeError:
            pass
    prompt = _text(row.get("prompt_text"))
    return [{"role": "user", "content": prompt}] if prompt else []


def run_graders(tasks: Sequence[Callable[[], Grade]], concurrency: int, progress: Progress | None = None,
                already_done: int = 0, total: int | None = None) -> list[Grade]:
    """Run grading tasks with at most `concurrency` at once; results keep task order."""
    total = len(tasks) + already_done if total is None else total
    results: list[Grade | None] = [None] * len(tasks)
    done = already_done
    if concurrency <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = task()
            done += 1
            if progress:
                progress(done, total)
    else:
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="grader")
        try:
            futures = {pool.submit(task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done += 1
                if progress:
                    progress(done, total)
        finally:
            # A grader bug (or Ctrl-C) stops the run instead of grading everything first.
            pool.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def _concurrency(grader: Grader, concurrency: int | None) -> int:
    return max(1, concurrency if concurrency is not None else int(getattr(grader, "concurrency", 1)))


def grade_responses(
    responses: pd.DataFrame,
    grader: Grader,
    pack: PolicyPack | None = None,
    *,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Every response column plus the grade columns of GRADE_SCHEMA, one row per response.

    The vocabulary is the pack's (or comply / refuse / safe_complete without one); each
    row is graded with its category's guidance when the pack defines that category.
    """
    vocabulary = list(pack.behaviors) if pack is not None else list(DEFAULT_VOCABULARY)
    categories: dict[str, Category] = {c.id: c for _, c in pack.categories()} if pack is not None else {}
    rows = responses.to_dict("records")

    if pack is not None:
        hashes = {h for h in (_text(r.get("policy_hash")) for r in rows) if h}
        if hashes and hashes != {pack.content_hash}:
            log.warning("responses were generated from policy hash(es) %s, graded with pack %s %s (%s)",
                        ", ".join(sorted(h[:12] for h in hashes)), pack.id, pack.version, pack.content_hash[:12])
        unknown = sorted({_text(r.get("category_id")) for r in rows} - set(categories) - {""})
        if unknown:
            log.warning("categories not in pack %s, graded without category guidance: %s", pack.id, ", ".join(unknown))

    hash_cache: dict[str, str] = {}

    def rubric_hash(category: Category | None) -> str:
        key = category.id if category is not None else ""
        if key not in hash_cache:
            hash_cache[key] = grader.rubric_hash(category)
        return hash_cache[key]

    grades: list[Grade | None] = [None] * len(rows)
    pending: list[int] = []
    for i, row in enumerate(rows):
        status = _text(row.get("status"))
        if status in (ERROR, CONTENT_FILTERED):  # no answer to grade: an error of the run, never a refusal
            reason = _text(row.get("error")) or "no response"
            grades[i] = Grade(behavior=ERROR, confidence=0.0, rationale=f"response {status}: {reason}")
        else:
            pending.append(i)
    if progress and len(pending) < len(rows):
        progress(len(rows) - len(pending), len(rows))

    def task(i: int) -> Callable[[], Grade]:
        row = rows[i]
        category = categories.get(_text(row.get("category_id")))
        return lambda: grader.grade(_messages_of(row), _text(row.get("response_text")), category, vocabulary)

    graded = run_graders([task(i) for i in pending], _concurrency(grader, concurrency), progress,
                         already_done=len(rows) - len(pending), total=len(rows))
    for i, grade in zip(pending, graded):
        grades[i] = grade

    out_rows = []
    for row, grade in zip(rows, grades):
        assert grade is not None
        category = categories.get(_text(row.get("category_id")))
        expected = _text(row.get("expected_behavior"))
        if expected:
            outcome = outcome_of(expected, grade.behavior)
        else:
            outcome = grade.behavior if grade.behavior in NON_VERDICTS else None
        out_rows.append({
            "grader_id": grader.id,
            "grader_version": grader.version,
            "rubric_hash": rubric_hash(category),
            "behavior": grade.behavior,
            "outcome": outcome,
            "confidence": None if math.isnan(grade.confidence) else float(grade.confidence),
            "rationale": grade.rationale,
            "propositions": canonical_json(grade.propositions),
            "harmful": grade.harmful,
        })
    kept = responses.drop(columns=[c for c in GRADE_COLUMNS if c in responses.columns]).reset_index(drop=True)
    added = pd.DataFrame(out_rows, columns=list(GRADE_COLUMNS))
    return pd.concat([kept, added], axis=1)


def grade_texts(
    prompts: Sequence[str | None],
    responses: Sequence[str | None],
    grader: Grader,
    vocabulary: Sequence[str] | None = None,
    categories: Sequence[Category | None] | None = None,
    *,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> list[Grade]:
    """One Grade per (prompt, response) pair, in order; a missing response is `error`.

    For texts gathered outside the pipeline (a CSV): each prompt is a single user turn.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if categories is not None and len(categories) != len(responses):
        raise ValueError(f"{len(categories)} categories but {len(responses)} responses")
    vocab = list(vocabulary) if vocabulary is not None else list(DEFAULT_VOCABULARY)
    grades: list[Grade | None] = [None] * len(responses)
    pending = []
    for i, response in enumerate(responses):
        if _missing(response) or not str(response).strip():
            grades[i] = Grade(behavior=ERROR, confidence=0.0, rationale="no response")
        else:
            pending.append(i)
    if progress and len(pending) < len(responses):
        progress(len(responses) - len(pending), len(responses))

    def task(i: int) -> Callable[[], Grade]:
        prompt = _text(prompts[i])
        messages = [{"role": "user", "content": prompt}] if prompt else []
        category = categories[i] if categories is not None else None
        return lambda: grader.grade(messages, str(responses[i]), category, vocab)

    graded = run_graders([task(i) for i in pending], _concurrency(grader, concurrency), progress,
                         already_done=len(responses) - len(pending), total=len(responses))
    for i, grade in zip(pending, graded):
        grades[i] = grade
    return grades  # type: ignore[return-value]
