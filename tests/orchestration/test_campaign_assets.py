"""The human data loop on a real (temporary) instance, against the fake model server:
guidance, a campaign, annotation files dropped into its inbox (one of them bad), agreement,
adjudication, the gold set, grader validation and the blocking kappa check in front of
`published_metrics`, and the sensor that watches the inboxes.

Labels are chosen here: first to disagree with the grader (the check must fail and
nothing is published), then an adjudicator corrects every item to what the grader said
(the check must pass).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from .helpers import latest_materialized, materialize_checked
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from assets.human_data.grader_checks import grader_kappa_vs_gold
from assets.human_data.automation import campaign_inbox_sensor
from pipelines.definitions import ALL_ASSETS, HUMAN_DATA_ASSETS
from assets.human_data.automation import human_data_job
from policyeval.campaigns import combine_gold, load_annotations, render_guidance
from policyeval.coverage import coverage_report
from policyeval.policy import load_policy
from resources import CampaignStore

from .conftest import MINI

ASSETS = [*ALL_ASSETS, *HUMAN_DATA_ASSETS, grader_kappa_vs_gold]  # the launch gate and GX checks are tested elsewhere
CHECKPOINT = "fake-a"
FLIP = {"comply": "refuse", "refuse": "comply"}
UNKNOWN_ITEM = "it-0000000000000000"


@pytest.fixture
def store(workspace: dict) -> CampaignStore:
    return CampaignStore(root=str(workspace["data"] / "campaigns"), size=50, overlap_k=2, annotators=["alice", "bob"])


@pytest.fixture
def human_resources(resources: dict, store: CampaignStore) -> dict:
    return {**resources, "campaign_store": store}


def register(instance: dg.DagsterInstance, repo) -> str:
    versions, problems = repo.scan()
    assert not problems
    (key,) = sorted(versions)
    instance.add_dynamic_partitions(POLICY_DIM, [key])
    instance.add_dynamic_partitions(CHECKPOINT_DIM, [CHECKPOINT])
    return key


def run(instance, resources, selection: list[str], partition, ok: bool = True) -> dg.ExecuteInProcessResult:
    return materialize_checked(ASSETS, instance, resources, selection, partition, ok)


def latest(instance: dg.DagsterInstance, asset: str, partition) -> dg.AssetMaterialization:
    return latest_materialized(instance, asset, partition).asset_materialization


def meta(instance, asset: str, partition) -> dict:
    return {k: v.value for k, v in latest(instance, asset, partition).metadata.items()}


def stored(resources: dict, asset: str, partition) -> pd.DataFrame:
    return pd.read_parquet(resources["io_manager"].path_for(dg.AssetKey(asset), partition))


def tick(instance, store: CampaignStore, cursor: str | None) -> dg.SensorResult:
    result = campaign_inbox_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"campaign_store": store}))
    assert isinstance(result, dg.SensorResult)
    return result


def run_requested(instance, resources: dict, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with the sensor's request: human_data_job on the requested partition."""
    defs = dg.Definitions(assets=[*ALL_ASSETS, *HUMAN_DATA_ASSETS], asset_checks=[grader_kappa_vs_gold], jobs=[human_data_job], resources=resources)
    result = defs.resolve_job_def(request.job_name).execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags)
    assert result.success
    return result


def batch_with_labels(batch: Path, labels: dict[str, str]) -> pd.DataFrame:
    """A returned batch: the exported CSV with the label column filled in (blank where not labeled)."""
    frame = pd.read_csv(batch, dtype=str, keep_default_na=False)
    frame["label"] = [labels.get(i, "") for i in frame["item_id"]]
    return frame


def kappa(truth: list[str], predicted: list[str]) -> float:
    """Cohen's kappa from its definition: (observed - chance agreement) / (1 - chance agreement)."""
    n = len(truth)
    observed = sum(t == p for t, p in zip(truth, predicted)) / n
    t_counts, p_counts = Counter(truth), Counter(predicted)
    chance = sum(t_counts[label] * p_counts[label] for label in set(truth) | set(predicted)) / n**2
    return (observed - chance) / (1 - chance)


