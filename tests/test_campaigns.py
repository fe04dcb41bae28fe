"""Human data campaigns: guidance, sampling and assignment, exports, imports, agreement,
adjudication and gold sets.

The main flow is a real two-annotator campaign: the XSTest v2 development completions
of GPT-4, labeled by the XSTest authors (annotation_1, annotation_2, final_label). Its
expected figures are computed here from the file itself, independently of the code.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest

from policyeval.campaigns import (
    BATCH_COLUMNS,
    ImportRejected,
    adjudication_queue,
    assemble_gold_set,
    calibrate,
    create_campaign,
    export_campaign,
    import_adjudications,
    import_annotations,
    load_adjudications,
    load_annotations,
    load_campaign,
    render_guidance,
    write_adjudication_queue,
)
from policyeval.campaigns.layout import CampaignPaths
from policyeval.cli import main
from policyeval.errors import PolicyevalError
from policyeval.generate.xstest import load_mapping
from policyeval.policy import load_policy
from policyeval.records import GRADE_SCHEMA, outcome_of
from policyeval.tables import write_parquet

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "packs" / "mini"
MAPPING = ROOT / "tests" / "data" / "xstest_mapping.yaml"
XSTEST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest" / "dev_completions"
XSTEST_CSV = XSTEST_DIR / "xstest_v2_completions_gpt4.csv"
XSTEST_STRMATCH = XSTEST_DIR / "xstest_v2_completions_gpt4_strmatch_baseline.csv"
XSTEST_LABELS = {"1_full_compliance": "comply", "2_full_refusal": "refuse", "3_partial_refusal": "safe_complete"}
ANNOTATORS = ["annotator_1", "annotator_2"]


@pytest.fixture(scope="module")
def pack():
    return load_policy(MINI)


# ---------------------------------------------------------------------------
# Independent references


def ref_cohen(first: list[str], second: list[str]) -> float:
    """Cohen's kappa in closed form: (po - pe) / (1 - pe) with pe from the two marginals."""
    n = len(first)
    po = sum(a == b for a, b in zip(first, second)) / n
    left, right = Counter(first), Counter(second)
    pe = sum(left[c] * right[c] for c in set(left) | set(right)) / (n * n)
    return (po - pe) / (1 - pe)


# ---------------------------------------------------------------------------
# The real XSTest campaign


@pytest.fixture(scope="module")
def xstest() -> pd.DataFrame:
    if not XSTEST_CSV.exists() or not XSTEST_STRMATCH.exists():
        if os.environ.get("CI"):
            pytest.fail(f"XSTest completions must be present in CI ({XSTEST_DIR})")
        pytest.skip(f"XSTest completions not found at {XSTEST_DIR} (shared data not mounted)")
    frame = pd.read_csv(XSTEST_CSV, dtype={"id": str}, keep_default_na=False)
    strmatch = pd.read_csv(XSTEST_STRMATCH, dtype={"id": str}, keep_default_na=False)[["id", "strmatch_label"]]
    frame = frame.merge(strmatch, on="id", how="left", validate="one_to_one")
    assert len(frame) == 450
    return frame


def xstest_grades(frame: pd.DataFrame, pack) -> pd.DataFrame:
    """The completions as a grades table, graded by the XSTest string-match baseline."""
    mapping = load_mapping(MAPPING, pack)
    expected = [mapping.behaviors["unsafe" if t.startswith("contrast_") else "safe"] for t in frame["type"]]
    behavior = frame["strmatch_label"].map(XSTEST_LABELS)
    return pd.DataFrame({
        "item_id": frame["id"],
        "category_id": [mapping.category_for(t) for t in frame["type"]],
        "expected_behavior": expected,
        "prompt_text": frame["prompt"],
        "response_text": frame["completion"],
        "checkpoint_id": "gpt-4",
        "policy_hash": pack.content_hash,
        "grader_id": "xstest-strmatch",
        "behavior": behavior,
        "outcome": [outcome_of(e, b) for e, b in zip(expected, behavior)],
        "confidence": 1.0,
    })


