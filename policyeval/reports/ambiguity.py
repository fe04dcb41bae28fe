"""The ambiguity queue as a report: the policy lines to clarify, widest first.

For each clarification item (`policyeval.ambiguity.build_queue`): the category, the
boundary line(s) involved, what kind of disagreement was seen and how many measurements
ride on it, then the examples (prompt, response under the report's redaction, and who
said what). Responses a verdict calls an under-refusal or harmful are the ones `redact`
replaces by their length, as in every report. The queue's order is the core's; this
module only lays it out.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ..ambiguity import KIND_LABELS, KINDS, ClarificationItem
from ..markdown import shorten, to_markdown_table
from ..records import UNDER_REFUSAL
from .lineage import footer
from .redaction import Redaction, check_redaction, redaction_note, shown_response, truncate
from .render import Document, Excerpt, Paragraph, Stat, Stats, plural, section, table

MEASUREMENTS_NOTE = (
    "A measurement is one graded response in one policy version x checkpoint partition: the unit every rate in the "
    "metrics counts. An item touches the graded responses its disagreements were seen on, under each policy version "
    "involved (a grade flip touches the response under both versions); items are ordered by that count."
)
DETECTORS_NOTE = (
    "Graders disagree: two graders gave the same response different behaviors or harm verdicts. Annotators split: the "
    "people who labeled a response reached no clear majority. Grade flips: the same checkpoint's response, identical "
    "under two policy versions, was graded differently (the response did not change, so the policy text did). "
    "Signals of one category are grouped by the boundary line(s) sharing the most words with their prompts; when no "
    "line shares a word, the whole boundary is shown."
)


def kinds_text(item: ClarificationItem) -> str:
    return ", ".join(plural(n, KIND_LABELS[kind]) for kind, n in item.kind_counts.items())


def queue_rows(queue: Sequence[ClarificationItem], limit: int | None = None) -> pd.DataFrame:
    """The queue's top items as a table of short cells (for metadata and the report)."""
    rows = [{
        "rank": rank,
        "category": item.category_id,
        "boundary": shorten(item.boundary_text(), 200),
        "disagreement": kinds_text(item),
        "measurements touched": item.measurements_touched,
        "partitions": item.partitions_touched,
        "responses": len(item.examples()),
    } for rank, item in enumerate(queue[:limit] if limit is not None else queue, start=1)]
    return pd.DataFrame(rows, columns=["rank", "category", "boundary", "disagreement", "measurements touched",
                                       "partitions", "responses"])


def queue_markdown(queue: Sequence[ClarificationItem], limit: int = 10) -> str:
    """The top of the queue as an escaped Markdown table (the UI's metadata)."""
    if not queue:
        return "No ambiguity found: no grader disagreement, annotator split or grade flip."
    text = to_markdown_table(queue_rows(queue, limit))
    return text + (f"\n\n{len(queue) - limit} more in the report." if len(queue) > limit else "")


def _example_block(item_rank: int, number: int, example: Any, redact: Redaction) -> Excerpt:
    # A sensitive response is shown under `redact` as an under-refusal would be: its length only.
    response = shown_response(example.response, UNDER_REFUSAL if example.sensitive else None, redact)
    return Excerpt(
        title=f"#{item_rank}.{number} · {', '.join(KIND_LABELS[k] for k in example.kinds)}",
        facts=(("item", example.item_id), ("checkpoint", example.checkpoint_id), ("expected", example.expected_behavior or "–")),
        passages=(("prompt", truncate(example.prompt, 600)), ("response", response),
                  *(("who said what", d) for d in example.disagreements)),
        tone="warn",
    )


def ambiguity_document(
    queue: Sequence[ClarificationItem],
    *,
    policy_version: str,
    redact: Redaction = "truncate",
    limit: int = 25,
    examples_per_item: int = 3,
    scanned: Mapping[str, str] | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Document:
    """The report of one policy version's ambiguity queue.

    `scanned` says what each detector looked at (shown as is, e.g. "2 checkpoints, 188
    responses, 2 graders"), so an empty queue reads as "looked, found nothing", not as
    "did not look".
    """
    redact = check_redaction(redact)
    counts = {kind: sum(item.kind_counts.get(kind, 0) for item in queue) for kind in KINDS}
    touched = len(frozenset(m for item in queue for m in item.measurements))
    stats = Stats((
        Stat("Clarification items", str(len(queue)), f"{plural(sum(len(i.examples()) for i in queue), 'response')}",
             "warn" if queue else "good"),
        *(Stat(f"{KIND_LABELS[kind].capitalize()}s", str(counts[kind]), (scanned or {}).get(kind, "")) for kind in KINDS),
        Stat("Measurements touched", str(touched), "distinct graded responses, all items together"),
    ))
    if queue:
        top = queue[0]
        opening = (f"{plural(len(queue), 'policy line')} to clarify under {policy_version}. The widest: "
                   f"{top.category_id}, {shorten(top.boundary_text(), 240)} ({plural(top.measurements_touched, 'measurement')} touched).")
    else:
        opening = f"No ambiguity found under {policy_version}: no grader disagreement, annotator split or grade flip."
    note = redaction_note(redact, "Responses a verdict calls an under-refusal or harmful")
    blocks: list[Any] = []
    for rank, item in enumerate(queue[:limit], start=1):
        examples = item.examples()
        boundary = tuple((line.side, line.text) for line in item.boundary)
        blocks.append(Excerpt(
            title=f"#{rank} · {item.category_id}" + (f" ({item.category_title})" if item.category_title else ""),
            facts=(("measurements touched", str(item.measurements_touched)), ("partitions", str(item.partitions_touched)),
                   ("responses", str(len(examples))), ("disagreement", kinds_text(item)),
                   ("boundary", "lines related to the prompts" if item.matched else
                    "whole boundary: no line shares a word with the prompts" if item.boundary else
                    "the category is not in this policy version")),
            passages=boundary,
            tone="bad",
        ))
        blocks += [_example_block(rank, n, e, redact) for n, e in enumerate(examples[:examples_per_item], start=1)]
        if len(examples) > examples_per_item:
            blocks.append(Paragraph(f"… and {len(examples) - examples_per_item} more responses (item ids in the queue table)."))
    sections = (
        section("Summary", Paragraph(opening), stats),
        section("Queue", table(("rank", "category", "boundary", "disagreement", "measurements touched", "partitions",
                                "responses"), list(queue_rows(queue).itertuples(index=False, name=None)), limit=200,
                               numeric=("rank", "measurements touched", "partitions", "responses"))),
        section("Clarification items",
                Paragraph(f"The first {min(limit, len(queue))} items with their boundary text and at most "
                          f"{examples_per_item} examples each. {note} Model output is shown as text.")
                if queue else Paragraph("Nothing to clarify."),
                *blocks),
        section("How to read this", Paragraph(DETECTORS_NOTE), Paragraph(MEASUREMENTS_NOTE)),
    )
    return Document(
        title=f"Ambiguity queue: {policy_version}",
        subtitle=f"{plural(len(queue), 'clarification item')} · {plural(touched, 'measurement')} touched",
        sections=sections,
        footer=footer({"policy version": policy_version}, lineage),
        kind="ambiguity",
    )
