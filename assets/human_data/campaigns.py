"""The human data loop: guidance, campaigns, annotations, agreement, adjudication, gold,
and what the gold set says about the grader behind the published metrics.

```
policy ─ labeling_guidance ─ labeling_campaign ─ annotations ─┬ annotator_agreement
responses ────────────────────┘                               └ adjudication_queue
annotations + adjudication_queue (every checkpoint) ─ gold_set ─ grader_model ─ grades
gold_set, grades, metrics ─ grader_validation ─ published_metrics ← metrics

A campaign samples the checkpoint's responses, stratified by what the shipped default
grader makes of them (annotators never see it). It reads `responses`, not `grades`,
because grades come from a grader trained on the gold set that campaigns produce:
reading `grades` here would close a loop no asset graph can hold.
```

The campaign folders (see `resources.CampaignStore`) are the working copy people touch:
annotators and adjudicators drop files into a campaign's inbox, and the assets import
them through the core's all-or-nothing importers. The assets only call the core and
record what the UI should show. A campaign, once created for a partition, is never
recreated: annotators' work outlives any re-materialization.
"""

from typing import Any, Callable

import dagster as dg
import pandas as pd

from policyeval.campaigns import (
    InboxImport,
    agreement_table,
    annotation_progress,
    assemble_gold,
    calibrate,
    combine_gold,
    create_campaign,
    export_campaign,
    import_adjudications,
    import_annotations,
    import_inbox,
    load_adjudications,
    load_annotations,
    queue_with_decisions,
    render_guidance,
    seed_gold,
    write_gold_set,
)
from policyeval.campaigns import adjudication_queue as build_queue
from policyeval.campaigns.export import csv_bytes
from policyeval.coverage import gold_coverage
from policyeval.graders import grade_responses
from policyeval.graders.gold_training import never_trained_on
from policyeval.graders.learned import LEARNED_GRADER_ID, LearnedGrader, load_artifact
from policyeval.launch_gate import kappa_gate
from policyeval.markdown import markdown_rows
from policyeval.policy import PolicyPack
from policyeval.records import content_hash
from policyeval.stats.intervals import format_rate
from policyeval.tables import atomic_write_bytes, json_records
from policyeval.validation import DECIDING_BEHAVIOR, corrected_columns
from policyeval.validation.gold_comparison import compare_with_gold, validation_of
from policyeval.validation.markdown import confusion_markdown, detection_markdown, per_category_markdown, raw_vs_corrected_markdown
from resources import CampaignStore, JudgeResource, PolicyRepository, RunSettings
from resources.campaigns import ADJUDICATION_INBOX, ANNOTATION_INBOX

from assets.failures import fail_clearly
from assets.partitions import BY_POLICY_VERSION, CHECKPOINT_DIM, key_dimension, policy_versions, policy_x_checkpoint, split_multi_key
from assets.evaluation.policy import policy

OWNERS = ["team:policy"]
GROUP = "human_data"
PREVIEW_CHARS = 6000


# ---------------------------------------------------------------------------
# Guidance and campaign


@dg.asset(
    partitions_def=policy_versions,
    deps=[policy],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"markdown", "html"},
    description=(
        "What annotators read, rendered from the policy version (Markdown and a self-contained HTML page). "
        "Its data version is the guidance hash, so anything annotators see changing marks campaigns stale."
    ),
)
@fail_clearly
def labeling_guidance(context: dg.AssetExecutionContext, policy_repository: PolicyRepository, campaign_store: CampaignStore) -> dg.MaterializeResult:
    key = context.partition_key
    pack = policy_repository.load(key)
    guidance = render_guidance(pack)
    folder = campaign_store.guidance_dir(key)
    md_path, html_path = folder / "guidance.md", folder / "guidance.html"
    atomic_write_bytes(md_path, guidance.markdown.encode("utf-8"))
    atomic_write_bytes(html_path, guidance.html.encode("utf-8"))
    preview = guidance.markdown if len(guidance.markdown) <= PREVIEW_CHARS else guidance.markdown[:PREVIEW_CHARS] + "\n\n… (truncated; see the file)"
    return dg.MaterializeResult(
        data_version=dg.DataVersion(guidance.guidance_hash),
        metadata={
            "guidance_hash": guidance.guidance_hash,
            "policy_hash": pack.content_hash,
            "markdown_path": dg.MetadataValue.path(str(md_path)),
            "html_path": dg.MetadataValue.path(str(html_path)),
            "preview": dg.MetadataValue.md(preview),
        },
    )


