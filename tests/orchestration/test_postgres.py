"""The pipeline on a PostgreSQL-backed Dagster instance (dagster-postgres), against a real server.

The instance is built from deploy/postgres/dagster.yaml exactly as shipped, in a temporary
DAGSTER_HOME, with POLICYEVAL_PG_URL pointing at a database created for this test session and
dropped afterwards. Runs, materializations, dynamic partitions and pool limits are read back
through a second instance and with plain SQL.

Server: $POLICYEVAL_TEST_PG_URL (a database on it where the user may CREATE DATABASE), default
postgresql://postgres@127.0.0.1:5432/postgres. Without a reachable server or a working driver the
test is skipped, except when $CI is set: there it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import ALL_ASSETS

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "dagster.yaml"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ASSETS = ["policy", "eval_set", "responses", "grades", "metrics"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _driver():
    """psycopg2, the driver dagster-postgres is written for.

    psycopg 3 is not an alternative: dagster-postgres 0.29.27 sends `NOTIFY channel, $1`, which
    psycopg 3's server-side binding rejects. SQLAlchemy 2.1 maps a bare `postgresql://` URL to
    psycopg 3, so the instance URL names `postgresql+psycopg2` explicitly."""
    try:
        import psycopg2
    except Exception as exc:  # a psycopg2 older than 2.9.5 on Python 3.11 raises SystemError, not ImportError
        _unavailable(f"psycopg2 does not import ({type(exc).__name__}: {exc}); dagster-postgres needs psycopg2-binary>=2.9.5 on Python 3.11")
    return psycopg2


def _libpq_url(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[dict]:
    """A fresh database for this test session, dropped at the end."""
    driver = _driver()
    admin = make_url(os.environ.get("POLICYEVAL_TEST_PG_URL", DEFAULT_ADMIN_URL))
    try:
        conn = driver.connect(_libpq_url(admin), connect_timeout=5)
    except Exception as exc:
        _unavailable(f"cannot connect to {admin.render_as_string(hide_password=True)}: {type(exc).__name__}: {exc}".strip())
    name = f"policyeval_test_{secrets.token_hex(4)}"
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f'CREATE DATABASE "{name}"')
    database = admin.set(database=name)
    try:
        yield {
            "name": name,
            "driver": driver,
            "libpq_url": _libpq_url(database),
            "dagster_url": database.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
        }
    finally:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.close()
        conn.close()


@pytest.fixture
def pg_home(tmp_path: Path, pg_database: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding deploy/postgres/dagster.yaml unchanged, its URL from the environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("POLICYEVAL_PG_URL", pg_database["dagster_url"])
    return home


def _sql(pg_database: dict, query: str, params: tuple = ()) -> list[tuple]:
    conn = pg_database["driver"].connect(pg_database["libpq_url"], connect_timeout=5)
    try:
        cur = conn.cursor()
        cur.execute(query, params)
        rows = cur.fetchall()
        cur.close()
        return rows
    finally:
        conn.close()


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
    rows = _sql(pg_database, "SELECT run_id, status FROM runs")
    assert {(run_id, status) for run_id, status in rows} == {(run_id, "SUCCESS") for run_id in run_ids}
    rows = _sql(
        pg_database,
        "SELECT asset_key, partition, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key, partition",
    )
    assert {(asset_key, partition): n for asset_key, partition, n in rows} == {
        (f'["{asset}"]', partition): 1 for asset, partition in expected_partition.items()
    }
    # and nowhere else: no SQLite files next to dagster.yaml
    assert not list(pg_home.rglob("*.db"))
