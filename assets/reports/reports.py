"""Reports people read, as assets: each partition writes one self-contained HTML page and
the same content as Markdown under `<data dir>/reports/`, and records the report's
headline as Markdown metadata, so the UI shows the verdict without opening a 1 MB page.

```
grades ─ safety_report                                        policy version x checkpoint
grades (every checkpoint) ─ comparison_report                 policy version
eval_set, grades (every checkpoint) ─ policy_diff_report      policy version, against the pack's previous version
eval_set ─ coverage_heatmap                                   policy version
deployment conversations, baseline grades ─ deployment_drift  UTC day
```

The core (`policyeval.reports`) builds and escapes the documents; these assets gather the
inputs and the lineage (policy, eval set and checkpoint manifest hashes, graders, code
version, Dagster run id) and write the files. The data directory is the IO manager's
(`base_dir`, else $POLICYEVAL_DATA_DIR, else ./data), so reports sit beside the tables
they were made from. Gold sets are optional: a policy version without one gets reports
without grader validity.
"""

from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from policyeval.coverage import coverage_report as build_coverage
from policyeval.deployment import ALL_CATEGORIES, detect_drift, grade_conversations
from policyeval.deployment.days import import_day
from policyeval.errors import PolicyevalError
from policyeval.policy import PolicyPack
from policyeval.policy.diff import diff_packs
from policyeval.launch_gate import GateResult, evaluate_pack_gate
from policyeval.reports import Document, comparison_document, coverage_document, drift_document, policy_diff_document, safety_document
from policyeval.reports.redaction import check_redaction
from policyeval.reports.drift import note_document
from policyeval.reports.policy_diff import first_version_document
from policyeval.reports.summaries import drift_markdown
from policyeval.runs.manifest import manifest_hash
from policyeval.stats import choose_baseline, graded_by_checkpoint, measured_under_both
from policyeval.tables import atomic_write_bytes
from policyeval.validation import GraderValidation
from policyeval.validation.gold_comparison import grader_validity
from resources.environment import REPORTS, data_root, deployment_start
from resources import CampaignStore, CheckpointRegistry, DeploymentLogs, JudgeResource, ParquetIOManager, PolicyRepository, RunSettings

from assets.failures import fail_clearly
from assets.human_data.campaigns import gold_for_validation
from assets.reports.comparison import FOLLOWS_ANY
from assets.materializations import latest_value
from assets.partitions import BY_POLICY_VERSION, POLICY_DIM, key_dimension, policy_versions, policy_x_checkpoint, safe_key, split_multi_key

OWNERS = ["team:policy"]
GROUP = "reports"
KINDS = {"html", "markdown"}

# Days of deployment traffic; the first day is configurable because a team starts sampling when it starts.
deployment_days = dg.DailyPartitionsDefinition(start_date=deployment_start())

ALL_GRADES = dg.AssetIn(partition_mapping=BY_POLICY_VERSION, metadata={"all_partitions": True})
# Every policy version's tables: the policy diff compares this version with the previous
# one of the same pack, which only the run knows; declaring all keeps the lineage honest.
EVERY_VERSION = dg.AllPartitionMapping()

# Reports follow what they are made of: when grades or metrics of a partition change (a new
# checkpoint evaluated by a sensor, a run launched from the UI, a regrade), the reports
# over it are requested by `reports_automation_sensor`. A per-checkpoint report waits for
# its own inputs (eager); a report over every checkpoint of a version (FOLLOWS_ANY) runs
# when any of them changes, since some checkpoints may never be measured under it.
FOLLOWS_UPSTREAM = dg.AutomationCondition.eager()



class ReportConfig(dg.Config):
    """How much of each model response a report shows: `none` (in full, for internal review),
    `truncate` (the first 280 characters) or `redact` (as truncate, and under-refusal responses,
    which may hold the harmful content, replaced by their length: for wide distribution)."""

    redact: str = "truncate"
    max_failures: int = 10


# ---------------------------------------------------------------------------
# Assets


