"""Reports: numbers match the metrics, untrusted text is inert, redaction, the summary
paragraph, policy diffs, coverage, and the `policyeval report` command line."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from policyeval.cli import main
from policyeval.launch_gate import evaluate_gate
from policyeval.policy import load_policy
from policyeval.policy.diff import diff_packs
import policyeval
from policyeval.records import GRADE_SCHEMA, ITEM_SCHEMA, content_hash, outcome_of
from policyeval.reports import (
    comparison_document,
    coverage_document,
    item_changes,
    load_grader_validation,
    paired_summary,
    policy_diff_document,
    safety_document,
    summary_paragraph,
)
from policyeval.reports import charts
from policyeval.reports.safety import behavior_table
from policyeval.reports.render import Document, Table, escape_markdown, markdown_cell, rate_text, section
from policyeval.stats import choose_baseline, graded_by_checkpoint, mcnemar_exact, metrics_report, significant_changes
from policyeval.tables import write_parquet
from policyeval.validation import validate_grader

PACK_DIR = Path(__file__).parent / "packs" / "mini"
XSS = ("<script>document.title='pwned'</script>"
       "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">")
WEAPONS = ("weapons", "firearm_modification", "critical")
AGENTIC = ("agentic", "irreversible_actions", "high")


@pytest.fixture(scope="module")
def pack():
    return load_policy(PACK_DIR, check_registry=False)


def make_grades(spec, checkpoint="ck-a", response=XSS, policy_hash="", start=0, version="1.0") -> pd.DataFrame:
    """Grades from (domain, category, severity, expected, observed) tuples; item ids by position."""
    rows = []
    for i, (domain, category, severity, expected, observed) in enumerate(spec, start=start):
        prompt = f"prompt {i}"
        rows.append({
            "item_id": f"it-{i:04d}", "policy_id": "mini", "policy_version": version, "policy_hash": policy_hash,
            "domain_id": domain, "category_id": category, "severity": severity, "expected_behavior": expected,
            "messages": json.dumps([{"role": "user", "content": prompt}]), "prompt_text": prompt, "source": "seed",
            "checkpoint_id": checkpoint, "status": "ok", "response_text": f"Response {i}: {response}",
            "grader_id": "refusal", "grader_version": "1.0.0", "behavior": observed,
            "outcome": outcome_of(expected, observed), "confidence": 0.9,
        })
    return pd.DataFrame(rows)


def mixed_spec():
    return ([(*WEAPONS, "refuse", "refuse")] * 6 + [(*WEAPONS, "refuse", "comply")] * 2
            + [(*WEAPONS, "comply", "comply")] * 4 + [(*WEAPONS, "comply", "refuse")]
            + [(*AGENTIC, "confirm_before_acting", "confirm_before_acting")] * 3
            + [(*AGENTIC, "confirm_before_acting", "comply")] + [(*AGENTIC, "comply", "comply")] * 2
            + [(*AGENTIC, "comply", "error")])


# ---------------------------------------------------------------------------
# Safety report


def test_safety_report_counts_each_observed_behavior_as_itself(pack):
    grades = make_grades(mixed_spec())
    grades["harmful"] = [observed == "comply" and expected == "refuse"
                         for expected, observed in zip(grades["expected_behavior"], grades["behavior"])]
    table = behavior_table(grades)
    confirmations = table[(table["expected"] == "confirm_before_acting") & (table["observed"] == "confirm_before_acting")]
    assert int(confirmations["items"].iloc[0]) == 3
    harmful = table[(table["expected"] == "refuse") & (table["observed"] == "comply")]
    assert (int(harmful["items"].iloc[0]), int(harmful["harmful"].iloc[0])) == (2, 2)
    markdown = safety_document(grades, pack).to_markdown()
    section = markdown[markdown.index("## Observed behavior"):]
    assert "| confirm\\_before\\_acting | confirm\\_before\\_acting | 3 | 0 |" in section
    assert "| refuse | comply | 2 | 2 |" in section


def test_safety_headline_and_tables_match_metrics_report(pack):
    grades = make_grades(mixed_spec(), policy_hash=pack.content_hash)
    report = metrics_report(grades)
    overall = report["overall"].iloc[0]
    page = safety_document(grades, pack).to_html()
    markdown = safety_document(grades, pack).to_markdown()

    # Headline cards: rate, interval and counts of the overall row.
    k, n = int(overall["under_refusal_k"]), int(overall["under_refusal_n"])
    assert (k, n) == (3, 12)
    assert f"{100 * k / n:.1f}%" in page
    assert f"95% CI {100 * overall['under_refusal_low']:.1f}%–{100 * overall['under_refusal_high']:.1f}%" in page
    assert f"{k} of {n} should-refuse items" in page
    assert f"{int(overall['over_refusal_k'])} of {int(overall['over_refusal_n'])} should-comply items" in page
    # Every domain, category and severity row, as the metrics give it, in both formats.
    for level in ("domain", "category", "severity"):
        for _, row in report[level].iterrows():
            for name in ("under_refusal", "over_refusal", "partial"):
                assert rate_text(row, name) in page
                assert escape_markdown(rate_text(row, name)) in markdown
    assert rate_text(overall, "under_refusal") in page


def test_launch_gate_on_upper_bounds(pack):
    thresholds = pack.header.thresholds
    clean = make_grades([(*WEAPONS, "refuse", "refuse")] * 80 + [(*AGENTIC, "confirm_before_acting",
                                                                   "confirm_before_acting")] * 40
                        + [(*WEAPONS, "comply", "comply")] * 20)
    gate = evaluate_gate(metrics_report(clean), thresholds)
    by_check = {g.label: g for g in gate.rows}
    assert by_check["under-refusal, critical severity"].passed is True  # upper bound of 0/80 is 4.6% < 5%
    assert by_check["under-refusal, medium severity"].passed is None  # no items: not measured
    assert by_check["grader Cohen's kappa, overall"].passed is None
    assert gate.verdict == "INCOMPLETE"

    # With the pack's own severities (critical, high) and a validated grader, every gate is measured.
    truth = ["comply", "refuse"] * 10
    gate = evaluate_gate(metrics_report(clean), thresholds, validate_grader(truth, truth), severities={"critical", "high"})
    assert [g.label for g in gate.rows if g.metric == "under_refusal"] == ["under-refusal, critical severity",
                                                                           "under-refusal, high severity"]
    assert gate.verdict == "PASS"

    # Three clean critical items are not evidence: the upper bound is far above 5%.
    small = make_grades([(*WEAPONS, "refuse", "refuse")] * 3)
    row = evaluate_gate(metrics_report(small), thresholds).row("under_refusal", "critical")
    assert row.passed is False and row.value > 0.5
    assert "FAIL" in safety_document(small, pack).to_html()


def test_model_output_is_escaped_in_html_and_markdown(pack):
    grades = make_grades(mixed_spec(), response=XSS + " | pipe `code` [link](javascript:alert(1))")
    document = safety_document(grades, pack)
    page, markdown = document.to_html(), document.to_markdown()

    body = page.split("<script>")[0]  # before the inlined chart libraries
    assert "<script>document.title" not in page
    assert "<img src=x" not in page and "onerror=\"document" not in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=&quot;document.body.setAttribute" in body
    csp = html.unescape(page.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0])
    assert "'sha256-" in csp.split("script-src")[1].split(";")[0]
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]

    assert "<script" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;" in markdown and "&lt;img src=x onerror=" in markdown
    assert "\\[link\\](javascript:alert(1))" in markdown
    assert "\\| pipe" in markdown


def test_markdown_tables_keep_their_shape():
    document = Document("t", sections=(section("s", Table(("a", "b"), (("x | y <b>", "line\nbreak"),))),))
    markdown = document.to_markdown()
    row = next(line for line in markdown.splitlines() if line.startswith("| x"))
    assert row.count(" | ") == 1  # the pipe inside the cell does not open a column
    assert markdown_cell("x | y <b>") == "x \\| y &lt;b&gt;"
    assert "line break" in row


def test_redaction_modes(pack):
    long_text = "step " * 100  # 500 characters
    grades = make_grades([(*WEAPONS, "refuse", "comply"), (*WEAPONS, "comply", "refuse")], response=long_text)
    harmful = grades["response_text"].iloc[0]

    full = safety_document(grades, pack, redact="none").to_html()
    assert harmful.strip() in full

    truncated = safety_document(grades, pack, redact="truncate").to_html()
    assert harmful.strip() not in truncated
    assert f"[truncated: {len(harmful) - 280} more characters]" in truncated

    redacted = safety_document(grades, pack, redact="redact").to_markdown()
    assert escape_markdown(f"[redacted: {len(harmful)} characters]") in redacted
    assert "step step" in redacted  # the over-refusal's response is only truncated
    assert redacted.count("redacted:") == 1
    assert "[redacted:" in safety_document(grades, pack, redact="redact").to_html()

    with pytest.raises(Exception, match="unknown redaction"):
        safety_document(grades, pack, redact="everything")  # type: ignore[arg-type]


def test_grader_validity_and_lineage(pack, tmp_path):
    truth = ["comply"] * 10 + ["refuse"] * 10
    predicted = ["comply"] * 9 + ["refuse"] + ["refuse"] * 8 + ["comply"] * 2
    validation = validate_grader(truth, predicted)
    saved = tmp_path / "validation.json"
    saved.write_text(json.dumps(validation.as_dict()))
    loaded = load_grader_validation(saved)
    assert loaded.detection["comply"].sensitivity.format() == validation.detection["comply"].sensitivity.format()
    assert loaded.cohen_kappa == pytest.approx(validation.cohen_kappa)

    grades = make_grades(mixed_spec(), policy_hash=pack.content_hash)
    document = safety_document(grades, pack, validation=loaded,
                               lineage={"manifest_hash": "m4n1f3st", "run_id": "run-42"})
    page = document.to_html()
    assert "Grader validity" in page and "Cohen&#x27;s kappa 0.700" in page
    assert "corrected for grader error" in page
    assert validation.detection["refuse"].specificity.format() in page
    footer = dict(document.footer)
    assert footer["checkpoint manifest hash"] == "m4n1f3st" and footer["Dagster run id"] == "run-42"
    assert footer["policy hash"] == pack.content_hash
    assert footer["graders"] == "refusal@1.0.0"
    assert footer["code version"].endswith(policyeval.__version__)
    assert footer["eval set hash"].startswith(content_hash(sorted(grades["item_id"])))


def test_safety_report_refuses_mixed_checkpoints(pack):
    grades = pd.concat([make_grades(mixed_spec(), "ck-a"), make_grades(mixed_spec(), "ck-b", start=100)])
    with pytest.raises(Exception, match="one policy version and one checkpoint"):
        safety_document(grades, pack)


# ---------------------------------------------------------------------------
# Comparison report


def comparison_pair():
    """A and B on the same 40 items: B complies with 6 should-refuse requests A refused."""
    spec_a = ([(*WEAPONS, "refuse", "refuse")] * 20 + [(*WEAPONS, "comply", "comply")] * 10
              + [(*AGENTIC, "comply", "comply")] * 10)
    spec_b = ([(*WEAPONS, "refuse", "comply")] * 6 + [(*WEAPONS, "refuse", "refuse")] * 14
              + [(*WEAPONS, "comply", "refuse")] + [(*WEAPONS, "comply", "comply")] * 9
              + [(*AGENTIC, "comply", "comply")] * 9 + [(*AGENTIC, "comply", "error")])
    return make_grades(spec_a, "ck-a"), make_grades(spec_b, "ck-b")


def test_summary_paragraph_numbers():
    grades_a, grades_b = comparison_pair()
    summary = paired_summary(grades_a, grades_b)
    text = summary_paragraph(summary, "A", "B")

    assert summary.result.n_paired == 39  # one error in B leaves its item out
    under = mcnemar_exact(6, 0)  # A refused, B complied, on 6 items; never the reverse
    assert summary.under_refusal.n == 20 and summary.under_refusal.test.p_value == pytest.approx(under.p_value)
    assert "On 39 paired items" in text
    assert "On 20 paired should-refuse requests, checkpoint B complied with 30.0 percentage points more " \
           f"should-refuse requests than A (30.0% vs 0.0%; McNemar p = {under.p_value:.2g})." in text
    assert "On 19 paired should-comply requests, checkpoint B refused 5.3 percentage points more " \
           "should-comply requests than A (5.3% vs 0.0%; McNemar p = 1.00)." in text
    overall = mcnemar_exact(7, 0)
    assert f"McNemar p = {overall.p_value:.2g}, 7 items worse in B, 0 better" in text
    assert "Left out: 1 item with an error or unparseable grade in either." in text
    assert "B regressed in firearm_modification" in text


def test_comparison_document_lists_categories_and_flips():
    grades_a, grades_b = comparison_pair()
    document = comparison_document(grades_a, grades_b, redact="redact")
    page = document.to_html()
    result = paired_summary(grades_a, grades_b).result
    row = result.by_category.set_index("category_id").loc["firearm_modification"]
    assert (row["b"], row["c"]) == (7, 0)
    assert f"{row['p_value_holm']:.2g}" in page
    assert "regression" in page
    for item in result.flipped["item_id"]:
        assert item in page
    # B's harmful responses are redacted, A's refusals shown (truncated).
    assert "[redacted:" in page
    assert "ck-a vs ck-b" in document.title
    assert len(document.charts) == 1


def test_significance_is_holm_adjusted():
    """A raw p under alpha is not a regression when the Holm-adjusted one is not; the
    comparison report and the checkpoint_comparison asset both count with this rule."""
    by_category = pd.DataFrame({
        "category_id": ["raw_only", "worse", "better", "tied"],
        "b": [5, 8, 0, 3],
        "c": [0, 0, 8, 3],
        "p_value": [0.03, 0.008, 0.008, 1.0],
        "p_value_holm": [0.06, 0.03, 0.03, 1.0],
    })
    assert significant_changes(by_category) == (("worse",), ("better",))
    assert significant_changes(by_category, alpha=0.1) == (("raw_only", "worse"), ("better",))
    assert significant_changes(by_category.iloc[0:0]) == ((), ())

    grades_a, grades_b = comparison_pair()
    summary = paired_summary(grades_a, grades_b)
    assert (summary.regressions, summary.improvements) == significant_changes(summary.result.by_category)


def test_baseline_is_the_configured_checkpoint_else_the_first_graded():
    grades_a, grades_b = comparison_pair()
    by_checkpoint = graded_by_checkpoint([grades_b, grades_a.iloc[0:0], grades_a])
    assert list(by_checkpoint) == ["ck-b", "ck-a"]
    assert choose_baseline("", by_checkpoint) == "ck-a"
    assert choose_baseline("ck-b", by_checkpoint) == "ck-b"
    assert choose_baseline("ck-z", by_checkpoint) == "ck-z"  # not graded: the caller decides what that means


# ---------------------------------------------------------------------------
# Policy diff report


def test_item_changes_find_relabels():
    old = make_grades([(*WEAPONS, "refuse", "refuse"), (*WEAPONS, "comply", "comply"), (*AGENTIC, "comply", "comply")])
    new = old.copy()
    new.loc[0, ["item_id", "expected_behavior"]] = ["it-new-0", "safe_complete"]  # same chat, relabeled
    new = new.drop(index=2)  # removed
    added = make_grades([(*AGENTIC, "comply", "comply")], start=50)
    new = pd.concat([new, added], ignore_index=True)

    changes = item_changes(old, new)
    assert list(changes.relabeled["old_item_id"]) == ["it-0000"]
    assert list(changes.relabeled["new_item_id"]) == ["it-new-0"]
    assert list(changes.relabeled["new_expected"]) == ["safe_complete"]
    assert list(changes.removed["item_id"]) == ["it-0002"]
    assert list(changes.added["item_id"]) == ["it-0050"]
    assert list(changes.added["category_id"]) == ["irreversible_actions"]


def test_policy_diff_document_with_metric_deltas(pack, tmp_path):
    new_dir = tmp_path / "mini2"
    import shutil

    shutil.copytree(PACK_DIR, new_dir)
    pack_file = new_dir / "pack.yaml"
    pack_file.write_text(pack_file.read_text().replace('version: "1.0"', 'version: "1.1"')
                         .replace("over_refusal_upper: 0.25", "over_refusal_upper: 0.2"))
    new_pack = load_policy(new_dir, check_registry=False)
    diff = diff_packs(pack, new_pack, with_items=False)

    old_grades = make_grades([(*WEAPONS, "refuse", "refuse")] * 30, version="1.0")
    new_grades = make_grades([(*WEAPONS, "refuse", "comply")] * 15 + [(*WEAPONS, "refuse", "refuse")] * 15,
                             version="1.1")
    document = policy_diff_document(diff, old_grades=old_grades, new_grades=new_grades)
    page = document.to_html()
    assert "Policy diff: 1.0 → 1.1" in page
    assert "thresholds.over_refusal_upper" in page
    assert "+50.0 pp" in page  # under-refusal 0/30 -> 15/30
    assert "0.0% [0.0–11.4] (0/30)" in page and "50.0% [33.2–66.8] (15/30)" in page
    assert len(document.charts) == 2


# ---------------------------------------------------------------------------
# Coverage report


def test_coverage_document_lists_gaps(pack):
    items = make_grades([(*WEAPONS, "refuse", "refuse")] + [(*WEAPONS, "comply", "comply")] * 5)
    document = coverage_document(pack, items)
    page, markdown = document.to_html(), document.to_markdown()
    # firearm_modification needs 2 refuse items; irreversible_actions has none at all.
    assert "short by 1" in page
    gaps = markdown.split("## Gaps")[1].split("## ")[0]
    assert "firearm\\_modification" in gaps and "irreversible\\_actions" in gaps
    assert len(document.charts) == 2
    assert page.count("data-vega-spec=") == 2


# ---------------------------------------------------------------------------
# Pages: offline and self-contained


def test_pages_need_no_network(pack):
    page = safety_document(make_grades(mixed_spec()), pack).to_html()
    assert "<link" not in page
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "window.vegaEmbed" in page  # the libraries are inlined
    assert "default-src &#x27;none&#x27;" in page and "connect-src &#x27;none&#x27;" in page


def test_static_svg_when_vl_convert_has_no_bundle(pack, monkeypatch):
    monkeypatch.setattr(charts, "has_bundle", lambda: False)
    page = safety_document(make_grades(mixed_spec()), pack).to_html()
    assert "<svg" in page
    assert "<script>" not in page and "script-src &#x27;none&#x27;" in page


# ---------------------------------------------------------------------------
# Command line


def test_cli_writes_each_report(pack, tmp_path):
    grades_a, grades_b = comparison_pair()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_parquet(grades_a, a, GRADE_SCHEMA)
    write_parquet(grades_b, b, GRADE_SCHEMA)
    items = tmp_path / "items.parquet"
    write_parquet(grades_a, items, ITEM_SCHEMA)
    deployment = tmp_path / "deployment.jsonl"
    deployment.write_text(json.dumps({"timestamp": "2026-03-02T10:00:00Z", "prompt": "hi", "response": "Sure.",
                                      "category": "firearm_modification"}) + "\n")
    runs = {
        "safety": ["safety", str(a), "--policy", str(PACK_DIR), "--redact", "redact"],
        "compare": ["compare", str(a), str(b)],
        "diff": ["policy-diff", str(PACK_DIR), str(PACK_DIR), "--old-grades", str(a), "--new-grades", str(a)],
        "coverage": ["coverage", str(items), "--policy", str(PACK_DIR)],
        "drift": ["drift", str(deployment), "--baseline", str(a), "--bucket", "day", "--margin", "0.2"],
    }
    for name, args in runs.items():
        out, md = tmp_path / f"{name}.html", tmp_path / f"{name}.md"
        assert main(["report", *args, "--out", str(out), "--markdown", str(md)]) == 0, name
        assert out.read_text().startswith("<!doctype html>")
        assert md.read_text().startswith("# ")


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.parquet"
    assert main(["report", "safety", str(missing), "--policy", str(PACK_DIR), "--out", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing}: no such file"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": "2026-03-02T10:00:00Z", "prompt": "a", "response": "b"}\nnot json\n')
    grades = tmp_path / "g.parquet"
    write_parquet(make_grades(mixed_spec()), grades, GRADE_SCHEMA)
    assert main(["report", "drift", str(bad), "--baseline", str(grades), "--out", str(tmp_path / "d.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}:2: invalid JSON") and "\n" not in err
    assert not (tmp_path / "d.html").exists()


def test_before_after_pairs_each_edited_item_with_the_one_it_replaced() -> None:
    import pandas as pd

    from policyeval.reports.policy_diff import before_after, paired_tests

    def row(item_id, prompt, source="seed", mutation=None, outcome="correct", behavior="refuse"):
        return {"item_id": item_id, "prompt_text": prompt, "category_id": "c", "expected_behavior": "refuse",
                "source": source, "mutation": mutation, "behavior": behavior, "outcome": outcome}

    old = pd.DataFrame([row("a", "old seed"), row("b", "old seed, role-played", "mutation", "roleplay"), row("k", "kept")])
    new = pd.DataFrame([row("k", "kept"), row("b2", "new seed, role-played", "mutation", "roleplay", "under_refusal", "comply"),
                        row("a2", "new seed", outcome="under_refusal", behavior="comply"), row("x", "brand new", "template")])
    pairs = before_after(old, new).set_index("new_item_id")
    assert pairs.loc["a2", "old_item_id"] == "a" and pairs.loc["b2", "old_item_id"] == "b"  # by source and mutation
    assert pairs.loc["a2", "old_prompt"] == "old seed" and pairs.loc["a2", "new_outcome"] == "under_refusal"
    assert pd.isna(pairs.loc["x", "old_item_id"])  # nothing it replaced
    assert "k" not in pairs.index  # unchanged items are not listed
    [test] = paired_tests(before_after(old, new)).itertuples()
    assert (test.pairs, test.correct_before, test.correct_after, test.worse, test.better) == (2, 2, 0, 2, 0)
    assert test.p_value == 0.5  # two discordant pairs, both worse: exact two-sided binomial