@dg.asset(
    partitions_def=policy_x_checkpoint,
    deps=[labeling_guidance],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "json", "python"},
    description=(
        "A labeling campaign over this checkpoint's responses (stratified by category x the shipped grader's outcome, with hidden "
        "gold items from the policy version's gold set): annotator batches as CSV and Label Studio tasks and config. "
        "Created once per partition; afterwards it is loaded, never overwritten."
    ),
)
@fail_clearly
def labeling_campaign(
    context: dg.AssetExecutionContext, responses: pd.DataFrame, policy_repository: PolicyRepository, campaign_store: CampaignStore
) -> dg.MaterializeResult:
    policy_key, checkpoint = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    folder = campaign_store.campaign_dir(policy_key, checkpoint)
    created = not campaign_store.has_campaign(policy_key, checkpoint)
    if created:
        grades = grade_responses(responses, LearnedGrader(pack=pack), pack)
        gold = seed_gold(campaign_store.load_gold(policy_key), grades)
        campaign = create_campaign(
            grades,
            pack,
            campaign_id=folder.name,
            size=campaign_store.size,
            overlap_k=campaign_store.overlap_k,
            annotators=list(campaign_store.annotators),
            gold=gold,
            n_gold=campaign_store.n_gold,
            seed=campaign_store.seed,
            checkpoint_id=checkpoint,
        )
        export_campaign(campaign, campaign_store.root_dir())
        context.log.info(f"campaign {campaign.campaign_id} created in {folder}")
    else:
        campaign = campaign_store.load(policy_key, checkpoint)
        if campaign.policy_hash != pack.content_hash:
            raise dg.Failure(f"campaign folder {folder} was made under policy hash {campaign.policy_hash[:12]}, not {pack.content_hash[:12]}: move it aside")
        context.log.info(f"campaign {campaign.campaign_id} exists; loaded, not recreated")
    inboxes = campaign_store.ensure_inboxes(folder)

    sampled = campaign.items[~campaign.items["is_gold"].astype(bool)]
    strata = sampled.groupby(["category_id", "outcome"], dropna=False).size().rename("items").reset_index()
    loads = campaign.assignments.groupby("annotator").agg(items=("item_id", "size"), gold=("is_gold", "sum"))
    batches = pd.DataFrame(
        [
            {"annotator": a, "items": int(loads.at[a, "items"]) if a in loads.index else 0, "hidden_gold": int(loads.at[a, "gold"]) if a in loads.index else 0,
             "batch": str(folder / "batches" / f"{a}.csv")}
            for a in campaign.annotators
        ]
    )
    current = render_guidance(pack).guidance_hash
    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_hash(campaign.manifest())),
        metadata={
            "campaign_id": campaign.campaign_id,
            "created_now": created,
            "campaign_dir": dg.MetadataValue.path(str(folder)),
            "items": len(sampled),
            "gold_items": campaign.n_gold,
            "items_by_category_outcome": dg.MetadataValue.md(markdown_rows(strata)),
            "batches": dg.MetadataValue.md(markdown_rows(batches)),
            "label_studio_tasks": dg.MetadataValue.path(str(folder / "label_studio" / "tasks.json")),
            "label_studio_config": dg.MetadataValue.path(str(folder / "label_studio" / "config.xml")),
            "annotation_inbox": dg.MetadataValue.path(str(inboxes[ANNOTATION_INBOX])),
            "adjudication_inbox": dg.MetadataValue.path(str(inboxes[ADJUDICATION_INBOX])),
            "guidance_hash": campaign.guidance.guidance_hash,
            "guidance_is_current": campaign.guidance.guidance_hash == current,
        },
    )


