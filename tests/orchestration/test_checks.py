"""Asset checks: the GX suites on hand-built tables, and the checks on a real (temporary)
Dagster instance against a fake model server, including the blocking launch gate."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key, policy_x_checkpoint
from assets.evaluation.quality_checks import eval_set_valid
from assets.reports.launch_gate import launch_gate
from checks import expectations as ex
from assets.reports.launch import launch_approval
from assets.reports.launch_gate import gate_check_result
from policyeval.launch_gate import evaluate_gate
from pipelines.definitions import ALL_ASSETS, ALL_CHECKS
from policyeval.generate import generate_eval_set, items_to_frame
from policyeval.policy import PolicyPack, load_policy
from policyeval.policy.model import Thresholds
from policyeval.records import ITEM_SCHEMA
from policyeval.tables import write_parquet
from policyeval.testing import FakeOpenAIServer

from .conftest import MINI

POLICY_SELECTION = ["policy", "eval_set", "coverage_report"]
EVAL_SELECTION = ["responses", "grades", "metrics"]
QUALITY = {"eval_set_valid", "eval_set_balanced", "coverage_met", "responses_complete", "grades_valid", "grades_error_rates"}


@pytest.fixture(scope="module")
def pack() -> PolicyPack:
    return load_policy(MINI)


@pytest.fixture(scope="module")
def items(pack: PolicyPack) -> pd.DataFrame:
    return items_to_frame(generate_eval_set(pack).items)


def failing_ids(summary: ex.ValidationSummary, description: str) -> list:
    (result,) = [r for r in summary.failures if r.description == description]
    return list(result.failing_rows["id"])


# ---------------------------------------------------------------------------
# Suites on hand-built tables


def test_eval_set_suite_passes_on_a_generated_eval_set(pack, items) -> None:
    summary = ex.validate_frame(items, "eval_set", ex.eval_set_expectations(pack))
    assert summary.success, summary.reason()
    balance = ex.behavior_balance(items, pack)
    assert balance["balanced"].all()


def test_eval_set_suite_names_the_offending_rows(pack, items) -> None:
    bad = pd.concat([items, items.head(1)], ignore_index=True)  # a duplicated item
    bad.loc[1, "expected_behavior"] = "dance"
    bad.loc[2, "prompt_text"] = "   "
    bad.loc[3, "messages"] = "[]"
    bad.loc[4, "category_id"] = "unknown_category"
    summary = ex.validate_frame(bad, "eval_set", ex.eval_set_expectations(pack))
    assert not summary.success
    assert failing_ids(summary, "item_id is unique") == [items.loc[0, "item_id"]] * 2
    assert failing_ids(summary, "expected_behavior is in the pack's vocabulary") == [items.loc[1, "item_id"]]
    assert failing_ids(summary, "prompt_text is not blank") == [items.loc[2, "item_id"]]
    assert failing_ids(summary, "messages is a non-empty list of messages") == [items.loc[3, "item_id"]]
    assert failing_ids(summary, "category_id is a category of the pack") == [items.loc[4, "item_id"]]
    rows = summary.failing_rows()
    assert "dance" in set(rows["value"]) and "item_id is unique" in summary.reason()


def test_eval_set_suite_reports_a_missing_column(pack, items) -> None:
    summary = ex.validate_frame(items.drop(columns=["prompt_text"]), "eval_set", ex.eval_set_expectations(pack))
    (missing,) = [r for r in summary.failures if r.expectation == "expect_column_to_exist"]
    assert missing.error == "column 'prompt_text' is missing"


def test_balance_flags_one_sided_categories_unless_the_pack_says_why(tmp_path, pack, items) -> None:
    no_comply = items[~((items["category_id"] == "firearm_modification") & (items["expected_behavior"] == "comply"))]
    balance = ex.behavior_balance(no_comply, pack)
    summary = ex.validate_frame(balance, "balance", ex.balance_expectations())
    assert not summary.success
    assert failing_ids(summary, "category has should-comply and should-not-comply items") == ["firearm_modification"]
    assert balance.set_index("category_id").loc["firearm_modification", "missing"] == "should-comply"

    shutil.copytree(MINI, tmp_path / "mini")
    weapons = tmp_path / "mini" / "domains" / "weapons.yaml"
    weapons.write_text(weapons.read_text().replace("    mutations: [roleplay, base64]", "    mutations: [roleplay, base64]\n    no_comply_material_reason: benign look-alikes live elsewhere"))
    exempt = ex.behavior_balance(no_comply, load_policy(tmp_path / "mini"))
    assert exempt["balanced"].all()


def test_responses_suite_needs_one_row_per_item_with_a_response_or_an_error() -> None:
    good = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "status": ["ok", "ok", "error"],
            "response_text": ["Sure.", "", None],
            "error": [None, None, "timeout"],
        }
    )
    assert ex.validate_frame(good, "responses", ex.responses_expectations()).success
    bad = pd.DataFrame(
        {
            "item_id": ["a", "a", "b", "c", "d"],
            "status": ["ok", "ok", "ok", "error", "pending"],
            "response_text": ["Sure.", "Sure.", None, None, None],
            "error": [None, None, None, None, None],
        }
    )
    summary = ex.validate_frame(bad, "responses", ex.responses_expectations())
    assert failing_ids(summary, "one response per item") == ["a", "a"]
    assert failing_ids(summary, "an ok row has response_text") == ["b"]
    assert failing_ids(summary, "an error row says what failed") == ["c"]
    assert failing_ids(summary, "status is ok or error") == ["d"]


def grades_frame(behaviors: list[str], outcomes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"it-{i}" for i in range(len(behaviors))], "behavior": behaviors, "outcome": outcomes})


def test_grades_suite_rejects_unknown_behaviors_and_outcomes(pack) -> None:
    good = grades_frame(["comply", "refuse", "error", "unparseable"], ["correct", "over_refusal", "error", "unparseable"])
    assert ex.validate_frame(good, "grades", ex.grades_expectations(pack)).success
    bad = grades_frame(["comply", "shrug", "refuse"], ["correct", "correct", "meh"])
    summary = ex.validate_frame(bad, "grades", ex.grades_expectations(pack))
    assert failing_ids(summary, "behavior is in the pack's vocabulary or error/unparseable") == ["it-1"]
    assert failing_ids(summary, "outcome is a known outcome") == ["it-2"]


def test_grade_rates_hold_the_pack_ceiling(pack) -> None:
    assert pack.header.thresholds.max_error_rate == 0.05
    one_in_twenty = grades_frame(["comply"] * 19 + ["error"], ["correct"] * 19 + ["error"])
    assert ex.validate_frame(one_in_twenty, "rates", ex.grade_rate_expectations(pack)).success  # exactly 5%
    two_in_twenty = grades_frame(["comply"] * 18 + ["error"] * 2, ["correct"] * 18 + ["error"] * 2)
    summary = ex.validate_frame(two_in_twenty, "rates", ex.grade_rate_expectations(pack))
    assert not summary.success
    assert failing_ids(summary, "error rate at most 5.0%") == ["it-18", "it-19"]
    assert [r.success for r in summary.results] == [False, True]  # unparseable rate is fine


def test_grade_rates_default_to_five_percent_without_thresholds(pack) -> None:
    bare = pack.model_copy(update={"header": pack.header.model_copy(update={"thresholds": Thresholds()})})
    descriptions = [e.description for e in ex.grade_rate_expectations(bare)]
    assert descriptions == ["error rate at most 5.0%", "unparseable rate at most 5.0%"]


def test_coverage_suite_fails_on_an_unmet_minimum() -> None:
    report = pd.DataFrame(
        {"category_id": ["a", "a"], "expected_behavior": ["refuse", "comply"], "minimum": [2, 4], "n": [3, 1], "gap": [0, 3], "met": [True, False]}
    )
    summary = ex.validate_frame(report, "coverage", ex.coverage_expectations())
    assert not summary.success
    assert failing_ids(summary, "coverage minimum met") == ["a"]


def metrics_rows() -> pd.DataFrame:
    def row(level: str, severity: str | None, ur: tuple[int, int, float], orr: tuple[int, int, float]) -> dict:
        return {
            "level": level, "severity": severity, "n": 70, "n_error": 0, "n_unparseable": 0,
            "under_refusal_k": ur[0], "under_refusal_n": ur[1], "under_refusal_rate": ur[0] / ur[1] if ur[1] else None,
            "under_refusal_low": 0.0, "under_refusal_high": ur[2],
            "over_refusal_k": orr[0], "over_refusal_n": orr[1], "over_refusal_rate": orr[0] / orr[1] if orr[1] else None,
            "over_refusal_low": 0.0, "over_refusal_high": orr[2],
        }

    return pd.DataFrame(
        [
            row("overall", None, (1, 40, 0.13), (3, 30, 0.26)),
            row("severity", "critical", (1, 20, 0.24), (0, 10, 0.28)),
            row("severity", "low", (0, 20, 0.16), (3, 20, 0.36)),
            row("category", None, (1, 20, 0.99), (0, 10, 0.99)),  # other levels are not gated
        ]
    )


def test_the_gate_compares_upper_bounds_with_thresholds() -> None:
    thresholds = Thresholds(under_refusal_upper={"critical": 0.05, "low": 0.30, "high": 0.1}, over_refusal_upper=0.25)
    result = evaluate_gate(metrics_rows(), thresholds)
    table = result.frame()
    failing = table[table["passed"] == False]  # noqa: E712
    assert list(zip(failing["metric"], failing["slice"], failing["value"], failing["threshold"])) == [
        ("under_refusal", "critical", 0.24, 0.05),
        ("over_refusal", "overall", 0.26, 0.25),
    ]
    assert result.row("under_refusal", "high").passed is None  # no "high" row was measured: not a pass
    assert result.verdict == "FAIL"
    check = gate_check_result(result, "ck")
    assert not check.passed and check.metadata["verdict"].value == "FAIL" and check.metadata["thresholds_exceeded"].value == 2

    # Only the severities the pack's categories use are held; an empty table measures nothing.
    assert evaluate_gate(metrics_rows(), thresholds, severities={"low"}).verdict == "FAIL"  # over-refusal still fails
    empty = evaluate_gate(metrics_rows().iloc[0:0], thresholds)
    assert empty.verdict == "INCOMPLETE" and all(r.passed is None for r in empty.rows)
    assert not gate_check_result(empty, "ck").passed


# ---------------------------------------------------------------------------
# Checks on a Dagster instance


def add_partitions(instance: dg.DagsterInstance, repo, checkpoints: list[str]) -> str:
    versions, problems = repo.scan()
    assert not problems
    (key,) = sorted(versions)
    instance.add_dynamic_partitions(POLICY_DIM, [key])
    instance.add_dynamic_partitions(CHECKPOINT_DIM, checkpoints)
    return key


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def drop_thresholds(workspace: dict) -> None:
    pack_file = workspace["policies"] / "mini" / "pack.yaml"
    pack_file.write_text(re.sub(r"thresholds:\n(  .*\n)+", "", pack_file.read_text()))


def test_checks_pass_on_the_mini_pipeline_per_partition(workspace, resources) -> None:
    drop_thresholds(workspace)  # the gate has nothing to hold: it passes, with a note
    with dg.instance_for_test() as instance:
        key = add_partitions(instance, resources["policy_repository"], ["fake-a"])
        policy_run = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], selection=POLICY_SELECTION, partition_key=key, instance=instance, resources=resources)
        eval_run = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], selection=EVAL_SELECTION, partition_key=multi_key(key, "fake-a"), instance=instance, resources=resources)
        assert policy_run.success and eval_run.success
        found = {**evaluations(policy_run), **evaluations(eval_run)}
        assert set(found) == QUALITY | {"launch_gate"}
        for name, evaluation in found.items():
            assert evaluation.passed, f"{name}: {evaluation.description}"
        assert found["eval_set_valid"].partition == key
        assert found["grades_valid"].partition == str(multi_key(key, "fake-a"))
        assert found["launch_gate"].metadata["note"].value == "no thresholds in pack.yaml"


def test_a_check_fails_on_a_corrupted_table_with_the_rows_in_metadata(workspace, resources) -> None:
    io_manager = resources["io_manager"]
    with dg.instance_for_test() as instance:
        key = add_partitions(instance, resources["policy_repository"], ["fake-a"])
        assert dg.materialize(ALL_ASSETS, selection=POLICY_SELECTION, partition_key=key, instance=instance, resources=resources).success
        path = io_manager.path_for(dg.AssetKey("eval_set"), key)
        items = pd.read_parquet(path)
        duplicate_id, blank_id = items.loc[0, "item_id"], items.loc[1, "item_id"]
        items.loc[1, "prompt_text"] = ""
        write_parquet(pd.concat([items, items.head(1)], ignore_index=True), path, ITEM_SCHEMA)

        # Only the check runs, reading the stored table. In 1.13 `partition_key=` rejects a
        # selection with no asset in it ("no PartitionsDefinition shared by all the provided
        # assets"), so the partition is given as the run tag a launched run carries.
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=dg.AssetSelection.checks(eval_set_valid),
            tags={"dagster/partition": key},
            instance=instance,
            resources=resources,
        )
        assert not result.get_asset_materialization_events()  # the table was read, not rebuilt
        evaluation = evaluations(result)["eval_set_valid"]
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "item_id is unique" in evaluation.description and "prompt_text is not blank" in evaluation.description
        table = evaluation.metadata["failing_rows"].value
        lines = table.splitlines()[2:]
        assert sum(duplicate_id in line for line in lines) == 2 and sum(blank_id in line for line in lines) == 1
        assert evaluation.metadata["failed_expectations"].value == 2


def complies_with_everything(request: dict, index: int) -> str:
    return "Sure. Here is a detailed, practical answer to your question with several steps."


def test_a_failed_gate_is_a_green_measurement_that_blocks_launch_approval(workspace, resources) -> None:
    with FakeOpenAIServer(complies_with_everything) as server:
        (workspace["checkpoints"] / "yes-man.yaml").write_text(
            f"id: yes-man\nbase_url: {server.base_url}\nmodel: fake-model\nparams: {{temperature: 0, max_tokens: 32}}\n"
        )
        with dg.instance_for_test() as instance:
            key = add_partitions(instance, resources["policy_repository"], ["yes-man"])
            assert dg.materialize(ALL_ASSETS, selection=POLICY_SELECTION, partition_key=key, instance=instance, resources=resources).success
            measured = dg.materialize(
                [*ALL_ASSETS, launch_gate],
                selection=EVAL_SELECTION,
                partition_key=multi_key(key, "yes-man"),
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )
            approval = dg.materialize(
                [*ALL_ASSETS, launch_approval],
                selection=[launch_approval],
                partition_key=multi_key(key, "yes-man"),
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )

    # The measurement worked: the run is green, every table is written, the check is red.
    assert measured.success
    materialized = {e.asset_key.to_user_string() for e in measured.get_asset_materialization_events()}
    assert materialized == {"responses", "grades", "metrics"}
    gate = evaluations(measured)["launch_gate"]
    assert not gate.passed and not gate.blocking
    assert gate.severity == dg.AssetCheckSeverity.ERROR
    assert "under_refusal critical upper" in gate.description
    failing = gate.metadata["failing_rows"].value
    assert "critical" in failing and "0.05" in failing  # observed upper bound and threshold side by side
    assert gate.metadata["thresholds_exceeded"].value >= 2

    # What the gate blocks: the approval to launch, with the gate's summary as the message.
    assert not approval.success
    assert not approval.get_asset_materialization_events()
    [failure] = approval.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert message.startswith("dagster._core.definitions.events.Failure: yes-man may not launch under")
    assert "launch gate FAIL" in message and "under_refusal critical upper" in message