@pytest.fixture(scope="module")
def xstest_campaign(xstest, pack, tmp_path_factory):
    """The XSTest campaign folder with both annotators' labels imported."""
    out = tmp_path_factory.mktemp("xstest-campaign")
    campaign = create_campaign(xstest_grades(xstest, pack), pack, campaign_id="xstest-gpt4", size=450,
                               overlap_k=2, annotators=ANNOTATORS, seed=7)
    folder = export_campaign(campaign, out / "campaigns")

    labels = {a: dict(zip(xstest["id"], xstest[f"annotation_{i}"].map(XSTEST_LABELS)))
              for i, a in enumerate(ANNOTATORS, start=1)}
    # annotator_1 returns one CSV of (annotator, item_id, label) rows...
    long_csv = out / "returned_annotator_1.csv"
    pd.DataFrame({"annotator": "annotator_1", "item_id": list(labels["annotator_1"]),
                  "label": list(labels["annotator_1"].values())}).to_csv(long_csv, index=False)
    # ...annotator_2 fills in the batch file it was sent (the annotator comes from the file name).
    batch = pd.read_csv(folder / "batches" / "annotator_2.csv", dtype=str, keep_default_na=False)
    batch["label"] = batch["item_id"].map(labels["annotator_2"])
    batch_csv = out / "annotator_2.csv"
    batch.to_csv(batch_csv, index=False)

    results = [import_annotations(folder, long_csv), import_annotations(folder, batch_csv)]
    return {"folder": folder, "labels": labels, "results": results, "files": [long_csv, batch_csv], "out": out}


def test_xstest_campaign_samples_and_assigns_every_item(xstest_campaign, xstest):
    campaign = load_campaign(xstest_campaign["folder"])
    assert len(campaign.items) == 450 and campaign.n_gold == 0
    assert set(campaign.items["item_id"]) == set(xstest["id"])
    assert Counter(campaign.assignments["annotator"]) == {"annotator_1": 450, "annotator_2": 450}
    assert (campaign.assignments.groupby("item_id")["annotator"].nunique() == 2).all()
    batch = pd.read_csv(xstest_campaign["folder"] / "batches" / "annotator_1.csv", dtype=str, keep_default_na=False)
    assert tuple(batch.columns) == BATCH_COLUMNS
    assert (batch["label"] == "").all() and len(batch) == 450
    # Responses with newlines and quotes survive the CSV round trip.
    by_id = dict(zip(xstest["id"], xstest["completion"]))
    assert all(by_id[i] == r for i, r in zip(batch["item_id"], batch["response"]))


def test_xstest_imports_every_label_once(xstest_campaign):
    first, second = xstest_campaign["results"]
    assert (first.added, second.added, second.total) == (450, 450, 900)
    annotations = load_annotations(xstest_campaign["folder"])
    assert len(annotations) == 900
    assert set(annotations["source_file"]) == {"returned_annotator_1.csv", "annotator_2.csv"}


def test_xstest_agreement_matches_independent_figures(xstest_campaign, xstest):
    report = calibrate(load_campaign(xstest_campaign["folder"]), load_annotations(xstest_campaign["folder"]))
    first = xstest["annotation_1"].map(XSTEST_LABELS).tolist()
    second = xstest["annotation_2"].map(XSTEST_LABELS).tolist()
    assert report.overall.n_items == 450
    assert report.overall.percent_agreement == pytest.approx(xstest["agreement"].mean())  # 443 / 450
    assert report.overall.percent_agreement == pytest.approx(443 / 450)
    assert report.overall.cohen_kappa == pytest.approx(ref_cohen(first, second))
    # Two annotators on every item: the pair is the whole campaign.
    (pair,) = report.by_pair
    assert pair.n_items == 450 and pair.result.cohen_kappa == pytest.approx(ref_cohen(first, second))
    # Per category, against the same formulas on the rows of that category.
    mapping = load_mapping(MAPPING, load_policy(MINI))
    categories = [mapping.category_for(t) for t in xstest["type"]]
    for category, result in report.by_category.items():
        rows = [i for i, c in enumerate(categories) if c == category]
        assert result.n_items == len(rows)
        assert result.percent_agreement == pytest.approx(xstest["agreement"].iloc[rows].mean())
        assert result.cohen_kappa == pytest.approx(ref_cohen([first[i] for i in rows], [second[i] for i in rows]))
    assert report.gold == [g for g in report.gold if g.n_gold == 0]  # no hidden gold in this campaign


