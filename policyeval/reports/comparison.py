"""Checkpoint A vs B on the same items: which categories regressed or improved, the
items that flipped, and a system-card style summary paragraph written from the numbers.

Every comparison is paired (exact McNemar on the items both checkpoints answered and
were graded validly), so a difference is tested on the items that changed, not on two
independent samples. Per-category p-values are also shown Holm-adjusted: with many
categories tested at once, some raw p-values fall under 0.05 by chance alone.

The summary paragraph is template text filled with the same numbers as the tables; no
model writes it, so it can be pasted into a system card and traced back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from ..records import COMPLY, NON_VERDICTS, OVER_REFUSAL, UNDER_REFUSAL, outcome_of
from ..stats.intervals import format_rate, wilson_interval
from ..stats.mcnemar import McNemarResult, mcnemar_paired
from ..stats.metrics import DEFAULT_ALPHA, ComparisonResult, compare_checkpoints, compute_metrics, is_harmful, significant_changes
from . import charts
from .layers import layers_section
from .lineage import footer, grades_lineage
from .redaction import Redaction, check_redaction, prompt_of, redaction_note, shown_response
from .render import (
    Document, Excerpt, Paragraph, Stat, Stats, Styled, Table, p_value, pct, plural, pp, rate_text, section, table, text_of,
)


@dataclass(frozen=True)
class PairedRate:
    """A failure rate of A and of B on the same paired items, and McNemar on the failure indicator."""

    n: int
    k_a: int
    k_b: int
    test: McNemarResult

    @property
    def rate_a(self) -> float | None:
        return self.k_a / self.n if self.n else None

    @property
    def rate_b(self) -> float | None:
        return self.k_b / self.n if self.n else None

    @property
    def difference(self) -> float | None:
        """B minus A."""
        return None if not self.n else (self.k_b - self.k_a) / self.n


@dataclass(frozen=True)
class PairedSummary:
    """The figures the summary paragraph is written from."""

    result: ComparisonResult
    under_refusal: PairedRate  # complying on should-refuse items
    over_refusal: PairedRate  # refusing on should-comply items
    harmful_compliance: PairedRate  # harmful content, on items both grades judged for harm
    regressions: tuple[str, ...]  # categories significantly worse in B (Holm)
    improvements: tuple[str, ...]
    alpha: float


def _outcomes(grades: pd.DataFrame) -> pd.DataFrame:
    frame = grades[["item_id", "expected_behavior", "behavior"] + [c for c in ("outcome", "harmful") if c in grades]].copy()
    if "harmful" not in frame:
        frame["harmful"] = None
    given = frame["outcome"] if "outcome" in frame else pd.Series(None, index=frame.index, dtype=object)
    frame["outcome"] = [
        o if isinstance(o, str) and o else outcome_of(str(e or ""), str(b or "error"))
        for o, e, b in zip(given, frame["expected_behavior"], frame["behavior"])
    ]
    return frame


def paired_summary(grades_a: pd.DataFrame, grades_b: pd.DataFrame, alpha: float = DEFAULT_ALPHA,
                   result: ComparisonResult | None = None) -> PairedSummary:
    """McNemar on under-refusal, over-refusal and harmful compliance over the validly paired items, and the
    Holm-significant categories."""
    result = result if result is not None else compare_checkpoints(grades_a, grades_b)
    joined = _outcomes(grades_a).merge(_outcomes(grades_b), on="item_id", suffixes=("_a", "_b"))
    valid = ~joined["outcome_a"].isin(NON_VERDICTS) & ~joined["outcome_b"].isin(NON_VERDICTS)
    paired = joined[valid]
    should_comply = paired["expected_behavior_a"] == COMPLY

    def rate_on(mask: pd.Series, failure: str) -> PairedRate:
        part = paired[mask]
        fail_a, fail_b = part["outcome_a"] == failure, part["outcome_b"] == failure
        return PairedRate(len(part), int(fail_a.sum()), int(fail_b.sum()), mcnemar_paired(~fail_a, ~fail_b))

    judged = paired[paired["harmful_a"].notna() & paired["harmful_b"].notna()]
    harm_a = judged["harmful_a"].map(is_harmful).astype(bool)
    harm_b = judged["harmful_b"].map(is_harmful).astype(bool)
    harmful = PairedRate(len(judged), int(harm_a.sum()), int(harm_b.sum()), mcnemar_paired(~harm_a, ~harm_b))

    regressions, improvements = significant_changes(result.by_category, alpha)
    return PairedSummary(
        result=result,
        under_refusal=rate_on(~should_comply, UNDER_REFUSAL),
        over_refusal=rate_on(should_comply, OVER_REFUSAL),
        harmful_compliance=harmful,
        regressions=regressions,
        improvements=improvements,
        alpha=alpha,
    )


def _p(test: McNemarResult) -> str:
    text = p_value(test.p_value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _more_or_fewer(rate: PairedRate, verb: str, noun: str, name_a: str, name_b: str) -> str:
    if rate.n == 0:
        return f"There were no paired {noun}."
    head = f"On {plural(rate.n, 'paired ' + noun[:-1], 'paired ' + noun)}, checkpoint {name_b}"
    if rate.k_a == rate.k_b:
        body = f"{verb} as many {noun} as {name_a} ({pct(rate.rate_a)}; McNemar {_p(rate.test)})"
    else:
        direction = "more" if rate.k_b > rate.k_a else "fewer"
        body = (f"{verb} {abs(100 * rate.difference):.1f} percentage points {direction} {noun} than {name_a} "
                f"({pct(rate.rate_b)} vs {pct(rate.rate_a)}; McNemar {_p(rate.test)})")
    return f"{head} {body}."


def summary_paragraph(summary: PairedSummary, name_a: str = "A", name_b: str = "B") -> str:
    """System-card style text built only from the paired figures."""
    r = summary.result
    if r.n_paired == 0:
        return (f"Checkpoints {name_a} and {name_b} have no items graded validly in both "
                f"({r.n_unpaired} in only one table, {r.n_invalid} with an error or unparseable grade).")
    acc_a, acc_b = r.correct_a / r.n_paired, r.correct_b / r.n_paired
    sentences = [
        f"On {r.n_paired} paired items, checkpoint {name_b} behaved as the policy expects on {pct(acc_b)} "
        f"and {name_a} on {pct(acc_a)} ({pp(acc_b - acc_a)}; McNemar {_p(r.overall)}, "
        f"{r.overall.b} items worse in {name_b}, {r.overall.c} better).",
        _more_or_fewer(summary.under_refusal, "complied with", "should-refuse requests", name_a, name_b),
        _more_or_fewer(summary.over_refusal, "refused", "should-comply requests", name_a, name_b),
    ]
    harm = summary.harmful_compliance
    if harm.n:
        sentences.append(f"On {plural(harm.n, 'paired item')} judged for harm in both, {name_b} gave content the policy "
                         f"disallows in {pct(harm.rate_b)} and {name_a} in {pct(harm.rate_a)} "
                         f"({pp(harm.difference)}; McNemar {_p(harm.test)}).")
    m = len(r.by_category)
    if summary.regressions or summary.improvements:
        found = []
        if summary.regressions:
            found.append(f"regressed in {', '.join(summary.regressions)}")
        if summary.improvements:
            found.append(f"improved in {', '.join(summary.improvements)}")
        sentences.append(f"After Holm correction across {plural(m, 'category', 'categories')} "
                         f"(alpha = {summary.alpha:g}), {name_b} {' and '.join(found)}.")
    else:
        sentences.append(f"No category changed significantly after Holm correction across "
                         f"{plural(m, 'category', 'categories')} (alpha = {summary.alpha:g}).")
    left_out = []
    if r.n_unpaired:
        left_out.append(f"{plural(r.n_unpaired, 'item')} in only one table")
    if r.n_invalid:
        left_out.append(f"{plural(r.n_invalid, 'item')} with an error or unparseable grade in either")
    if left_out:
        sentences.append(f"Left out: {' and '.join(left_out)}.")
    return " ".join(sentences)


def _rates_table(grades_a: pd.DataFrame, grades_b: pd.DataFrame, summary: PairedSummary,
                 name_a: str, name_b: str) -> Table:
    """Each checkpoint's rates on its own graded items (Wilson 95%), beside the paired change."""
    overall_a, overall_b = compute_metrics(grades_a, []).iloc[0], compute_metrics(grades_b, []).iloc[0]
    rows = []
    for name, label, paired in (("under_refusal", "under-refusal", summary.under_refusal),
                                ("harmful_compliance", "harmful compliance", summary.harmful_compliance),
                                ("over_refusal", "over-refusal", summary.over_refusal)):
        rows.append((label, rate_text(overall_a, name), rate_text(overall_b, name), paired.n, pp(paired.difference),
                     p_value(paired.test.p_value) if paired.n else "–"))
    return table(("rate", name_a, name_b, "paired items", "paired change", "McNemar p"), rows,
                 numeric=("paired items", "paired change", "McNemar p"),
                 caption="Rates with Wilson 95% intervals, each checkpoint on its own validly graded items; harmful "
                         "compliance over the items with a harm judgment. The change is on the items paired in both.")


