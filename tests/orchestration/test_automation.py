"""Sensors and the re-evaluation schedule on a real (temporary) instance.

Sensors are called with `build_sensor_context`, which returns the SensorResult without
applying it: each test adds the requested partitions to the instance itself, the way the
daemon would, and passes the returned cursor to the next tick as a restarted daemon would.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from assets.evaluation import automation
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from assets.reports.automation import comparison_job
from pipelines.definitions import ALL_ASSETS
from assets.evaluation.automation import (
    SCHEDULES,
    SENSORS,
    CHECKPOINT_TAG,
    MANIFEST_HASH_TAG,
    POLICY_TAG,
    REFRESH_TAG,
    checkpoint_sensor,
    policy_sensor,
    reevaluation_schedule,
)
from policyeval.runs.manifest import load_manifest, manifest_hash
from resources import CheckpointRegistry, RunSettings
from resources.environment import REEVAL_LATEST_ENV


AT = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def tick(sensor, instance, resources: dict, cursor: str | None = None) -> tuple[dg.SensorResult, list[str]]:
    """One evaluation on a fresh context (a restarted daemon keeps only the cursor)."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    collect = _Collect()
    context.log.addHandler(collect)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result, collect.messages


def apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def added(result: dg.SensorResult, dim: str) -> list[str]:
    return [k for r in result.dynamic_partitions_requests or [] if r.partitions_def_name == dim for k in r.partition_keys]


def pairs(result) -> set[tuple[str, str]]:
    requests = result.run_requests if isinstance(result, dg.SensorResult) else result
    return {(r.tags[POLICY_TAG], r.tags[CHECKPOINT_TAG]) for r in requests if r.job_name == "evaluation_job"}


def mark_eval_set(instance: dg.DagsterInstance, key: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="eval_set", partition=key))


def write_manifest(folder: Path, name: str, base_url: str, prompt: str | None = None) -> None:
    lines = [f"id: {name}", f"base_url: {base_url}", "model: fake-model", "params: {temperature: 0, max_tokens: 32}"]
    if prompt:
        lines.append(f"system_prompt: {prompt}")
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")


def hash_of(folder: Path, name: str) -> str:
    return manifest_hash(load_manifest(folder / f"{name}.yaml"))


@pytest.fixture(scope="module")
def shared_instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(shared_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """One temporary instance for the module, wiped per test (creating one costs seconds)."""
    shared_instance.wipe()
    return shared_instance


@pytest.fixture
def policy_key(resources) -> str:
    versions, problems = resources["policy_repository"].scan()
    assert not problems and len(versions) == 1
    return next(iter(versions))


def test_exports_and_defaults(resources) -> None:
    assert [s.name for s in SENSORS] == ["checkpoint_sensor", "policy_sensor"]
    assert [s.name for s in SCHEDULES] == ["reevaluation_schedule"]
    for sensor in SENSORS:
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert sensor.minimum_interval_seconds == 30
    assert reevaluation_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert reevaluation_schedule.cron_schedule == "0 6 * * *"
    # The definitions load with the sensors and schedule wired to the real jobs.
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[automation.policy_job, automation.evaluation_job, comparison_job],
        sensors=SENSORS,
        schedules=SCHEDULES,
        resources=resources,
    )
    repo = defs.get_repository_def()
    assert [t.job_name for t in repo.get_sensor_def("policy_sensor").targets] == ["policy_version_job", "evaluation_job"]
    assert repo.get_schedule_def("reevaluation_schedule").job_name == "evaluation_job"


