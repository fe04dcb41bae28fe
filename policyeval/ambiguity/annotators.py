"""Annotator split: the people who label a response do not reach a clear majority.

Annotators read the same labeling guidance; when they split on a response, either
someone misread the guidance (the adjudication queue settles that, item by item) or the
guidance and the boundary it describes allow both readings. The second is a policy
question, and it shows as splits that gather on the same boundary line, which is what
the ambiguity queue groups by.

A split is an item whose most common label is given by fewer than `min_majority` of the
annotators who labeled it (default two thirds: with two annotators any disagreement is a
split, with three a 2-1 vote is a clear majority, with four 2-2 and 2-1-1 are splits).
An item with fewer than two labels cannot split and is left out. Hidden gold items count
like any other: annotators splitting on a settled item is still a sign the text is unclear.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ..campaigns import Campaign
from ..campaigns.calibration import given_labels, label_matrix
from .signals import ANNOTATOR_SPLIT, Measurement, Signal, Verdict, is_sensitive, text

DEFAULT_MIN_MAJORITY = 2 / 3


def is_split(labels: list[str], min_majority: float = DEFAULT_MIN_MAJORITY) -> bool:
    """Fewer than `min_majority` of the labels agree on the most common one (two labels at least)."""
    if len(labels) < 2:
        return False
    top = Counter(labels).most_common(1)[0][1]
    return top / len(labels) < min_majority - 1e-9


def annotator_splits(campaign: Campaign, annotations: pd.DataFrame, policy_version: str,
                     min_majority: float = DEFAULT_MIN_MAJORITY) -> list[Signal]:
    """Each campaign item its annotators split on, with every annotator's label.

    `annotations` is the campaign's annotation table (`load_annotations`, or the
    `annotations` asset); `policy_version` names the partition in the measurements.
    """
    if annotations.empty:
        return []
    matrix = label_matrix(campaign, annotations)
    items = {str(r["item_id"]): r for r in campaign.items.to_dict("records")}
    signals = []
    for item_id, row in matrix.iterrows():
        given = given_labels(row)
        if not is_split(list(given.values()), min_majority):
            continue
        item = items[str(item_id)]
        checkpoint = text(item.get("checkpoint_id")) or text(campaign.checkpoint_id)
        expected = text(item.get("expected_behavior"))
        graded = text(item.get("grader_behavior"))
        counts = Counter(given.values())
        signals.append(Signal(
            kind=ANNOTATOR_SPLIT,
            category_id=text(item.get("category_id")),
            item_id=str(item_id),
            checkpoint_id=checkpoint,
            prompt=text(item.get("prompt_text")),
            response=text(item.get("response_text")),
            expected_behavior=expected,
            verdicts=tuple(Verdict(annotator, label) for annotator, label in sorted(given.items())),
            measurements=frozenset({Measurement(policy_version, checkpoint, str(item_id))}),
            sensitive=is_sensitive(expected, [*given.values(), graded], [text(item.get("outcome"))], []),
            note=f"{', '.join(f'{n} {label}' for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}"
                 + (f"; graded {graded}" if graded else ""),
        ))
    return signals