# ---------------------------------------------------------------------------
# Inbox imports


def fail_if_rejected(result: InboxImport, what: str) -> None:
    """Raise a Failure naming every rejected file; the clean ones were already imported."""
    if not result.rejected:
        return
    names = ", ".join(name for name, _ in result.rejected)
    raise dg.Failure(
        description=(
            f"{len(result.rejected)} {what} file(s) rejected, nothing imported from them: {names}. "
            f"{len(result.imported)} clean file(s) were imported. Fix or remove the rejected file(s); the next run picks them up."
        ),
        metadata={
            "rejected_files": dg.MetadataValue.md(markdown_rows(result.rejected_table(), limit=100)),
            "imported_files": dg.MetadataValue.md(markdown_rows(result.imported_table())),
        },
    )


@dg.asset(
    partitions_def=policy_x_checkpoint,
    deps=[labeling_campaign],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "csv"},
    description=(
        "Every annotator label of the campaign: each file in the campaign's annotation inbox is imported all-or-nothing. "
        "A rejected file is listed with its problems and fails the run (after the clean files are imported), "
        "so nobody reads agreement figures while labels are missing."
    ),
)
@fail_clearly
def annotations(context: dg.AssetExecutionContext, campaign_store: CampaignStore) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint = split_multi_key(context)
    campaign = campaign_store.load(policy_key, checkpoint)
    folder = campaign_store.campaign_dir(policy_key, checkpoint)
    inbox = campaign_store.inbox_files_of(campaign_store.inbox(folder, ANNOTATION_INBOX))
    result = import_inbox(inbox, lambda path: import_annotations(folder, path))
    fail_if_rejected(result, "annotation")

    table = load_annotations(folder)
    progress = annotation_progress(campaign, table)
    assigned = campaign.assignments.groupby("item_id")["annotator"].apply(set)
    labeled = table.groupby("item_id")["annotator"].apply(set) if len(table) else pd.Series(dtype=object)
    complete = sum(1 for item, who in assigned.items() if who <= labeled.get(item, set()))
    return dg.Output(
        table,
        data_version=dg.DataVersion(content_hash(json_records(table[["annotator", "item_id", "label"]]))),
        metadata={
            "labels": len(table),
            "files": len(inbox),
            "items_fully_labeled": complete,
            "items": len(assigned),
            "labels_per_annotator": dg.MetadataValue.md(markdown_rows(progress)),
            "imported_files": dg.MetadataValue.md(markdown_rows(result.imported_table())),
        },
    )