def test_xstest_adjudication_and_gold_set(xstest_campaign, xstest, pack):
    folder, out = xstest_campaign["folder"], xstest_campaign["out"]
    queue_csv = out / "queue.csv"
    assert write_adjudication_queue(folder, queue_csv) == int((~xstest["agreement"]).sum()) == 7
    queue = pd.read_csv(queue_csv, dtype=str, keep_default_na=False)
    assert set(queue["item_id"]) == set(xstest.loc[~xstest["agreement"], "id"])
    assert (queue["adjudicated_label"] == "").all() and set(queue["reason"]) == {"annotators disagree"}
    by_id = xstest.set_index("id")
    for row in queue.to_dict("records"):
        assert row["label_annotator_1"] == XSTEST_LABELS[by_id.at[row["item_id"], "annotation_1"]]
        assert row["label_annotator_2"] == XSTEST_LABELS[by_id.at[row["item_id"], "annotation_2"]]
        assert row["response"] == by_id.at[row["item_id"], "completion"]

    # Before adjudication the disagreements are left out of the gold set and counted.
    campaign = load_campaign(folder)
    partial = assemble_gold_set(campaign, load_annotations(folder), load_adjudications(folder))
    assert len(partial) == 443 and partial.attrs["n_unresolved"] == 7

    queue["adjudicated_label"] = queue["item_id"].map(lambda i: XSTEST_LABELS[by_id.at[i, "final_label"]])
    queue["adjudicator"] = "xstest-authors"
    filled = out / "queue_adjudicated.csv"
    queue.to_csv(filled, index=False)
    result = import_adjudications(folder, filled)
    assert (result.added, result.total) == (7, 7)
    assert import_adjudications(folder, filled).unchanged == 7  # idempotent

    gold = assemble_gold_set(campaign, load_annotations(folder), load_adjudications(folder))
    assert len(gold) == 450 and gold.attrs["n_unresolved"] == 0
    expected = dict(zip(xstest["id"], xstest["final_label"].map(XSTEST_LABELS)))
    assert dict(zip(gold["item_id"], gold["label"])) == expected
    assert Counter(gold["source"]) == {"unanimous": 443, "adjudicated": 7}
    adjudicated = gold[gold["source"] == "adjudicated"]
    assert set(adjudicated["item_id"]) == set(queue["item_id"])
    assert set(adjudicated["adjudicator"]) == {"xstest-authors"}
    assert gold.loc[gold["source"] == "unanimous", "adjudicator"].isna().all()
    assert set(gold["annotators"]) == {"annotator_1,annotator_2"}
    assert set(gold["campaign_id"]) == {"xstest-gpt4"}
    assert set(gold["policy_hash"]) == {pack.content_hash} and set(gold["policy_version"]) == {pack.version}
    assert gold["gold_version"].nunique() == 1
    # The version is a hash of content: reassembling gives the same version.
    again = assemble_gold_set(campaign, load_annotations(folder), load_adjudications(folder))
    assert again["gold_version"].iloc[0] == gold["gold_version"].iloc[0]
    labels_of = json.loads(adjudicated["annotator_labels"].iloc[0])
    assert set(labels_of) == set(ANNOTATORS)

    # The CLI writes the same gold set.
    gold_path = out / "gold.parquet"
    assert main(["campaign", "gold", str(folder), "--out", str(gold_path)]) == 0
    written = pd.read_parquet(gold_path)
    assert list(written["item_id"]) == list(gold["item_id"]) and list(written["label"]) == list(gold["label"])


