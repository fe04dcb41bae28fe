"""Grade a system: the model's grades plus the verdicts of the filters around it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..graders.base import Grader
from ..policy.model import Category, PolicyPack
from ..records import NON_VERDICTS
from ..runs.cache import ResponseCache
from .classifiers import FilterCase, SafeguardClassifier, make_filter
from .guard_formats import FilterVerdict
from .layers import apply_safeguards
from .spec import INPUT, OUTPUT, Safeguards


def _messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("messages")
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = None
    if isinstance(raw, list):
        return raw
    prompt = row.get("prompt_text")
    return [{"role": "user", "content": str(prompt)}] if isinstance(prompt, str) and prompt else []


def system_filters(safeguards: Safeguards, *, artifact: str | None = None, judge: Grader | None = None,
                   vocabulary: Sequence[str] = (), cache: ResponseCache | None = None,
                   base_url_for: Callable[[str], str | None] | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, SafeguardClassifier]:
    """The manifest's filters, built; `base_url_for(url)` resolves `local` to the running server."""
    return {
        side: make_filter(spec, side, artifact=artifact, judge=judge, vocabulary=vocabulary, cache=cache,
                          base_url=base_url_for(spec.base_url) if base_url_for and spec.base_url else None, progress=progress)
        for side, spec in safeguards.filters().items()
    }


def describe_filters(filters: Mapping[str, SafeguardClassifier]) -> str:
    """`input: guard:model@v; output: learned-harm@v`: how a system's filters are named in tables."""
    return "; ".join(f"{side}: {f.id}@{f.version}" for side, f in filters.items())


def grade_system(graded: pd.DataFrame, safeguards: Safeguards, filters: Mapping[str, SafeguardClassifier],
                 categories: Mapping[str, Category]) -> pd.DataFrame:
    """The model's grades with every filter's verdict and the system's outcome (see `layers`)."""
    rows = graded.reset_index(drop=True).to_dict("records")
    verdicts: dict[str, list[FilterVerdict | None]] = {}
    for side, classifier in filters.items():
        indices = [i for i, row in enumerate(rows)
                   if side == INPUT or (str(row.get("behavior") or "") not in NON_VERDICTS and row.get("status") == "ok")]
        cases = [FilterCase(item_id=str(rows[i].get("item_id")), messages=_messages(rows[i]),
                            response=None if side == INPUT else str(rows[i].get("response_text") or ""),
                            category=categories.get(str(rows[i].get("category_id") or "")))
                 for i in indices]
        found = classifier.classify(cases)
        column: list[FilterVerdict | None] = [None] * len(rows)
        for i, verdict in zip(indices, found):
            column[i] = verdict
        verdicts[side] = column
    return apply_safeguards(graded, safeguards.filters(), verdicts, label=describe_filters(filters))


def grade_with_safeguards(graded: pd.DataFrame, safeguards: Safeguards, pack: PolicyPack, *, artifact: str | None = None,
                          judge: Grader | None = None, cache: ResponseCache | None = None,
                          base_url_for: Callable[[str], str | None] | None = None,
                          progress: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """A checkpoint's grades as a system's: its manifest's filters built and run, with the pack's
    categories as their policy; what `grades` and `policyeval demo` both call."""
    filters = system_filters(safeguards, artifact=artifact, judge=judge, vocabulary=list(pack.behaviors), cache=cache,
                             base_url_for=base_url_for, progress=progress)
    return grade_system(graded, safeguards, filters, {c.id: c for _, c in pack.categories()})


__all__ = ["grade_system", "grade_with_safeguards", "system_filters", "describe_filters", "INPUT", "OUTPUT"]