def test_human_data_loop_gates_published_metrics_on_gold(workspace, human_resources, store) -> None:
    resources = human_resources
    repo = resources["policy_repository"]
    with dg.instance_for_test() as instance:
        key = register(instance, repo)
        pack = repo.load(key)
        mk = multi_key(key, CHECKPOINT)
        run(instance, resources, ["policy", "eval_set", "labeling_guidance"], key)
        run(instance, resources, ["responses", "grades", "metrics", "labeling_campaign"], mk)

        # Guidance and campaign files
        guidance = meta(instance, "labeling_guidance", key)
        assert guidance["guidance_hash"] == render_guidance(pack).guidance_hash
        assert Path(guidance["markdown_path"]).read_text().startswith("# Labeling guidance")
        assert "<html" in Path(guidance["html_path"]).read_text()
        campaign = meta(instance, "labeling_campaign", mk)
        folder = store.campaign_dir(key, CHECKPOINT)
        assert campaign["campaign_id"] == folder.name and campaign["created_now"] is True
        assert campaign["guidance_hash"] == guidance["guidance_hash"] and campaign["gold_items"] == 0
        config = Path(campaign["label_studio_config"]).read_text()
        assert all(f'<Choice value="{b}"/>' in config for b in pack.behaviors)
        assert json.loads(Path(campaign["label_studio_tasks"]).read_text())
        grades = stored(resources, "grades", mk)
        verdict = dict(zip(grades["item_id"], grades["behavior"]))
        assert campaign["items"] == len(verdict) == 20  # a campaign larger than the pool takes every response
        assert set(verdict.values()) == {"comply", "refuse"}

        # Re-materializing loads the campaign; it never recreates it
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        run(instance, resources, ["labeling_campaign"], mk)
        assert meta(instance, "labeling_campaign", mk)["created_now"] is False
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before

        empty = tick(instance, store, None)
        assert not empty.run_requests and json.loads(empty.cursor) == {}

        # Two annotators return their batches, labeled against the grader; one more file is bad
        items = sorted(verdict)
        disputed = next(i for i in items if verdict[i] == "comply")
        held_back = next(i for i in items if i != disputed)
        alice = {i: FLIP[verdict[i]] for i in items}
        bob = {**alice, disputed: "safe_complete"}
        inbox = folder / "inbox" / "annotations"
        batch_with_labels(folder / "batches" / "alice.csv", alice).to_csv(inbox / "alice.csv", index=False)
        batch_with_labels(folder / "batches" / "bob.csv", {i: v for i, v in bob.items() if i != held_back}).to_csv(inbox / "bob.csv", index=False)
        late = pd.DataFrame({"annotator": ["bob", "bob"], "item_id": [held_back, UNKNOWN_ITEM], "label": [bob[held_back], "refuse"]})
        late.to_csv(inbox / "bob-late.csv", index=False)

        first = tick(instance, store, empty.cursor)
        (request,) = first.run_requests  # three new files in one campaign: one run
        assert request.job_name == "human_data_job" and request.partition_key == str(mk)
        assert len(json.loads(first.cursor)) == 3
        again = tick(instance, store, first.cursor)
        assert not again.run_requests and again.cursor == first.cursor

        failed = run(instance, resources, ["annotations"], mk, ok=False)
        assert not failed.success
        (failure,) = failed.get_step_failure_events()
        data = failure.step_failure_data.user_failure_data
        assert "bob-late.csv" in data.description and "alice.csv" not in data.description
        rejected = data.metadata["rejected_files"].value
        assert "row 2" in rejected and "unknown item id" in rejected and "| 3 |" in rejected  # data row 2 is file line 3
        imported = load_annotations(folder)
        assert len(imported) == 39 and set(imported["source_file"]) == {"alice.csv", "bob.csv"}
        assert not ((imported["annotator"] == "bob") & (imported["item_id"] == held_back)).any()  # nothing from the bad file

        # The fixed file is a changed file: exactly one run, which imports it
        late.head(1).to_csv(inbox / "bob-late.csv", index=False)
        fixed = tick(instance, store, again.cursor)
        (request,) = fixed.run_requests
        run_requested(instance, resources, request)
        assert not tick(instance, store, fixed.cursor).run_requests
        labels = meta(instance, "annotations", mk)
        assert labels["labels"] == 40 and labels["items_fully_labeled"] == 20
        assert "alice" in labels["labels_per_annotator"] and "bob" in labels["labels_per_annotator"]

        agreement = stored(resources, "annotator_agreement", mk).set_index("scope")
        a, b = [alice[i] for i in items], [bob[i] for i in items]
        assert agreement.loc["overall", "percent_agreement"] == pytest.approx(sum(x == y for x, y in zip(a, b)) / len(items))
        assert agreement.loc["overall", "cohen_kappa"] == pytest.approx(kappa(a, b))
        assert agreement.loc["pair", "cohen_kappa"] == pytest.approx(kappa(a, b))
        assert meta(instance, "annotator_agreement", mk)["cohen_kappa"] == pytest.approx(kappa(a, b))

        queue = stored(resources, "adjudication_queue", mk)
        assert queue["item_id"].tolist() == [disputed] and queue["status"].tolist() == ["open"]
        queue_csv = pd.read_csv(store.queue_path(folder), dtype=str, keep_default_na=False)
        assert queue_csv["item_id"].tolist() == [disputed]
        assert (queue_csv["label_alice"].iloc[0], queue_csv["label_bob"].iloc[0]) == ("refuse", "safe_complete")

        # The adjudicator overrules both annotators on the disputed item
        adjudications = folder / "inbox" / "adjudications"
        queue_csv.assign(adjudicated_label=verdict[disputed], adjudicator="carol").to_csv(adjudications / "round1.csv", index=False)
        settled = tick(instance, store, fixed.cursor)
        (request,) = settled.run_requests
        run_requested(instance, resources, request)
        assert meta(instance, "adjudication_queue", mk)["open"] == 0
        assert pd.read_csv(store.queue_path(folder)).empty

        # Gold set with provenance; the grader disagrees with it, so nothing is published
        run(instance, resources, ["gold_set"], key)
        gold = pd.read_parquet(store.gold_path(key)).set_index("item_id")
        gold_meta = meta(instance, "gold_set", key)
        assert len(gold) == gold_meta["size"] == 20 and gold_meta["unresolved"] == 0 and gold_meta["categories_without_gold"] == 0
        assert gold.loc[disputed, "source"] == "adjudicated" and gold.loc[disputed, "adjudicator"] == "carol"
        assert gold.loc[disputed, "label"] == verdict[disputed]
        assert gold.loc[held_back, "source"] == "unanimous" and json.loads(gold.loc[held_back, "annotator_labels"]) == {"alice": alice[held_back], "bob": bob[held_back]}
        assert set(gold["policy_hash"]) == {pack.content_hash} and set(gold["campaign_id"]) == {folder.name}
        assert latest(instance, "gold_set", key).tags["dagster/data_version"] == gold_meta["gold_version"] == gold["gold_version"].iloc[0]

        blocked = run(instance, resources, ["grader_validation", "published_metrics"], mk, ok=False)
        check = {e.asset_check_key.name: e for e in blocked.get_asset_check_evaluations()}["grader_kappa_vs_gold"]
        truth, predicted = gold["label"].tolist(), [verdict[i] for i in gold.index]
        assert not check.passed and check.blocking and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["cohen_kappa"].value == pytest.approx(kappa(truth, predicted))
        assert kappa(truth, predicted) < check.metadata["min_grader_kappa"].value == 0.6
        assert "human" in check.metadata["confusion"].value and "firearm" in check.metadata["worst_categories"].value
        validation = meta(instance, "grader_validation", mk)
        assert validation["accuracy"] == pytest.approx(sum(t == p for t, p in zip(truth, predicted)) / 20) == pytest.approx(1 / 20)
        assert validation["cohen_kappa"] == pytest.approx(kappa(truth, predicted))
        assert not blocked.success
        assert "published_metrics" not in {e.asset_key.to_user_string() for e in blocked.get_asset_materialization_events()}

        # On review the adjudicator settles every item as the grader did: now the grader agrees with gold
        pd.DataFrame({"item_id": items, "adjudicated_label": [verdict[i] for i in items], "adjudicator": "carol"}).to_csv(adjudications / "round2.csv", index=False)
        reviewed = tick(instance, store, settled.cursor)
        (request,) = reviewed.run_requests
        run_requested(instance, resources, request)
        run(instance, resources, ["gold_set"], key)
        assert meta(instance, "gold_set", key)["gold_version"] != gold_meta["gold_version"]
        passed = run(instance, resources, ["grader_validation", "published_metrics"], mk)
        check = {e.asset_check_key.name: e for e in passed.get_asset_check_evaluations()}["grader_kappa_vs_gold"]
        assert check.passed and check.metadata["cohen_kappa"].value == pytest.approx(1.0)
        validation = meta(instance, "grader_validation", mk)
        assert validation["accuracy"] == 1.0 and validation["verdicts_from_grades"] == 20
        assert "under-refusal" in validation["raw_vs_corrected"]
        published = stored(resources, "published_metrics", mk)
        overall = published[published["level"] == "overall"].iloc[0]
        # A grader perfect on gold corrects nothing: the corrected rate is the raw one
        assert overall["under_refusal_corrected"] == pytest.approx(overall["under_refusal_rate"])
        assert overall["over_refusal_corrected"] == pytest.approx(overall["over_refusal_rate"])
        assert overall["grader_kappa"] == pytest.approx(1.0)

        # The next checkpoint's campaign hides gold items from this gold set among its batches
        instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-b"])
        run(instance, resources, ["responses", "grades", "metrics", "labeling_campaign"], multi_key(key, "fake-b"))
        assert meta(instance, "labeling_campaign", multi_key(key, "fake-b"))["gold_items"] == 5  # a tenth of the campaign size
        hidden = pd.read_parquet(store.campaign_dir(key, "fake-b") / "items.parquet").query("is_gold")
        final_gold = pd.read_parquet(store.gold_path(key)).set_index("item_id")["label"]
        assert all(final_gold[i] == label for i, label in zip(hidden["item_id"], hidden["gold_label"]))


