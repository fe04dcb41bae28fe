"""Which records are candidates for an emerging risk: outside the taxonomy, and risky.

A record is **outside the taxonomy** when it names no category the pack measures (no
`category`, or an id the pack does not define, e.g. an upstream classifier's own label)
*and* its text is not close to any category: the cosine similarity of its TF-IDF vector
to each category's policy text (title, description, boundary, example prompts, template
texts) stays below `threshold`. A risky record close to a category is not new: it is
counted as covered by its nearest category, so a triage backlog does not read as a new risk.

It is **risky** when it is a red-team finding (a finding is a risk by definition), a
deployment conversation an upstream classifier labeled with a category the pack does not
have, a deployment conversation whose response the learned grader's harm head marks
harmful, or an unlabeled deployment conversation close (same measure, same threshold) to
a red-team finding that is itself a candidate: traffic that asks what red-teamers found.
Unlabeled deployment traffic with none of these (a recipe, a haiku) is the bulk of any
sample and is not a candidate.

The harm head was trained on weapons, cyber and self-harm style harm: it rarely fires on
harm outside that training (a fake election notice reads to it as a helpful answer), which
is why the resemblance to findings is a signal of its own. Lexical similarity is a coarse
measure of coverage: an unlabeled request phrased unlike every category's text stays a
candidate, and the report names each cluster's nearest category so a reviewer can tell
a new risk from a missing example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..deployment.conversations import NO_CATEGORY
from ..policy.model import Category, PolicyPack
from .imports import REDTEAM, RiskRecord
from .text import fit

DEFAULT_THRESHOLD = 0.3  # cosine similarity to the nearest category passage (and to a finding)

# Why a record is a candidate (or not); one reason per record.
LABELED = "labeled"  # names a category the pack measures: not a candidate
NEAR_CATEGORY = "near_category"  # risky, unlabeled or with an unknown label, but close to a category: not a candidate
NOT_RISKY = "not_risky"  # unlabeled deployment traffic the grader finds harmless: not a candidate
FINDING = "redteam_finding"
UNKNOWN_LABEL = "unknown_label"
GRADED_HARMFUL = "graded_harmful"
LIKE_FINDING = "like_finding"
CANDIDATE_REASONS = (FINDING, UNKNOWN_LABEL, GRADED_HARMFUL, LIKE_FINDING)


@dataclass(frozen=True)
class Screened:
    """One record after screening: its nearest category and why it is or is not a candidate."""

    record: RiskRecord
    nearest_category: str
    similarity: float
    harmful: bool | None  # the harm head's verdict on a deployment response; None for findings
    reason: str

    @property
    def is_candidate(self) -> bool:
        return self.reason in CANDIDATE_REASONS


def category_passages(category: Category) -> list[str]:
    """What a category says it covers, one passage per statement: its title and description,
    each boundary entry (both sides: a benign look-alike is covered too), each example prompt
    and template text."""
    parts = [f"{category.title}. {category.description}", *category.boundary.allowed, *category.boundary.disallowed]
    parts += [example.prompt or "\n".join(str(m.content) for m in example.messages or [] if m.role == "user")
              for example in category.examples]
    parts += [template.text or "" for template in category.templates]
    return [p for p in parts if p and p.strip()]


def nearest(references: Sequence[tuple[str, str]], texts: Sequence[str]) -> list[tuple[str, float]]:
    """(label of the most similar reference passage, cosine similarity) of each text; references are (label, passage)."""
    if not texts:
        return []
    if not references:
        return [("", 0.0) for _ in texts]
    _, matrix = fit([passage for _, passage in references] + list(texts))
    similarity = (matrix[len(references):] @ matrix[: len(references)].T).toarray()
    best = similarity.argmax(axis=1)
    return [(references[int(i)][0], float(round(similarity[row, int(i)], 6))) for row, i in enumerate(best)]


def nearest_categories(pack: PolicyPack, texts: Sequence[str]) -> list[tuple[str, float]]:
    """(nearest category id, cosine similarity to its closest passage) of each text."""
    references = [(c.id, passage) for _, c in pack.categories() for passage in category_passages(c)]
    return nearest(references, texts)


def harm_verdicts(records: Sequence[RiskRecord]) -> list[bool | None]:
    """The learned grader's harm head on each deployment response (None for findings: no response)."""
    from ..graders.learned import LearnedGrader

    grader = LearnedGrader()
    return [None if r.source == REDTEAM or not r.response_text.strip() else bool(grader.signals(r.prompt_text, r.response_text)[0]["harmful"])
            for r in records]


def screen(records: Sequence[RiskRecord], pack: PolicyPack, threshold: float = DEFAULT_THRESHOLD,
           harmful: Sequence[bool | None] | None = None) -> list[Screened]:
    """Every record with its reason; `harmful` (one verdict per record) defaults to `harm_verdicts`."""
    known = {c.id for _, c in pack.categories()}
    near = nearest_categories(pack, [r.prompt_text for r in records])
    verdicts = list(harmful) if harmful is not None else harm_verdicts(records)
    if len(verdicts) != len(records):
        raise ValueError(f"{len(verdicts)} harm verdicts for {len(records)} records")
    reasons = []
    for record, (_, similarity), verdict in zip(records, near, verdicts):
        if record.category_id in known:
            reason = LABELED
        elif record.source == REDTEAM:
            reason = FINDING
        elif record.category_id != NO_CATEGORY:
            reason = UNKNOWN_LABEL
        elif verdict:
            reason = GRADED_HARMFUL
        else:
            reason = NOT_RISKY
        # a risky record close to a category is covered: not new (benign traffic stays not risky)
        reasons.append(NEAR_CATEGORY if reason in CANDIDATE_REASONS and similarity >= threshold else reason)
    # Unlabeled traffic that reads like a finding no category covers is risky too.
    findings = [(r.record_id, r.prompt_text) for r, reason in zip(records, reasons) if reason == FINDING]
    pending = [i for i, reason in enumerate(reasons) if reason == NOT_RISKY]
    for i, (_, similarity) in zip(pending, nearest(findings, [records[i].prompt_text for i in pending])):
        if findings and similarity >= threshold:
            reasons[i] = NEAR_CATEGORY if near[i][1] >= threshold else LIKE_FINDING
    return [Screened(record, category_id, similarity, verdict, reason)
            for record, (category_id, similarity), verdict, reason in zip(records, near, verdicts, reasons)]
