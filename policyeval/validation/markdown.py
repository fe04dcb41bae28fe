"""A grader's validation as Markdown tables: confusion, per category, detection, and the
raw rates beside the rates corrected for grader error."""

from __future__ import annotations

import pandas as pd

from ..markdown import markdown_rows
from ..records import NON_VERDICTS
from ..stats.intervals import rate_text
from ..markdown import to_markdown_table
from .correction import DECIDING_BEHAVIOR, corrected_columns
from .grader_validation import GraderValidation


def confusion_markdown(validation: GraderValidation) -> str:
    columns = list(validation.labels) + [v for v in NON_VERDICTS if any(row[v] for row in validation.confusion.values())]
    rows = [{"human \\ grader": t, **{p: validation.confusion[t][p] for p in columns}} for t in validation.labels]
    return to_markdown_table(pd.DataFrame(rows))


def per_category_markdown(validation: GraderValidation, worst_first: bool = False, limit: int = 50) -> str:
    rows = [{"category": c.category, "n": c.n_items, "correct": c.n_correct, "accuracy": c.accuracy, "kappa": c.cohen_kappa} for c in validation.per_category]
    frame = pd.DataFrame(rows, columns=["category", "n", "correct", "accuracy", "kappa"])
    if worst_first and len(frame):
        frame = frame.sort_values(["accuracy", "kappa", "category"], na_position="first", kind="stable")
    return markdown_rows(frame, limit)


def detection_markdown(validation: GraderValidation) -> str:
    decides = {behavior: name.replace("_", "-") for name, behavior in DECIDING_BEHAVIOR.items()}
    rows = [
        {"behavior": d.behavior, "decides": decides.get(d.behavior, ""), "sensitivity": d.sensitivity.format(), "specificity": d.specificity.format()}
        for d in validation.detection.values()
    ]
    return to_markdown_table(pd.DataFrame(rows))


def raw_vs_corrected_markdown(metrics_frame: pd.DataFrame, validation: GraderValidation | None) -> str:
    """Overall, per severity and per category: each raw rate beside its corrected value."""
    shown = metrics_frame[metrics_frame["level"].isin(["overall", "severity", "category"])]
    if shown.empty:
        return "No metrics rows."
    corrected = corrected_columns(shown, validation)
    rows = []
    for index, row in shown.iterrows():
        level = row["level"]
        slice_ = "overall" if level == "overall" else row["severity" if level == "severity" else "category_id"]
        for name in DECIDING_BEHAVIOR:
            value, low, high = (corrected.at[index, f"{name}_corrected{s}"] for s in ("", "_low", "_high"))
            text = "undefined" if value is None or value != value else f"{100 * value:.1f}%" + (f" [{100 * low:.1f}–{100 * high:.1f}]" if low is not None and low == low else "")
            rows.append(
                {
                    "level": level,
                    "slice": slice_,
                    "metric": name.replace("_", "-"),
                    "raw": rate_text(row, name),
                    "corrected": text,
                    "note": corrected.at[index, f"{name}_correction_note"],
                }
            )
    return markdown_rows(pd.DataFrame(rows), limit=100)