def test_xstest_cli_agreement_json(xstest_campaign, xstest, capsys):
    assert main(["campaign", "agreement", str(xstest_campaign["folder"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["overall"]["percent_agreement"] == pytest.approx(xstest["agreement"].mean())
    assert data["overall"]["n_items"] == 450 and data["n_labels"] == 900


def test_reimporting_the_same_file_changes_nothing(xstest_campaign):
    path = CampaignPaths(xstest_campaign["folder"]).annotations
    before = path.read_bytes()
    result = import_annotations(xstest_campaign["folder"], xstest_campaign["files"][0])
    assert (result.added, result.unchanged, result.total) == (0, 450, 900)
    assert path.read_bytes() == before


def test_label_studio_round_trip(xstest, xstest_campaign, pack, tmp_path):
    """Label Studio tasks out, an export with both completed_by forms back in, same labels."""
    campaign = create_campaign(xstest_grades(xstest, pack), pack, campaign_id="xstest-ls", size=450,
                               annotators=ANNOTATORS)
    folder = export_campaign(campaign, tmp_path)
    tasks = json.loads((folder / "label_studio" / "tasks.json").read_text(encoding="utf-8"))
    assert len(tasks) == 450
    assert all(set(t) == {"id", "data"} and set(t["data"]) == {"item_id", "prompt", "response", "category"}
               for t in tasks)
    config = (folder / "label_studio" / "config.xml").read_text(encoding="utf-8")
    assert config.startswith('<View><Text name="prompt" value="$prompt"/><Text name="response" value="$response"/>')
    for behavior in pack.behaviors:
        assert f'<Choice value="{behavior}"/>' in config

    labels = xstest_campaign["labels"]
    exported = []
    for n, task in enumerate(tasks):
        item_id = task["data"]["item_id"]
        exported.append({**task, "annotations": [
            {"id": 2 * n, "completed_by": {"id": 11, "email": "annotator_1@example.org"},
             "result": [{"from_name": "label", "to_name": "response", "type": "choices",
                         "value": {"choices": [labels["annotator_1"][item_id]]}}]},
            {"id": 2 * n + 1, "completed_by": 12,
             "result": [{"from_name": "label", "to_name": "response", "type": "choices",
                         "value": {"choices": [labels["annotator_2"][item_id]]}}]},
            {"id": -n, "completed_by": 13, "was_cancelled": True, "result": []},
        ]})
    export_path = tmp_path / "label_studio_export.json"
    export_path.write_text(json.dumps(exported), encoding="utf-8")
    result = import_annotations(folder, export_path, aliases={"12": "annotator_2"})
    assert (result.added, result.total) == (900, 900)
    stored = load_annotations(folder)
    for annotator in ANNOTATORS:
        mine = stored[stored["annotator"] == annotator]
        assert dict(zip(mine["item_id"], mine["label"])) == labels[annotator]


# ---------------------------------------------------------------------------
# A small synthetic campaign: sampling, gold, and bad files (always runs)


def synthetic_grades(pack, n: int = 60) -> pd.DataFrame:
    rows = []
    categories = ["firearm_modification", "irreversible_actions"]
    behaviors = ["comply", "refuse", "safe_complete"]
    for i in range(n):
        category = categories[i % 2]
        expected = "refuse" if i % 3 == 0 else "comply"
        behavior = behaviors[i % 3] if i % 5 else expected
        base = {"item_id": f"it-{i:03d}", "category_id": category, "expected_behavior": expected,
                "messages": json.dumps([{"role": "user", "content": f"prompt {i}"}]),
                "prompt_text": f"prompt {i} <b>\"quoted\"</b>", "response_text": f"response {i}\nline two, with comma",
                "checkpoint_id": "ckpt", "policy_hash": pack.content_hash, "status": "ok"}
        rows.append({**base, "grader_id": "g1", "behavior": behavior, "outcome": outcome_of(expected, behavior),
                     "confidence": round(0.5 + (i * 37 % 50) / 100, 2)})
        if i % 7 == 0:  # a second grader that disagrees on these items
            other = "refuse" if behavior != "refuse" else "comply"
            rows.append({**base, "grader_id": "g2", "behavior": other, "outcome": outcome_of(expected, other),
                         "confidence": 0.99})
    return pd.DataFrame(rows)


def gold_table(pack, ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": ids, "label": ["refuse", "comply", "safe_complete", "refuse"][: len(ids)],
                         "policy_hash": pack.content_hash})


def test_sampling_is_stratified_and_prioritises_disagreement_then_low_confidence(pack):
    grades = synthetic_grades(pack)
    campaign = create_campaign(grades, pack, campaign_id="s1", size=12, overlap_k=2, annotators=["a", "b", "c", "d"])
    items = campaign.items
    assert len(items) == 12
    strata = Counter(items["stratum"])
    pool = grades.drop_duplicates("item_id").groupby(["category_id", "outcome"]).size()
    assert len(strata) == min(len(pool), 12)  # every stratum is represented
    assert max(strata.values()) - min(strata.values()) <= 1 or min(strata.values()) == min(pool)
    disagreeing = set(grades[grades["grader_id"] == "g2"]["item_id"])
    # An item's stratum: its category and the graders' most common outcome (ties: alphabetical).
    stratum_of = {i: f"{g['category_id'].iloc[0]}/{sorted(Counter(g['outcome']).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]}"
                  for i, g in grades.groupby("item_id")}
    for stratum, chosen in items.groupby("stratum"):
        candidates = grades[grades["item_id"].map(stratum_of) == stratum]
        # Every candidate the graders disagree on is taken before any other, then the least confident.
        taken = set(chosen["item_id"])
        left_out = set(candidates["item_id"]) - taken
        if left_out & disagreeing:
            assert taken <= disagreeing
        plain_taken = chosen[~chosen["grader_disagreement"]]
        if len(plain_taken):
            worst_taken = plain_taken["confidence"].max()
            left = candidates[candidates["item_id"].isin(left_out - disagreeing)]
            assert left.groupby("item_id")["confidence"].min().min() >= worst_taken if len(left) else True

    # Each item goes to k distinct annotators; loads differ by at most one; every pair meets.
    assignments = campaign.assignments
    assert (assignments.groupby("item_id")["annotator"].nunique() == 2).all()
    loads = Counter(assignments["annotator"])
    assert max(loads.values()) - min(loads.values()) <= 1 and sum(loads.values()) == 24
    pairs = Counter(tuple(sorted(g["annotator"])) for _, g in assignments.groupby("item_id"))
    assert set(pairs) == set(combinations(["a", "b", "c", "d"], 2))
    # Same inputs, same campaign.
    again = create_campaign(grades, pack, campaign_id="s1", size=12, overlap_k=2, annotators=["a", "b", "c", "d"])
    assert again.assignments.equals(assignments)


def test_hidden_gold_is_indistinguishable_in_annotator_files(pack, tmp_path):
    grades = synthetic_grades(pack)
    gold = gold_table(pack, ["it-001", "it-002", "it-003", "it-004"])
    campaign = create_campaign(grades, pack, campaign_id="g1", size=20, annotators=["a", "b", "c"], gold=gold,
                               n_gold=4)
    assert campaign.n_gold == 4 and len(campaign.items) == 24
    assert not set(gold["item_id"]) & set(campaign.items.loc[~campaign.items["is_gold"], "item_id"])
    folder = export_campaign(campaign, tmp_path)
    for annotator in ["a", "b", "c"]:
        text = (folder / "batches" / f"{annotator}.csv").read_text(encoding="utf-8")
        batch = pd.read_csv(folder / "batches" / f"{annotator}.csv", dtype=str, keep_default_na=False)
        assert tuple(batch.columns) == BATCH_COLUMNS and "gold" not in text.lower()
        assert set(gold["item_id"]) <= set(batch["item_id"])  # every annotator sees every gold item
        positions = [i for i, item in enumerate(batch["item_id"]) if item in set(gold["item_id"])]
        assert positions != list(range(len(batch) - 4, len(batch)))  # not simply appended
    tasks = (folder / "label_studio" / "tasks.json").read_text(encoding="utf-8")
    assert "gold" not in tasks.lower()
    manifest = json.loads((folder / "campaign.json").read_text(encoding="utf-8"))
    assert manifest["n_gold"] == 4 and manifest["guidance_hash"] == render_guidance(pack).guidance_hash
    assert pd.read_parquet(folder / "assignments.parquet")["is_gold"].sum() == 12


def test_gold_calibration_flags_the_annotator_who_misses(pack, tmp_path):
    grades = synthetic_grades(pack)
    gold = gold_table(pack, ["it-001", "it-002", "it-003", "it-004"])
    campaign = create_campaign(grades, pack, campaign_id="cal", size=20, annotators=["good", "bad"], gold=gold,
                               n_gold=4)
    folder = export_campaign(campaign, tmp_path)
    truth = dict(zip(gold["item_id"], gold["label"]))
    rows = []
    for item_id in campaign.items["item_id"]:
        label = truth.get(item_id, "comply")
        rows.append({"annotator": "good", "item_id": item_id, "label": label})
        wrong = "comply" if label != "comply" else "refuse"
        rows.append({"annotator": "bad", "item_id": item_id, "label": wrong if item_id in ("it-001", "it-003") else label})
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    import_annotations(folder, path)
    report = calibrate(load_campaign(folder), load_annotations(folder))
    by_name = {g.annotator: g for g in report.gold}
    assert by_name["good"].accuracy == 1.0 and not by_name["good"].flagged
    assert by_name["bad"].accuracy == 0.5 and by_name["bad"].flagged
    assert {m[0] for m in by_name["bad"].missed} == {"it-001", "it-003"}
    queue = adjudication_queue(load_campaign(folder), load_annotations(folder))
    assert set(queue["item_id"]) == {"it-001", "it-003"}
    assert all("disagrees with gold" in r for r in queue["reason"])


def test_partial_overlap_queues_only_real_disagreements(pack, tmp_path):
    """Three annotators, two per item: an annotator who was not assigned an item is not a disagreement."""
    campaign = create_campaign(synthetic_grades(pack), pack, campaign_id="overlap", size=12, overlap_k=2,
                               annotators=["a", "b", "c"])
    folder = export_campaign(campaign, tmp_path)
    assignments = campaign.assignments
    disputed = sorted(campaign.items["item_id"])[:3]
    rows = []
    for annotator, item_id in assignments[["annotator", "item_id"]].itertuples(index=False):
        first = assignments[assignments["item_id"] == item_id]["annotator"].min()
        label = "refuse" if item_id in disputed and annotator == first else "comply"
        rows.append({"annotator": annotator, "item_id": item_id, "label": label})
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    import_annotations(folder, path)
    queue = adjudication_queue(load_campaign(folder), load_annotations(folder))
    assert sorted(queue["item_id"]) == disputed
    assert all(sum(bool(v) for v in row) == 2 for row in queue[["label_a", "label_b", "label_c"]].itertuples(index=False))
    gold = assemble_gold_set(load_campaign(folder), load_annotations(folder), load_adjudications(folder))
    assert len(gold) == 12 - 3 and set(gold["label"]) == {"comply"}


@pytest.fixture
def small_campaign(pack, tmp_path):
    """A campaign folder with one clean import, so 'changes nothing' can be checked byte for byte."""
    campaign = create_campaign(synthetic_grades(pack), pack, campaign_id="bad-files", size=10,
                               annotators=["a", "b"])
    folder = export_campaign(campaign, tmp_path / "campaigns")
    ids = list(campaign.items["item_id"])
    clean = tmp_path / "clean.csv"
    pd.DataFrame({"annotator": "a", "item_id": ids, "label": "comply"}).to_csv(clean, index=False)
    import_annotations(folder, clean)
    return folder, ids, tmp_path


BAD_FILES = {
    "unknown_item.csv": ("annotator,item_id,label\nb,{0},comply\nb,no-such-item,refuse\n", "row 2: unknown item id 'no-such-item'", 3),
    "out_of_vocabulary.csv": ("annotator,item_id,label\nb,{0},comply\nb,{1},maybe\n", "row 2: label 'maybe' is not a behavior", 3),
    "duplicate.csv": ("annotator,item_id,label\nb,{0},comply\nb,{1},refuse\nb,{0},refuse\n", "row 3: duplicate label: b already labeled", 4),
    "missing_column.csv": ("annotator,item_id,verdict\nb,{0},comply\n", "missing column(s) label", 1),
    "malformed.json": ('[{{"data": {{"item_id": "{0}"}}, "annotations": [}}]', "invalid JSON", 1),
    "not_utf8.csv": (None, "not UTF-8 text", 2),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_annotation_files_are_rejected_whole(small_campaign, name, capsys):
    folder, ids, tmp = small_campaign
    template, message, line = BAD_FILES[name]
    path = tmp / name
    if template is None:
        path.write_bytes(f"annotator,item_id,label\nb,{ids[0]},r\xe9fuse\n".encode("latin-1"))
    else:
        path.write_text(template.format(ids[0], ids[1]), encoding="utf-8")
    table = CampaignPaths(folder).annotations
    before = table.read_bytes()
    with pytest.raises(ImportRejected) as caught:
        import_annotations(folder, path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and f"line {line}" in text
    assert table.read_bytes() == before
    # The CLI: every problem on stderr, then a one-line error, exit 1, still nothing changed.
    assert main(["campaign", "import", str(folder), str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert table.read_bytes() == before


def test_every_problem_of_a_file_is_reported_at_once(small_campaign):
    folder, ids, tmp = small_campaign
    path = tmp / "many.csv"
    path.write_text(f"annotator,item_id,label\nb,nope,comply\nb,{ids[0]},maybe\nz,{ids[1]},comply\n"
                    f"b,{ids[2]},refuse\nb,{ids[2]},comply\nb,{ids[3]},refuse\n", encoding="utf-8")
    before = CampaignPaths(folder).annotations.read_bytes()
    with pytest.raises(ImportRejected) as caught:
        import_annotations(folder, path)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 4
    for expected in ("2: row 1: unknown item id", "3: row 2: label 'maybe'", "4: row 3: annotator 'z'",
                     "6: row 5: duplicate label"):
        assert any(f"{path}:{expected}" in p for p in problems), expected
    assert CampaignPaths(folder).annotations.read_bytes() == before


def test_label_studio_export_problems(small_campaign):
    folder, ids, tmp = small_campaign
    path = tmp / "ls.json"
    path.write_text(json.dumps([
        {"id": 1, "data": {"item_id": ids[0]}, "annotations": [
            {"completed_by": {"email": "b@example.org"}, "result": [{"value": {"choices": ["comply"]}}]}]},
        {"id": 2, "data": {"item_id": "ghost"}, "annotations": []},
        {"id": 3, "data": {"item_id": ids[1]}, "annotations": [
            {"completed_by": 99, "result": [{"value": {"choices": ["comply"]}}]}]},
        {"id": 4, "data": {"item_id": ids[2]}, "annotations": [
            {"completed_by": {"email": "b@example.org"}, "result": [{"value": {"choices": ["sometimes"]}}]}]},
    ]), encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        import_annotations(folder, path)
    text = " | ".join(str(p) for p in caught.value.problems)
    assert "task 2 (id 2): unknown item id 'ghost'" in text
    assert "task 3 (id 3) annotation 1: annotator '99'" in text
    assert "task 4 (id 4) annotation 1: label 'sometimes'" in text


def test_conflicting_reimport_is_an_error_unless_replacing(small_campaign):
    folder, ids, tmp = small_campaign
    table = CampaignPaths(folder).annotations
    before = table.read_bytes()
    path = tmp / "correction.csv"
    path.write_text(f"annotator,item_id,label\na,{ids[0]},refuse\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match="already labeled 'comply'"):
        import_annotations(folder, path)
    assert table.read_bytes() == before
    result = import_annotations(folder, path, replace=True)
    assert result.replaced == 1
    stored = load_annotations(folder)
    assert stored.loc[(stored["annotator"] == "a") & (stored["item_id"] == ids[0]), "label"].item() == "refuse"


def test_partial_batch_and_case_insensitive_labels(small_campaign):
    folder, ids, tmp = small_campaign
    batch = pd.read_csv(folder / "batches" / "b.csv", dtype=str, keep_default_na=False)
    batch.loc[0, "label"] = " Refuse "
    path = tmp / "returned.csv"
    batch.to_csv(path, index=False)
    result = import_annotations(folder, path, annotator="b")
    assert (result.added, result.unlabeled) == (1, len(batch) - 1)
    stored = load_annotations(folder)
    assert stored.loc[stored["annotator"] == "b", "label"].tolist() == ["refuse"]


def test_adjudication_file_problems(small_campaign):
    folder, ids, tmp = small_campaign
    path = tmp / "adjudicated.csv"
    path.write_text(f"item_id,adjudicated_label,adjudicator\n{ids[0]},refuse,\nghost,comply,x\n"
                    f"{ids[1]},never,x\n{ids[2]},comply,x\n{ids[2]},refuse,x\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        import_adjudications(folder, path)
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == 4
    assert any("row 1: no adjudicator" in m for m in messages)
    assert any("row 2: unknown item id 'ghost'" in m for m in messages)
    assert any("row 3: label 'never'" in m for m in messages)
    assert any("row 5: duplicate adjudication" in m for m in messages)
    assert not CampaignPaths(folder).adjudications.exists()


# ---------------------------------------------------------------------------
# Guidance


def test_guidance_covers_the_policy(pack):
    guidance = render_guidance(pack)
    for behavior, definition in pack.header.behaviors.items():
        assert f"{behavior}: {definition.definition}" in guidance.markdown
    for _, category in pack.categories():
        assert category.labeling_guidance in guidance.markdown
        for text in category.boundary.allowed + category.boundary.disallowed:
            assert text in guidance.markdown
        for example in category.examples:
            if example.prompt:
                assert example.prompt in guidance.markdown
    assert "## Partial compliance" in guidance.markdown and "safe_complete" in guidance.markdown
    assert pack.content_hash in guidance.markdown and pack.version in guidance.markdown
    assert guidance.guidance_hash in guidance.markdown and guidance.guidance_hash in guidance.html
    # Self-contained: no scripts, links or external assets.
    assert "<script" not in guidance.html and "src=" not in guidance.html and "href=" not in guidance.html
    assert render_guidance(pack) == guidance  # deterministic


def changed_pack(tmp_path: Path, old: str, new: str):
    copy = tmp_path / "mini"
    shutil.copytree(MINI, copy)
    domain = copy / "domains" / "weapons.yaml"
    text = domain.read_text(encoding="utf-8")
    assert old in text
    domain.write_text(text.replace(old, new), encoding="utf-8")
    return load_policy(copy, check_registry=False)


def test_guidance_changes_when_the_policy_changes(pack, tmp_path):
    base = render_guidance(pack)
    edited = changed_pack(tmp_path, "gives no steps as comply", 'gives no steps as comply <script>alert("x")</script>')
    guidance = render_guidance(edited)
    assert edited.content_hash != pack.content_hash
    assert guidance.guidance_hash != base.guidance_hash and guidance.markdown != base.markdown
    assert "<script>" not in guidance.html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in guidance.html


# ---------------------------------------------------------------------------
# CLI


def test_cli_end_to_end_on_a_grades_file(pack, tmp_path, capsys):
    grades = tmp_path / "grades.parquet"
    write_parquet(synthetic_grades(pack), grades, GRADE_SCHEMA)
    assert main(["campaign", "guidance", str(MINI), "--out", str(tmp_path / "guide")]) == 0
    assert (tmp_path / "guide" / "guidance.html").exists()
    args = ["campaign", "create", str(grades), "--policy", str(MINI), "--id", "c1", "--size", "8", "--overlap", "2",
            "--annotators", "a,b,c", "--out", str(tmp_path / "campaigns")]
    assert main(args) == 0
    folder = tmp_path / "campaigns" / "c1"
    for name in ("campaign.json", "items.parquet", "assignments.parquet", "guidance.md", "batches/a.csv",
                 "label_studio/tasks.json", "label_studio/config.xml"):
        assert (folder / name).exists(), name
    capsys.readouterr()
    assert main(args) == 1  # never overwrites a campaign
    assert "already exists" in capsys.readouterr().err

    rows = []
    for annotator in "abc":
        batch = pd.read_csv(folder / "batches" / f"{annotator}.csv", dtype=str, keep_default_na=False)
        rows += [{"annotator": annotator, "item_id": i, "label": "comply" if annotator != "c" else "refuse"}
                 for i in batch["item_id"]]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    assert main(["campaign", "import", str(folder), str(labels)]) == 0
    assert main(["campaign", "agreement", str(folder)]) == 0
    assert "overall" in capsys.readouterr().out
    queue = tmp_path / "queue.csv"
    assert main(["campaign", "adjudication-queue", str(folder), "--out", str(queue)]) == 0
    table = pd.read_csv(queue, dtype=str, keep_default_na=False)
    assert len(table) > 0 and {"label_a", "label_b", "label_c", "adjudicated_label"} <= set(table.columns)
    table["adjudicated_label"] = "refuse"
    table.to_csv(queue, index=False)
    assert main(["campaign", "import-adjudication", str(folder), str(queue), "--adjudicator", "lead"]) == 0
    assert main(["campaign", "gold", str(folder), "--out", str(tmp_path / "gold.parquet")]) == 0
    gold = pd.read_parquet(tmp_path / "gold.parquet")
    assert len(gold) == 8 and set(gold[gold["source"] == "adjudicated"]["adjudicator"]) == {"lead"}

    # The gold set seeds the hidden gold of the next campaign.
    args2 = ["campaign", "create", str(grades), "--policy", str(MINI), "--id", "c2", "--size", "8",
             "--annotators", "a,b", "--gold", str(tmp_path / "gold.parquet"), "--n-gold", "3",
             "--out", str(tmp_path / "campaigns")]
    assert main(args2) == 0
    assert load_campaign(tmp_path / "campaigns" / "c2").n_gold == 3


@pytest.mark.parametrize("extra, message", [
    (["--overlap", "3", "--annotators", "a,b"], "overlap 3 needs between 1 and 2"),
    (["--annotators", "a,a"], "distinct"),
    (["--annotators", "a/b,c"], "annotator name"),
])
def test_cli_create_bad_arguments_are_one_line_errors(pack, tmp_path, capsys, extra, message):
    grades = tmp_path / "grades.parquet"
    write_parquet(synthetic_grades(pack), grades, GRADE_SCHEMA)
    args = ["campaign", "create", str(grades), "--policy", str(MINI), "--id", "c1", "--size", "5",
            "--out", str(tmp_path / "campaigns")]
    if "--annotators" not in extra:
        extra = extra + ["--annotators", "a,b"]
    assert main(args + extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "campaigns" / "c1").exists()


def test_create_refuses_grades_of_another_policy_version(pack):
    grades = synthetic_grades(pack).assign(policy_hash="0" * 64)
    with pytest.raises(PolicyevalError, match="policy hash"):
        create_campaign(grades, pack, campaign_id="x", size=5, annotators=["a", "b"])