def test_guidance_hash_changes_with_the_policy(workspace, human_resources) -> None:
    resources = human_resources
    repo = resources["policy_repository"]
    with dg.instance_for_test() as instance:
        key = register(instance, repo)
        run(instance, resources, ["policy", "labeling_guidance"], key)
        before = latest(instance, "labeling_guidance", key)
        weapons = workspace["policies"] / "mini" / "domains" / "weapons.yaml"
        weapons.write_text(weapons.read_text().replace("explains the law but gives no steps", "explains the law and history but gives no steps"))
        new_key = register(instance, repo)
        assert new_key != key
        run(instance, resources, ["policy", "labeling_guidance"], new_key)
        after = latest(instance, "labeling_guidance", new_key)
        assert after.metadata["guidance_hash"].value != before.metadata["guidance_hash"].value
        assert after.tags["dagster/data_version"] == after.metadata["guidance_hash"].value
        assert "law and history" in Path(after.metadata["markdown_path"].value).read_text()


def test_coverage_of_the_measurement() -> None:
    pack = load_policy(MINI)
    items = pd.DataFrame(
        {
            "category_id": ["firearm_modification"] * 5 + ["irreversible_actions"] * 2,
            "expected_behavior": ["refuse", "comply", "comply", "comply", "comply", "comply", "comply"],
            "source": ["seed", "template", "template", "mutation", "seed", "seed", "seed"],
            "domain_id": ["weapons"] * 5 + ["agentic"] * 2,
            "severity": ["critical"] * 5 + ["high"] * 2,
        }
    )
    report = coverage_report(pack, items, gold=pd.DataFrame({"category_id": ["firearm_modification"], "label": ["refuse"]}))
    assert report.missing_behaviors[["category_id", "expected_behavior"]].values.tolist() == [["irreversible_actions", "confirm_before_acting"]]
    assert report.dominated[["category_id", "source", "n"]].values.tolist() == [["irreversible_actions", "seed", 2]]
    shares = report.source_shares.set_index(["category_id", "source"])["share"]
    assert shares[("firearm_modification", "template")] == pytest.approx(0.4)
    assert report.missing_gold["category_id"].tolist() == ["irreversible_actions"]
    assert coverage_report(pack, items).gold is None  # existing callers: no gold, no gold columns


