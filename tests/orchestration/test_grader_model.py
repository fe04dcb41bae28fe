"""`grader_model` on a real (temporary) instance: the shipped default without gold, a model
trained on the policy version's gold set once gold labels exist, its hash as the data
version that `grades` follows, and the kappa check on the held-out gold only."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from assets.materializations import latest_record
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from assets.human_data.grader_checks import grader_kappa_vs_gold
from assets.human_data.automation import grader_model_sensor
from pipelines.definitions import ALL_ASSETS, HUMAN_DATA_ASSETS
from assets.human_data.automation import grader_model_job
from policyeval.campaigns import write_gold_set
from policyeval.graders.gold_training import GoldSplit
from policyeval.graders.learned import DEFAULT_ARTIFACT, LearnedGrader
from policyeval.records import sha256_hex
from policyeval.testing.gold import synthetic_gold

from .helpers import latest_materialized, materialize_checked

ASSETS = [*ALL_ASSETS, *HUMAN_DATA_ASSETS, grader_kappa_vs_gold]
CHECKPOINT = "fake-a"


def run(instance, resources, selection: list[str], partition, ok: bool = True) -> dg.ExecuteInProcessResult:
    return materialize_checked(ASSETS, instance, resources, selection, partition, ok)


def meta(instance, asset: str, partition) -> dict:
    return {k: v.value for k, v in latest_materialized(instance, asset, partition).asset_materialization.metadata.items()}


def data_version(instance, asset: str, partition) -> str:
    return latest_materialized(instance, asset, partition).asset_materialization.tags["dagster/data_version"]


def stored(resources: dict, asset: str, partition) -> pd.DataFrame:
    return pd.read_parquet(resources["io_manager"].path_for(dg.AssetKey(asset), partition))


def settled(instance: dg.DagsterInstance, key: str, gold_version: str) -> None:
    """What a gold_set materialization records, as far as the sensor reads it."""
    instance.report_runless_asset_event(dg.AssetMaterialization("gold_set", partition=key, metadata={"gold_version": gold_version}))


def sensor_requests(instance: dg.DagsterInstance, resources: dict) -> list[dg.RunRequest]:
    """The run requests of one tick of grader_model_sensor on the latest gold_set materialization."""
    repository = dg.Definitions(assets=ASSETS, jobs=[grader_model_job], sensors=[grader_model_sensor], resources=resources).get_repository_def()
    with dg.partition_loading_context(dynamic_partitions_store=instance):  # what the daemon provides
        result = grader_model_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, repository_def=repository))
    return list(result.run_requests or [])


def test_grader_model_follows_the_gold_set(resources) -> None:
    repo, store = resources["policy_repository"], resources["campaign_store"]
    with dg.instance_for_test() as instance:
        versions, problems = repo.scan()
        assert not problems
        (key,) = sorted(versions)
        instance.add_dynamic_partitions(POLICY_DIM, [key])
        instance.add_dynamic_partitions(CHECKPOINT_DIM, [CHECKPOINT])
        mk = multi_key(key, CHECKPOINT)
        run(instance, resources, ["policy", "eval_set"], key)

        # No gold: the shipped default, with no human-data asset ever materialized
        run(instance, resources, ["grader_model"], key)
        shipped_hash = sha256_hex(DEFAULT_ARTIFACT.read_bytes())
        shipped = meta(instance, "grader_model", key)
        assert shipped["source"] == "shipped" and "no gold set" in shipped["note"]
        assert shipped["artifact_hash"] == shipped_hash == data_version(instance, "grader_model", key)
        assert latest_record(instance, "gold_set", key) is None
        run(instance, resources, ["responses", "grades", "metrics"], mk)
        assert set(stored(resources, "grades", mk)["grader_version"]) == {shipped_hash[:16]} == {LearnedGrader().version}
        shipped_grades = data_version(instance, "grades", mk)

        # Gold labels arrive: a model trained on them, stored by content hash; grades follow it
        pack = repo.load(key)
        gold = synthetic_gold(60, seed=5, categories=("firearm_modification", "storage"), policy_hash=pack.content_hash)
        write_gold_set(gold, store.gold_path(key))
        gold_version = gold["gold_version"].iloc[0]
        settled(instance, key, gold_version)
        (request,) = sensor_requests(instance, resources)
        assert request.job_name == "grader_model_job" and request.partition_key == key
        run(instance, resources, ["grader_model"], key)
        settled(instance, key, gold_version)
        assert sensor_requests(instance, resources) == []  # already trained on this gold version
        trained = meta(instance, "grader_model", key)
        digest = trained["artifact_hash"]
        heldout = {i for i in gold["item_id"] if GoldSplit().is_heldout(i)}
        assert trained["source"] == "gold" and digest != shipped_hash
        assert data_version(instance, "grader_model", key) == digest
        assert trained["artifact_path"] == str(store.grader_model_path(key, digest))
        assert sha256_hex(store.grader_model_path(key, digest).read_bytes()) == digest
        assert (trained["gold_rows"], trained["heldout_rows"], trained["train_rows"]) == (60, len(heldout), 60 - len(heldout))
        assert trained["gold_version"] == gold["gold_version"].iloc[0]
        for name in ("heldout_accuracy", "heldout_kappa", "shipped_heldout_accuracy", "shipped_heldout_kappa"):
            assert name in trained
        assert "trained learned@" in trained["heldout_vs_shipped"] and "shipped learned@" in trained["heldout_vs_shipped"]

        run(instance, resources, ["grades", "metrics"], mk)
        assert set(stored(resources, "grades", mk)["grader_version"]) == {digest[:16]}
        assert data_version(instance, "grades", mk) != shipped_grades

        # The kappa check sees only the gold items the model never trained on
        checked = run(instance, resources, ["grader_validation"], mk, ok=False)
        table = stored(resources, "grader_validation", mk)
        assert set(table["item_id"]) == heldout and (table["verdict_from"] == "regraded").all()
        assert "held-out" in meta(instance, "grader_validation", mk)["validated_on"]
        (check,) = [e for e in checked.get_asset_check_evaluations() if e.check_name == "grader_kappa_vs_gold"]
        assert check.metadata["gold_items"].value == len(heldout)

        # Unchanged gold: the same bytes, the same data version, so nothing downstream is stale
        run(instance, resources, ["grader_model"], key)
        assert meta(instance, "grader_model", key)["artifact_hash"] == digest
        assert data_version(instance, "grader_model", key) == digest


def test_the_graph_carries_gold_to_grades_without_a_loop(tmp_path) -> None:
    """New gold makes grader_model stale and, through it, grades and metrics; campaigns
    sample responses, so the graph stays acyclic."""
    from pipelines.definitions import build_definitions

    graph = build_definitions(data_dir=str(tmp_path)).resolve_asset_graph()
    key = dg.AssetKey
    assert key("gold_set") in graph.get(key("grader_model")).parent_keys
    assert key("grader_model") in graph.get(key("grades")).parent_keys
    assert key("responses") in graph.get(key("labeling_campaign")).parent_keys
    assert key("grades") not in graph.get(key("labeling_campaign")).parent_keys
    downstream, frontier = set(), [key("gold_set")]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child not in downstream:
                downstream.add(child)
                frontier.append(child)
    assert {key("grader_model"), key("grades"), key("metrics")} <= downstream
