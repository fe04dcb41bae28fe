"""The report section of a system checkpoint: which layer decided each item."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..safeguards.layers import has_safeguards, layer_attribution, layer_table
from .render import Paragraph, Section, section, table

ORDER_NOTE = (
    "Each item is attributed to the first layer that decided it, in the order a request meets them: the input "
    "filter, the model, the output filter; a should-refuse item none of them stopped got through. On benign "
    "look-alikes, a filter that blocks is over-blocking. The model answered every item (a deployed system would "
    "not ask it after an input block), so each filter's own catch and over-blocking rates are shown too. Rates "
    "are k/n with Wilson 95% intervals; a filter that failed (error, unparseable reply) let the content through "
    "unless the manifest says on_error: block.")

SHARED_MODEL_NOTE = (
    "The output filter is the learned harm classifier, the same model family the grader's harm head uses: "
    "catches of harmful content it misses are invisible to this grader too. Check the system on human labels "
    "(a campaign's gold set) or with the judge before relying on the through rate.")


def layers_section(grades: Mapping[str, pd.DataFrame]) -> Section | None:
    """The layers of every named grades table with safeguards (a bare model shows as its own row);
    None when no table came from a system checkpoint."""
    if not any(has_safeguards(frame) for frame in grades.values()):
        return None
    attribution = pd.concat([layer_attribution(frame.assign(checkpoint_id=name)) for name, frame in grades.items()],
                            ignore_index=True)
    rows = layer_table(attribution)
    systems = [frame for frame in grades.values() if has_safeguards(frame)]
    filters = sorted({str(v) for frame in systems for v in frame["safeguards"].dropna().unique() if v})
    shared = any("learned-harm" in f for f in filters)
    return section(
        "Safeguard layers",
        Paragraph(ORDER_NOTE),
        Paragraph("Filters: " + " | ".join(filters)) if filters else None,
        table(tuple(rows.columns), [tuple(r) for r in rows.itertuples(index=False)]),
        Paragraph(SHARED_MODEL_NOTE, "warn") if shared else None,
    )
