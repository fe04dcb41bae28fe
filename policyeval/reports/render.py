"""The one place reports become text: a small document model rendered to HTML or Markdown.

Report modules build a `Document` of typed blocks from numbers and strings; only this
module turns it into markup, so every string (prompts, model responses, category ids
from a deployment log) passes through the same escaping. Model output is untrusted:

* HTML: every string is `html.escape`d, and the page carries a Content-Security-Policy
  that allows only this page's own scripts (by hash), so even a missed escape could not
  run an injected `<script>` or `onerror=` handler.
* Markdown: `policyeval.markdown.escape_markdown`, the escaper of every Markdown the
  project writes: no raw HTML, link, image or autolink forms (bare URLs are defanged),
  and pipes cannot split a table cell.

Pages are self-contained: inline CSS, inline chart libraries (see `charts.py`), no
network request of any kind, readable on a laptop (max-width column, tables scroll).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from .. import markdown
from ..stats.intervals import rate_text

Tone = Literal["", "good", "bad", "warn", "muted"]


# ---------------------------------------------------------------------------
# Escaping


def text_of(value: Any) -> str:
    """Any cell value as display text: None/NaN blank, floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    return str(value)


def escape_html(value: Any) -> str:
    """Text safe anywhere in HTML element content or a quoted attribute."""
    return html.escape(text_of(value), quote=True)


def escape_markdown(value: Any) -> str:
    """Text that renders literally in Markdown (see `policyeval.markdown.escape_markdown`)."""
    return markdown.escape_markdown(text_of(value))


def markdown_cell(value: Any) -> str:
    """One table cell: escaped, on one line, pipes made inert."""
    return markdown.markdown_cell(text_of(value))


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `</script>`, `<!--` or `]]>` can form."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# ---------------------------------------------------------------------------
# The document model


@dataclass(frozen=True)
class Styled:
    """A table cell or value with a tone (pass/fail colouring)."""

    text: str
    tone: Tone = ""


Cell = Union[str, int, float, None, Styled]


@dataclass(frozen=True)
class Paragraph:
    text: str
    tone: Tone = ""


@dataclass(frozen=True)
class Stat:
    """A headline number: label, value, and the detail behind it."""

    label: str
    value: str
    detail: str = ""
    tone: Tone = ""


@dataclass(frozen=True)
class Stats:
    items: tuple[Stat, ...]


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    note: str = ""  # shown under the table, e.g. "... and 40 more"
    numeric: tuple[str, ...] = ()  # columns aligned right


@dataclass(frozen=True)
class Excerpt:
    """An item shown in full: facts about it, then passages of untrusted text."""

    title: str
    facts: tuple[tuple[str, str], ...] = ()
    passages: tuple[tuple[str, str], ...] = ()  # (label, text)
    tone: Tone = ""


@dataclass(frozen=True)
class Chart:
    """A Vega-Lite chart; `description` is its text alternative."""

    spec: dict[str, Any]
    title: str
    description: str = ""


Block = Union[Paragraph, Stats, Table, Excerpt, Chart]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...] = ()
    anchor: str = ""

    @property
    def id(self) -> str:
        return self.anchor or re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


@dataclass(frozen=True)
class Document:
    """A whole report: title, sections, and the lineage footer."""

    title: str
    subtitle: str = ""
    sections: tuple[Section, ...] = ()
    footer: tuple[tuple[str, str], ...] = ()
    kind: str = "report"  # safety | comparison | policy-diff | coverage | drift

    @property
    def charts(self) -> list[Chart]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Chart)]

    def to_html(self) -> str:
        return render_html(self)

    def to_markdown(self) -> str:
        return render_markdown(self)


def table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], *, caption: str = "", limit: int | None = None,
          numeric: Sequence[str] = ()) -> Table:
    """A Table, keeping at most `limit` rows and saying how many were left out."""
    rows = [tuple(r) for r in rows]
    note = ""
    if limit is not None and len(rows) > limit:
        note = f"Showing {limit} of {len(rows)} rows."
        rows = rows[:limit]
    return Table(tuple(columns), tuple(rows), caption, note, tuple(numeric))


def section(title: str, *blocks: Block | None, anchor: str = "") -> Section:
    return Section(title, tuple(b for b in blocks if b is not None), anchor)


# ---------------------------------------------------------------------------
# HTML

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#ffffff; --soft:#f5f7fa;
        --good:#1a7f37; --good-bg:#e6f4ea; --bad:#b42318; --bad-bg:#fdecea; --warn:#9a6700; --warn-bg:#fff4d6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 0 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav.toc { font-size: .9rem; color: var(--muted); margin-bottom: 8px; }
