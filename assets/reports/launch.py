"""Whether a checkpoint may launch under a policy version: the launch gate's verdict as an asset.

A checkpoint that fails the gate has been measured successfully; the failure is about the
model, not the pipeline. So the measurement (`responses -> grades -> metrics`, with the
`launch_gate` check beside `metrics`) stays green with a red check, and the gate blocks
what stands for "this checkpoint may launch": `launch_approval`. It materializes only
when the gate passes, so a deployment pipeline waits for its materialization (or reads its
`approved` metadata), and a failed gate fails this one step with the gate's own summary as
the message. It is not part of the evaluation runs; `launch_approval_job` asks for it.
"""


import dagster as dg
import pandas as pd

from resources import CampaignStore, JudgeResource, PolicyRepository, RunSettings

from assets.failures import fail_clearly
from assets.partitions import policy_x_checkpoint, split_multi_key
from assets.reports.reports import pack_gate

APPROVAL_COLUMNS = ["policy_version", "checkpoint_id", "verdict", "summary"]


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name="reports",
    owners=["team:policy"],
    kinds={"python"},
    description=(
        "Materializes only when the checkpoint passes the pack's launch gate (policyeval.launch_gate): the record "
        "that the checkpoint may launch under this policy version. A failed gate fails this step, not the measurement."
    ),
)
@fail_clearly
def launch_approval(
    context: dg.AssetExecutionContext,
    metrics: pd.DataFrame,
    grades: pd.DataFrame,
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
    run_settings: RunSettings,
    judge: JudgeResource,
) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint_id = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    result = pack_gate(metrics, grades, pack, policy_key, campaign_store, run_settings, judge)
    if not result.passed:
        raise dg.Failure(
            description=f"{checkpoint_id} may not launch under {policy_key}: launch gate {result.summary()}",
            metadata={"verdict": result.verdict},
            allow_retries=False,
        )
    frame = pd.DataFrame([[policy_key, checkpoint_id, result.verdict, result.summary()]], columns=APPROVAL_COLUMNS)
    return dg.Output(frame, metadata={"approved": True, "verdict": result.verdict, "summary": result.summary()})
