"""The emerging-risk report: what red-team findings and deployment conversations show that
no category covers, as clusters with counts over time, redacted examples and the draft
category each one proposes (see `policyeval.emerging`)."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from ..emerging.analysis import EmergingRisks
from ..emerging.candidates import FINDING, GRADED_HARMFUL, LIKE_FINDING, NEAR_CATEGORY, UNKNOWN_LABEL
from ..emerging.clustering import UNCLUSTERED
from ..emerging.imports import REDTEAM
from ..emerging.summary import EXAMPLE_CHARS
from . import charts
from .lineage import footer
from .redaction import truncate
from .render import Document, Excerpt, Paragraph, Stat, Stats, plural, section, table

REASON_TEXT = {
    FINDING: "red-team finding",
    UNKNOWN_LABEL: "labeled with a category the pack does not define",
    GRADED_HARMFUL: "response graded harmful",
    LIKE_FINDING: "reads like a finding no category covers",
}


def emerging_document(result: EmergingRisks, *, drafts_dir: str = "", sources: Mapping[str, str] | None = None,
                      lineage: Mapping[str, Any] | None = None, pack_dir: str = "<pack>") -> Document:
    """Summary, one section per cluster (facts, counts over time, examples, draft), and what was left out."""
    counts = result.counts()
    candidates = result.candidates
    drafts = {d.cluster: d for d in result.drafts}
    reasons = result.reasons()
    scrubbed = ", ".join(f"{n} {kind.lower()}" for kind, n in result.scrubbed.items()) or "none found"
    by_reason = ", ".join(f"{n} {REASON_TEXT.get(r, r)}" for r, n in sorted(candidates["reason"].value_counts().items())) or "none"

    cluster_rows = []
    for s in result.summaries:
        draft = drafts.get(s.cluster)
        cluster_rows.append((
            s.cluster + 1, draft.category_id if draft else "", s.size, s.redteam, s.deployment,
            f"{s.first_seen} to {s.last_seen}" if s.first_seen else "undated",
            ", ".join(f"{week}: {n}" for week, n in s.per_week) or "–",
            ", ".join(s.terms[:6]),
            f"{s.nearest_category} ({s.nearest_similarity:.2f})" if s.nearest_category else "–",
        ))
    cluster_sections = [_cluster_section(result, s, drafts.get(s.cluster), drafts_dir, pack_dir) for s in result.summaries]

    unclustered = candidates[candidates["cluster"] == UNCLUSTERED]
    unclustered_rows = [(r.source, r.record_id, f"{r.file}:{r.line}", REASON_TEXT.get(r.reason, r.reason),
                         truncate(str(r.prompt_text), 160)) for r in unclustered.itertuples()]
    near = result.screened[result.screened["reason"] == NEAR_CATEGORY]
    near_rows = [(category, int(n)) for category, n in near["nearest_category"].value_counts().sort_index().items()]

    timeline = _timeline(result, drafts)
    sections = (
        section(
            "Summary",
            Stats((
                Stat("Records", str(counts["records"]),
                     f"{counts['redteam_findings']} red-team findings, {counts['deployment_conversations']} deployment conversations"),
                Stat("Outside the taxonomy", str(counts["candidates"]), by_reason, "warn" if counts["candidates"] else "good"),
                Stat("Clusters", str(counts["clusters"]),
                     f"{counts['clustered']} records in clusters of {result.settings.min_cluster_size} or more",
                     "warn" if counts["clusters"] else "good"),
                Stat("Personal data scrubbed", str(sum(result.scrubbed.values())), f"on import: {scrubbed}"),
            )),
            Paragraph(
                "A record is outside the taxonomy when it names no category the pack measures and its text is less "
                f"similar than {result.settings.threshold:g} (TF-IDF cosine) to every passage of every category; it is "
                "a candidate when it is also a red-team finding, carries a label the pack does not define, has a "
                "response the learned grader marks harmful, or reads like such a finding. Candidates are clustered "
                f"(k-means over word stems, k = {result.k} by silhouette"
                + (f" {result.silhouette:.2f}" if result.silhouette is not None else "")
                + "); each cluster proposes a draft category. Examples are scrubbed of personal data and truncated; "
                "deployment responses are not shown."),
            Paragraph("Nothing outside the taxonomy: every record is covered by a category.", "good")
            if not counts["candidates"] else None,
        ),
        section("Clusters",
                table(("#", "draft category", "records", "red-team", "deployment", "seen", "per ISO week", "terms",
                       "nearest category (similarity)"), cluster_rows, numeric=("records", "red-team", "deployment"))
                if cluster_rows else Paragraph("No cluster: too few candidates share a theme yet.", "good"),
                timeline),
        *cluster_sections,
        section("Unclustered candidates",
                Paragraph(f"Candidates in no cluster of {result.settings.min_cluster_size} or more: watch them, they "
                          "become a cluster when the theme recurs."),
                table(("source", "id", "where", "why", "request"), unclustered_rows)),
        section("Close to a category, though unlabeled",
                Paragraph("Risky records (findings, unknown labels, harmful grades) naming no measured category whose "
                          "text is close to one: covered, not new. "
                          "Label them, or add them to that category's examples."),
                table(("nearest category", "records"), near_rows, numeric=("records",))),
        section("Screening", table(("reason", "records"), sorted(reasons.items()), numeric=("records",))),
    )
    parts = {
        "policy version": result.policy_version,
        **{f"{name} folder": path for name, path in (sources or {}).items()},
        "drafts": drafts_dir,
        "similarity threshold": f"{result.settings.threshold:g}",
    }
    return Document(
        title=f"Emerging risks under {result.policy_version}",
        subtitle=f"{plural(counts['records'], 'record')} · {counts['candidates']} outside the taxonomy · "
                 f"{plural(counts['clusters'], 'cluster')}",
        sections=sections,
        footer=footer(parts, lineage),
        kind="emerging",
    )


def _cluster_section(result: EmergingRisks, s, draft, drafts_dir: str, pack_dir: str):
    name = draft.category_id if draft else f"cluster {s.cluster + 1}"
    facts = Stats((
        Stat("Records", str(s.size), f"{s.redteam} red-team, {s.deployment} deployment"),
        Stat("Seen", f"{s.first_seen} to {s.last_seen}" if s.first_seen else "undated",
             f"{s.undated} undated" if s.undated else ""),
        Stat("Severity", s.severity or "–", "highest a red-teamer gave" if s.severity else "no finding gave one"),
        Stat("Nearest category", s.nearest_category or "–", f"similarity {s.nearest_similarity:.2f}"),
    ))
    reasons = ", ".join(f"{n} {REASON_TEXT.get(r, r)}" for r, n in s.reasons)
    examples = [
        Excerpt(
            title=f"{'Red-team finding' if e.source == REDTEAM else 'Deployment conversation'} {e.record_id}",
            facts=tuple((k, v) for k, v in (("where", e.where), ("when", e.when or "undated"),
                                             ("response", f"{e.response_chars} characters, not shown" if e.response_chars else ""))
                        if v),
            passages=(("request (scrubbed, truncated to %d characters)" % EXAMPLE_CHARS, e.text),),
        )
        for e in s.examples
    ]
    path = f"{drafts_dir}/{draft.file_name}" if draft and drafts_dir else (draft.file_name if draft else "")
    return section(
        f"Cluster {s.cluster + 1}: {name}",
        facts,
        Paragraph(f"Terms: {', '.join(s.terms)}. Why its records are candidates: {reasons}."
                  + (f" Labels they carried: {', '.join(s.labels)}." if s.labels else "")),
        table(("ISO week", "records"), s.per_week, numeric=("records",)) if s.per_week else None,
        *examples,
        Paragraph(f"Draft category: {path}. Check it with: policyeval validate {pack_dir} --with {path}") if path else None,
        anchor=f"cluster-{s.cluster + 1}",
    )


def _timeline(result: EmergingRisks, drafts) -> Any:
    rows = [{"day": day, "cluster": f"{s.cluster + 1}: {drafts[s.cluster].category_id if s.cluster in drafts else ''}",
             "records": n, "label": str(n)}
            for s in result.summaries for day, n in s.per_day]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    return charts.heatmap(frame, title="Records per day and cluster (UTC)", x="day", y="cluster", value="records",
                          text="label", color_title="records",
                          description="Records per day and cluster; the weekly counts are in the table above.")
