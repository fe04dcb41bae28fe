"""The one place text becomes Markdown: escaping, table cells and tables.

Category ids, prompts, model output and file names are untrusted: a model can answer
with a link, an image, raw HTML or a bare URL, and a Markdown viewer (GitHub, the
Dagster UI) would turn each into something clickable or rendered. So every string
that enters Markdown passes `escape_markdown`:

* `&`, `<` and `>` become entities, so no raw HTML tag or `<scheme:...>` autolink forms;
* Markdown syntax (backslash, backtick, `* _ [ ] ~ |`, and heading and list markers at
  the start of a line) is backslash-escaped, so no link, image, emphasis or code span forms;
* the bare forms GitHub-flavoured Markdown links by itself are defanged, visibly:
  `http://` -> `hxxp://`, `https://` -> `hxxps://`, `ftp://` -> `fxp://`,
  `www.` -> `www[.]` and the `@` of an e-mail address -> `[@]`.

Table cells are also put on one line and, in summaries, shortened; tables built by
`markdown_rows` are capped so a broken table cannot flood the page that shows it.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Collection

import pandas as pd


# A letter or digit before a scheme or `www.` stops an autolink; anything else (`_`, `(`,
# space) may not, so only that is spared.
_DEFANG = (
    (re.compile(r"(?i)(?<![a-z0-9])(h)tt(ps?)(?=:/)"), lambda m: f"{m.group(1)}xx{m.group(2)}"),
    (re.compile(r"(?i)(?<![a-z0-9])(f)t(p)(?=:/)"), lambda m: f"{m.group(1)}x{m.group(2)}"),
    (re.compile(r"(?i)(?<![a-z0-9])(www)\.(?=\S)"), lambda m: f"{m.group(1)}[.]"),
    (re.compile(r"(?<=[\w.+-])@(?=[\w-]+(?:\.[\w-]+)+)"), lambda m: "[@]"),  # e-mail: a dot in the domain
)
_SPECIAL = re.compile(r"([\\`*_\[\]~|])")
# Block syntax only counts at the start of a line: headings, list items, setext underlines
# (a quote's `>` is an entity by then).
_LINE_START = re.compile(r"^(\s*\d*)(#|[-+=](?=\s|$)|(?<=\d)[.)](?=\s|$))", re.MULTILINE)


def plain_text(value: Any) -> str:
    """A value as text; None and missing values (NaN, NA, NaT) are empty."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def escape_markdown(value: Any) -> str:
    """Text that renders literally in (GitHub-flavoured) Markdown: no HTML, link, image or autolink."""
    text = plain_text(value)
    for pattern, replacement in _DEFANG:
        text = pattern.sub(replacement, text)
    text = html.escape(text, quote=False)
    text = _SPECIAL.sub(r"\\\1", text)
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def markdown_cell(value: Any) -> str:
    """One table cell: escaped and on one line (a newline would end the table)."""
    return escape_markdown(" ".join(plain_text(value).split()))


def shorten(text: object, limit: int = 160) -> str:
    """Text on one line and at most `limit` characters (not escaped: for a table cell)."""
    value = " ".join(plain_text(text).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def escape_text(text: object, limit: int = 160) -> str:
    """Untrusted text as one escaped Markdown table cell of at most `limit` characters."""
    return markdown_cell(shorten(text, limit))


def _table_cell(value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.4g}"
    return markdown_cell(value)


def to_markdown_table(df: pd.DataFrame, markdown_columns: Collection[str] = ()) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table, every header and cell escaped
    (missing values left blank, floats to 4 significant digits).

    `markdown_columns` names columns whose cells the caller composed as Markdown from
    its own figures (e.g. `12.5% [6.1–79.2] (5/40)`); they go in as they are, on one line.
    """
    raw = [c in markdown_columns for c in df.columns]
    header = [_table_cell(c) for c in df.columns]
    body = [[" ".join(plain_text(v).split()).replace("|", "\\|") if r else _table_cell(v) for v, r in zip(row, raw)]
            for row in df.itertuples(index=False, name=None)]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def markdown_rows(frame: pd.DataFrame, limit: int = 50) -> str:
    """At most `limit` rows as an escaped Markdown table, long cells shortened, saying how
    many rows were left out."""
    if frame.empty:
        return "None."
    shown = frame.head(limit).copy()
    for column in shown.columns:
        shown[column] = [v if isinstance(v, (bool, int, float)) and v == v else shorten(v) for v in shown[column]]
    table = to_markdown_table(shown)
    return table + (f"\n\n… and {len(frame) - limit} more." if len(frame) > limit else "")