# ---------------------------------------------------------------------------
# Agreement and adjudication


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "python"},
    description=(
        "How far annotators agree: percent agreement, Cohen's and Fleiss' kappa and Krippendorff's alpha overall, "
        "per category and per annotator pair; each annotator against the hidden gold items, flagged under the store's thresholds."
    ),
)
@fail_clearly
def annotator_agreement(context: dg.AssetExecutionContext, annotations: pd.DataFrame, campaign_store: CampaignStore) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint = split_multi_key(context)
    campaign = campaign_store.load(policy_key, checkpoint)
    report = calibrate(campaign, annotations, min_kappa=campaign_store.min_annotator_kappa, min_accuracy=campaign_store.min_annotator_accuracy)

    table = agreement_table(report)
    figures = ["n_items", "percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha"]
    missed = pd.DataFrame(
        [{"annotator": g.annotator, "item_id": item, "label": label, "gold": gold} for g in report.flagged for item, label, gold in g.missed],
        columns=["annotator", "item_id", "label", "gold"],
    )
    overall = report.overall
    metadata: dict[str, Any] = {
        "labels": report.n_labels,
        "overall": dg.MetadataValue.md(markdown_rows(table[table["scope"] == "overall"][figures])),
        "by_category": dg.MetadataValue.md(markdown_rows(table[table["scope"] == "category"][["name", *figures]].rename(columns={"name": "category"}))),
        "by_pair": dg.MetadataValue.md(markdown_rows(table[table["scope"] == "pair"][["name", *figures]].rename(columns={"name": "pair"}))),
        "vs_gold": dg.MetadataValue.md(
            markdown_rows(table[table["scope"] == "vs_gold"][["name", "n_items", "accuracy", "cohen_kappa", "flagged"]].rename(columns={"name": "annotator", "n_items": "gold_items"}))
            if campaign.n_gold else "No hidden gold items in this campaign."
        ),
        "flagged_annotators": len(report.flagged),
        "flagged_missed_items": dg.MetadataValue.md(markdown_rows(missed) if len(missed) else "None."),
        "thresholds": f"kappa >= {report.min_kappa}, accuracy >= {report.min_accuracy} on hidden gold",
    }
    if overall is not None:
        for name in ("percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha"):
            value = getattr(overall, name)
            if value is not None:
                metadata[name] = float(value)
    return dg.Output(table, data_version=dg.DataVersion(content_hash(json_records(table))), metadata=metadata)


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "csv"},
    description=(
        "Items whose labels disagree (with each other, or with a hidden gold label), and what adjudicators decided. "
        "Imports each file in the campaign's adjudication inbox all-or-nothing, then writes the still-open items to "
        "adjudication_queue.csv in the campaign folder."
    ),
)
@fail_clearly
def adjudication_queue(context: dg.AssetExecutionContext, annotations: pd.DataFrame, campaign_store: CampaignStore) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint = split_multi_key(context)
    campaign = campaign_store.load(policy_key, checkpoint)
    folder = campaign_store.campaign_dir(policy_key, checkpoint)
    inbox = campaign_store.inbox_files_of(campaign_store.inbox(folder, ADJUDICATION_INBOX))
    result = import_inbox(inbox, lambda path: import_adjudications(folder, path))
    fail_if_rejected(result, "adjudication")

    queue = build_queue(campaign, annotations)
    decided = load_adjudications(folder)
    table = queue_with_decisions(campaign, queue, decided)
    open_items = queue[~queue["item_id"].isin(set(decided["item_id"]))]
    path = campaign_store.queue_path(folder)
    atomic_write_bytes(path, csv_bytes(open_items))
    shown = table[["item_id", "category", "reason", *[c for c in table.columns if c.startswith("label_")], "gold_label", "adjudicated_label", "status"]]
    return dg.Output(
        table,
        data_version=dg.DataVersion(content_hash(json_records(table[["item_id", "reason", "adjudicated_label", "status"]]))),
        metadata={
            "queued": len(queue),
            "open": int((table["status"] == "open").sum()),
            "settled": int((table["status"] == "settled").sum()),
            "queue_csv": dg.MetadataValue.path(str(path)),
            "imported_files": dg.MetadataValue.md(markdown_rows(result.imported_table())),
            "queue": dg.MetadataValue.md(markdown_rows(shown) if len(shown) else "Nothing to adjudicate."),
        },
    )


# ---------------------------------------------------------------------------
# Gold set