def test_checkpoint_sensor_registers_new_and_changed_manifests(instance, workspace, resources, policy_key) -> None:
    folder, url = workspace["checkpoints"], workspace["server"].base_url
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key, "mini-0.9-000000000000"])
    mark_eval_set(instance, policy_key)  # the older version has no eval set: no runs for it

    first, _ = tick(checkpoint_sensor, instance, resources)
    assert sorted(added(first, CHECKPOINT_DIM)) == ["fake-a", "fake-b"]
    assert pairs(first) == {(policy_key, "fake-a"), (policy_key, "fake-b")}
    request = next(r for r in first.run_requests if r.tags[CHECKPOINT_TAG] == "fake-a")
    assert request.partition_key == multi_key(policy_key, "fake-a")
    assert request.tags[MANIFEST_HASH_TAG] == hash_of(folder, "fake-a")
    assert policy_key in request.run_key and hash_of(folder, "fake-a") in request.run_key
    assert json.loads(first.cursor) == {"fake-a": hash_of(folder, "fake-a"), "fake-b": hash_of(folder, "fake-b")}
    apply(instance, first)

    again, _ = tick(checkpoint_sensor, instance, resources, first.cursor)
    assert not again.run_requests and not again.dynamic_partitions_requests and again.skip_reason

    write_manifest(folder, "fake-c", url)
    third, _ = tick(checkpoint_sensor, instance, resources, again.cursor)
    assert added(third, CHECKPOINT_DIM) == ["fake-c"]
    assert pairs(third) == {(policy_key, "fake-c")}
    apply(instance, third)

    old_hash = hash_of(folder, "fake-a")
    write_manifest(folder, "fake-a", url, prompt="Answer tersely.")
    edited, _ = tick(checkpoint_sensor, instance, resources, third.cursor)
    assert not edited.dynamic_partitions_requests
    assert pairs(edited) == {(policy_key, "fake-a")}
    (rerun,) = edited.run_requests
    assert rerun.tags[MANIFEST_HASH_TAG] == hash_of(folder, "fake-a") != old_hash
    assert rerun.run_key != request.run_key

    # Reverting the edit evaluates again (its answers differ from the latest ones), under a new run key.
    write_manifest(folder, "fake-a", url)
    reverted, _ = tick(checkpoint_sensor, instance, resources, edited.cursor)
    (back,) = reverted.run_requests
    assert back.tags[MANIFEST_HASH_TAG] == old_hash and back.run_key != request.run_key


def test_checkpoint_sensor_unregisters_a_removed_manifest_but_not_a_broken_one(instance, workspace, resources, policy_key) -> None:
    folder = workspace["checkpoints"]
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key])
    first, _ = tick(checkpoint_sensor, instance, resources)
    apply(instance, first)
    assert sorted(instance.get_dynamic_partitions(CHECKPOINT_DIM)) == ["fake-a", "fake-b"]

    # A manifest that fails to load might be the missing one: nothing leaves while it is broken.
    (folder / "fake-b.yaml").write_text("id: fake-b\nnot_a_field: 1\n")
    broken, _ = tick(checkpoint_sensor, instance, resources, first.cursor)
    assert not broken.dynamic_partitions_requests

    (folder / "fake-b.yaml").unlink()
    gone, logs = tick(checkpoint_sensor, instance, resources, broken.cursor)
    (request,) = gone.dynamic_partitions_requests
    assert isinstance(request, dg.DeleteDynamicPartitionsRequest) and list(request.partition_keys) == ["fake-b"]
    assert not gone.run_requests
    apply(instance, gone)
    assert instance.get_dynamic_partitions(CHECKPOINT_DIM) == ["fake-a"]


def test_checkpoint_sensor_skips_bad_manifest_and_logs_it(instance, workspace, resources, policy_key) -> None:
    folder = workspace["checkpoints"]
    (folder / "broken.yaml").write_text("id: broken\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nnot_a_field: 1\n")
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key])
    mark_eval_set(instance, policy_key)
    result, logs = tick(checkpoint_sensor, instance, resources)
    assert sorted(added(result, CHECKPOINT_DIM)) == ["fake-a", "fake-b"]
    assert pairs(result) == {(policy_key, "fake-a"), (policy_key, "fake-b")}
    assert any("broken.yaml" in line and "not_a_field" in line for line in logs)
    assert "broken" not in json.loads(result.cursor)
    apply(instance, result)

    # Still reported on every tick, and never blocks: fixing it fires for it alone.
    quiet, logs = tick(checkpoint_sensor, instance, resources, result.cursor)
    assert not quiet.run_requests and any("broken.yaml" in line for line in logs)
    write_manifest(folder, "broken", workspace["server"].base_url)
    fixed, _ = tick(checkpoint_sensor, instance, resources, quiet.cursor)
    assert added(fixed, CHECKPOINT_DIM) == ["broken"] and pairs(fixed) == {(policy_key, "broken")}


