"""Reports follow the chain by themselves: a checkpoint evaluated outside any report job
(a sensor's run, a launch from the UI) gets its safety report, and the comparison is
requested again, through the reports' automation conditions."""

from __future__ import annotations

import dagster as dg

from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import build_definitions


def requested(result, asset: str) -> set[str]:
    return {str(k) for k in result.get_requested_partitions(dg.AssetKey(asset))}


def test_a_new_evaluation_brings_its_reports_up_to_date(workspace) -> None:
    defs = build_definitions(packs_dir=str(workspace["policies"]), manifests_dir=str(workspace["checkpoints"]),
                             data_dir=str(workspace["data"]), cache_dir=str(workspace["cache"]), sample_per_cell=0)
    repo = defs.resources["policy_repository"]
    (key,) = repo.scan()[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(POLICY_DIM, [key])
        instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a", "fake-b"])
        # the sensor is running (it ticks every 30 s) before anything is measured
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert not requested(start, "safety_report")
        assert defs.resolve_job_def("policy_version_job").execute_in_process(instance=instance, partition_key=key).success
        evaluate = defs.resolve_job_def("evaluation_job")
        assert evaluate.execute_in_process(instance=instance, partition_key=multi_key(key, "fake-a")).success

        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert key in requested(first, "coverage_heatmap")
        assert str(multi_key(key, "fake-a")) in requested(first, "safety_report")
        assert str(multi_key(key, "fake-b")) not in requested(first, "safety_report")  # not measured yet
        assert key in requested(first, "checkpoint_comparison")

        # Nothing new: nothing requested on the next tick.
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert not requested(quiet, "safety_report") and not requested(quiet, "checkpoint_comparison")

        # A second checkpoint evaluated (as a sensor's run would): its report and the comparison follow.
        assert evaluate.execute_in_process(instance=instance, partition_key=multi_key(key, "fake-b")).success
        later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert requested(later, "safety_report") == {str(multi_key(key, "fake-b"))}
        assert requested(later, "checkpoint_comparison") == {key}
