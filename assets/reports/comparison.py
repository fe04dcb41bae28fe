"""Across checkpoints, per policy version: a leaderboard and McNemar regressions
against the baseline checkpoint. The baseline and what counts as a significant
regression (Holm-adjusted per category) are the core's, as in the comparison report."""


import dagster as dg
import pandas as pd

from policyeval.markdown import to_markdown_table
from policyeval.reports.summaries import layers_markdown
from policyeval.safeguards import has_safeguards, layer_attribution
from policyeval.stats import choose_baseline, compare_checkpoints, graded_by_checkpoint, metrics_report, significant_changes
from policyeval.stats.intervals import rate_text
from resources import RunSettings

from assets.failures import fail_clearly
from assets.partitions import BY_POLICY_VERSION, policy_versions

OWNERS = ["team:policy"]

# Requested whenever any checkpoint's grades or metrics change: a fan-in over checkpoints, some of
# which may never be measured under this version, must not wait for all of them (eager would).
# The reports over every checkpoint (reports.py) follow the same rule.
FOLLOWS_ANY = (dg.AutomationCondition.any_deps_updated().since_last_handled()
               & ~dg.AutomationCondition.any_deps_in_progress()
               & ~dg.AutomationCondition.in_progress()).with_label("any input updated")


@dg.asset(
    partitions_def=policy_versions,
    ins={
        "grades": dg.AssetIn(
            partition_mapping=BY_POLICY_VERSION,
            metadata={"all_partitions": True},
        )
    },
    # grades carry the paired items; metrics is declared so the chain reads grades -> metrics -> comparison
    deps=[dg.AssetDep("metrics", partition_mapping=BY_POLICY_VERSION)],
    automation_condition=FOLLOWS_ANY,
    group_name="reports",
    owners=OWNERS,
    kinds={"parquet", "python"},
    description="Every checkpoint measured on this policy version, ranked; paired McNemar tests against the baseline checkpoint.",
)
@fail_clearly
def checkpoint_comparison(context: dg.AssetExecutionContext, grades: dict[str, pd.DataFrame], run_settings: RunSettings) -> dg.Output[pd.DataFrame]:
    by_checkpoint = graded_by_checkpoint(grades.values())
    if not by_checkpoint:
        raise dg.Failure("no graded checkpoint for this policy version yet")
    leaderboard = []
    for checkpoint_id, frame in sorted(by_checkpoint.items()):
        overall = metrics_report(frame)["overall"].iloc[0]
        leaderboard.append(
            {
                "checkpoint_id": checkpoint_id,
                "n": int(overall["n"]),
                "correct_rate": overall["correct_rate"],
                "under_refusal_rate": overall["under_refusal_rate"],
                "under_refusal_high": overall["under_refusal_high"],
                "over_refusal_rate": overall["over_refusal_rate"],
                "over_refusal_high": overall["over_refusal_high"],
                "under_refusal": rate_text(overall, "under_refusal"),
                "over_refusal": rate_text(overall, "over_refusal"),
                "safeguards": str(frame["safeguards"].iloc[0]) if has_safeguards(frame) else "",
            }
        )
    table = pd.DataFrame(leaderboard).sort_values(["correct_rate", "checkpoint_id"], ascending=[False, True]).reset_index(drop=True)

    baseline = choose_baseline(run_settings.baseline_checkpoint, by_checkpoint)
    regressions = []
    significant = 0
    if baseline in by_checkpoint:
        for checkpoint_id, frame in sorted(by_checkpoint.items()):
            if checkpoint_id == baseline:
                continue
            result = compare_checkpoints(by_checkpoint[baseline], frame)
            significant += len(significant_changes(result.by_category)[0])
            for _, row in result.by_category.iterrows():
                regressions.append({"checkpoint_id": checkpoint_id, **row.to_dict()})
            regressions.append(
                {"checkpoint_id": checkpoint_id, "category_id": "(overall)", "b": result.overall.b, "c": result.overall.c, "p_value": result.overall.p_value}
            )
    comparisons = pd.DataFrame(regressions)
    table["baseline"] = table["checkpoint_id"] == baseline
    shown = table[["checkpoint_id", "n", "under_refusal", "over_refusal", "baseline"]]
    layers = {}
    if any(has_safeguards(frame) for frame in by_checkpoint.values()):
        # system checkpoints: which layer decided each item, beside the bare models
        attribution = pd.concat([layer_attribution(frame) for _, frame in sorted(by_checkpoint.items())], ignore_index=True)
        layers = {"layers": dg.MetadataValue.md(layers_markdown(attribution))}
    return dg.Output(
        table,
        metadata={
            "checkpoints": len(table),
            "baseline": baseline,
            "leaderboard": dg.MetadataValue.md(to_markdown_table(shown)),
            **layers,
            "significant_regressions": significant,
            "mcnemar_vs_baseline": dg.MetadataValue.md(
                to_markdown_table(comparisons[[c for c in ("checkpoint_id", "category_id", "b", "c", "p_value", "p_value_holm") if c in comparisons]]) if len(comparisons) else "Only the baseline was measured."
            ),
        },
    )