nav.toc a { color: inherit; margin-right: 14px; white-space: nowrap; }
p { margin: 8px 0; max-width: 80ch; }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px; margin: 12px 0; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.stat .label { font-size: .85rem; color: var(--muted); }
.stat .value { font-size: 1.45rem; font-weight: 600; }
.stat .detail { font-size: .85rem; color: var(--muted); }
.table-wrap { overflow-x: auto; margin: 8px 0 4px; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; }
caption { text-align: left; padding: 6px 10px; color: var(--muted); caption-side: top; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); position: sticky; top: 0; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
.note { font-size: .85rem; color: var(--muted); }
.tone-good { color: var(--good); } .tone-bad { color: var(--bad); } .tone-warn { color: var(--warn); }
.tone-muted { color: var(--muted); }
td.tone-good, .stat.tone-good { background: var(--good-bg); }
td.tone-bad, .stat.tone-bad { background: var(--bad-bg); }
td.tone-warn, .stat.tone-warn { background: var(--warn-bg); }
p.tone-bad, p.tone-warn, p.tone-good { padding: 8px 12px; border-radius: 6px; }
p.tone-bad { background: var(--bad-bg); } p.tone-warn { background: var(--warn-bg); } p.tone-good { background: var(--good-bg); }
.excerpt { border: 1px solid var(--line); border-left: 4px solid var(--line); border-radius: 6px;
           padding: 10px 14px; margin: 12px 0; }
.excerpt-bad { border-left-color: var(--bad); } .excerpt-warn { border-left-color: var(--warn); }
.excerpt-good { border-left-color: var(--good); }
.excerpt dl { display: flex; flex-wrap: wrap; gap: 2px 18px; margin: 0 0 8px; font-size: .85rem; color: var(--muted); }
.excerpt dt { font-weight: 600; } .excerpt dd { margin: 0 0 0 4px; }
.excerpt .facts div { display: flex; }
.passage-label { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin-top: 6px; }
pre.untrusted { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--soft); border-radius: 4px;
                padding: 8px 10px; margin: 2px 0 6px; font: .85rem/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
                max-height: 22em; overflow-y: auto; }
figure.chart { margin: 12px 0; overflow-x: auto; }
figure.chart figcaption { font-size: .85rem; color: var(--muted); }
.chart-placeholder { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; padding-top: 12px; border-top: 1px solid var(--line); font-size: .85rem; color: var(--muted); }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 6px 0 0; }
footer dt { font-weight: 600; } footer dd { margin: 0; overflow-wrap: anywhere; font-family: ui-monospace, Menlo, Consolas, monospace; }
@media print { .chart-placeholder { display: none; } th { position: static; } }
"""


def _tone_class(tone: Tone, *extra: str) -> str:
    classes = [c for c in extra if c] + ([f"tone-{tone}"] if tone else [])
    return f' class="{" ".join(classes)}"' if classes else ""


def _cell_html(value: Cell, numeric: bool) -> str:
    if isinstance(value, Styled):
        return f"<td{_tone_class(value.tone, 'num' if numeric else '')}>{escape_html(value.text)}</td>"
    return f"<td{_tone_class('', 'num' if numeric else '')}>{escape_html(value)}</td>"


def _block_html(block: Block, chart_ids: dict[int, str]) -> str:
    if isinstance(block, Paragraph):
        return f"<p{_tone_class(block.tone)}>{escape_html(block.text)}</p>"
    if isinstance(block, Stats):
        cards = "".join(
            f'<div{_tone_class(s.tone, "stat")}><div class="label">{escape_html(s.label)}</div>'
            f'<div class="value">{escape_html(s.value)}</div>'
            + (f'<div class="detail">{escape_html(s.detail)}</div>' if s.detail else "")
            + "</div>"
            for s in block.items
        )
        return f'<div class="stats">{cards}</div>'
    if isinstance(block, Table):
        numeric = set(block.numeric)
        head = "".join(f"<th{_tone_class('', 'num' if c in numeric else '')}>{escape_html(c)}</th>" for c in block.columns)
        body = "".join(
            "<tr>" + "".join(_cell_html(v, c in numeric) for c, v in zip(block.columns, row)) + "</tr>"
            for row in block.rows
        )
        caption = f"<caption>{escape_html(block.caption)}</caption>" if block.caption else ""
        note = f'<p class="note">{escape_html(block.note)}</p>' if block.note else ""
        if not block.rows:
            body = f'<tr><td colspan="{max(1, len(block.columns))}" class="tone-muted">None.</td></tr>'
        return f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'
    if isinstance(block, Excerpt):
        facts = "".join(f"<div><dt>{escape_html(k)}</dt><dd>{escape_html(v)}</dd></div>" for k, v in block.facts)
        passages = "".join(
            f'<div class="passage-label">{escape_html(label)}</div><pre class="untrusted">{escape_html(text)}</pre>'
            for label, text in block.passages
        )
        kind = f"excerpt excerpt-{block.tone}" if block.tone else "excerpt"
        return (f'<article class="{kind}"><h3>{escape_html(block.title)}</h3>'
                f'<dl class="facts">{facts}</dl>{passages}</article>')
    if isinstance(block, Chart):
        from .charts import chart_html  # charts import render, not the reverse at module load

        return chart_html(block, chart_ids[id(block)])
    raise TypeError(f"unknown block {type(block).__name__}")


def _csp(script_hashes: Sequence[str]) -> str:
    sources = " ".join(f"'sha256-{h}'" for h in script_hashes)
    # Vega compiles its expressions with Function(): 'unsafe-eval' is needed by charts only.
    script = f"script-src {sources} 'unsafe-eval'" if script_hashes else "script-src 'none'"
    return (f"default-src 'none'; {script}; style-src 'unsafe-inline'; img-src data: blob:; "
            "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")


def script_hash(source: str) -> str:
    return base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def render_html(document: Document) -> str:
    """A self-contained HTML page: no external resource, scripts allowed only by hash."""
    charts = document.charts
    chart_ids = {id(c): f"chart-{i + 1}" for i, c in enumerate(charts)}
    body = []
    for s in document.sections:
        blocks = "\n".join(_block_html(b, chart_ids) for b in s.blocks)
        body.append(f'<section id="{escape_html(s.id)}"><h2>{escape_html(s.title)}</h2>\n{blocks}\n</section>')
    toc = " ".join(f'<a href="#{escape_html(s.id)}">{escape_html(s.title)}</a>' for s in document.sections)
    footer = ""
    if document.footer:
        rows = "".join(f"<dt>{escape_html(k)}</dt><dd>{escape_html(v)}</dd>" for k, v in document.footer)
        footer = f"<footer><strong>Lineage</strong><dl>{rows}</dl></footer>"

    scripts: list[str] = []
    if charts:
        from .charts import chart_scripts

        scripts = chart_scripts()
    script_tags = "\n".join(f"<script>{s}</script>" for s in scripts)
    subtitle = f'<p class="subtitle">{escape_html(document.subtitle)}</p>' if document.subtitle else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{escape_html(_csp([script_hash(s) for s in scripts]))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="policyeval report {escape_html(document.kind)}">
<title>{escape_html(document.title)}</title>
<style>{CSS}</style>
</head>
<body data-report="{escape_html(document.kind)}">
<main>
<header><h1>{escape_html(document.title)}</h1>{subtitle}<nav class="toc">{toc}</nav></header>
{chr(10).join(body)}
{footer}
</main>
{script_tags}
</body>
</html>
"""


