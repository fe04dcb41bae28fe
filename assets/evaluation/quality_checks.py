"""Data-quality checks on the pipeline's tables, run by Great Expectations.

Each check is partitioned like its asset, so a result belongs to one policy version (or
one policy version x checkpoint) and the pack it is judged against is the one that
partition names (`context.partition_key`). The asset is loaded through the IO manager by
naming a parameter after it.

Severity: ERROR where the table itself is wrong (schema, duplicate ids, values outside the
vocabulary, missing responses, error rates over the pack's ceiling): numbers drawn from it
would mislead. WARN where the table is right but thin (an unbalanced category, an unmet
coverage minimum): the numbers hold, with wider intervals or a blind spot to note.
"""

import dagster as dg
import pandas as pd

from assets.evaluation.measurement import grades, responses
from assets.partitions import policy_versions, policy_x_checkpoint, split_multi_key
from assets.evaluation.policy import coverage_report, eval_set
from resources import PolicyRepository

from checks import expectations as ex
from checks.partitioned import partitioned_check
from checks.reporting import summary_result

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


@partitioned_check(asset=eval_set, partitions_def=policy_versions, description="Eval set schema, unique item ids, behaviors and categories from the pack, no empty prompts.")
def eval_set_valid(context: dg.AssetCheckExecutionContext, eval_set: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    pack = policy_repository.load(context.partition_key)
    summary = ex.validate_frame(eval_set, "eval_set", ex.eval_set_expectations(pack))
    return summary_result(summary, ERROR)


@partitioned_check(asset=eval_set, partitions_def=policy_versions, description="Every category has should-comply and should-not-comply items, unless the pack says why not.")
def eval_set_balanced(context: dg.AssetCheckExecutionContext, eval_set: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    pack = policy_repository.load(context.partition_key)
    balance = ex.behavior_balance(eval_set, pack)
    summary = ex.validate_frame(balance, "eval_set_balance", ex.balance_expectations())
    offending = balance.loc[~balance["balanced"].astype(bool), ["category_id", "domain_id", "should_comply", "should_not_comply", "missing"]]
    return summary_result(summary, WARN, offending=offending, metadata={"unbalanced_categories": len(offending)})


@partitioned_check(asset=responses, partitions_def=policy_x_checkpoint, description="One response row per item; each row has a response (ok) or an error.")
def responses_complete(context: dg.AssetCheckExecutionContext, responses: pd.DataFrame) -> dg.AssetCheckResult:
    summary = ex.validate_frame(responses, "responses", ex.responses_expectations())
    return summary_result(summary, ERROR)


@partitioned_check(asset=grades, partitions_def=policy_x_checkpoint, description="Observed behaviors from the pack's vocabulary (or error/unparseable); known outcomes.")
def grades_valid(context: dg.AssetCheckExecutionContext, grades: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    policy_key, _ = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    summary = ex.validate_frame(grades, "grades", ex.grades_expectations(pack))
    return summary_result(summary, ERROR)


@partitioned_check(asset=grades, partitions_def=policy_x_checkpoint, description="Error and unparseable rates under the pack's ceilings (5% each when unset).")
def grades_error_rates(context: dg.AssetCheckExecutionContext, grades: pd.DataFrame, policy_repository: PolicyRepository) -> dg.AssetCheckResult:
    policy_key, _ = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    summary = ex.validate_frame(grades, "grade_rates", ex.grade_rate_expectations(pack))
    outcome = grades["outcome"] if "outcome" in grades else pd.Series(dtype=object)
    n = len(grades)
    rates = {f"{name}_rate": float((outcome == name).sum() / n) if n else 0.0 for name in ("error", "unparseable")}
    return summary_result(summary, ERROR, metadata=rates)


@partitioned_check(asset=coverage_report, partitions_def=policy_versions, description="Every category x expected behavior meets its minimum item count.")
def coverage_met(context: dg.AssetCheckExecutionContext, coverage_report: pd.DataFrame) -> dg.AssetCheckResult:
    summary = ex.validate_frame(coverage_report, "coverage", ex.coverage_expectations())
    columns = [c for c in ("category_id", "expected_behavior", "minimum", "n", "gap") if c in coverage_report]
    gaps = coverage_report.loc[~coverage_report["met"].astype(bool), columns] if "met" in coverage_report else None
    return summary_result(summary, WARN, offending=gaps, metadata={"gaps": 0 if gaps is None else len(gaps)})


QUALITY_CHECKS = [eval_set_valid, eval_set_balanced, responses_complete, grades_valid, grades_error_rates, coverage_met]
