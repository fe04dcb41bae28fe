"""The grader gate: a checkpoint's metrics are published only if the grader that made them
agrees with people.

Cohen's kappa between the grader and the policy version's gold labels must reach the
pack's `min_grader_kappa`. Without gold labels the check fails: a grader nobody has
checked does not get its metrics published. A pack that sets no minimum passes, with a
note and the kappa shown. The check is blocking, so `published_metrics` is not
materialized in a run where it fails (and the run is reported failed).
"""

import dagster as dg
import pandas as pd

from assets.human_data.campaigns import grader_validation
from assets.partitions import policy_x_checkpoint, split_multi_key
from policyeval.launch_gate import kappa_gate
from policyeval.validation.markdown import confusion_markdown, per_category_markdown
from resources import PolicyRepository

from checks.partitioned import partitioned_check


@partitioned_check(
    asset=grader_validation,
    partitions_def=policy_x_checkpoint,
    blocking=True,
    description="Grader kappa vs the policy version's gold labels reaches the pack's min_grader_kappa; no gold labels is a failure.",
)
def grader_kappa_vs_gold(context: dg.AssetCheckExecutionContext, grader_validation: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    policy_key, checkpoint = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    gate = kappa_gate(grader_validation, pack, checkpoint)
    metadata: dict = {"checkpoint": checkpoint, "gold_items": len(grader_validation)}
    if gate.threshold is not None:
        metadata["min_grader_kappa"] = gate.threshold
    else:
        metadata["note"] = "no min_grader_kappa in pack.yaml"
    validation = gate.validation
    if validation is not None:
        if validation.cohen_kappa is not None:
            metadata["cohen_kappa"] = validation.cohen_kappa
        if validation.accuracy is not None:
            metadata["accuracy"] = validation.accuracy
        metadata["confusion"] = dg.MetadataValue.md(confusion_markdown(validation))
        metadata["worst_categories"] = dg.MetadataValue.md(per_category_markdown(validation, worst_first=True, limit=10))
    return dg.AssetCheckResult(passed=gate.passed, severity=dg.AssetCheckSeverity.ERROR, description=gate.description, metadata=metadata)