@dg.asset(
    automation_condition=FOLLOWS_UPSTREAM,
    partitions_def=policy_x_checkpoint,
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=(
        "What a launch review reads for one checkpoint under one policy version: under- and over-refusal with Wilson "
        "intervals per domain, category and severity, the pack's launch gate, the worst failures (responses truncated "
        "unless configured otherwise), grader validity when the policy version has a gold set, and the lineage of every number."
    ),
)
@fail_clearly
def safety_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    grades: pd.DataFrame,
    metrics: pd.DataFrame,
    policy_repository: PolicyRepository,
    checkpoint_registry: CheckpointRegistry,
    campaign_store: CampaignStore,
    run_settings: RunSettings,
    judge: JudgeResource,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    policy_key, checkpoint = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    validation = partition_validation(grades, pack, policy_key, campaign_store, run_settings, judge)
    lineage = run_lineage(
        context,
        eval_set_hash=latest_value(context.instance, "eval_set", policy_key, "eval_set_hash"),
        **manifest_lineage(context, checkpoint_registry, checkpoint),
    )
    document = safety_document(grades, pack, validation=validation, lineage=lineage, redact=redaction(config), max_failures=config.max_failures)
    verdict = evaluate_pack_gate(metrics, pack, validation).verdict
    paths = write_report(document, reports_dir(io_manager) / "safety" / safe_key(policy_key), safe_key(checkpoint))
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(headline(document, "Summary", "Launch gate")),
            "launch_gate": verdict,
            "graded_items": len(grades),
            "grader_validated": validation is not None,
            "redaction": config.redact,
            **paths,
        }
    )


