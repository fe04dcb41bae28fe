"""What a system checkpoint puts around its model: an input and an output classifier.

A policy team ships a system, not a model. A manifest's `safeguards:` names the
classifiers in front of the model (the input filter sees the user's turn) and behind it
(the output filter sees the response). The output filter is one of our graders (the
learned harm head, the judge) or a guard model on an OpenAI-compatible endpoint prompted
with the category's policy text; the input filter is a guard model (our graders read
responses, not requests):

    safeguards:
      output: {classifier: learned}               # the learned harm head, its own threshold
      input:
        classifier: guard
        base_url: http://127.0.0.1:8001/v1
        model: llama-guard-3-1b
        format: llama_guard                       # or safeguard (gpt-oss-safeguard style)
        api_key_env: GUARD_API_KEY

A filter that fails (endpoint error, reply that does not parse) lets the content through
by default (`on_error: allow`): the failure is counted and shown, and it can never make
the system look safer than it is. `on_error: block` models a fail-closed deployment.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEARNED = "learned"
JUDGE = "judge"
GUARD = "guard"
CLASSIFIERS = (LEARNED, JUDGE, GUARD)

LLAMA_GUARD = "llama_guard"
SAFEGUARD = "safeguard"
GUARD_FORMATS = (LLAMA_GUARD, SAFEGUARD)

INPUT = "input"
OUTPUT = "output"
SIDES = (INPUT, OUTPUT)


class FilterSpec(BaseModel):
    """One classifier of a system: which one, and for a guard model, where it answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classifier: Literal["learned", "judge", "guard"]
    # learned: flag at or above this harm probability (default: the artifact's own threshold)
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    # guard: an OpenAI-compatible endpoint and its prompt format
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    format: Literal["llama_guard", "safeguard"] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    on_error: Literal["allow", "block"] = "allow"

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value != "local" and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s):// URL or `local`, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_kind(self) -> "FilterSpec":
        endpoint_fields = [f for f in ("base_url", "model", "api_key_env", "format") if getattr(self, f) is not None]
        if self.classifier == GUARD:
            missing = [f for f in ("base_url", "model") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a guard classifier needs {' and '.join(missing)} (its OpenAI-compatible endpoint)")
            if self.threshold is not None:
                raise ValueError("threshold applies to the learned classifier only (a guard model answers safe/unsafe)")
        else:
            if endpoint_fields:
                raise ValueError(f"{', '.join(endpoint_fields)} apply to `classifier: guard` only "
                                 f"({self.classifier} runs where the graders run)")
            if self.classifier == JUDGE and self.threshold is not None:
                raise ValueError("threshold applies to the learned classifier only")
        return self

    @property
    def prompt_format(self) -> str:
        return self.format or LLAMA_GUARD


class Safeguards(BaseModel):
    """The classifiers around a checkpoint's model; at least one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: FilterSpec | None = None
    output: FilterSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> "Safeguards":
        if self.input is None and self.output is None:
            raise ValueError("name an input and/or an output classifier, or leave safeguards out")
        if self.input is not None and self.input.classifier != GUARD:
            # Our graders read responses. The learned harm head on prompts caught 0 of XSTest's 200
            # unsafe prompts at its threshold (bench/safeguard_filters.py): no input filter.
            raise ValueError(f"input: {self.input.classifier} classifies responses; an input filter is a `guard` model "
                             "(bench/safeguard_filters.py shows why the learned harm head is not one)")
        return self

    def filters(self) -> dict[str, FilterSpec]:
        """The configured filters by side, input first (the order a request meets them)."""
        return {side: spec for side, spec in ((INPUT, self.input), (OUTPUT, self.output)) if spec is not None}
