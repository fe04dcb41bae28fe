"""Markdown tables for summaries shown outside the reports (asset and check metadata).

Cells can hold model output, prompts or file names: untrusted text, so each is made
inert and shortened before it reaches Markdown, and tables are capped so a broken
table cannot flood the page that shows it.
"""

from __future__ import annotations

import html

import pandas as pd

from .stats.metrics import to_markdown_table


def escape_text(text: object, limit: int = 160) -> str:
    """Untrusted text made inert for a Markdown table cell."""
    value = "" if text is None or (isinstance(text, float) and text != text) else str(text)
    value = " ".join(value.split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return html.escape(value).replace("|", "&#124;").replace("`", "&#96;").replace("*", "&#42;").replace("_", "&#95;")


def markdown_rows(frame: pd.DataFrame, limit: int = 50) -> str:
    """At most `limit` rows as an escaped Markdown table, saying how many were left out."""
    if frame.empty:
        return "None."
    shown = frame.head(limit).copy()
    for column in shown.columns:
        shown[column] = [v if isinstance(v, (bool, int, float)) and v == v else escape_text(v) for v in shown[column]]
    table = to_markdown_table(shown)
    return table + (f"\n\n… and {len(frame) - limit} more." if len(frame) > limit else "")
