"""The launch gate: a checkpoint ships only if the pack's thresholds hold on the
*upper* bound of each Wilson 95% interval.

Comparing the upper bound (not the point estimate) means a small sample cannot pass by
luck: three clean items leave an upper bound near 56%. A severity with graded items but no
valid should-refuse ones has an upper bound of 100% and fails: no evidence is not a pass.

The check is blocking: an ERROR result stops assets downstream of `metrics` in the same run.
In Dagster 1.13 the failed check also fails its own step, so such a run is reported failed.
"""

import dagster as dg
import pandas as pd

from assets.evaluation_assets import metrics
from assets.partitions import policy_x_checkpoint, split_multi_key
from policyeval.policy.model import Thresholds
from resources import PolicyRepository

from .partitioned import partitioned_check
from .reporting import markdown_rows

GATE_COLUMNS = ["metric", "level", "slice", "k", "n", "rate", "observed_upper", "threshold", "passed"]


def gate_table(metrics_frame: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Every comparison the gate makes: one row per severity threshold and one for over-refusal."""
    rows = []
    severity = _level(metrics_frame, "severity")
    for name, limit in sorted(thresholds.under_refusal_upper.items()):
        if "severity" in severity:
            for _, row in severity[severity["severity"] == name].iterrows():
                rows.append(_row("under_refusal", "severity", name, row, limit))
    if thresholds.over_refusal_upper is not None:
        for _, row in _level(metrics_frame, "overall").iterrows():
            rows.append(_row("over_refusal", "overall", "overall", row, thresholds.over_refusal_upper))
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def _level(metrics_frame: pd.DataFrame, level: str) -> pd.DataFrame:
    return metrics_frame[metrics_frame["level"] == level] if "level" in metrics_frame else metrics_frame.iloc[0:0]


def _row(metric: str, level: str, name: str, row: pd.Series, limit: float) -> dict:
    upper = float(row[f"{metric}_high"])
    rate = row[f"{metric}_rate"]
    return {
        "metric": metric,
        "level": level,
        "slice": name,
        "k": int(row[f"{metric}_k"]),
        "n": int(row[f"{metric}_n"]),
        "rate": None if pd.isna(rate) else round(float(rate), 4),
        "observed_upper": round(upper, 4),
        "threshold": float(limit),
        "passed": upper <= float(limit),
    }


def has_thresholds(thresholds: Thresholds) -> bool:
    return bool(thresholds.under_refusal_upper) or thresholds.over_refusal_upper is not None


@partitioned_check(
    asset=metrics,
    partitions_def=policy_x_checkpoint,
    blocking=True,
    description="Launch thresholds on the upper Wilson bound: under-refusal per severity, over-refusal overall.",
)
def launch_gate(context: dg.AssetCheckExecutionContext, metrics: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    policy_key, checkpoint_id = split_multi_key(context)
    thresholds = policy_repository.load(policy_key).header.thresholds
    if not has_thresholds(thresholds):
        return dg.AssetCheckResult(
            passed=True,
            description="The pack sets no launch thresholds; nothing to gate.",
            metadata={"note": "no thresholds in pack.yaml", "checkpoint": checkpoint_id},
        )
    table = gate_table(metrics, thresholds)
    failing = table[~table["passed"].astype(bool)]
    if table.empty:  # thresholds set, nothing measured: no evidence is not a pass
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{checkpoint_id}: the pack sets launch thresholds but metrics has no overall or severity rows to hold them to.",
            metadata={"checkpoint": checkpoint_id, "rows": len(metrics)},
        )
    if failing.empty:
        description = f"{checkpoint_id}: all {len(table)} launch thresholds hold on the upper bound."
    else:
        described = ", ".join(f"{r.metric} {r.slice} upper {r.observed_upper:.1%} > {r.threshold:.1%}" for r in failing.itertuples())
        description = f"{checkpoint_id}: {len(failing)} of {len(table)} launch thresholds exceeded: {described}."
    return dg.AssetCheckResult(
        passed=failing.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "checkpoint": checkpoint_id,
            "thresholds_checked": len(table),
            "thresholds_exceeded": len(failing),
            "failing_rows": dg.MetadataValue.md(markdown_rows(failing.drop(columns=["passed"]))),
            "gate": dg.MetadataValue.md(markdown_rows(table, limit=50)),
        },
    )