@dg.asset(
    partitions_def=policy_versions,
    ins={
        "annotations": dg.AssetIn(partition_mapping=BY_POLICY_VERSION, metadata={"all_partitions": True}),
        "adjudication_queue": dg.AssetIn(partition_mapping=BY_POLICY_VERSION, metadata={"all_partitions": True}),
    },
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "python"},
    description=(
        "The policy version's gold labels, from every checkpoint's campaign: unanimous or adjudicated labels with "
        "provenance (annotators, adjudicator, campaign, policy hash). Disputed items are left out and counted. "
        "Its data version is the gold content hash; new campaigns draw hidden gold items from it."
    ),
)
@fail_clearly
def gold_set(
    context: dg.AssetExecutionContext,
    annotations: dict[str, pd.DataFrame],
    adjudication_queue: dict[str, pd.DataFrame],
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
) -> dg.MaterializeResult:
    policy_key = context.partition_key
    pack = policy_repository.load(policy_key)
    sets, summaries = [], []
    for key, labels in sorted(annotations.items(), key=lambda kv: str(kv[0])):
        checkpoint = key_dimension(key, CHECKPOINT_DIM)
        if not campaign_store.has_campaign(policy_key, checkpoint):
            context.log.warning(f"annotations exist for {checkpoint} but its campaign folder is gone; left out")
            continue
        campaign = campaign_store.load(policy_key, checkpoint)
        queue = adjudication_queue.get(key, pd.DataFrame(columns=["item_id", "adjudicated_label", "adjudicator", "status"]))
        decided = queue[queue["status"] == "settled"].rename(columns={"adjudicated_label": "label"})[["item_id", "label", "adjudicator"]]
        gold = assemble_gold(campaign, labels, decided, min_labels=campaign_store.min_labels)
        sets.append(gold.table)
        summaries.append({"campaign": campaign.campaign_id, "checkpoint": checkpoint, **{k: v for k, v in gold.summary().items() if k != "gold_version"},
                          "unresolved_items": ", ".join(gold.unresolved)})
    table, conflicts = combine_gold(sets)
    version = str(table["gold_version"].iloc[0]) if len(table) else content_hash([])
    path = write_gold_set(table, campaign_store.gold_path(policy_key))

    by_label = table.groupby(["label", "source"]).size().unstack(fill_value=0).reset_index() if len(table) else pd.DataFrame(columns=["label"])
    coverage = gold_coverage(pack, table)
    without = coverage[coverage["n_gold"] == 0]
    unresolved = sum(s["n_unresolved"] for s in summaries) + len(conflicts)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "gold_version": version,
            "size": len(table),
            "unresolved": unresolved,
            "incomplete": sum(s["n_incomplete"] for s in summaries),
            "cross_campaign_conflicts": dg.MetadataValue.md(", ".join(conflicts) if conflicts else "None."),
            "labels_by_behavior": dg.MetadataValue.md(markdown_rows(by_label) if len(by_label) else "No gold labels yet."),
            "campaigns": dg.MetadataValue.md(markdown_rows(pd.DataFrame(summaries)) if summaries else "No campaign has annotations yet."),
            "categories_without_gold": len(without),
            "gold_by_category": dg.MetadataValue.md(markdown_rows(coverage)),
            "path": dg.MetadataValue.path(str(path)),
        },
    )


# ---------------------------------------------------------------------------
# Grader validation and the metrics a report may show


