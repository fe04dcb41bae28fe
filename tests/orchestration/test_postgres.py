"""The pipeline on a PostgreSQL-backed Dagster instance (dagster-postgres), against a real server.

The instance is built from deploy/postgres/dagster.yaml exactly as shipped, in a temporary
DAGSTER_HOME, with POLICYEVAL_PG_URL pointing at a database created for this test and dropped
afterwards (`services.py`). Runs, materializations, dynamic partitions and pool limits are read back
through a second instance and with plain SQL.

Server: $POLICYEVAL_TEST_PG_URL (a database on it where the user may CREATE DATABASE), default
postgresql://postgres@127.0.0.1:5432/postgres. Without a reachable server or a working driver the
test is skipped, except when $CI is set: there it fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import ALL_ASSETS

from .services import sql

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "dagster.yaml"
ASSETS = ["policy", "eval_set", "responses", "grades", "metrics"]


@pytest.fixture
def pg_home(tmp_path: Path, pg_database: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding deploy/postgres/dagster.yaml unchanged, its URL from the environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("POLICYEVAL_PG_URL", pg_database["dagster_url"])
    return home


def _latest(instance: dg.DagsterInstance, asset: str, partition: str) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset} [{partition}] has no materialization in Postgres"
    return records[0].asset_materialization


def test_pipeline_on_postgres_instance(pg_home: Path, pg_database: dict, workspace, resources) -> None:
    server = workspace["server"]
    repo = resources["policy_repository"]
    versions, problems = repo.scan()
    assert not problems
    (key,) = sorted(versions)
    mk = str(multi_key(key, "fake-a"))

    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 4

        instance.add_dynamic_partitions(POLICY_DIM, [key])
        instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a"])
        first = dg.materialize(ALL_ASSETS, selection=["policy", "eval_set"], partition_key=key, instance=instance, resources=resources)
        assert first.success
        second = dg.materialize(ALL_ASSETS, selection=["responses", "grades", "metrics"], partition_key=multi_key(key, "fake-a"), instance=instance, resources=resources)
        assert second.success
        run_ids = {first.run_id, second.run_id}
        model_calls = server.request_count
        assert model_calls > 0

    # a second instance, new connections: everything below comes from the database
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        runs = instance.get_runs()
        assert {run.run_id for run in runs} == run_ids
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert instance.get_dynamic_partitions(POLICY_DIM) == [key]
        assert instance.get_dynamic_partitions(CHECKPOINT_DIM) == ["fake-a"]

        expected_partition = {"policy": key, "eval_set": key, "responses": mk, "grades": mk, "metrics": mk}
        for asset, partition in expected_partition.items():
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {partition}, asset

        eval_rows = _latest(instance, "eval_set", key).metadata["rows"].value
        assert eval_rows > 0
        responses = _latest(instance, "responses", mk).metadata
        assert responses["rows"].value == eval_rows
        assert responses["model_calls"].value == eval_rows == model_calls
        assert responses["checkpoint"].value == "fake-a"
        grades = _latest(instance, "grades", mk).metadata
        assert grades["rows"].value == eval_rows
        assert grades["policy_hash"].value == repo.load(key).content_hash
        metrics = _latest(instance, "metrics", mk).metadata
        assert metrics["rows"].value > 0 and "under_refusal_rate" in metrics

        # the `responses` step ran in pool `model-endpoints`, limited by `pools.default_limit`
        pool = instance.event_log_storage.get_concurrency_info("model-endpoints")
        assert pool.slot_count == 4
        assert pool.active_slot_count == 0  # released when the step ended

    # the rows really are in PostgreSQL
    rows = sql(pg_database, "SELECT run_id, status FROM runs")
    assert {(run_id, status) for run_id, status in rows} == {(run_id, "SUCCESS") for run_id in run_ids}
    rows = sql(
        pg_database,
        "SELECT asset_key, partition, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key, partition",
    )
    assert {(asset_key, partition): n for asset_key, partition, n in rows} == {
        (f'["{asset}"]', partition): 1 for asset, partition in expected_partition.items()
    }
    # and nowhere else: no SQLite files next to dagster.yaml
    assert not list(pg_home.rglob("*.db"))