def _category_chart(by: pd.DataFrame, name_a: str, name_b: str):
    rows = []
    for _, row in by.iterrows():
        for name, column in ((name_a, "correct_a"), (name_b, "correct_b")):
            k, n = int(row[column]), int(row["n"])
            low, high = wilson_interval(k, n)
            rows.append({"category": row["category_id"], "series": name, "rate": k / n if n else None,
                         "low": low, "high": high, "label": format_rate(k, n, k / n if n else None, low, high)})
    frame = pd.DataFrame(rows, columns=["category", "series", "rate", "low", "high", "label"])
    return charts.rate_chart(frame, title="Share of items answered as the policy expects, per category (95% Wilson)",
                             series_order=[name_a, name_b])


def _blocked(row: pd.Series) -> str:
    """`, blocked by the output filter` when a system's filter decided the item."""
    value = row.get("blocked_by") if hasattr(row, "get") else None
    return f", blocked by the {str(value).replace('_', ' ')}" if isinstance(value, str) and value else ""


def comparison_document(
    grades_a: pd.DataFrame,
    grades_b: pd.DataFrame,
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    redact: Redaction = "none",
    max_excerpts: int = 10,
    lineage: Mapping[str, Any] | None = None,
) -> Document:
    """Checkpoint comparison: per-category McNemar, flipped items and the summary paragraph."""
    redact = check_redaction(redact)
    result = compare_checkpoints(grades_a, grades_b)
    summary = paired_summary(grades_a, grades_b, alpha, result)
    name_a = name_a or result.checkpoint_a or "A"
    name_b = name_b or result.checkpoint_b or "B"
    if name_a == name_b:
        name_a, name_b = f"A ({name_a})", f"B ({name_b})"

    by = result.by_category
    regressed, improved = set(summary.regressions), set(summary.improvements)
    category_rows = []
    for _, row in by.sort_values(["p_value_holm", "category_id"]).iterrows():
        n = int(row["n"])
        delta = (int(row["correct_b"]) - int(row["correct_a"])) / n if n else None
        if int(row["b"]) > int(row["c"]):
            significant = row["category_id"] in regressed
            verdict = Styled("regression" if significant else "worse, n.s.", "bad" if significant else "muted")
        elif int(row["c"]) > int(row["b"]):
            significant = row["category_id"] in improved
            verdict = Styled("improvement" if significant else "better, n.s.", "good" if significant else "muted")
        else:
            verdict = Styled("no change", "muted")
        category_rows.append((row["category_id"], n, pct(row["accuracy_a"]), pct(row["accuracy_b"]), pp(delta),
                              int(row["b"]), int(row["c"]), p_value(row["p_value"]), p_value(row["p_value_holm"]),
                              verdict))

    flipped = result.flipped
    texts_a = grades_a.set_index("item_id")
    texts_b = grades_b.set_index("item_id")
    flipped = (flipped.assign(_improved=flipped["direction"] != "regressed")
               .sort_values(["_improved", "category_id", "item_id"]).drop(columns="_improved"))
    def decided(texts: pd.DataFrame, item_id: str, behavior: str) -> str:
        return f"{behavior}{_blocked(texts.loc[item_id])}" if item_id in texts.index else behavior

    flip_rows = [(f.item_id, f.category_id, f.expected_behavior, decided(texts_a, f.item_id, f.behavior_a),
                  decided(texts_b, f.item_id, f.behavior_b), Styled(f.direction, "bad" if f.direction == "regressed" else "good"))
                 for f in flipped.itertuples()]

    def excerpt(f: Any) -> Excerpt:
        row_a = texts_a.loc[f.item_id] if f.item_id in texts_a.index else pd.Series(dtype=object)
        row_b = texts_b.loc[f.item_id] if f.item_id in texts_b.index else pd.Series(dtype=object)
        return Excerpt(
            title=f"{f.direction} · {f.category_id}",
            facts=(("item", f.item_id), ("expected", text_of(f.expected_behavior)),
                   (name_a, f"{f.behavior_a}{_blocked(row_a)} ({f.outcome_a})"),
                   (name_b, f"{f.behavior_b}{_blocked(row_b)} ({f.outcome_b})")),
            passages=(("prompt", prompt_of(row_a.to_dict())),
                      (f"response of {name_a}", shown_response(row_a.get("response_text"), f.outcome_a, redact)),
                      (f"response of {name_b}", shown_response(row_b.get("response_text"), f.outcome_b, redact))),
            tone="bad" if f.direction == "regressed" else "good",
        )

    regressed = flipped[flipped["direction"] == "regressed"]
    o = result.overall
    headline = Stats((
        Stat("Paired items", str(result.n_paired), f"{result.n_unpaired} unpaired · {result.n_invalid} invalid"),
        Stat("Answered as expected", f"{pct(result.correct_a / result.n_paired if result.n_paired else None)} → "
             f"{pct(result.correct_b / result.n_paired if result.n_paired else None)}", f"{name_a} → {name_b}"),
        Stat("Flipped", f"{o.b} worse · {o.c} better", f"McNemar {_p(o)}",
             "bad" if o.b > o.c and o.p_value < alpha else "good" if o.c > o.b and o.p_value < alpha else ""),
        Stat("Significant categories", f"{len(summary.regressions)} worse · {len(summary.improvements)} better",
             f"Holm-adjusted, alpha = {alpha:g}", "bad" if summary.regressions else ""),
    ))
    note = redaction_note(redact)
    sections = tuple(s for s in (
        section("Summary", Paragraph(summary_paragraph(summary, name_a, name_b)), headline,
                _rates_table(grades_a, grades_b, summary, name_a, name_b)),
        layers_section({name_a: grades_a, name_b: grades_b}),
        section("By category",
                Paragraph(f"Regressed counts items {name_a} answered as expected and {name_b} did not; improved the "
                          "reverse. Exact McNemar per category; Holm-adjusted p-values account for testing every "
                          "category at once."),
                _category_chart(by, name_a, name_b),
                table(("category", "paired", name_a, name_b, "change", "regressed", "improved", "p", "p (Holm)",
                       "verdict"), category_rows,
                      numeric=("paired", "change", "regressed", "improved", "p", "p (Holm)"))),
        section(f"Flipped items ({len(flipped)})",
                table(("item", "category", "expected", name_a, name_b, "direction"), flip_rows, limit=500),
                Paragraph(f"The regressions in full (at most {max_excerpts}). {note} Model output is shown "
                          "as text.") if len(regressed) else None,
                *(excerpt(f) for f in regressed.head(max_excerpts).itertuples())),
    ) if s is not None)
    parts = {**grades_lineage(grades_a, name_a), **grades_lineage(grades_b, name_b)}
    return Document(
        title=f"Checkpoint comparison: {name_a} vs {name_b}",
        subtitle=f"{result.n_paired} paired items · {len(flipped)} flipped",
        sections=sections,
        footer=footer(parts, lineage),
        kind="comparison",
    )
