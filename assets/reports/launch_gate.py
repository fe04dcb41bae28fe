"""The launch gate as a check on `metrics`: `policyeval.launch_gate` decides, this check
records its verdict and rows.

The grader's kappa is measured as the safety report measures it, against the policy
version's gold labels when a gold set exists, so the check and the report hold the
same numbers to the same rule. PASS and NO THRESHOLDS pass (the latter with a note);
FAIL and INCOMPLETE fail: a threshold with nothing measured is not a pass.

The check is not blocking: a checkpoint that fails the gate was measured successfully, so
its evaluation run is green with this check red (ERROR), its reports say FAIL, and what the
gate blocks is `launch_approval` (assets/reports/launch.py), the record that it may launch.
"""

import dagster as dg
import pandas as pd

from assets.evaluation.measurement import metrics
from assets.partitions import policy_x_checkpoint, split_multi_key
from assets.reports.reports import pack_gate
from policyeval.launch_gate import GateResult
from policyeval.markdown import markdown_rows
from resources import CampaignStore, JudgeResource, PolicyRepository, RunSettings

from checks.expectations import SAMPLE_ROWS
from checks.partitioned import partitioned_check


@partitioned_check(
    asset=metrics,
    partitions_def=policy_x_checkpoint,
    blocking=False,
    additional_ins={"grades": dg.AssetIn("grades")},
    description=(
        "The pack's launch thresholds (policyeval.launch_gate): under-refusal per severity, over-refusal and harmful "
        "compliance overall on the upper Wilson bound; error and unparseable shares as observed; grader kappa vs gold."
    ),
)
def launch_gate(
    context: dg.AssetCheckExecutionContext,
    metrics: pd.DataFrame,
    grades: pd.DataFrame,
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
    run_settings: RunSettings,
    judge: JudgeResource,
) -> dg.AssetCheckResult:
    policy_key, checkpoint_id = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    result = pack_gate(metrics, grades, pack, policy_key, campaign_store, run_settings, judge)
    note = "no thresholds in pack.yaml" if not pack.header.thresholds.model_dump(exclude_defaults=True) \
        else "no threshold in pack.yaml applies to the severities its categories use"
    return gate_check_result(result, checkpoint_id, note)


def gate_check_result(result: GateResult, checkpoint_id: str, note: str = "") -> dg.AssetCheckResult:
    """The check result of a gate verdict: passed as the core says, the rows as metadata."""
    metadata: dict = {"checkpoint": checkpoint_id, "verdict": result.verdict}
    if result.verdict == "NO THRESHOLDS":
        metadata["note"] = note or "no threshold applies"
        return dg.AssetCheckResult(passed=True, description=f"{checkpoint_id}: {result.summary()}", metadata=metadata)
    table = result.frame()
    failing = table[table["passed"].map(lambda v: v is not True)]
    metadata.update({
        "thresholds_checked": len(table),
        "thresholds_exceeded": len(result.failing),
        "thresholds_not_measured": len(result.unmeasured),
        "failing_rows": dg.MetadataValue.md(markdown_rows(failing.drop(columns=["passed"]), limit=SAMPLE_ROWS)),
        "gate": dg.MetadataValue.md(markdown_rows(table, limit=50)),
    })
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{checkpoint_id}: {result.summary()}",
        metadata=metadata,
    )
