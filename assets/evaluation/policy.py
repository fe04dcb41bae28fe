"""Per policy version: the policy snapshot, its eval set and its coverage report."""


import dagster as dg
import pandas as pd

from policyeval.coverage import coverage_report as build_coverage
from policyeval.generate import GENERATOR_VERSION, generate_eval_set, items_to_frame
from policyeval.records import content_hash
from policyeval.markdown import to_markdown_table
from resources import CampaignStore, PolicyRepository

from assets.failures import fail_clearly
from assets.partitions import policy_versions

OWNERS = ["team:policy"]


@dg.asset(
    partitions_def=policy_versions,
    group_name="policy",
    owners=OWNERS,
    kinds={"yaml", "python"},
    description="An immutable policy version: the pack's normalized content, snapshotted under its content hash.",
)
@fail_clearly
def policy(context: dg.AssetExecutionContext, policy_repository: PolicyRepository) -> dg.MaterializeResult:
    key = context.partition_key
    pack = policy_repository.load(key)
    path = policy_repository.snapshot(pack)
    categories = pd.DataFrame(
        [
            {"domain": d.id, "category": c.id, "severity": c.severity, "allowed": c.expected.allowed, "disallowed": c.expected.disallowed}
            for d, c in pack.categories()
        ]
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(pack.content_hash),
        metadata={
            "policy_id": pack.id,
            "version_label": pack.version,
            "content_hash": pack.content_hash,
            "domains": len(pack.domains),
            "categories": len(categories),
            "behaviors": ", ".join(pack.behaviors),
            "taxonomy": dg.MetadataValue.md(to_markdown_table(categories)),
            "snapshot": dg.MetadataValue.path(str(path)),
        },
    )


@dg.asset(
    partitions_def=policy_versions,
    deps=[policy],
    group_name="policy",
    owners=OWNERS,
    kinds={"parquet", "python"},
    code_version=f"generator-{GENERATOR_VERSION}",
    description="The eval set generated from the policy version: seeds, template expansions and mutations, deduplicated.",
)
@fail_clearly
def eval_set(context: dg.AssetExecutionContext, policy_repository: PolicyRepository) -> dg.Output[pd.DataFrame]:
    pack = policy_repository.load(context.partition_key)
    result = generate_eval_set(pack)
    frame = items_to_frame(result.items)
    eval_set_hash = content_hash(sorted(frame["item_id"]))
    by_source = frame.groupby("source").size().rename("items").reset_index()
    by_behavior = frame.groupby("expected_behavior").size().rename("items").reset_index()
    return dg.Output(
        frame,
        data_version=dg.DataVersion(eval_set_hash),
        metadata={
            "rows": len(frame),
            "eval_set_hash": eval_set_hash,
            "policy_hash": pack.content_hash,
            "generator_version": GENERATOR_VERSION,
            "duplicates_removed": result.dedupe.count if result.dedupe else 0,
            "by_source": dg.MetadataValue.md(to_markdown_table(by_source)),
            "by_expected_behavior": dg.MetadataValue.md(to_markdown_table(by_behavior)),
            "coverage_shortfalls": len(result.shortfalls),
        },
    )


@dg.asset(
    partitions_def=policy_versions,
    group_name="policy",
    owners=OWNERS,
    kinds={"parquet", "python"},
    deps=[dg.AssetKey("gold_set")],
    description=(
        "Items per taxonomy leaf x expected behavior x source against the pack's minimum counts, with the gaps; "
        "which categories lack an expected behavior, which are dominated by one source, and which lack gold labels."
    ),
)
@fail_clearly
def coverage_report(
    context: dg.AssetExecutionContext, policy_repository: PolicyRepository, campaign_store: CampaignStore, eval_set: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    pack = policy_repository.load(context.partition_key)
    gold = campaign_store.load_gold(context.partition_key)
    report = build_coverage(pack, eval_set, gold=gold)
    missing_gold = report.missing_gold
    gaps = report.gaps[["category_id", "expected_behavior", "minimum", "n", "gap"]]
    return dg.Output(
        report.targets,
        data_version=dg.DataVersion(content_hash(report.targets.to_dict("records"))),
        metadata={
            "targets": report.n_targets,
            "targets_met": report.n_met,
            "gaps": len(report.gaps),
            "gap_list": dg.MetadataValue.md(to_markdown_table(gaps) if len(gaps) else "No gaps: every minimum is met."),
            "cells": dg.MetadataValue.md(to_markdown_table(report.cells.head(200))),
            "categories_missing_a_behavior": int(report.missing_behaviors["category_id"].nunique()),
            "missing_behaviors": dg.MetadataValue.md(to_markdown_table(report.missing_behaviors) if len(report.missing_behaviors) else "Every category has items of each behavior it expects."),
            "categories_dominated_by_one_source": len(report.dominated),
            "source_shares": dg.MetadataValue.md(to_markdown_table(report.source_shares.head(200))),
            "categories_without_gold": len(missing_gold) if missing_gold is not None else len(pack.categories()),
            "gold_labels": dg.MetadataValue.md(
                "No gold set for this policy version yet." if report.gold is None else to_markdown_table(report.gold)
            ),
        },
    )
