"""The safety report of one checkpoint under one policy version.

What a launch review reads: under-refusal, harmful compliance and over-refusal with
Wilson intervals, per domain, category and severity; whether the pack's launch
thresholds hold; how far the grader can be trusted (when a validation is given); the
worst failures with the prompt and response; and the lineage of every number.

The launch gate section is `launch_gate.evaluate_pack_gate`, the rule the blocking
Dagster check applies, so the report and the check cannot disagree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..errors import InputError, PolicyevalError
from ..launch_gate import GateResult, evaluate_pack_gate, upper_bound_holds
from ..policy.model import SEVERITIES, PolicyPack, Thresholds
from ..records import OVER_REFUSAL, UNDER_REFUSAL
from ..stats.intervals import rate
from ..stats.metrics import metrics_report
from ..validation import DECIDING_BEHAVIOR, CorrectedRate, Detection, GraderValidation, corrected_rate_for
from . import charts
from .lineage import footer, grades_lineage
from .redaction import Redaction, check_redaction, prompt_of, redaction_note, shown_response
from .layers import layers_section
from .render import (
    Chart, Document, Excerpt, Paragraph, Section, Stat, Stats, Styled, pct, plural, rate_text, section, table,
    text_of,
)

SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
RATE_NAMES = {"under_refusal": "under-refusal", "over_refusal": "over-refusal", "partial": "partial",
              "harmful_compliance": "harmful compliance"}


def corrected_rates(metrics: Mapping[str, pd.DataFrame], validation: GraderValidation) -> dict[str, CorrectedRate]:
    """Overall under- and over-refusal corrected for the grader's measured error (Rogan-Gladen).

    Under-refusal is the share graded `comply` on should-refuse items, so it is corrected
    with the grader as a detector of `comply`; over-refusal with the detector of `refuse`.
    """
    out: dict[str, CorrectedRate] = {}
    if not len(metrics["overall"]):
        return out
    row = metrics["overall"].iloc[0]
    for name, behavior in DECIDING_BEHAVIOR.items():
        detector: Detection | None = validation.detection.get(behavior)
        if detector is not None:
            out[name] = corrected_rate_for(int(row[f"{name}_k"]), int(row[f"{name}_n"]), detector)
    return out


def load_grader_validation(path: str | os.PathLike) -> GraderValidation:
    """A GraderValidation from the JSON `policyeval validate-grader --json` prints."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a JSON file ({exc})") from None
    try:
        detections = {}
        for behavior, d in data.get("detection", {}).items():
            tp, fn, tn, fp = (int(d[k]) for k in ("true_positive", "false_negative", "true_negative", "false_positive"))
            detections[behavior] = Detection(behavior, tp, fn, tn, fp, rate(tp, tp + fn), rate(tn, tn + fp))
        n, correct = int(data["n_items"]), int(data["n_correct"])
        accuracy = rate(correct, n)
        return GraderValidation(
            n_items=n, n_missing=int(data.get("n_missing", 0)), n_error=int(data.get("n_error", 0)),
            n_unparseable=int(data.get("n_unparseable", 0)), n_correct=correct, accuracy=accuracy.rate,
            accuracy_low=accuracy.low, accuracy_high=accuracy.high, cohen_kappa=data.get("cohen_kappa"),
            labels=tuple(data.get("labels", detections)), confusion=data.get("confusion", {}), detection=detections,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(path, f"not a grader validation (the JSON of `policyeval validate-grader --json`): {exc}") from None


# ---------------------------------------------------------------------------


def _one(grades: pd.DataFrame, column: str) -> str:
    values = sorted({str(v) for v in grades[column].dropna()}) if column in grades.columns else []
    if len(values) > 1:
        raise PolicyevalError(f"the grades table holds {len(values)} values of {column} ({', '.join(values[:5])}); "
                              "a safety report covers one policy version and one checkpoint: filter the table first")
    return values[0] if values else ""


def _severity_of(grades: pd.DataFrame, pack: PolicyPack | None) -> dict[str, str]:
    out = {}
    if "severity" in grades.columns:
        for category, severity in zip(grades["category_id"], grades["severity"]):
            if isinstance(severity, str) and severity:
                out.setdefault(category, severity)
    if pack is not None:
        out.update({c.id: c.severity for _, c in pack.categories()})
    return out


def _rate_cell(row: pd.Series, name: str, limit: float | None = None) -> Styled | str:
    text = rate_text(row, name)
    if limit is None or not int(row[f"{name}_n"]):
        return text
    return Styled(text, "good" if upper_bound_holds(row, name, limit) else "bad")


def _metrics_rows(frame: pd.DataFrame, keys: list[str], thresholds: Thresholds | None,
                  severity_of: Mapping[str, str] | None = None) -> list[tuple[Any, ...]]:
    rows = []
    for _, row in frame.iterrows():
        severity = row.get("severity") or (severity_of or {}).get(row.get("category_id", ""), "")
        under_limit = thresholds.under_refusal_upper.get(severity) if thresholds is not None and severity else None
        over_limit = thresholds.over_refusal_upper if thresholds is not None else None
        harm_limit = thresholds.harmful_compliance_upper if thresholds is not None else None
        rows.append((
            *(row[k] for k in keys),
            int(row["n"]),
            _rate_cell(row, "under_refusal", under_limit),
            _rate_cell(row, "harmful_compliance", harm_limit),
            _rate_cell(row, "over_refusal", over_limit),
            rate_text(row, "partial"),
            int(row["n_error"]),
            int(row["n_unparseable"]),
        ))
    return rows


METRIC_COLUMNS = ("items", "under-refusal", "harmful compliance", "over-refusal", "partial", "errors", "unparseable")


def worst_failures(grades: pd.DataFrame, limit: int = 10) -> pd.DataFrame:
    """Under-refusals (most severe first, surest grades first), then over-refusals; `limit` of each."""
    if "outcome" not in grades.columns:
        return grades.iloc[0:0]
    parts = []
    for outcome in (UNDER_REFUSAL, OVER_REFUSAL):
        rows = grades[grades["outcome"] == outcome].copy()
        rows["_severity"] = rows["severity"].map(SEVERITY_ORDER).fillna(9) if "severity" in rows else 9
        rows["_confidence"] = -rows["confidence"].fillna(0) if "confidence" in rows else 0
        parts.append(rows.sort_values(["_severity", "_confidence", "category_id", "item_id"]).head(limit))
    return pd.concat(parts).drop(columns=["_severity", "_confidence"])


def failure_excerpt(row: Mapping[str, Any], redact: Redaction) -> Excerpt:
    outcome = str(row.get("outcome") or "")
    facts = [("item", text_of(row.get("item_id"))), ("category", text_of(row.get("category_id"))),
             ("severity", text_of(row.get("severity"))), ("expected", text_of(row.get("expected_behavior"))),
             ("observed", text_of(row.get("behavior")))]
    confidence = row.get("confidence")
    if confidence is not None and not pd.isna(confidence):
        facts.append(("grader confidence", f"{float(confidence):.2f}"))
    if row.get("mutation"):
        facts.append(("mutation", text_of(row.get("mutation"))))
    return Excerpt(
        title=f"{RATE_NAMES.get(outcome, outcome)} · {text_of(row.get('category_id'))}",
        facts=tuple((k, v) for k, v in facts if v),
        passages=(("prompt", prompt_of(row)), ("response", shown_response(row.get("response_text"), outcome, redact))),
        tone="bad" if outcome == UNDER_REFUSAL else "warn",
    )


def _headline(overall: pd.Series | None, verdict: str, corrected: Mapping[str, CorrectedRate]) -> Stats:
    if overall is None:
        return Stats((Stat("Graded items", "0"),))
    stats = []
    for name, label, denominator in (("under_refusal", "Under-refusal", "should-refuse"),
                                     ("harmful_compliance", "Harmful compliance", "harm-judged"),
                                     ("over_refusal", "Over-refusal", "should-comply")):
        k, n = int(overall[f"{name}_k"]), int(overall[f"{name}_n"])
        value = overall[f"{name}_rate"]
        detail = (f"95% CI {pct(float(overall[f'{name}_low']))}–{pct(float(overall[f'{name}_high']))} · "
                  f"{k} of {n} {denominator} items") if n else f"no {denominator} items"
        fixed = corrected.get(name)
        if fixed is not None and fixed.corrected is not None:
            bounds = f" [{pct(fixed.low)}–{pct(fixed.high)}]" if fixed.low is not None else ""
            detail += f" · corrected for grader error: {pct(fixed.corrected)}{bounds}"
        stats.append(Stat(label, pct(None if pd.isna(value) else float(value)), detail))
    tone = {"PASS": "good", "FAIL": "bad", "INCOMPLETE": "warn"}.get(verdict, "")
    stats.append(Stat("Launch gate", verdict, "the pack's thresholds, see below", tone))  # type: ignore[arg-type]
    stats.append(Stat("Graded items", str(int(overall["n"])),
                      f"{plural(int(overall['n_error']), 'error')} · {int(overall['n_unparseable'])} unparseable "
                      "(outside every rate)"))
    return Stats(tuple(stats))


def behavior_table(grades: pd.DataFrame) -> pd.DataFrame:
    """Expected x observed behavior counts: where safe completions, confirmations and
    partial answers show as such, not folded into a rate."""
    if grades.empty or "behavior" not in grades or "expected_behavior" not in grades:
        return pd.DataFrame(columns=["expected", "observed", "items", "harmful"])
    frame = grades.assign(expected=grades["expected_behavior"].fillna(""), observed=grades["behavior"].fillna(""),
                          harmful_true=grades["harmful"].fillna(False).astype(bool) if "harmful" in grades else False)
    counts = frame.groupby(["expected", "observed"], sort=True).agg(items=("observed", "size"),
                                                                  harmful=("harmful_true", "sum"))
    return counts.reset_index()


def _behavior_section(grades: pd.DataFrame) -> Section:
    counts = behavior_table(grades)
    rows = [(r.expected, r.observed, int(r.items), int(r.harmful)) for r in counts.itertuples()]
    return section(
        "Observed behavior",
        Paragraph("What each response did, by what the policy expected: a safe completion or a confirmation "
                  "request is counted as itself. The harmful column counts the responses the grader found to contain "
                  "disallowed content, whatever their behavior."),
        table(("expected", "observed", "items", "harmful"), rows, numeric=("items", "harmful")),
    )


def _gate_section(gate: GateResult | None) -> Section:
    if gate is None:
        return section("Launch gate", Paragraph("No policy pack given: no thresholds to check."))
    tone = {True: "good", False: "bad", None: "warn"}
    rows = [(r.label, r.observed, r.basis, r.threshold_text(), Styled(r.result, tone[r.passed]))  # type: ignore[arg-type]
            for r in gate.rows]
    return section(
        "Launch gate",
        Paragraph(f"Verdict: {gate.verdict}. Thresholds from the pack. Rates are held to them on the upper bound of the "
                  "95% Wilson interval, so a small sample cannot pass by luck; error and unparseable shares as "
                  "observed over every graded item; the grader's kappa against human gold labels, when measured. "
                  "A threshold with nothing measured is not a pass."),
        table(("check", "observed", "compared", "threshold", "result"), rows) if rows
        else Paragraph("No threshold of the pack applies to these categories."),
    )


def _rate_chart(category: pd.DataFrame) -> Chart:
    rows = []
    for _, row in category.iterrows():
        for name in ("under_refusal", "over_refusal"):
            if not int(row[f"{name}_n"]):
                continue
            rows.append({"category": row["category_id"], "series": RATE_NAMES[name], "rate": row[f"{name}_rate"],
                         "low": row[f"{name}_low"], "high": row[f"{name}_high"], "label": rate_text(row, name)})
    frame = pd.DataFrame(rows, columns=["category", "series", "rate", "low", "high", "label"])
    return charts.rate_chart(frame, title="Under- and over-refusal per category (95% Wilson intervals)",
                             series_order=["under-refusal", "over-refusal"])


def _validity_section(validation: GraderValidation, corrected: Mapping[str, CorrectedRate]) -> Section:
    accuracy = (f"{pct(validation.accuracy)} [{pct(validation.accuracy_low)}–{pct(validation.accuracy_high)}] "
                f"({validation.n_correct}/{validation.n_items})")
    kappa = f"{validation.cohen_kappa:.3f}" if validation.cohen_kappa is not None else "undefined"
    detection_rows = [
        (behavior, d.sensitivity.format(), d.specificity.format())
        for behavior, d in validation.detection.items()
    ]
    corrected_rows = []
    for name, c in corrected.items():
        value = "undefined" if c.corrected is None else pct(c.corrected)
        bounds = "" if c.low is None else f"{pct(c.low)}–{pct(c.high)}"
        corrected_rows.append((RATE_NAMES[name], f"{pct(c.raw)} [{pct(c.raw_low)}–{pct(c.raw_high)}]", value, bounds,
                               c.note))
    return section(
        "Grader validity",
        Paragraph(f"Against {validation.n_items} human-labeled gold items the grader agreed on {accuracy}; "
                  f"Cohen's kappa {kappa}. {validation.n_error} errors and {validation.n_unparseable} unparseable "
                  "verdicts on the gold set count as wrong."),
        table(("behavior", "sensitivity", "specificity"), detection_rows,
              caption="The grader as a detector of each behavior: comply decides under-refusal, refuse over-refusal."),
        table(("rate", "as graded", "corrected", "corrected 95% interval", "note"), corrected_rows,
              caption="Rates corrected for the grader's measured error (Rogan-Gladen, bootstrap interval).")
        if corrected_rows else None,
    )


def safety_document(
    grades: pd.DataFrame,
    pack: PolicyPack | None = None,
    *,
    validation: GraderValidation | None = None,
    corrected: Mapping[str, CorrectedRate] | None = None,
    lineage: Mapping[str, Any] | None = None,
    redact: Redaction = "none",
    max_failures: int = 10,
) -> Document:
    """The safety report of one policy version x checkpoint's grades.

    `corrected` (rate name -> CorrectedRate) overrides the corrections computed from
    `validation`; `lineage` adds manifest_hash, run_id, generated_at or anything else
    to the footer.
    """
    redact = check_redaction(redact)
    for column in ("item_id", "category_id", "expected_behavior"):
        if column not in grades.columns:
            raise PolicyevalError(f"grades table lacks column {column}")
    checkpoint = _one(grades, "checkpoint_id")
    policy_hash = _one(grades, "policy_hash")
    version = _one(grades, "policy_version")
    metrics = metrics_report(grades)
    thresholds = pack.header.thresholds if pack is not None else None
    gate = evaluate_pack_gate(metrics, pack, validation) if pack is not None else None
    verdict = gate.verdict if gate is not None else "NO PACK"
    fixes = dict(corrected_rates(metrics, validation)) if validation is not None else {}
    fixes.update(corrected or {})
    overall = metrics["overall"].iloc[0] if len(metrics["overall"]) else None
    severity_of = _severity_of(grades, pack)

    warnings = []
    if pack is not None and policy_hash and pack.content_hash and policy_hash != pack.content_hash:
        warnings.append(Paragraph(
            f"These grades were produced under policy hash {policy_hash[:12]}, but the pack given is "
            f"{pack.version} ({pack.content_hash[:12]}): thresholds and severities are the given pack's.", "warn"))

    domain_rows = _metrics_rows(metrics["domain"], ["domain_id"], None)
    if overall is not None:
        domain_rows.append(("(overall)", *_metrics_rows(metrics["overall"], [], thresholds)[0]))
    category = metrics["category"].copy()
    category["severity"] = [severity_of.get(c, "") for c in category["category_id"]]
    category["_order"] = [SEVERITY_ORDER.get(s, 9) for s in category["severity"]]
    category = category.sort_values(["_order", "domain_id", "category_id"])
    severity = metrics["severity"].copy()
    if "severity" in severity.columns:
        severity = severity.iloc[sorted(range(len(severity)), key=lambda i: SEVERITY_ORDER.get(severity["severity"].iat[i], 9))]


    failures = worst_failures(grades, max_failures)
    n_under = int((grades.get("outcome") == UNDER_REFUSAL).sum()) if "outcome" in grades else 0
    n_over = int((grades.get("outcome") == OVER_REFUSAL).sum()) if "outcome" in grades else 0
    note = redaction_note(redact)

    sections = [
        section("Summary", *warnings, _headline(overall, verdict, fixes)),
        _gate_section(gate),
        section("By domain",
                table(("domain", *METRIC_COLUMNS), domain_rows, numeric=("items", "errors", "unparseable"))),
        section("By category",
                _rate_chart(category),
                table(("domain", "category", "severity", *METRIC_COLUMNS),
                      _metrics_rows(category, ["domain_id", "category_id", "severity"], thresholds, severity_of),
                      numeric=("items", "errors", "unparseable"),
                      caption="Coloured against the pack's threshold for the category's severity (upper bound).")),
        section("By severity",
                table(("severity", *METRIC_COLUMNS), _metrics_rows(severity, ["severity"], thresholds)
                      if "severity" in severity.columns else [], numeric=("items", "errors", "unparseable"))),
        _behavior_section(grades),
    ]
    layers = layers_section({checkpoint or "checkpoint": grades})
    if layers is not None:
        sections.insert(2, layers)
    if validation is not None or fixes:
        if validation is not None:
            sections.append(_validity_section(validation, fixes))
        else:
            sections.append(section("Grader validity", table(
                ("rate", "corrected", "note"),
                [(RATE_NAMES.get(k, k), pct(c.corrected), c.note) for k, c in fixes.items()])))
    sections.append(section(
        "Worst failures",
        Paragraph(f"{plural(n_under, 'under-refusal')} and {plural(n_over, 'over-refusal')} in all; the most severe are shown "
                  f"(at most {max_failures} of each). {note} Model output is shown as text."),
        *(failure_excerpt(row, redact) for row in failures.to_dict("records")),
    ))

    policy_label = f"{pack.id} {pack.version}" if pack is not None else version
    parts = {"policy": policy_label, **grades_lineage(grades)}
    if pack is not None:
        parts["policy hash"] = pack.content_hash if not policy_hash or policy_hash == pack.content_hash \
            else f"{pack.content_hash} (grades: {policy_hash})"
    return Document(
        title=f"Safety report: {checkpoint or 'checkpoint'} under {policy_label or 'policy'}",
        subtitle=f"{len(grades)} graded items · launch gate {verdict}",
        sections=tuple(sections),
        footer=footer(parts, lineage),
        kind="safety",
    )
