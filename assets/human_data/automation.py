"""Sensors of the human data loop: one imports what annotators and adjudicators drop into
campaign inboxes, one retrains the learned grader when new gold labels are settled.

Each campaign folder has `inbox/annotations/` and `inbox/adjudications/`. A new or
changed file there requests one `human_data_job` run (annotations, agreement,
adjudication queue) for the partition its campaign belongs to; files arriving in the
same tick for one campaign share that run, since each run imports the whole inbox.

Cursor: `{"<file path>": "<sha256 of its content>"}`. Content hashes rather than
mtimes, so touching or re-copying a file triggers nothing and an edited file triggers
exactly once. A deleted file is dropped from the cursor, so putting it back counts as new. A file
whose partition is not registered on this instance stays out of the cursor until it is.

`grader_model_sensor` watches `gold_set` materializations: one whose gold version the
policy version's `grader_model` was not trained on requests `grader_model_job` for that
policy version (the graph cannot carry this edge: gold labels are made from grades).

Start STOPPED, like every sensor here: `dagster sensor start campaign_inbox_sensor`.
"""

from __future__ import annotations

import json
from collections import defaultdict

import dagster as dg

from assets.evaluation.automation import CHECKPOINT_TAG, POLICY_TAG, SENSOR_INTERVAL_S
from assets.human_data.campaigns import adjudication_queue, annotations, annotator_agreement
from assets.human_data.grader_model import grader_model
from assets.materializations import latest_value
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from policyeval.campaigns.importing import file_sha256
from policyeval.records import content_hash
from resources import CampaignStore
from resources.campaigns import InboxFile

grader_model_job = dg.define_asset_job(
    "grader_model_job",
    selection=dg.AssetSelection.assets(grader_model),
    description="Train a policy version's learned grader on its gold set (or fall back to the shipped default).",
)
human_data_job = dg.define_asset_job(
    "human_data_job",
    selection=dg.AssetSelection.assets(annotations, annotator_agreement, adjudication_queue),
    description="Import a campaign's inbox files (annotations, adjudications); agreement and the adjudication queue.",
)

CAMPAIGN_TAG = "policyeval/campaign"


def _load_cursor(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dg.sensor(
    name="campaign_inbox_sensor",
    job=human_data_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches every campaign's annotation and adjudication inbox; a new or changed file requests one "
        "human_data_job run for the campaign's policy version x checkpoint."
    ),
)
def campaign_inbox_sensor(context: dg.SensorEvaluationContext, campaign_store: CampaignStore) -> dg.SensorResult:
    seen = _load_cursor(context.cursor)
    current: dict[str, str] = {}
    changed: dict[tuple[str, str, str], list[tuple[InboxFile, str]]] = defaultdict(list)
    for inbox_file in campaign_store.inbox_files():
        try:
            digest = file_sha256(inbox_file.path)
        except OSError as exc:  # vanished or unreadable between listing and reading: next tick
            context.log.warning(f"cannot read {inbox_file.path}: {exc}")
            continue
        path = str(inbox_file.path)
        current[path] = digest
        if seen.get(path) != digest:
            changed[(inbox_file.campaign_id, inbox_file.policy_version, inbox_file.checkpoint)].append((inbox_file, digest))

    policies = set(context.instance.get_dynamic_partitions(POLICY_DIM)) if changed else set()
    checkpoints = set(context.instance.get_dynamic_partitions(CHECKPOINT_DIM)) if changed else set()
    run_requests = []
    for (campaign_id, policy_key, checkpoint), files in sorted(changed.items()):
        if policy_key not in policies or checkpoint not in checkpoints:
            context.log.warning(f"campaign {campaign_id}: partition {policy_key} x {checkpoint} is not registered; its files wait")
            for inbox_file, _ in files:
                current.pop(str(inbox_file.path), None)
            continue
        names = ", ".join(f"{f.kind}/{f.path.name}" for f, _ in files)
        context.log.info(f"campaign {campaign_id}: new or changed {names}")
        fingerprint = content_hash(sorted((str(f.path), d, seen.get(str(f.path), "none")) for f, d in files))
        run_requests.append(
            dg.RunRequest(
                job_name=human_data_job.name,
                partition_key=multi_key(policy_key, checkpoint),
                run_key=f"inbox:{campaign_id}:{fingerprint}",
                tags={POLICY_TAG: policy_key, CHECKPOINT_TAG: checkpoint, CAMPAIGN_TAG: campaign_id},
            )
        )
    cursor = json.dumps(current, sort_keys=True)
    skip = None if run_requests else ("no new or changed inbox files" if not changed else "inbox files wait for their partition to be registered")
    return dg.SensorResult(run_requests=run_requests, cursor=cursor, skip_reason=skip)


@dg.asset_sensor(
    asset_key=dg.AssetKey("gold_set"),
    name="grader_model_sensor",
    job=grader_model_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "A gold_set materialization with a gold version the policy version's grader_model was not trained on "
        "requests grader_model_job for that policy version (retrain on the new labels; grades then show unsynced)."
    ),
)
def grader_model_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    policy_key = materialization.partition if materialization else None
    if materialization is None or not policy_key:
        return dg.SkipReason("gold_set materialization without a partition")
    entry = materialization.metadata.get("gold_version")
    gold_version = str(getattr(entry, "value", "") or "")
    if gold_version and latest_value(context.instance, "grader_model", policy_key, "gold_version") == gold_version:
        return dg.SkipReason(f"{policy_key}: grader_model is already trained on gold version {gold_version}")
    context.log.info(f"{policy_key}: gold version {gold_version or '(none)'} is new to grader_model")
    return dg.RunRequest(job_name=grader_model_job.name, partition_key=policy_key, run_key=f"gold:{policy_key}:{gold_version}", tags={POLICY_TAG: policy_key})


JOBS = [grader_model_job, human_data_job]
SENSORS = [campaign_inbox_sensor, grader_model_sensor]

__all__ = ["CAMPAIGN_TAG", "JOBS", "SENSORS", "campaign_inbox_sensor", "grader_model_job", "grader_model_sensor", "human_data_job"]
