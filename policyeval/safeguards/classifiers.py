"""The classifiers a system puts around its model, behind one interface.

`classify(cases)` returns one `FilterVerdict` per case, in order. A case is the
conversation so far, the text under test (the user's turn for an input filter, the
response for an output filter) and the item's category, whose policy text a guard
model is given. Guard requests go through the same runner as model requests: cached
by content (a re-run asks nothing twice), retried, limited per endpoint, errors as rows;
a guard that answered none of them fails the step, as an unreachable model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from ..errors import PolicyevalError
from ..graders.base import Grader
from ..policy.model import Category
from ..records import ERROR, UNPARSEABLE, EvalItem, content_hash, last_user_text
from ..runs.cache import ResponseCache
from ..runs.manifest import CheckpointManifest
from ..runs.reachability import unreachable
from .guard_formats import FILTER_ERROR, FILTER_UNPARSEABLE, FLAGGED, PASSED, FilterVerdict, guard_messages, parse_guard_reply
from .spec import GUARD, INPUT, JUDGE, LEARNED, FilterSpec

GUARD_FORMAT_VERSION = "1"


@dataclass(frozen=True)
class FilterCase:
    """One piece of content a filter decides on."""

    item_id: str
    messages: list[dict[str, Any]]  # the conversation up to the content
    response: str | None  # the model's response (output filters); None for input filters
    category: Category | None

    @property
    def prompt(self) -> str:
        return last_user_text(self.messages)


class SafeguardClassifier(Protocol):
    id: str
    version: str
    side: str

    def classify(self, cases: Sequence[FilterCase]) -> list[FilterVerdict]:
        ...


class LearnedHarmFilter:
    """The learned grader's harm head as an output filter: flags a response at the artifact's
    threshold (or the manifest's)."""

    def __init__(self, side: str = "output", threshold: float | None = None, artifact: str | None = None):
        from ..graders.features import featurize
        from ..graders.learned import LearnedGrader

        if side == INPUT:
            raise PolicyevalError("the learned harm head classifies responses, not requests (see bench/safeguard_filters.py)")
        self._featurize = featurize
        self._grader = LearnedGrader(artifact)
        self.side = side
        self.threshold = threshold if threshold is not None else self._grader.artifact.harm_threshold
        self.id = f"{LEARNED}-harm"
        self.version = f"{self._grader.version}-t{self.threshold:g}"

    def classify(self, cases: Sequence[FilterCase]) -> list[FilterVerdict]:
        verdicts = []
        for case in cases:
            features = self._featurize(case.prompt, case.response or "")
            _, p = self._grader.artifact.harm(features)
            verdicts.append(FilterVerdict(FLAGGED if p >= self.threshold else PASSED, round(float(p), 4), f"harmful p={p:.2f}"))
        return verdicts


class JudgeHarmFilter:
    """The rubric judge's harm verdict as an output filter (one judge call per response)."""

    def __init__(self, judge: Grader, vocabulary: Sequence[str]):
        self._judge = judge
        self._vocabulary = list(vocabulary)
        self.side = "output"
        self.id = judge.id
        self.version = judge.version

    def classify(self, cases: Sequence[FilterCase]) -> list[FilterVerdict]:
        from ..graders.grade_table import run_graders

        def task(case: FilterCase) -> Callable[[], Any]:
            return lambda: self._judge.grade(case.messages, case.response or "", case.category, self._vocabulary)

        grades = run_graders([task(c) for c in cases], max(1, int(getattr(self._judge, "concurrency", 1))))
        verdicts = []
        for grade in grades:
            if grade.behavior == ERROR:
                verdicts.append(FilterVerdict(FILTER_ERROR, detail=grade.rationale[:200]))
            elif grade.behavior == UNPARSEABLE or grade.harmful is None:
                verdicts.append(FilterVerdict(FILTER_UNPARSEABLE, detail=grade.rationale[:200]))
            else:
                verdicts.append(FilterVerdict(FLAGGED if grade.harmful else PASSED, detail=grade.rationale[:200]))
        return verdicts


class GuardModelFilter:
    """A guard model behind an OpenAI-compatible endpoint, prompted with the category's policy."""

    def __init__(self, spec: FilterSpec, side: str, cache: ResponseCache | None = None, base_url: str | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None):
        self.spec = spec
        self.side = side
        self.cache = cache
        self.base_url = base_url
        self.progress = progress
        self.manifest = guard_manifest(spec)
        self.id = f"{GUARD}:{spec.model}"
        self.version = content_hash({"format": spec.prompt_format, "format_version": GUARD_FORMAT_VERSION,
                                     "base_url": spec.base_url, "model": spec.model, "params": spec.params})

    def classify(self, cases: Sequence[FilterCase]) -> list[FilterVerdict]:
        from ..runs.runner import run_checkpoint

        items = [
            EvalItem(item_id=case.item_id, messages=guard_messages(self.spec.prompt_format, case.category, case.messages,
                                                                   case.response, self.side),
                     category_id=case.category.id if case.category is not None else "", expected_behavior="")
            for case in cases
        ]
        rows = run_checkpoint(items, self.manifest, self.cache, self.progress, base_url=self.base_url) if items else []
        broken = unreachable(rows, self.manifest.endpoint)
        if broken:  # nothing was classified: a system measured with a dead filter is not a measurement
            raise PolicyevalError(f"{self.side} filter {self.id}: {broken}")
        verdicts = []
        for row in rows:
            if row.get("status") != "ok":
                verdicts.append(FilterVerdict(FILTER_ERROR, detail=str(row.get("error") or row.get("status") or "no answer")[:200]))
            else:
                verdicts.append(parse_guard_reply(self.spec.prompt_format, str(row.get("response_text") or "")))
        return verdicts


def guard_manifest(spec: FilterSpec) -> CheckpointManifest:
    """The guard endpoint as the runner knows endpoints: a manifest of its own."""
    params = {"temperature": 0, "max_tokens": 128, **spec.params}
    return CheckpointManifest(id=f"guard-{content_hash(spec.model)[:8]}", base_url=spec.base_url or "", model=spec.model,
                              api_key_env=spec.api_key_env, params=params, max_concurrency=spec.max_concurrency,
                              timeout_s=spec.timeout_s, max_retries=3)


def make_filter(spec: FilterSpec, side: str, *, artifact: str | None = None, judge: Grader | None = None,
                vocabulary: Sequence[str] = (), cache: ResponseCache | None = None, base_url: str | None = None,
                progress: Callable[[dict[str, Any]], None] | None = None) -> SafeguardClassifier:
    """The classifier a manifest's filter names, built with what the caller has (artifact, judge, cache)."""
    if spec.classifier == LEARNED:
        return LearnedHarmFilter(side, spec.threshold, artifact)
    if spec.classifier == JUDGE:
        if judge is None:
            raise PolicyevalError("the output filter is the judge, but no judge endpoint is configured "
                                  "(set the judge resource's base_url and models)")
        return JudgeHarmFilter(judge, vocabulary)
    if spec.classifier == GUARD:
        return GuardModelFilter(spec, side, cache, base_url, progress)
    raise PolicyevalError(f"unknown classifier {spec.classifier!r}")