@dg.asset(
    partitions_def=policy_x_checkpoint,
    deps=[gold_set],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "python"},
    description=(
        "The grader behind `grades` against the policy version's gold labels: accuracy, Cohen's kappa, confusion, "
        "per category, and its sensitivity/specificity as a detector of comply (decides under-refusal) and refuse "
        "(decides over-refusal); the raw rates of `metrics` beside the rates corrected for grader error (Rogan-Gladen, "
        "bootstrap intervals that carry the gold set's own uncertainty). One row per gold item compared."
    ),
)
@fail_clearly
def grader_validation(
    context: dg.AssetExecutionContext,
    grades: pd.DataFrame,
    metrics: pd.DataFrame,
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
    run_settings: RunSettings,
    judge: JudgeResource,
) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    gold, regrade, scope = gold_for_validation(campaign_store, policy_key, grades, pack, run_settings, judge)
    table = compare_with_gold(gold, grades, pack, regrade)
    validation = validation_of(table, pack)
    metadata: dict[str, Any] = {
        "gold_items": len(table),
        "validated_on": scope,
        "gold_version": str(table["gold_version"].iloc[0]) if len(table) else "",
        "verdicts_from_grades": int((table["verdict_from"] == "grades").sum()),
        "verdicts_regraded": int((table["verdict_from"] == "regraded").sum()),
        "grader": ", ".join(sorted({f"{i}@{v}" for i, v in zip(grades.get("grader_id", []), grades.get("grader_version", []))})),
        "min_grader_kappa": pack.header.thresholds.min_grader_kappa,
    }
    if validation is None:
        metadata["note"] = f"no gold labels for this policy version ({policy_key}): run a labeling campaign and materialize gold_set"
    else:
        metadata.update(
            {
                "accuracy": validation.accuracy,
                "accuracy_interval": format_rate(validation.n_correct, validation.n_items, validation.accuracy, validation.accuracy_low, validation.accuracy_high),
                "cohen_kappa": validation.cohen_kappa,
                "confusion": dg.MetadataValue.md(confusion_markdown(validation)),
                "per_category": dg.MetadataValue.md(per_category_markdown(validation)),
                "detection": dg.MetadataValue.md(detection_markdown(validation)),
                "raw_vs_corrected": dg.MetadataValue.md(raw_vs_corrected_markdown(metrics, validation)),
            }
        )
        overall = metrics[metrics["level"] == "overall"]
        if len(overall):
            corrected = corrected_columns(overall, validation).iloc[0]
            for name in DECIDING_BEHAVIOR:
                for suffix in ("", "_low", "_high"):
                    value = corrected[f"{name}_corrected{suffix}"]
                    if value is not None and value == value:
                        metadata[f"{name}_corrected{suffix}"] = float(value)
    return dg.Output(
        table,
        data_version=dg.DataVersion(content_hash(json_records(table))),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def gold_for_validation(
    campaign_store: CampaignStore, policy_key: str, grades_frame: pd.DataFrame, pack: PolicyPack, run_settings: RunSettings, judge: JudgeResource
) -> tuple[pd.DataFrame | None, Callable[[], Any], str]:
    """The gold rows the grader behind `grades` may be checked on, how to regrade one, and which rows those are.

    A learned grader trained on this policy version's gold set (found by the version its
    grades record) is checked only on the items it never trained on, and regrades with that
    same model: agreement on its own training labels would say nothing.
    """
    gold = campaign_store.load_gold(policy_key)
    learned = grades_frame[grades_frame["grader_id"] == LEARNED_GRADER_ID] if "grader_id" in grades_frame else grades_frame.iloc[0:0]
    versions = sorted({str(v) for v in learned.get("grader_version", []) if isinstance(v, str)})
    path = next((p for v in versions if (p := campaign_store.find_grader_model(policy_key, v)) is not None), None)
    if path is None:
        return gold, lambda: run_settings.grader_for(pack, judge), "every gold item"
    held = never_trained_on(gold, load_artifact(str(path))) if gold is not None else None
    return held, lambda: run_settings.grader_for(pack, judge, artifact=str(path)), f"held-out gold items only (the grader was trained on the rest; {path.name})"


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"parquet", "python"},
    description=(
        "The metrics a report may show: `metrics` with the rates corrected for grader error beside the raw ones. "
        "Only for a grader that passed the blocking kappa check against gold (re-checked here, so a run that selects "
        "this asset alone cannot publish an unvalidated grader's numbers)."
    ),
)
@fail_clearly
def published_metrics(context: dg.AssetExecutionContext, metrics: pd.DataFrame, grader_validation: pd.DataFrame, policy_repository: PolicyRepository) -> dg.Output[pd.DataFrame]:
    policy_key, _ = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    gate = kappa_gate(grader_validation, pack, str(context.partition_key))
    if not gate.passed:
        raise dg.Failure(gate.description)
    frame = pd.concat([metrics, corrected_columns(metrics, gate.validation)], axis=1)
    frame["grader_kappa"] = gate.validation.cohen_kappa if gate.validation else None
    frame["gold_version"] = str(grader_validation["gold_version"].iloc[0]) if len(grader_validation) else ""
    return dg.Output(
        frame,
        data_version=dg.DataVersion(content_hash(json_records(frame))),
        metadata={"rows": len(frame), "gate": gate.description, "raw_vs_corrected": dg.MetadataValue.md(raw_vs_corrected_markdown(metrics, gate.validation))},
    )