# ---------------------------------------------------------------------------
# Markdown


def _block_markdown(block: Block) -> str:
    if isinstance(block, Paragraph):
        text = escape_markdown(block.text)
        return f"**{text}**" if block.tone == "bad" else text
    if isinstance(block, Stats):
        return "\n".join(
            f"- **{escape_markdown(s.label)}**: {escape_markdown(s.value)}"
            + (f" — {escape_markdown(s.detail)}" if s.detail else "")
            for s in block.items
        )
    if isinstance(block, Table):
        lines = [f"*{escape_markdown(block.caption)}*", ""] if block.caption else []
        if not block.rows:
            return "\n".join(lines + ["None."])
        numeric = set(block.numeric)
        lines.append("| " + " | ".join(markdown_cell(c) for c in block.columns) + " |")
        lines.append("| " + " | ".join("---:" if c in numeric else "---" for c in block.columns) + " |")
        for row in block.rows:
            cells = [markdown_cell(v.text if isinstance(v, Styled) else v) for v in row]
            lines.append("| " + " | ".join(cells) + " |")
        if block.note:
            lines += ["", f"*{escape_markdown(block.note)}*"]
        return "\n".join(lines)
    if isinstance(block, Excerpt):
        lines = [f"#### {escape_markdown(block.title)}", ""]
        if block.facts:
            lines.append(" · ".join(f"**{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in block.facts))
            lines.append("")
        for label, text in block.passages:
            lines.append(f"*{escape_markdown(label)}*")
            lines.append("")
            lines += [f"> {escape_markdown(line)}".rstrip() for line in (text or "").splitlines() or [""]]
            lines.append("")
        return "\n".join(lines).rstrip()
    if isinstance(block, Chart):
        return ""  # the numbers behind every chart are in a table of the same section
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(document: Document) -> str:
    """The report as Markdown: the same sections and tables, without charts."""
    parts = [f"# {escape_markdown(document.title)}"]
    if document.subtitle:
        parts.append(f"*{escape_markdown(document.subtitle)}*")
    for s in document.sections:
        parts.append(f"## {escape_markdown(s.title)}")
        parts += [text for text in (_block_markdown(b) for b in s.blocks) if text]
    if document.footer:
        parts.append("## Lineage")
        parts.append("\n".join(f"- **{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in document.footer))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# Number formats shared by the reports


def pct(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def pp(value: float | None, digits: int = 1) -> str:
    """A difference of rates in percentage points, signed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:+.{digits}f} pp"


def p_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value < 0.001:
        return "< 0.001"
    return f"{value:.2g}" if value < 0.1 else f"{value:.2f}"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def dict_footer(items: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Lineage pairs with empty values left out."""
    return tuple((k, text_of(v)) for k, v in items.items() if text_of(v))


__all__ = [
    "Block", "Cell", "Chart", "Document", "Excerpt", "Paragraph", "Section", "Stat", "Stats", "Styled", "Table",
    "Tone", "dict_footer", "escape_html", "escape_markdown", "markdown_cell", "p_value", "pct", "plural", "pp",
    "rate_text", "render_html", "render_markdown", "script_json", "section", "table", "text_of",
]
