"""Sensors and a schedule that keep evaluations current as policies and checkpoints change.

`checkpoint_sensor` watches the checkpoint manifests (and, when configured, an endpoint's
`/v1/models`); `policy_sensor` watches the policy packs; `reevaluation_schedule` re-asks
the latest checkpoints on the latest policy versions, because a hosted endpoint can
drift behind a fixed model name.

Ordering. An evaluation run reads its policy version's `eval_set`, so requesting
`policy_version_job` and the evaluation runs in one tick would race. Evaluation runs are
therefore only requested for policy versions whose `eval_set` is materialized: the policy
sensor requests `policy_version_job` when it first sees a version, and requests the
(policy, checkpoint) evaluation runs on a later tick, once that run has materialized the
eval set. The checkpoint sensor applies the same rule.

Both sensors may want the same (policy, checkpoint) pair (a checkpoint arriving while a
policy's eval set lands). Run keys deduplicate only within one sensor, so before asking,
each sensor checks the instance: a pair is covered when its latest `responses` were made
with the current manifest hash, or an evaluation run for that pair and hash is queued or
in progress.

Cursors (persisted by Dagster, so restarts neither repeat nor miss anything):
- checkpoint_sensor: `{"<checkpoint id>": "<manifest hash>"}`. A hash that differs from
  the cursor's (a new checkpoint, or an edited manifest) requests evaluation runs.
- policy_sensor: `{"policies": [<policy keys seen on disk>],
  "requested": {"<policy key>": [<checkpoint ids already requested or found covered>]}}`.

"Latest" for the schedule: per pack id, the most recently registered policy-version
partition (dynamic partitions keep insertion order) whose eval set is materialized;
checkpoints: every registered checkpoint with a current manifest, or the N most recently
registered (`POLICYEVAL_REEVAL_LATEST_CHECKPOINTS`, default all). Its runs set
`run_settings.refresh` so answers are asked again rather than served from the cache; the
whole `run_settings` config is passed along, because run config for a resource replaces
the values bound in the Definitions rather than merging with them.

Everything starts STOPPED; turn it on in the UI (Automation tab) or with
`dagster sensor start checkpoint_sensor` / `dagster schedule start reevaluation_schedule`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg

from assets.evaluation.measurement import grades, metrics, responses
from assets.materializations import latest_value
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, checkpoints, multi_key, policy_versions
from assets.evaluation.policy import coverage_report, eval_set, policy
from policyeval.runs.manifest import CheckpointManifest, manifest_hash
from resources import CheckpointRegistry, PolicyRepository, RunSettings
from resources.environment import reevaluation_cron, reevaluation_latest_checkpoints

policy_job = dg.define_asset_job(
    "policy_version_job",
    # grader_model (human data) picks the version's learned grader; by key, so the domains stay apart
    selection=dg.AssetSelection.assets(policy, eval_set, coverage_report, "grader_model"),
    description="Snapshot a policy version, generate its eval set and coverage report, pick its learned grader.",
)
evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets(responses, grades, metrics),
    description="Run one checkpoint on one policy version's eval set: responses, grades, metrics.",
)

SENSOR_INTERVAL_S = 30

POLICY_TAG = "policyeval/policy_version"
CHECKPOINT_TAG = "policyeval/checkpoint"
MANIFEST_HASH_TAG = "policyeval/manifest_hash"
REFRESH_TAG = "policyeval/refresh"
ENDPOINT_TAG = "policyeval/endpoint"

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


# ---------------------------------------------------------------------------
# Shared helpers


def load_checkpoints(registry: CheckpointRegistry) -> tuple[dict[str, CheckpointManifest], list[str]]:
    """Every loadable manifest by id, and one message per file that failed (see CheckpointRegistry.scan)."""
    return registry.scan()


def vanished_checkpoints(registered: Iterable[str], manifests: dict[str, CheckpointManifest], problems: list[str]) -> list[str]:
    """Registered checkpoints whose manifest is gone: their partitions leave the pickers
    (materializations, checks and reports already made stay in the instance and on disk).
    While any manifest fails to load nothing is removed: the broken file may be the one."""
    if problems:
        return []
    return sorted(cid for cid in registered if cid not in manifests)


def _ready_policy_versions(instance: dg.DagsterInstance) -> list[str]:
    """Registered policy versions (in registration order) whose eval set is materialized."""
    materialized = instance.get_materialized_partitions(eval_set.key)
    return [key for key in instance.get_dynamic_partitions(POLICY_DIM) if key in materialized]


def _covered(instance: dg.DagsterInstance, policy_key: str, checkpoint_id: str, hash_: str) -> bool:
    """True when (policy, checkpoint) needs no run: its latest responses were made with this
    manifest hash, or an evaluation run for it at this hash is queued or running."""
    if latest_value(instance, responses.key.to_user_string(), str(multi_key(policy_key, checkpoint_id)), "manifest_hash") == hash_:
        return True
    active = instance.get_run_records(
        dg.RunsFilter(
            job_name=evaluation_job.name,
            statuses=_ACTIVE,
            tags={POLICY_TAG: policy_key, CHECKPOINT_TAG: checkpoint_id, MANIFEST_HASH_TAG: hash_},
        ),
        limit=1,
    )
    return bool(active)


def _evaluation_request(
    policy_key: str, manifest: CheckpointManifest, run_key: str | None, run_config: dict | None = None, tags: dict | None = None
) -> dg.RunRequest:
    """One evaluation_job run; the pair and manifest hash as tags make it findable by `_covered`,
    the endpoint tag lets the run coordinator limit concurrent runs per endpoint."""
    return dg.RunRequest(
        job_name=evaluation_job.name,
        partition_key=multi_key(policy_key, manifest.id),
        run_key=run_key,
        run_config=run_config or {},
        tags={
            POLICY_TAG: policy_key,
            CHECKPOINT_TAG: manifest.id,
            MANIFEST_HASH_TAG: manifest_hash(manifest),
            ENDPOINT_TAG: manifest.endpoint,
            **(tags or {}),
        },
    )


def _load_cursor(raw: str | None, default: dict) -> dict:
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        return default
    return value if isinstance(value, dict) else default


def _log_all(context, messages: Iterable[str]) -> None:
    for message in messages:
        context.log.warning(message)


# ---------------------------------------------------------------------------
# Checkpoints


@dg.sensor(
    name="checkpoint_sensor",
    job=evaluation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Registers new checkpoint manifests (and models discovered under /v1/models) as partitions and "
        "evaluates new or edited checkpoints on every policy version whose eval set exists."
    ),
)
def checkpoint_sensor(context: dg.SensorEvaluationContext, checkpoint_registry: CheckpointRegistry) -> dg.SensorResult:
    seen: dict = _load_cursor(context.cursor, {})
    manifests, problems = load_checkpoints(checkpoint_registry)
    _log_all(context, problems)
    instance = context.instance
    current = {cid: manifest_hash(m) for cid, m in sorted(manifests.items())}

    registered = set(instance.get_dynamic_partitions(CHECKPOINT_DIM))
    new_ids = [cid for cid in current if cid not in registered]
    gone = vanished_checkpoints(registered, manifests, problems)
    for cid in gone:
        context.log.info(f"checkpoint {cid}: manifest removed; its partition leaves the pickers, its history stays")
    changed = {cid: h for cid, h in current.items() if seen.get(cid) != h}
    ready = _ready_policy_versions(instance) if changed else []

    run_requests = []
    for cid, hash_ in changed.items():
        previous = seen.get(cid)
        context.log.info(f"checkpoint {cid}: {'new' if previous is None else 'manifest changed'} (hash {hash_[:12]})")
        for policy_key in ready:
            if _covered(instance, policy_key, cid, hash_):
                continue
            # The previous hash in the key lets a reverted manifest (A -> B -> A) run again.
            run_key = f"eval:{policy_key}:{cid}:{hash_}:from-{previous or 'none'}"
            run_requests.append(_evaluation_request(policy_key, manifests[cid], run_key))

    # Entries for manifests that vanished or failed to load are kept: fixing a file
    # without changing what it asks must not re-run anything.
    cursor = json.dumps({**seen, **current}, sort_keys=True)
    requests = [checkpoints.build_add_request(new_ids)] if new_ids else []
    if gone:
        requests.append(checkpoints.build_delete_request(gone))
    skip = None
    if not run_requests:
        if changed and not ready:
            skip = f"{len(changed)} new or changed checkpoint(s); no policy version has an eval set yet"
        elif changed:
            skip = f"{len(changed)} new or changed checkpoint(s), already evaluated or in progress"
        elif not gone:
            skip = "no new or changed checkpoints" + (f" ({len(problems)} problem(s) logged)" if problems else "")
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=requests, cursor=cursor, skip_reason=skip)


# ---------------------------------------------------------------------------
# Policies


@dg.sensor(
    name="policy_sensor",
    jobs=[policy_job, evaluation_job],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Registers new policy versions (content-hash keys) and runs policy_version_job for them; once a "
        "version's eval set exists, evaluates it on every registered checkpoint."
    ),
)
def policy_sensor(
    context: dg.SensorEvaluationContext, policy_repository: PolicyRepository, checkpoint_registry: CheckpointRegistry
) -> dg.SensorResult:
    state = _load_cursor(context.cursor, {})
    known: list[str] = list(state.get("policies", []))
    requested: dict[str, list[str]] = {k: list(v) for k, v in state.get("requested", {}).items()}
    instance = context.instance

    versions, problems = policy_repository.scan()
    _log_all(context, (f"skipping policy pack {p.path}: {p.message}" for p in problems))

    registered = set(instance.get_dynamic_partitions(POLICY_DIM))
    materialized = instance.get_materialized_partitions(eval_set.key)
    new_keys = [key for key in sorted(versions) if key not in registered]
    run_requests: list[dg.RunRequest] = []
    for key in sorted(versions):
        if key in known:
            continue
        known.append(key)
        if key in materialized:
            context.log.info(f"policy version {key}: eval set already materialized")
            continue
        context.log.info(f"policy version {key}: new, requesting {policy_job.name}")
        run_requests.append(dg.RunRequest(job_name=policy_job.name, partition_key=key, run_key=f"policy:{key}", tags={POLICY_TAG: key}))

    # Evaluation runs for versions whose eval set is ready, on every registered checkpoint
    # not yet requested for them.
    checkpoint_ids = instance.get_dynamic_partitions(CHECKPOINT_DIM)
    pending = {
        key: [cid for cid in checkpoint_ids if cid not in requested.get(key, [])]
        for key in known
        if key in registered and key in materialized
    }
    pending = {key: ids for key, ids in pending.items() if ids}
    waiting = [key for key in known if key not in materialized]
    if pending:
        manifests, _ = load_checkpoints(checkpoint_registry)  # the checkpoint sensor reports its problems
        for key, ids in pending.items():
            for cid in ids:
                if cid not in manifests:
                    context.log.info(f"checkpoint {cid} has no loadable manifest now; {key} will be evaluated on it later")
                    continue
                hash_ = manifest_hash(manifests[cid])
                if not _covered(instance, key, cid, hash_):
                    run_requests.append(_evaluation_request(key, manifests[cid], f"eval:{key}:{cid}:{hash_}"))
                requested.setdefault(key, []).append(cid)

    cursor = json.dumps({"policies": sorted(known), "requested": {k: sorted(v) for k, v in sorted(requested.items())}}, sort_keys=True)
    requests = [policy_versions.build_add_request(new_keys)] if new_keys else []
    skip = None
    if not run_requests:
        skip = "no new policy versions or evaluations to request"
        if waiting:
            skip += f"; waiting for the eval set of {', '.join(sorted(waiting)[:5])}"
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=requests, cursor=cursor, skip_reason=skip)


# ---------------------------------------------------------------------------
# Scheduled re-evaluation


def latest_policy_versions(instance: dg.DagsterInstance, repository: PolicyRepository, log=None) -> dict[str, str]:
    """Per pack id, the most recently registered policy version whose eval set exists."""
    on_disk, _ = repository.scan()
    latest: dict[str, str] = {}
    for key in _ready_policy_versions(instance):
        pack = on_disk.get(key)
        if pack is None and repository.snapshot_path(key).exists():
            try:
                pack = repository.load(key)
            except Exception as exc:
                if log:
                    log.warning(f"policy version {key}: cannot read its snapshot ({exc}); skipped")
                continue
        if pack is None:
            if log:
                log.warning(f"policy version {key}: neither snapshotted nor on disk; skipped")
            continue
        latest[pack.id] = key  # later registrations overwrite earlier ones
    return latest


def resources_run_config(resources: dict[str, dg.ConfigurableResource], **changes: dict) -> dict:
    """Run config for bound resources, every field of each passed (run config replaces a
    resource's bound values rather than merging with them), with `changes[name]` applied."""
    def config(name: str, resource: dg.ConfigurableResource) -> dict:
        bound = {field: getattr(resource, field) for field in type(resource).model_fields}
        return {"config": {**bound, **changes.get(name, {})}}

    return {"resources": {name: config(name, resource) for name, resource in resources.items()}}


def refresh_run_config(run_settings: RunSettings) -> dict:
    """Run config that turns on refresh while keeping every other bound RunSettings value."""
    return resources_run_config({"run_settings": run_settings}, run_settings={"refresh": True})


@dg.schedule(
    name="reevaluation_schedule",
    cron_schedule=reevaluation_cron(),
    job=evaluation_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Re-asks the latest checkpoints on the latest policy version of each pack, bypassing the response "
        "cache, so drift behind a fixed hosted model name shows up. Cron from POLICYEVAL_REEVAL_CRON."
    ),
)
def reevaluation_schedule(
    context: dg.ScheduleEvaluationContext,
    policy_repository: PolicyRepository,
    checkpoint_registry: CheckpointRegistry,
    run_settings: RunSettings,
):
    count = reevaluation_latest_checkpoints()
    latest = latest_policy_versions(context.instance, policy_repository, context.log)
    manifests, problems = load_checkpoints(checkpoint_registry)
    _log_all(context, problems)
    chosen = [cid for cid in context.instance.get_dynamic_partitions(CHECKPOINT_DIM) if cid in manifests]
    if count is not None:
        chosen = chosen[-count:]
    if not latest or not chosen:
        return dg.SkipReason(f"nothing to re-evaluate ({len(latest)} ready policy version(s), {len(chosen)} checkpoint(s) with a manifest)")

    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else None
    run_config = refresh_run_config(run_settings)
    run_requests = []
    for pack_id, key in sorted(latest.items()):
        for cid in chosen:
            hash_ = manifest_hash(manifests[cid])
            run_requests.append(
                _evaluation_request(
                    key,
                    manifests[cid],
                    f"reeval:{key}:{cid}:{hash_}:{tick}" if tick else None,
                    run_config=run_config,
                    tags={REFRESH_TAG: "true"},
                )
            )
    return run_requests


JOBS = [policy_job, evaluation_job]
SENSORS = [checkpoint_sensor, policy_sensor]
SCHEDULES = [reevaluation_schedule]

__all__ = [
    "JOBS",
    "SCHEDULES",
    "SENSORS",
    "evaluation_job",
    "checkpoint_sensor",
    "latest_policy_versions",
    "load_checkpoints",
    "policy_job",
    "policy_sensor",
    "reevaluation_schedule",
    "refresh_run_config",
    "resources_run_config",
]