def test_checkpoint_sensor_discovers_models_by_prefix(instance, workspace, resources, policy_key) -> None:
    server = workspace["server"]
    server.models = ["ft-one", "ft-two", "base-model"]
    registry = CheckpointRegistry(manifests_dir=str(workspace["checkpoints"]), models_url=server.base_url, model_prefix="ft-")
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key])
    mark_eval_set(instance, policy_key)
    result, _ = tick(checkpoint_sensor, instance, {**resources, "checkpoint_registry": registry})
    assert sorted(added(result, CHECKPOINT_DIM)) == ["fake-a", "fake-b", "ft-one", "ft-two"]
    assert {c for _, c in pairs(result)} == {"fake-a", "fake-b", "ft-one", "ft-two"}
    apply(instance, result)

    server.models.append("ft-three")
    later, _ = tick(checkpoint_sensor, instance, {**resources, "checkpoint_registry": registry}, result.cursor)
    assert added(later, CHECKPOINT_DIM) == ["ft-three"] and pairs(later) == {(policy_key, "ft-three")}

    # An unreachable endpoint is logged; file manifests still count and nothing is forgotten.
    down = CheckpointRegistry(manifests_dir=str(workspace["checkpoints"]), models_url="http://127.0.0.1:9/v1", model_prefix="ft-")
    offline, logs = tick(checkpoint_sensor, instance, {**resources, "checkpoint_registry": down}, later.cursor)
    assert not offline.run_requests and any("discovery" in line for line in logs)
    assert set(json.loads(offline.cursor)) == {"fake-a", "fake-b", "ft-one", "ft-two", "ft-three"}


def test_policy_sensor_registers_then_evaluates_once_eval_set_exists(instance, workspace, resources, policy_key) -> None:
    instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a", "fake-b"])

    first, _ = tick(policy_sensor, instance, resources)
    assert added(first, POLICY_DIM) == [policy_key]
    (job_run,) = first.run_requests
    assert (job_run.job_name, job_run.partition_key, job_run.run_key) == ("policy_version_job", policy_key, f"policy:{policy_key}")
    apply(instance, first)

    restarted, _ = tick(policy_sensor, instance, resources, first.cursor)
    assert not restarted.run_requests and not restarted.dynamic_partitions_requests
    assert "waiting for the eval set" in restarted.skip_reason.skip_message

    mark_eval_set(instance, policy_key)  # what policy_version_job does
    ready, _ = tick(policy_sensor, instance, resources, restarted.cursor)
    assert pairs(ready) == {(policy_key, "fake-a"), (policy_key, "fake-b")}
    assert all(r.job_name == "evaluation_job" for r in ready.run_requests)
    assert json.loads(ready.cursor) == {"policies": [policy_key], "requested": {policy_key: ["fake-a", "fake-b"]}}

    after, _ = tick(policy_sensor, instance, resources, ready.cursor)
    assert not after.run_requests and after.skip_reason

    # An edited pack is a new version: registered and its policy job requested; old pairs stay quiet.
    pack = workspace["policies"] / "mini" / "pack.yaml"
    pack.write_text(pack.read_text().replace('version: "1.0"', 'version: "1.1"'))
    edited, _ = tick(policy_sensor, instance, resources, after.cursor)
    (new_key,) = added(edited, POLICY_DIM)
    assert new_key != policy_key
    assert [(r.job_name, r.partition_key) for r in edited.run_requests] == [("policy_version_job", new_key)]


def test_policy_sensor_skips_invalid_pack_and_covered_pairs(instance, workspace, resources, policy_key) -> None:
    broken = workspace["policies"] / "broken"
    shutil.copytree(workspace["policies"] / "mini", broken)
    (broken / "pack.yaml").write_text("id: broken\nversion: 1\n")
    folder = workspace["checkpoints"]
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key])
    instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a", "fake-b"])
    mark_eval_set(instance, policy_key)
    # fake-a already answered at its current manifest; fake-b being evaluated by a run the checkpoint sensor asked for.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="responses", partition=str(multi_key(policy_key, "fake-a")), metadata={"manifest_hash": hash_of(folder, "fake-a")})
    )
    create_run_for_test(
        instance,
        job_name="evaluation_job",
        status=dg.DagsterRunStatus.STARTED,
        tags={POLICY_TAG: policy_key, CHECKPOINT_TAG: "fake-b", MANIFEST_HASH_TAG: hash_of(folder, "fake-b")},
    )
    result, logs = tick(policy_sensor, instance, resources)
    assert not result.run_requests  # eval set exists already and both pairs are covered
    assert any("broken" in line for line in logs)
    assert json.loads(result.cursor)["requested"] == {policy_key: ["fake-a", "fake-b"]}

    # The checkpoint sensor sees the same coverage and asks for nothing either.
    cp, _ = tick(checkpoint_sensor, instance, resources)
    assert not cp.run_requests and not cp.dynamic_partitions_requests


