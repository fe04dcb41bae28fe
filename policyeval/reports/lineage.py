"""The lineage footer every report ends with: which policy, items, checkpoint, graders
and code produced its numbers, so a report copied out of context can still be traced.

Most of it is read from the grades table itself (each row carries its policy version
and hash, checkpoint and grader); what the table cannot know (the checkpoint manifest
hash, the Dagster run id, when the report was made) comes from the caller.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

import policyeval

from ..records import content_hash

# Caller-supplied keys, in the order and with the names the footer shows them.
KNOWN_KEYS = {
    "eval_set_hash": "eval set hash",
    "manifest_hash": "checkpoint manifest hash",
    "run_id": "Dagster run id",
    "generated_at": "generated",
}


def distinct(frame: pd.DataFrame | None, column: str) -> list[str]:
    if frame is None or column not in frame.columns:
        return []
    return sorted({str(v) for v in frame[column].dropna() if str(v)})


def eval_set_hash(grades: pd.DataFrame) -> str:
    """Hash of the sorted item ids, as the `eval_set` asset versions its table."""
    return content_hash(sorted({str(v) for v in grades["item_id"].dropna()})) if "item_id" in grades else ""


def grader_labels(grades: pd.DataFrame) -> list[str]:
    if "grader_id" not in grades.columns:
        return []
    versions = grades["grader_version"] if "grader_version" in grades.columns else pd.Series("", index=grades.index)
    return sorted({f"{g}@{v}" if isinstance(v, str) and v else str(g)
                   for g, v in zip(grades["grader_id"], versions) if isinstance(g, str) and g})


def grades_lineage(grades: pd.DataFrame, label: str = "") -> dict[str, str]:
    """What one grades table says about where it came from."""
    prefix = f"{label} " if label else ""
    policies = sorted({f"{v} ({h[:12]})" if isinstance(h, str) and h else str(v)
                       for v, h in zip(grades.get("policy_version", pd.Series(dtype=object)).fillna(""),
                                       grades.get("policy_hash", pd.Series(dtype=object)).fillna(""))
                       if v or h})
    out = {
        f"{prefix}policy version": ", ".join(policies),
        f"{prefix}policy hash": ", ".join(distinct(grades, "policy_hash")),
        f"{prefix}checkpoint": ", ".join(distinct(grades, "checkpoint_id")),
        f"{prefix}eval set hash": f"{eval_set_hash(grades)} (of the {grades['item_id'].nunique()} graded items)"
        if "item_id" in grades.columns and len(grades) else "",
        f"{prefix}graders": ", ".join(grader_labels(grades)),
    }
    return out


def footer(parts: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> tuple[tuple[str, str], ...]:
    """Footer pairs: the report's own lineage, the caller's, then the code version."""
    items: dict[str, str] = {k: str(v) for k, v in parts.items() if v not in (None, "")}
    for key, value in (extra or {}).items():
        if value in (None, ""):
            continue
        items[KNOWN_KEYS.get(key, key.replace("_", " "))] = str(value)
    items["code version"] = f"policyeval {policyeval.__version__}"
    return tuple(items.items())
