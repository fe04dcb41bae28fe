"""The executor modes and the shipped distributed deployment files, without services: what a
run without `execution` gets in each code location, that `policyeval run`'s run config is valid
for both modes, and that the Celery settings and instance files say what the docs promise."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_celery.cli import get_validated_config

from pipelines.definitions import build_definitions
from pipelines.executors import celery_config, execution_config
from pipelines.main_job import run_config
from policyeval.errors import PolicyevalError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = DEPLOY / "distributed" / "celery.yaml"


@pytest.fixture
def celery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYEVAL_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("POLICYEVAL_CELERY_BACKEND", "redis://127.0.0.1:6379/0")


def test_the_default_mode_is_the_code_locations(workspace) -> None:
    local = build_definitions(packs_dir=str(workspace["policies"]), manifests_dir=str(workspace["checkpoints"]))
    distributed = build_definitions(packs_dir=str(workspace["policies"]), manifests_dir=str(workspace["checkpoints"]), executor="celery")
    default = lambda defs: defs.resolve_job_def("evaluation_job").executor_def.config_schema.default_value  # noqa: E731
    assert default(local) == {"multiprocess": {}}
    celery = default(distributed)["celery"]
    # URLs stay environment sources: a password never enters a job snapshot or the UI
    assert celery["broker"] == {"env": "POLICYEVAL_CELERY_BROKER"} and celery["backend"] == {"env": "POLICYEVAL_CELERY_BACKEND"}
    assert celery["config_source"]["task_default_queue"] == "policyeval"


def test_policyeval_run_config_is_valid_in_both_modes(workspace, celery_env) -> None:
    defs = build_definitions(packs_dir=str(workspace["policies"]), manifests_dir=str(workspace["checkpoints"]))
    job = defs.resolve_job_def("evaluation_job")
    for mode in ("in_process", "celery"):
        config = run_config(defs.resources, execution_config(mode, SETTINGS if mode == "celery" else None))
        assert dg.validate_run_config(job, config)["execution"]["policyeval_executor"].keys() == {mode}
    with pytest.raises(PolicyevalError, match="unknown executor"):
        execution_config("threads")


def test_worker_settings_are_what_the_executor_reads(celery_env) -> None:
    worker = get_validated_config(str(SETTINGS))  # as `dagster-celery worker start -y` reads it
    assert worker["broker"] == worker["backend"] == "redis://127.0.0.1:6379/0"
    assert celery_config(SETTINGS) == yaml.safe_load(SETTINGS.read_text())["execution"]["config"]
    source = worker["config_source"]
    assert source["worker_prefetch_multiplier"] == 1 and source["task_acks_late"] is True
    # an unacknowledged step is handed to another worker only after the longest run may take
    instance = yaml.safe_load((DEPLOY / "distributed" / "dagster.yaml").read_text())
    assert source["broker_transport_options"]["visibility_timeout"] > instance["run_monitoring"]["max_runtime_seconds"]


def test_distributed_instance_is_the_postgres_one_with_shared_compute_logs() -> None:
    postgres = yaml.safe_load((DEPLOY / "postgres" / "dagster.yaml").read_text())
    distributed = yaml.safe_load((DEPLOY / "distributed" / "dagster.yaml").read_text())
    assert distributed.pop("compute_logs")["config"]["base_dir"] == {"env": "POLICYEVAL_COMPUTE_LOG_DIR"}
    assert distributed == postgres


def test_a_settings_file_without_a_broker_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "celery.yaml"
    bad.write_text("execution:\n  config:\n    backend: rpc://\n")
    with pytest.raises(PolicyevalError, match="broker"):
        celery_config(bad)


def test_policyeval_run_reads_the_celery_settings_it_is_given(workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pipelines.main_job import run

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    bad = tmp_path / "celery.yaml"
    bad.write_text("execution:\n  config:\n    backend: rpc://\n")
    args = ["--policies", str(workspace["policies"]), "--checkpoints", str(workspace["checkpoints"]),
            "--executor", "celery", "--celery-settings", str(bad)]
    with pytest.raises(PolicyevalError, match="celery.yaml: expected"):
        CliRunner().invoke(run, args, catch_exceptions=False)
    assert workspace["server"].request_count == 0