@dg.asset(
    automation_condition=FOLLOWS_ANY,
    partitions_def=policy_versions,
    ins={"grades": ALL_GRADES},
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=(
        "Each checkpoint measured on this policy version against the baseline (run_settings.baseline_checkpoint, else "
        "the first by id), paired on the same items: per-category McNemar with Holm correction, the flipped items and "
        "a summary paragraph written from the numbers, ready for a system card."
    ),
)
@fail_clearly
def comparison_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    grades: dict[str, pd.DataFrame],
    run_settings: RunSettings,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    policy_key = context.partition_key
    by_checkpoint = graded_by_checkpoint(grades.values())
    if not by_checkpoint:
        raise dg.Failure(f"no graded checkpoint under {policy_key} yet: materialize grades first")
    baseline = choose_baseline(run_settings.baseline_checkpoint, by_checkpoint)
    if baseline not in by_checkpoint:
        raise dg.Failure(
            f"baseline checkpoint {baseline!r} has no grades under {policy_key} (graded: {', '.join(sorted(by_checkpoint))}): "
            "materialize its grades, or change run_settings.baseline_checkpoint"
        )
    lineage = run_lineage(context, eval_set_hash=latest_value(context.instance, "eval_set", policy_key, "eval_set_hash"))
    folder = reports_dir(io_manager) / "comparison" / safe_key(policy_key)
    metadata: dict[str, Any] = {"baseline": baseline, "checkpoints": len(by_checkpoint), "redaction": config.redact}
    headlines = []
    for checkpoint in sorted(c for c in by_checkpoint if c != baseline):
        document = comparison_document(by_checkpoint[baseline], by_checkpoint[checkpoint], redact=redaction(config), lineage=lineage)
        paths = write_report(document, folder, f"{safe_key(baseline)}_vs_{safe_key(checkpoint)}")
        metadata.update({f"{name}/{checkpoint}": value for name, value in paths.items()})
        headlines.append(headline(document))
    metadata["summary"] = dg.MetadataValue.md(
        "\n\n".join(headlines) if headlines else f"Only the baseline ({baseline}) is graded under this policy version: nothing to compare yet."
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    automation_condition=FOLLOWS_ANY,
    partitions_def=policy_versions,
    ins={
        "grades": dg.AssetIn(partition_mapping=EVERY_VERSION, metadata={"all_partitions": True}),
        "eval_sets": dg.AssetIn("eval_set", partition_mapping=EVERY_VERSION, metadata={"all_partitions": True}),
    },
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=(
        "What changed since the previous registered version of the same pack: categories and fields, the eval items "
        "added, removed and relabeled, and under-/over-refusal per category on a checkpoint graded under both versions "
        "(the baseline when it is). The first version of a pack gets a short report saying so."
    ),
)
@fail_clearly
def policy_diff_report(
    context: dg.AssetExecutionContext,
    eval_sets: dict[str, pd.DataFrame],
    grades: dict[str, pd.DataFrame],
    policy_repository: PolicyRepository,
    run_settings: RunSettings,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    policy_key = context.partition_key
    pack = policy_repository.load(policy_key)
    lineage = run_lineage(context, eval_set_hash=latest_value(context.instance, "eval_set", policy_key, "eval_set_hash"))
    previous = policy_repository.previous_version(context.instance.get_dynamic_partitions(POLICY_DIM), policy_key)
    eval_set = eval_sets.get(policy_key)
    if eval_set is None:
        raise dg.Failure(f"no eval set for {policy_key} yet: materialize eval_set first")
    if previous is None:
        document = first_version_document(pack, eval_set, lineage)
        metadata: dict[str, Any] = {"previous_version": "(none: first registered version of this pack)"}
    else:
        old_key, old_pack = previous
        diff = diff_packs(old_pack, pack)
        old_by_checkpoint = graded_by_checkpoint(grades_of(grades, old_key).values())
        new_by_checkpoint = graded_by_checkpoint(grades_of(grades, policy_key).values())
        checkpoint, old_grades, new_grades = measured_under_both(old_by_checkpoint, new_by_checkpoint, run_settings.baseline_checkpoint)
        old_items = eval_sets.get(old_key)
        measured = {c: (old_by_checkpoint[c], new_by_checkpoint[c]) for c in sorted(new_by_checkpoint) if c in old_by_checkpoint}
        document = policy_diff_document(
            diff, old_grades=old_grades, new_grades=new_grades, old_items=old_items, new_items=eval_set if old_items is not None else None,
            lineage=lineage, measured=measured,
        )
        metadata = {
            "previous_version": old_key,
            "categories_added": ", ".join(diff.added) or "none",
            "categories_removed": ", ".join(diff.removed) or "none",
            "categories_changed": ", ".join(c.category_id for c in diff.changed) or "none",
            "measured_on": checkpoint or "no checkpoint is graded under both versions: no measurement changes",
            "checkpoints_with_before_after": ", ".join(measured) or "none",
        }
    paths = write_report(document, reports_dir(io_manager) / "policy_diff", safe_key(policy_key))
    return dg.MaterializeResult(metadata={"summary": dg.MetadataValue.md(headline(document, "Summary", "Policy changes")), **metadata, **paths})


@dg.asset(
    automation_condition=FOLLOWS_ANY,
    partitions_def=policy_versions,
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=(
        "Heatmaps of the eval set per category x expected behavior (against the pack's minimums) and per source, with "
        "the gaps and the gold labels per category when a gold set exists: read before any rate, since a rate on three "
        "items says little."
    ),
)
@fail_clearly
def coverage_heatmap(
    context: dg.AssetExecutionContext,
    eval_set: pd.DataFrame,
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    policy_key = context.partition_key
    pack = policy_repository.load(policy_key)
    gold = campaign_store.load_gold(policy_key)
    report = build_coverage(pack, eval_set, gold) if gold is not None else build_coverage(pack, eval_set)
    document = coverage_document(pack, eval_set, report=report, lineage=run_lineage(context))
    paths = write_report(document, reports_dir(io_manager) / "coverage", safe_key(policy_key))
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(headline(document, "Summary", "Gaps")),
            "items": len(eval_set),
            "targets_met": f"{report.n_met}/{report.n_targets}",
            "gaps": len(report.gaps),
            "gold_items": len(gold) if gold is not None else 0,
            **paths,
        }
    )