def test_reevaluation_schedule_requests_refresh_runs(instance, workspace, resources, policy_key, monkeypatch) -> None:
    older = workspace["policies"] / "mini-old"
    shutil.copytree(workspace["policies"] / "mini", older)
    (older / "pack.yaml").write_text((older / "pack.yaml").read_text().replace('version: "1.0"', 'version: "0.9"'))
    versions, _ = resources["policy_repository"].scan()
    (old_key,) = [k for k in versions if k != policy_key]
    folder = workspace["checkpoints"]
    write_manifest(folder, "fake-c", workspace["server"].base_url)
    instance.add_dynamic_partitions(POLICY_DIM, [old_key, policy_key, "mini-2.0-ffffffffffff"])
    instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a", "fake-b", "fake-c", "gone"])
    for key in (old_key, policy_key):
        mark_eval_set(instance, key)

    requests = reevaluation_schedule(dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=AT))
    # Latest ready version of pack `mini` (the newest key has no eval set); `gone` has no manifest.
    assert pairs(requests) == {(policy_key, "fake-a"), (policy_key, "fake-b"), (policy_key, "fake-c")}
    settings: RunSettings = resources["run_settings"]
    for request in requests:
        assert request.tags[REFRESH_TAG] == "true"
        assert request.tags[MANIFEST_HASH_TAG] == hash_of(folder, request.tags[CHECKPOINT_TAG])
        config = request.run_config["resources"]["run_settings"]["config"]
        assert config["refresh"] is True
        # Bound values travel along: resource run config replaces, it does not merge.
        assert config["sample_per_cell"] == settings.sample_per_cell and config["cache_dir"] == settings.cache_dir
        assert config["baseline_checkpoint"] == "fake-a"
    # The config is valid for the job.
    job = dg.Definitions(assets=ALL_ASSETS, jobs=[automation.evaluation_job], resources=resources).resolve_job_def("evaluation_job")
    dg.validate_run_config(job, copy.deepcopy(requests[0].run_config))

    monkeypatch.setenv(REEVAL_LATEST_ENV, "2")
    latest_two = reevaluation_schedule(dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=AT))
    assert pairs(latest_two) == {(policy_key, "fake-b"), (policy_key, "fake-c")}

    instance.wipe()
    skipped = reevaluation_schedule(dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=AT))
    assert isinstance(skipped, dg.SkipReason)


def test_daemon_resolution_accepts_the_requests(instance, resources, policy_key) -> None:
    """What the daemon does with a tick: run requests resolve against the jobs and the partitions
    added in the same tick."""
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[automation.policy_job, automation.evaluation_job],
        sensors=SENSORS,
        resources=resources,
    )
    instance.add_dynamic_partitions(POLICY_DIM, [policy_key])
    mark_eval_set(instance, policy_key)
    sensor = defs.get_repository_def().get_sensor_def("checkpoint_sensor")
    # The daemon's context carries an instance ref, which is what lets same-tick partitions resolve.
    context = dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, resources=resources)
    data = sensor.evaluate_tick(context)
    assert {r.partition_key for r in data.run_requests} == {str(multi_key(policy_key, c)) for c in ("fake-a", "fake-b")}
    assert all(r.tags["dagster/partition/checkpoint"] in ("fake-a", "fake-b") for r in data.run_requests)

    instance.wipe()
    context = dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, resources=resources)
    data = defs.get_repository_def().get_sensor_def("policy_sensor").evaluate_tick(context)
    assert [(r.job_name, r.partition_key) for r in data.run_requests] == [("policy_version_job", policy_key)]
