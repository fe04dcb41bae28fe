"""What every grader is, and how one is made by name.

A grader turns one response into a `Grade`: a behavior of the policy's vocabulary, or
one of the non-verdicts (`unparseable`, `error`). Its `id`, `version` and per-category
`rubric_hash` are written next to every grade, so two grade tables can only be
compared when they were graded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from ..errors import PolicyevalError
from ..policy.model import Category
from ..records import COMPLY, REFUSE, SAFE_COMPLETE, Grade

# The vocabulary used when no policy pack is given.
DEFAULT_VOCABULARY: tuple[str, ...] = (COMPLY, REFUSE, SAFE_COMPLETE)


@runtime_checkable
class Grader(Protocol):
    """Grades one response against a category's guidance and a behavior vocabulary."""

    id: str
    version: str

    def rubric_hash(self, category: Category | None) -> str:
        """Hash of everything besides the response that decides a grade in `category`."""
        ...

    def grade(
        self,
        prompt_messages: list[dict[str, Any]],
        response_text: str,
        category: Category | None,
        vocabulary: list[str],
    ) -> Grade:
        ...


def grader_code_version(name: str, judge_models: tuple[str, ...] = ()) -> str:
    """What `code_version` of the grades asset names: the grader that grades, by content.

    The learned grader is its artifact's hash; the refusal rules their version; the judge
    its version, prompt version and models. A change to any of them marks grades unsynced.
    """
    if name == "learned":
        from .learned import LearnedGrader
        from .propositions import DETECTORS_VERSION

        return f"learned-{LearnedGrader().version}+detectors-{DETECTORS_VERSION}"
    if name == "refusal":
        from .refusal import REFUSAL_GRADER_VERSION

        return f"refusal-{REFUSAL_GRADER_VERSION}"
    if name == "judge":
        from .judge import JUDGE_GRADER_VERSION, JUDGE_PROMPT_VERSION

        return f"judge-{JUDGE_GRADER_VERSION}-{JUDGE_PROMPT_VERSION}-{'+'.join(judge_models) or 'unconfigured'}"
    raise PolicyevalError(f"unknown grader {name!r} (known: {', '.join(GRADERS)})")


def grader_label(grader: Grader) -> str:
    """`id@version`: how one grader is named in a CSV column or a log line."""
    return f"{grader.id}@{grader.version}"


@dataclass(frozen=True)
class GraderSpec:
    """A grader that can be made by name, with the options its factory takes."""

    name: str
    factory: Callable[..., Grader]
    description: str


def _make_refusal(**options: Any) -> Grader:
    from .refusal_grader import RefusalGrader  # the classifier loads only when used

    return RefusalGrader(**options)


def _make_learned(**options: Any) -> Grader:
    from .learned import LearnedGrader

    return LearnedGrader(**options)


def _make_judge(**options: Any) -> Grader:
    from .judge import JudgeGrader  # the openai client loads only when used

    return JudgeGrader(**options)


GRADERS: dict[str, GraderSpec] = {
    "learned": GraderSpec("learned", _make_learned, "The default: learned from human labels, rules as features; "
                                                    "behavior and harm; pack rules decide middle behaviors."),
    "refusal": GraderSpec("refusal", _make_refusal, "Deterministic refusal classifier; no rubric, no network."),
    "judge": GraderSpec("judge", _make_judge, "Rubric LLM judge on an OpenAI-compatible endpoint."),
}


# The grader used wherever none is named: the command line, `policyeval run`, the assets.
DEFAULT_GRADER = "learned"


def make_grader(name: str, **options: Any) -> Grader:
    """A grader by registry name ("learned", "refusal" or "judge"), built with `options`."""
    spec = GRADERS.get(name)
    if spec is None:
        raise PolicyevalError(f"unknown grader {name!r} (known: {', '.join(GRADERS)})")
    return spec.factory(**options)