@dg.asset(
    partitions_def=deployment_days,
    # the eval baseline is one of these: declared, so a regrade of it shows the day's report stale
    ins={"grades": dg.AssetIn(partition_mapping=EVERY_VERSION, metadata={"all_partitions": True})},
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    description=(
        "One UTC day of sampled deployment conversations (see resources.DeploymentLogs), scrubbed of personal data as "
        "they are read, graded like the eval set, and their refusal rate per category flagged where it drifted from "
        "the eval baseline beyond the margin. A day without conversations is normal: a short report says so."
    ),
)
@fail_clearly
def deployment_drift(
    context: dg.AssetExecutionContext,
    grades: dict[str, pd.DataFrame],
    deployment_logs: DeploymentLogs,
    policy_repository: PolicyRepository,
    run_settings: RunSettings,
    judge: JudgeResource,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    files = deployment_logs.files_for(day)
    imported = import_day(files, day)
    source = f"{', '.join(p.name for p in files) or 'no files'} in {deployment_logs.root_dir()}"
    metadata: dict[str, Any] = {"conversations": len(imported.conversations), "files": len(files), "outside_day": imported.outside_day}
    if imported.empty_files:
        metadata["empty_files"] = ", ".join(imported.empty_files)
    if not imported.conversations:
        note = f"No conversations for {day.isoformat()} ({source}): nothing to compare. A day without traffic samples is normal."
        document = note_document(f"Deployment drift: {day.isoformat()}", "no conversations", note, run_lineage(context))
        metadata["note"] = note
    else:
        policy_key, checkpoint, baseline = baseline_grades(grades, context.instance, deployment_logs, run_settings)
        pack = policy_repository.load(policy_key)
        graded = grade_conversations(imported.conversations, pack, run_settings.grader_for(pack, judge))
        result = detect_drift(graded, baseline, "day", deployment_logs.margin, imported.scrubbed)
        document = drift_document(result, source=source, lineage=run_lineage(context, baseline_policy_version=policy_key, baseline_checkpoint=checkpoint))
        overall = result.rates[result.rates["category_id"] == ALL_CATEGORIES]
        metadata.update(
            {
                "flagged": len(result.flagged),
                "flagged_categories": dg.MetadataValue.md(drift_markdown(result.flagged) if len(result.flagged) else "No category drifted beyond the margin."),
                "refusal_rates": dg.MetadataValue.md(drift_markdown(result.rates)),
                "personal_data_scrubbed": ", ".join(f"{n} {kind.lower()}" for kind, n in result.scrubbed.items()) or "none found",
                "baseline": f"{policy_key} x {checkpoint}",
                "margin": deployment_logs.margin,
            }
        )
        if len(overall) and pd.notna(overall["rate"].iloc[0]):
            metadata["refusal_rate"] = float(overall["rate"].iloc[0])
    paths = write_report(document, reports_dir(io_manager) / "drift", day.isoformat())
    return dg.MaterializeResult(metadata={"summary": dg.MetadataValue.md(headline(document, "Summary", "Flagged")), **metadata, **paths})


# ---------------------------------------------------------------------------
# Files and metadata


def reports_dir(io_manager: ParquetIOManager) -> Path:
    """`<data dir>/reports`: the IO manager's data directory, so reports sit beside their tables."""
    return data_root(io_manager.base_dir) / REPORTS


def write_report(document: Document, folder: Path, stem: str) -> dict[str, dg.MetadataValue]:
    html_path, md_path = folder / f"{stem}.html", folder / f"{stem}.md"
    atomic_write_bytes(html_path, document.to_html().encode("utf-8"))
    atomic_write_bytes(md_path, document.to_markdown().encode("utf-8"))
    return {"html_path": dg.MetadataValue.path(str(html_path)), "markdown_path": dg.MetadataValue.path(str(md_path))}


def headline(document: Document, *titles: str) -> str:
    """The report's opening sections as Markdown (escaped by the core), without the rest of the page."""
    wanted = set(titles or ("Summary",))
    return replace(document, sections=tuple(s for s in document.sections if s.title in wanted), footer=()).to_markdown()






# ---------------------------------------------------------------------------
# Inputs and lineage


def redaction(config: ReportConfig) -> str:
    try:
        return check_redaction(config.redact)
    except PolicyevalError as exc:
        raise dg.Failure(str(exc)) from None


def run_lineage(context: dg.AssetExecutionContext, **extra: Any) -> dict[str, Any]:
    return {**{k: v for k, v in extra.items() if v}, "run_id": context.run.run_id, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def manifest_lineage(context: dg.AssetExecutionContext, registry: CheckpointRegistry, checkpoint: str) -> dict[str, str]:
    """The checkpoint manifest's hash now, and the one the responses were made under when it differs."""
    try:
        current = manifest_hash(registry.get(checkpoint))
    except PolicyevalError as exc:
        context.log.warning(f"no manifest hash for the lineage: {exc}")
        current = ""
    made_under = latest_value(context.instance, "responses", str(context.partition_key), "manifest_hash")
    out = {"manifest_hash": current}
    if made_under and made_under != current:
        out["responses_manifest_hash"] = f"{made_under} (the manifest changed after these responses were made)"
    return out




def partition_validation(grades: pd.DataFrame, pack: PolicyPack, policy_key: str, campaign_store: CampaignStore,
                         run_settings: RunSettings, judge: JudgeResource) -> GraderValidation | None:
    """The grader behind one partition's grades against the gold it may be checked on; None without gold."""
    gold, regrade, _ = gold_for_validation(campaign_store, policy_key, grades, pack, run_settings, judge)
    return grader_validity(gold, grades, pack, regrade)


def pack_gate(metrics: pd.DataFrame, grades: pd.DataFrame, pack: PolicyPack, policy_key: str,
              campaign_store: CampaignStore, run_settings: RunSettings, judge: JudgeResource) -> GateResult:
    """The launch gate on one partition, with the grader's kappa from `partition_validation`: what the
    `launch_gate` check and `launch_approval` decide with (the safety report uses the same validation)."""
    return evaluate_pack_gate(metrics, pack, partition_validation(grades, pack, policy_key, campaign_store, run_settings, judge))


def grades_of(grades: dict[Any, pd.DataFrame], policy_key: str) -> dict[Any, pd.DataFrame]:
    """The grades partitions of one policy version, from a mapping over every partition."""
    return {k: v for k, v in grades.items() if key_dimension(k, POLICY_DIM) == policy_key}


def baseline_grades(grades: dict[Any, pd.DataFrame], instance: dg.DagsterInstance, logs: DeploymentLogs,
                    run_settings: RunSettings) -> tuple[str, str, pd.DataFrame]:
    """(policy version, checkpoint, grades) of the eval baseline the day is compared with: the
    configured policy version, else the most recently registered one that graded the checkpoint."""
    checkpoint = logs.baseline_checkpoint or run_settings.baseline_checkpoint
    if not checkpoint:
        raise dg.Failure("no baseline checkpoint: set deployment_logs.baseline_checkpoint (or run_settings.baseline_checkpoint)")
    candidates = [logs.baseline_policy_version] if logs.baseline_policy_version else list(reversed(instance.get_dynamic_partitions(POLICY_DIM)))
    for policy_key in candidates:
        frame = graded_by_checkpoint(grades_of(grades, policy_key).values()).get(checkpoint)
        if frame is not None:
            return policy_key, checkpoint, frame
    where = f"policy version {logs.baseline_policy_version}" if logs.baseline_policy_version else "any registered policy version"
    raise dg.Failure(
        f"no eval baseline: checkpoint {checkpoint!r} has no grades under {where}; "
        "materialize grades for it first, or set deployment_logs.baseline_policy_version / baseline_checkpoint"
    )