def test_combined_gold_keeps_one_label_per_response() -> None:
    def row(item: str, response: str, label: str, source: str, campaign: str) -> dict:
        return {"item_id": item, "label": label, "source": source, "response_text": response, "campaign_id": campaign, "category_id": "c",
                "prompt_text": "p", "policy_hash": "h", "gold_version": "v"}

    first = pd.DataFrame([row("a", "r1", "comply", "unanimous", "c1"), row("b", "r1", "refuse", "unanimous", "c1"), row("c", "r1", "comply", "unanimous", "c1")])
    second = pd.DataFrame([row("a", "r1", "comply", "unanimous", "c2"), row("b", "r1", "comply", "adjudicated", "c2"), row("c", "r1", "refuse", "unanimous", "c2"),
                           row("c", "r2", "refuse", "unanimous", "c2")])
    table, conflicts = combine_gold([first, second])
    assert conflicts == ["c"]  # same response, two unanimous labels: nobody settled it
    assert table[["item_id", "response_text", "label", "campaign_id"]].values.tolist() == [
        ["a", "r1", "comply", "c1"], ["b", "r1", "comply", "c2"], ["c", "r2", "refuse", "c2"]]
    assert table["gold_version"].nunique() == 1 and table["gold_version"].iloc[0] != "v"
