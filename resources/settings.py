"""Run settings: how much to measure and where the response cache lives."""

from __future__ import annotations


import dagster as dg

from policyeval.graders import DEFAULT_GRADER, Grader, grader_code_version, make_grader
from policyeval.policy.model import PolicyPack
from policyeval.runs.cache import ResponseCache
from policyeval.runs.manifest import CheckpointManifest

from .judge import JudgeResource
from .environment import cache_root


class RunSettings(dg.ConfigurableResource):
    """`sample_per_cell`: items per category x expected behavior sent to each checkpoint
    (0 = the whole eval set). `baseline_checkpoint`: what the comparison tests against.
    `refresh`: ask the model again even when the cache has the answer (hosted endpoints
    drift behind a fixed model name); the new answers still go to the cache."""

    sample_per_cell: int = 2
    cache_dir: str = ""  # default $POLICYEVAL_CACHE_DIR or ./.cache/responses
    baseline_checkpoint: str = ""
    grader: str = DEFAULT_GRADER  # learned | refusal | judge (judge needs the JudgeResource configured)
    refresh: bool = False
    local_base_url: str = ""  # a local model server already running (set by `policyeval run`); empty: start one per step

    def grader_for(self, pack: PolicyPack, judge: JudgeResource, artifact: str | None = None) -> Grader:
        """The one place the shell picks a grader: `grades` and every re-grade use it, so
        texts graded outside `grades` (gold items, reports) are judged alike. `artifact`
        is a learned-grader model (from `grader_model`); None is the shipped one."""
        if self.grader == "judge":
            if not judge.configured:
                raise dg.Failure("run_settings.grader is 'judge' but the judge resource has no base_url/models configured")
            return judge.grader(pack)
        if self.grader == "learned":
            return make_grader("learned", pack=pack, artifact=artifact)
        return make_grader(self.grader)

    def grader_code_version(self, judge: JudgeResource) -> str:
        """`code_version` of `grades` under these settings (see policyeval.graders.grader_code_version)."""
        return grader_code_version(self.grader, tuple(judge.models) if self.grader == "judge" else ())

    def base_url_for(self, manifest: CheckpointManifest) -> str | None:
        """Where to send a checkpoint's requests: the shared local server for a local manifest, if one runs."""
        return self.local_base_url or None if manifest.is_local else None

    def cache(self) -> ResponseCache:
        root = cache_root(self.cache_dir)
        return _WriteOnlyCache(root) if self.refresh else ResponseCache(root)


class _WriteOnlyCache(ResponseCache):
    """Refresh mode: every lookup misses, so each request reaches the model; answers are still stored."""

    def get(self, key: str) -> dict | None:
        return None
