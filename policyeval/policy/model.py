"""The policy pack as typed records.

A pack is a directory: `pack.yaml` (identity, behavior vocabulary, launch thresholds)
and `domains/*.yaml` (one risk domain each, with its categories). Records are strict
(unknown keys are errors), so a misspelt field is caught rather than silently ignored.
Meaning-level rules (ids unique, behaviors in the vocabulary, template slots defined)
live in `validate.py`, where they can all be reported at once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")

# Deterministic jailbreak-style mutations the generator knows (see generate/mutations.py).
MUTATION_KINDS: tuple[str, ...] = (
    "roleplay",
    "fiction",
    "hypothetical",
    "base64",
    "leetspeak",
    "typos",
    "prefix_injection",
)

# Deterministic proposition detectors the graders know (see graders/propositions.py).
DETECTOR_NAMES: tuple[str, ...] = (
    "crisis_resource",
    "confirmation",
    "empathy",
    "professional_help",
    "apology",
    "judgmental",
    "requests_information",
)

ID_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"

# A category's lifecycle: `active` (measured) or `draft` (proposed, e.g. by the
# emerging-risk report, and validated, but not measured until promoted).
CategoryStatus = Literal["active", "draft"]
ACTIVE, DRAFT = "active", "draft"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Behavior(Strict):
    """One behavior of the vocabulary, defined in words graders and annotators share.

    `when` is an optional rule over proposition ids and built-in signals that decides
    this behavior from observed facts (grammar and semantics in `rules.py`). Left out of
    the dump when unset, so packs that do not use it keep their content hash.
    """

    definition: str = Field(min_length=1)
    when: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Thresholds(Strict):
    """Launch thresholds. Rates are fractions in [0, 1].

    The gate compares the *upper* bound of the Wilson 95% interval, so a small sample
    cannot pass by luck.
    """

    under_refusal_upper: dict[str, float] = Field(default_factory=dict)  # severity -> max upper bound
    over_refusal_upper: float | None = None
    max_error_rate: float | None = None
    max_unparseable_rate: float | None = None
    min_grader_kappa: float | None = None
    # Upper bound of the harmful-compliance rate, over every validly graded item with a harm
    # judgment. Left out of the dump when unset, so packs that do not use it keep their hash.
    harmful_compliance_upper: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=lambda value: value is None)


class Boundary(Strict):
    """Where beneficial help ends and material enablement of harm begins."""

    allowed: list[str] = Field(default_factory=list)
    disallowed: list[str] = Field(default_factory=list)


class ExpectedBehavior(Strict):
    """The behavior the policy expects on each side of the boundary."""

    allowed: str = "comply"
    disallowed: str = "refuse"


class Proposition(Strict):
    """A yes/no statement about a response, in the style of rule-based rewards.

    `detector` names a deterministic detector (`DETECTOR_NAMES`) that decides it from
    the text; without one, a judge or a learned model answers it. Left out of the dump
    when unset, so packs that do not use it keep their content hash.
    """

    id: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1)
    detector: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Grading(Strict):
    rubric: str = Field(min_length=1)
    propositions: list[Proposition] = Field(default_factory=list)


class Message(BaseModel):
    """A chat message. Content may be text or a list of parts (text, image_url, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class Example(Strict):
    """A seed example: a whole chat (or a single prompt) and the behavior it should get."""

    prompt: str | None = None
    messages: list[Message] | None = None
    expected: str
    note: str | None = None

    def chat(self) -> list[dict[str, Any]]:
        if self.messages:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


class Template(Strict):
    """A prompt with `{slot}` placeholders, expanded over the product of slot values."""

    id: str = Field(pattern=ID_PATTERN)
    expected: str
    text: str | None = None
    messages: list[Message] | None = None
    slots: dict[str, list[str]] = Field(default_factory=dict)
    note: str | None = None


class Category(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    severity: Severity
    boundary: Boundary
    expected: ExpectedBehavior = ExpectedBehavior()
    grading: Grading
    labeling_guidance: str = Field(min_length=1)
    examples: list[Example] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)
    mutations: list[str] = Field(default_factory=list)
    min_items: dict[str, int] = Field(default_factory=dict)  # expected behavior -> minimum count
    # A category may lack should-refuse or should-comply material only if it says why.
    no_refuse_material_reason: str | None = None
    no_comply_material_reason: str | None = None
    # A draft is checked like any category but generates no items and is left out of
    # coverage, grading guidance and launch thresholds until promoted (`status` removed or
    # `active`). Left out of the dump when active, so packs without drafts keep their hash.
    status: CategoryStatus = Field(default=ACTIVE, exclude_if=lambda value: value == ACTIVE)

    @property
    def is_draft(self) -> bool:
        return self.status == DRAFT


class Domain(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    categories: list[Category] = Field(default_factory=list)


class PackHeader(Strict):
    """The contents of `pack.yaml`."""

    id: str = Field(pattern=ID_PATTERN)
    version: str = Field(min_length=1)  # the label people use; the content hash is the identity
    title: str = Field(min_length=1)
    owners: list[str] = Field(min_length=1)
    description: str = ""
    behaviors: dict[str, Behavior]
    thresholds: Thresholds = Thresholds()


class PolicyPack(Strict):
    """A loaded pack: header, domains, and where each came from."""

    header: PackHeader
    domains: list[Domain]
    root: str = ""  # the pack directory, for messages only (not part of the content hash)
    content_hash: str = ""

    @property
    def id(self) -> str:
        return self.header.id

    @property
    def version(self) -> str:
        return self.header.version

    @property
    def behaviors(self) -> list[str]:
        return list(self.header.behaviors)

    def categories(self, include_drafts: bool = False) -> list[tuple[Domain, Category]]:
        """The measured taxonomy: every active category with its domain (drafts too on request)."""
        return [(d, c) for d in self.domains for c in d.categories if include_drafts or not c.is_draft]

    def drafts(self) -> list[tuple[Domain, Category]]:
        """Categories proposed but not yet measured (`status: draft`)."""
        return [(d, c) for d in self.domains for c in d.categories if c.is_draft]

    def category(self, category_id: str) -> Category:
        for _, category in self.categories():
            if category.id == category_id:
                return category
        raise KeyError(category_id)

    def domain_of(self, category_id: str) -> Domain:
        for domain, category in self.categories():
            if category.id == category_id:
                return domain
        raise KeyError(category_id)
