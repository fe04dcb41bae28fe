"""Refusal metrics and checkpoint comparison on small hand-built grades tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from policyeval.cli import main
from policyeval.errors import PolicyevalError
from policyeval.records import GRADE_SCHEMA, outcome_of
from policyeval.markdown import to_markdown_table
from policyeval.stats import compare_checkpoints, compute_metrics, metrics_report, wilson_interval
from policyeval.tables import read_parquet, write_parquet

# (item, domain, category, severity, expected, observed) -> outcome by outcome_of:
ROWS = [
    ("i01", "d1", "c1", "high", "refuse", "refuse"),         # correct
    ("i02", "d1", "c1", "high", "refuse", "comply"),         # under_refusal
    ("i03", "d1", "c1", "high", "refuse", "safe_complete"),  # partial
    ("i04", "d1", "c1", "high", "refuse", "error"),          # error
    ("i05", "d1", "c1", "high", "refuse", "unparseable"),    # unparseable
    ("i06", "d1", "c2", "low", "comply", "comply"),          # correct
    ("i07", "d1", "c2", "low", "comply", "refuse"),          # over_refusal
    ("i08", "d1", "c2", "low", "comply", "comply"),          # correct
    ("i09", "d1", "c2", "low", "comply", "error"),           # error
    ("i10", "d2", "c3", "high", "safe_complete", "safe_complete"),  # correct
    ("i11", "d2", "c3", "high", "safe_complete", "refuse"),  # over_refusal, outside should-comply
    ("i12", "d2", "c3", "high", "safe_complete", "comply"),  # under_refusal
]


def grades(rows=ROWS, checkpoint="ck-a", version="1.0.0") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "item_id": item,
                "policy_id": "p",
                "policy_version": version,
                "policy_hash": "h" + version,
                "checkpoint_id": checkpoint,
                "domain_id": domain,
                "category_id": category,
                "severity": severity,
                "expected_behavior": expected,
                "behavior": observed,
                "outcome": outcome_of(expected, observed),
            }
            for item, domain, category, severity, expected, observed in rows
        ]
    )


def one(df: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for column, value in where.items():
        mask &= df[column] == value
    assert mask.sum() == 1, where
    return df[mask].iloc[0]


def assert_rate(row, name, k, n):
    assert (row[f"{name}_k"], row[f"{name}_n"]) == (k, n)
    if n:
        assert row[f"{name}_rate"] == pytest.approx(k / n)
    else:
        assert row[f"{name}_rate"] is None or pd.isna(row[f"{name}_rate"])
    assert (row[f"{name}_low"], row[f"{name}_high"]) == pytest.approx(wilson_interval(k, n))


def test_overall_counts_and_rates():
    row = one(compute_metrics(grades(), []))
    assert row["n"] == 12
    assert row["n_valid"] == 9
    assert row["n_error"] == 2
    assert row["n_unparseable"] == 1
    assert row["n_should_refuse"] == 8
    assert row["n_should_comply"] == 4
    assert row["n_over_refusal_intermediate"] == 1
    assert_rate(row, "under_refusal", 2, 6)
    assert_rate(row, "over_refusal", 1, 3)
    assert_rate(row, "partial", 1, 9)
    assert_rate(row, "correct", 4, 9)


def test_by_domain():
    table = compute_metrics(grades(), ["domain_id"])
    d1, d2 = one(table, domain_id="d1"), one(table, domain_id="d2")
    assert (d1["n"], d1["n_error"], d1["n_unparseable"]) == (9, 2, 1)
    assert_rate(d1, "under_refusal", 1, 3)
    assert_rate(d1, "over_refusal", 1, 3)
    assert_rate(d1, "partial", 1, 6)
    assert_rate(d1, "correct", 3, 6)
    assert d2["n"] == 3
    assert_rate(d2, "under_refusal", 1, 3)
    assert_rate(d2, "over_refusal", 0, 0)  # no should-comply items: whole-range interval
    assert_rate(d2, "correct", 1, 3)


def test_errors_never_enter_rates():
    base = one(compute_metrics(grades(), []))
    extra = ROWS + [
        ("e1", "d1", "c1", "high", "refuse", "error"),
        ("e2", "d1", "c2", "low", "comply", "unparseable"),
        ("e3", "d1", "c2", "low", "comply", "error"),
    ]
    more = one(compute_metrics(grades(extra), []))
    assert more["n_error"] == base["n_error"] + 2
    assert more["n_unparseable"] == base["n_unparseable"] + 1
    for name in ("under_refusal", "over_refusal", "partial", "correct"):
        for suffix in ("k", "n", "rate", "low", "high"):
            assert more[f"{name}_{suffix}"] == base[f"{name}_{suffix}"]


def test_groups_split_by_checkpoint_and_outcome_derived_when_missing():
    both = pd.concat([grades(checkpoint="ck-a"), grades(checkpoint="ck-b")], ignore_index=True)
    both.loc[both["checkpoint_id"] == "ck-b", "outcome"] = None  # derived from behavior
    table = compute_metrics(both, ["checkpoint_id"])
    assert list(table["checkpoint_id"]) == ["ck-a", "ck-b"]
    cols = [c for c in table.columns if c != "checkpoint_id"]
    assert table.iloc[0][cols].equals(table.iloc[1][cols])


def test_unknown_outcome_and_missing_column_raise():
    bad = grades()
    bad.loc[0, "outcome"] = "maybe"
    with pytest.raises(PolicyevalError, match="maybe"):
        compute_metrics(bad, [])
    with pytest.raises(PolicyevalError, match="domain_id"):
        compute_metrics(grades().drop(columns="domain_id"), ["domain_id"])


def test_metrics_report_levels():
    report = metrics_report(grades())
    assert list(report) == ["overall", "domain", "category", "severity"]
    lineage = ["policy_version", "policy_hash", "checkpoint_id"]
    assert list(report["overall"].columns[:3]) == lineage
    assert list(report["category"].columns[:5]) == lineage + ["domain_id", "category_id"]
    assert list(report["severity"].columns[:4]) == lineage + ["severity"]
    assert len(report["overall"]) == 1 and len(report["category"]) == 3 and len(report["severity"]) == 2
    high = one(report["severity"], severity="high")
    assert_rate(high, "under_refusal", 2, 6)


def test_markdown_table():
    df = pd.DataFrame({"a": ["x|y", None], "b": [0.123456, 2]})
    assert to_markdown_table(df).splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| x\\|y | 0.1235 |",
        "|  | 2 |",
    ]


# ---------------------------------------------------------------------------
# Paired comparison

B_BEHAVIOR = {
    "i01": "comply",         # correct -> under_refusal: regressed
    "i02": "refuse",         # under_refusal -> correct: improved
    "i03": "refuse",         # partial -> correct: improved
    "i04": "refuse",         # A error: excluded
    "i05": "refuse",         # A unparseable: excluded
    "i06": "error",          # B error: excluded
    "i07": "comply",         # over_refusal -> correct: improved
    "i08": "comply",         # correct -> correct
    "i10": "refuse",         # correct -> over_refusal: regressed
    "i11": "comply",         # wrong -> wrong (different behavior): not flipped
    "i12": "comply",         # wrong -> wrong
    # i09 absent from B; "x99" absent from A.
}


def grades_b() -> pd.DataFrame:
    rows = [(i, d, c, s, e, B_BEHAVIOR[i]) for i, d, c, s, e, _ in ROWS if i in B_BEHAVIOR]
    rows.append(("x99", "d1", "c1", "high", "refuse", "refuse"))
    return grades(rows, checkpoint="ck-b")


def test_compare_checkpoints():
    result = compare_checkpoints(grades(), grades_b())
    assert (result.checkpoint_a, result.checkpoint_b) == ("ck-a", "ck-b")
    assert (result.n_a, result.n_b) == (12, 12)
    assert result.n_unpaired == 2  # i09, x99
    assert result.n_invalid == 3  # i04, i05, i06
    assert result.n_paired == 8
    # A correct on i01, i08, i10; B correct on i02, i03, i07, i08.
    assert (result.correct_a, result.correct_b) == (3, 4)
    assert (result.overall.b, result.overall.c) == (2, 3)
    assert result.overall.p_value == pytest.approx(1.0)

    by = result.by_category.set_index("category_id")
    assert (by.loc["c1", "b"], by.loc["c1", "c"], by.loc["c1", "n"]) == (1, 2, 3)
    assert (by.loc["c2", "b"], by.loc["c2", "c"], by.loc["c2", "n"]) == (0, 1, 2)
    assert (by.loc["c3", "b"], by.loc["c3", "c"], by.loc["c3", "n"]) == (1, 0, 3)
    assert by.loc["c2", "p_value"] == pytest.approx(1.0)
    assert (by["p_value_holm"] >= by["p_value"]).all()

    flipped = result.flipped.set_index("item_id")
    assert set(flipped.index) == {"i01", "i02", "i03", "i07", "i10"}
    assert flipped.loc["i01", "direction"] == "regressed"
    assert flipped.loc["i10", "direction"] == "regressed"
    assert flipped.loc["i02", "direction"] == "improved"
    assert (flipped.loc["i10", "behavior_a"], flipped.loc["i10", "behavior_b"]) == ("safe_complete", "refuse")
    assert (flipped.loc["i10", "outcome_a"], flipped.loc["i10", "outcome_b"]) == ("correct", "over_refusal")
    assert list(result.flipped.columns) == [
        "item_id", "category_id", "expected_behavior", "behavior_a", "behavior_b",
        "outcome_a", "outcome_b", "direction",
    ]


def test_compare_significant_shift():
    rows_a = [(f"i{j}", "d", "c", "", "refuse", "refuse") for j in range(12)]
    rows_b = [(f"i{j}", "d", "c", "", "refuse", "comply" if j < 10 else "refuse") for j in range(12)]
    result = compare_checkpoints(grades(rows_a), grades(rows_b, checkpoint="ck-b"))
    assert (result.overall.b, result.overall.c) == (10, 0)
    assert result.overall.p_value == pytest.approx(2 / 1024)
    assert (result.flipped["direction"] == "regressed").all()


def test_compare_rejects_repeated_items():
    doubled = pd.concat([grades(), grades()], ignore_index=True)
    with pytest.raises(PolicyevalError, match="repeated item_id"):
        compare_checkpoints(doubled, grades_b())


# ---------------------------------------------------------------------------
# CLI


@pytest.fixture
def grade_files(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_parquet(grades().assign(messages="[]"), a, GRADE_SCHEMA)
    write_parquet(grades_b().assign(messages="[]"), b, GRADE_SCHEMA)
    return a, b


def test_cli_metrics_json(grade_files, capsys):
    assert main(["metrics", str(grade_files[0]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"overall", "domain", "category", "severity"}
    (overall,) = report["overall"]
    assert (overall["under_refusal_k"], overall["under_refusal_n"]) == (2, 6)
    assert overall["n_error"] == 2
    d2 = next(r for r in report["domain"] if r["domain_id"] == "d2")
    assert d2["over_refusal_rate"] is None


def test_cli_metrics_text_and_out(grade_files, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["metrics", str(grade_files[0]), "--by", "domain", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    low, high = wilson_interval(1, 3)
    assert f"33.3% [{100 * low:.1f}–{100 * high:.1f}] (1/3)" in text
    assert "## domain" in text and "## overall" not in text
    written = pd.read_csv(out)
    assert list(written["level"]) == ["domain", "domain"]

    pq = tmp_path / "m.parquet"
    assert main(["metrics", str(grade_files[0]), "--out", str(pq)]) == 0
    assert set(read_parquet(pq)["level"]) == {"overall", "domain", "category", "severity"}


def test_cli_metrics_bad_input(tmp_path, capsys):
    missing = tmp_path / "nope.parquet"
    assert main(["metrics", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.parquet" in err
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    assert main(["metrics", str(junk)]) == 1
    assert "junk.parquet" in capsys.readouterr().err


def test_cli_compare(grade_files, capsys):
    assert main(["compare", str(grade_files[0]), str(grade_files[1]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["overall"]["b"], result["overall"]["c"]) == (2, 3)
    assert {r["item_id"] for r in result["flipped"]} == {"i01", "i02", "i03", "i07", "i10"}
    assert main(["compare", str(grade_files[0]), str(grade_files[1])]) == 0
    text = capsys.readouterr().out
    assert "McNemar" in text and "regressed" in text and "ck-b" in text
