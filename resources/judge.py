"""The rubric judge's endpoint; its key comes from an environment variable, never config."""

from __future__ import annotations

import dagster as dg

from policyeval.graders import JudgeEndpoint, JudgeGrader
from policyeval.policy import PolicyPack


class JudgeResource(dg.ConfigurableResource):
    """An OpenAI-compatible judge. `api_key_env` names the variable holding the key."""

    base_url: str = ""
    models: list[str] = []
    api_key_env: str = ""
    concurrency: int = 8

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.models)

    def grader(self, pack: PolicyPack) -> JudgeGrader:
        endpoints = [JudgeEndpoint(model=m, base_url=self.base_url, api_key_env=self.api_key_env or None) for m in self.models]
        return JudgeGrader(endpoints=endpoints, pack=pack, concurrency=self.concurrency)
