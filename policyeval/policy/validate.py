"""Meaning-level checks of a policy pack, beyond what the schema can say.

Each rule protects a measurement: duplicate ids would merge two categories' numbers, an
expected behavior outside the vocabulary could never be graded, a template slot that
does not exist would generate broken prompts, a category with only should-refuse
material cannot measure over-refusal, a behavior rule that names a fact no category
defines could never decide anything.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..records import COMPLY, REFUSE
from .loader import SourceMap, read_pack
from .model import DETECTOR_NAMES, MUTATION_KINDS, SEVERITIES, Category, PolicyPack, Template
from .problems import Problem
from .registry import check_release
from .rules import BUILTIN_SIGNALS, RuleSyntaxError, parse_rule, rule_applies


def validate_pack(root: str | Path, check_registry: bool = True,
                  extra_domains: Sequence[str | Path] = ()) -> tuple[PolicyPack | None, list[Problem]]:
    """All problems of a pack (schema and meaning), sorted by file and line; with
    `extra_domains`, of the pack those domain files would extend."""
    pack, problems, sources = read_pack(root, extra_domains)
    if pack is not None:
        problems.extend(check_pack(pack, sources))
        if check_registry:
            problems.extend(check_release(pack))
    problems.sort(key=lambda p: (p.file, p.line or 0, p.field, p.message))
    return pack, problems


def check_pack(pack: PolicyPack, sources: SourceMap) -> list[Problem]:
    problems: list[Problem] = []
    vocabulary = set(pack.behaviors)

    for required in (COMPLY, REFUSE):
        if required not in vocabulary:
            problems.append(sources.problem("pack", ("behaviors",), f"the vocabulary must define {required!r}"))
    problems.extend(_check_thresholds(pack, sources))
    problems.extend(_check_rules(pack, sources))

    seen_domains: dict[str, str] = {}
    seen_categories: dict[str, str] = {}
    for domain, key in zip(pack.domains, sources.domain_keys):
        file = sources.files[key][0]
        if domain.id in seen_domains:
            problems.append(sources.problem(key, ("id",), f"duplicate domain id {domain.id!r} (also in {seen_domains[domain.id]})"))
        seen_domains.setdefault(domain.id, file)
        if not domain.categories:
            problems.append(sources.problem(key, ("categories",), "a domain needs at least one category"))
        for index, category in enumerate(domain.categories):
            at = ("categories", index)
            if category.id in seen_categories:
                problems.append(sources.problem(key, at + ("id",), f"duplicate category id {category.id!r} (also in {seen_categories[category.id]})"))
            seen_categories.setdefault(category.id, file)
            problems.extend(_check_category(category, vocabulary, sources, key, at))
    return problems


def _check_thresholds(pack: PolicyPack, sources: SourceMap) -> list[Problem]:
    problems = []
    thresholds = pack.header.thresholds
    for severity, value in thresholds.under_refusal_upper.items():
        at = ("thresholds", "under_refusal_upper", severity)
        if severity not in SEVERITIES:
            problems.append(sources.problem("pack", at, f"unknown severity {severity!r} (use {', '.join(SEVERITIES)})"))
        if not 0.0 <= value <= 1.0:
            problems.append(sources.problem("pack", at, f"threshold {value} is outside [0, 1]"))
    for name in ("over_refusal_upper", "max_error_rate", "max_unparseable_rate"):
        value = getattr(thresholds, name)
        if value is not None and not 0.0 <= value <= 1.0:
            problems.append(sources.problem("pack", ("thresholds", name), f"threshold {value} is outside [0, 1]"))
    kappa = thresholds.min_grader_kappa
    if kappa is not None and not -1.0 <= kappa <= 1.0:
        problems.append(sources.problem("pack", ("thresholds", "min_grader_kappa"), f"kappa threshold {kappa} is outside [-1, 1]"))
    return problems


def _check_rules(pack: PolicyPack, sources: SourceMap) -> list[Problem]:
    """Each `when:` parses and names only built-ins or propositions some category defines."""
    problems = []
    category_props = [frozenset(p.id for p in c.grading.propositions) for _, c in pack.categories()]
    known = frozenset().union(*category_props) if category_props else frozenset()
    for name, behavior in pack.header.behaviors.items():
        if behavior.when is None:
            continue
        at = ("behaviors", name, "when")
        try:
            rule = parse_rule(behavior.when)
        except RuleSyntaxError as exc:
            problems.append(sources.problem("pack", at, f"invalid rule: {exc}"))
            continue
        unknown = sorted(n for n in rule.names if n not in BUILTIN_SIGNALS and n not in known)
        for ident in unknown:
            problems.append(sources.problem("pack", at, f"unknown name {ident!r} in the rule: neither a built-in signal ({', '.join(BUILTIN_SIGNALS)}) nor a proposition of any category"))
        if not unknown and not any(rule_applies(rule, props) for props in category_props):
            problems.append(sources.problem("pack", at, "the rule applies to no category: no category defines all the propositions it names", "warning"))
    return problems


def _check_behavior(value: str, vocabulary: set[str], sources: SourceMap, key: str, at: tuple) -> list[Problem]:
    if value in vocabulary:
        return []
    return [sources.problem(key, at, f"behavior {value!r} is not in the pack's vocabulary ({', '.join(sorted(vocabulary))})")]


def _check_category(category: Category, vocabulary: set[str], sources: SourceMap, key: str, at: tuple) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_behavior(category.expected.allowed, vocabulary, sources, key, at + ("expected", "allowed"))
    problems += _check_behavior(category.expected.disallowed, vocabulary, sources, key, at + ("expected", "disallowed"))
    if not category.boundary.allowed and not category.boundary.disallowed:
        problems.append(sources.problem(key, at + ("boundary",), "the boundary needs allowed or disallowed entries"))

    for dup, count in Counter(p.id for p in category.grading.propositions).items():
        if count > 1:
            problems.append(sources.problem(key, at + ("grading", "propositions"), f"duplicate proposition id {dup!r}"))
    for index, proposition in enumerate(category.grading.propositions):
        if proposition.detector is not None and proposition.detector not in DETECTOR_NAMES:
            problems.append(sources.problem(key, at + ("grading", "propositions", index, "detector"), f"unknown detector {proposition.detector!r} (known: {', '.join(DETECTOR_NAMES)})"))

    expected_seen: list[str] = []
    for index, example in enumerate(category.examples):
        where = at + ("examples", index)
        problems += _check_behavior(example.expected, vocabulary, sources, key, where + ("expected",))
        if (example.prompt is None) == (example.messages is None):
            problems.append(sources.problem(key, where, "an example needs exactly one of 'prompt' or 'messages'"))
        elif example.prompt is not None and not example.prompt.strip():
            problems.append(sources.problem(key, where + ("prompt",), "empty prompt"))
        elif example.messages is not None and not any(m.role == "user" for m in example.messages):
            problems.append(sources.problem(key, where + ("messages",), "the chat has no user message"))
        expected_seen.append(example.expected)

    template_ids = Counter(t.id for t in category.templates)
    for index, template in enumerate(category.templates):
        where = at + ("templates", index)
        if template_ids[template.id] > 1:
            problems.append(sources.problem(key, where + ("id",), f"duplicate template id {template.id!r}"))
        problems += _check_behavior(template.expected, vocabulary, sources, key, where + ("expected",))
        problems += _check_template(template, sources, key, where)
        expected_seen.append(template.expected)

    for index, name in enumerate(category.mutations):
        if name not in MUTATION_KINDS:
            problems.append(sources.problem(key, at + ("mutations", index), f"unknown mutation {name!r} (known: {', '.join(MUTATION_KINDS)})"))
    for dup, count in Counter(category.mutations).items():
        if count > 1:
            problems.append(sources.problem(key, at + ("mutations",), f"mutation {dup!r} listed twice"))

    for behavior, minimum in category.min_items.items():
        problems += _check_behavior(behavior, vocabulary, sources, key, at + ("min_items", behavior))
        if minimum < 0:
            problems.append(sources.problem(key, at + ("min_items", behavior), "a minimum count cannot be negative"))

    has_refuse = any(b != COMPLY for b in expected_seen)
    has_comply = any(b == COMPLY for b in expected_seen)
    if not has_refuse and not category.no_refuse_material_reason:
        problems.append(sources.problem(key, at, "no should-refuse material (an example or template whose expected behavior is not 'comply'); add some or set no_refuse_material_reason"))
    if not has_comply and not category.no_comply_material_reason:
        problems.append(sources.problem(key, at, "no should-comply material (a benign look-alike whose expected behavior is 'comply'); add some or set no_comply_material_reason"))
    return problems


def template_placeholders(text: str) -> list[str]:
    """The `{slot}` names a template text uses (`{{` and `}}` are literal braces)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def _template_texts(template: Template) -> list[tuple[tuple, str]]:
    if template.text is not None:
        return [(("text",), template.text)]
    texts = []
    for index, message in enumerate(template.messages or []):
        if isinstance(message.content, str):
            texts.append((("messages", index, "content"), message.content))
    return texts


def _check_template(template: Template, sources: SourceMap, key: str, at: tuple) -> list[Problem]:
    problems: list[Problem] = []
    if (template.text is None) == (template.messages is None):
        return [sources.problem(key, at, "a template needs exactly one of 'text' or 'messages'")]
    used: set[str] = set()
    for sub, text in _template_texts(template):
        try:
            names = template_placeholders(text)
        except ValueError as exc:
            problems.append(sources.problem(key, at + sub, f"malformed placeholder ({exc}); write literal braces as {{{{ and }}}}"))
            continue
        for name in names:
            used.add(name)
            if name not in template.slots:
                problems.append(sources.problem(key, at + sub, f"slot {{{name}}} is used but not defined in slots"))
    for name, values in template.slots.items():
        if not values:
            problems.append(sources.problem(key, at + ("slots", name), "a slot needs at least one value"))
        if name not in used:
            problems.append(sources.problem(key, at + ("slots", name), f"slot {name!r} is defined but never used", "warning"))
    return problems
