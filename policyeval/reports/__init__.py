"""Reports people read: safety, checkpoint comparison, policy diff, coverage and drift.

Each report is a pure function from data (grades tables, a pack, a diff) to a
`Document`, which renders to one self-contained HTML page (inline CSS and chart
scripts, no network) or to Markdown. Untrusted text is escaped only as `render.py`
turns a document into markup (Markdown through `policyeval.markdown.escape_markdown`).
"""

from .comparison import PairedSummary, comparison_document, paired_summary, summary_paragraph
from .coverage import coverage_document
from .drift import drift_document
from .policy_diff import ItemChanges, item_changes, metric_deltas, policy_diff_document
from .redaction import REDACTIONS, Redaction, shown_response
from .render import Document, escape_html, escape_markdown
from .safety import load_grader_validation, safety_document, worst_failures

__all__ = [
    "REDACTIONS", "Document", "ItemChanges", "PairedSummary", "Redaction",
    "comparison_document", "coverage_document", "drift_document", "escape_html", "escape_markdown",
    "item_changes", "load_grader_validation", "metric_deltas", "paired_summary",
    "policy_diff_document", "safety_document", "shown_response", "summary_paragraph", "worst_failures",
]
