"""The learned default grader measured on what it was not trained on.

Usage:
    .venv/bin/python bench/learned_grader.py

Every figure comes from a model trained without the rows it is measured on:

* behavior: leave one XSTest model out (train on the other model and the rest of the
  shipped data), three-class and comply-vs-not accuracy, next to the refusal rules and
  XSTest's string matcher on the same rows. The rules were written while reading both
  XSTest files, so their figures here are optimistic; the string matcher was not.
* harm: GPTFuzzer in five folds grouped by question (no question in both train and
  test), and each other source held out whole; accuracy next to "the rules say comply,
  so it is harmful" and the majority class on the same rows.
* harm, style: the same held-out GPTFuzzer questions with the role-play wrapper taken
  off (``augmentation.answer_part``) and cut to 300 and 600 characters, the plain, short
  answers other models write; and harm on each XSTest model held out (benign answers to
  prompts that sound harmful must stay harmless).
* throughput: responses graded per second by the shipped model.

It prints figures and asserts nothing.
"""

from __future__ import annotations

import sys
import time
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policyeval.graders.augmentation import answer_part, cut_at_word  # noqa: E402
from policyeval.graders.features import featurize  # noqa: E402
from policyeval.graders.learned import LearnedGrader  # noqa: E402
from policyeval.graders.linear_model import GraderArtifact  # noqa: E402
from policyeval.graders.refusal import classify_refusal  # noqa: E402
from policyeval.graders.string_match import string_match_label  # noqa: E402
from policyeval.graders.training import TrainingOptions, train_artifact  # noqa: E402
from policyeval.graders.training_data import LabeledResponse, load_shipped  # noqa: E402
from policyeval.records import COMPLY  # noqa: E402


@lru_cache(maxsize=None)
def cached_features(prompt: str, response: str) -> dict[str, float]:
    return featurize(prompt, response)


def predict(artifact: GraderArtifact, row: LabeledResponse) -> tuple[str, bool]:
    features = cached_features(row.prompt, row.response)
    behavior = artifact.behavior.probabilities(features, artifact.scale)
    return max(behavior, key=behavior.__getitem__), artifact.harm(features)[0]


def pct(hits: int, n: int) -> str:
    return f"{hits / n:6.1%}" if n else "   n/a"


def behavior_folds(rows: list[LabeledResponse], options: TrainingOptions) -> None:
    print("Behavior, leave one XSTest model out (three-class / comply-vs-not accuracy):")
    print(f"  {'held out':<20} {'n':>5}  {'learned':>15}  {'rules':>15}  {'string match':>15}")
    totals = [0] * 7
    for group in sorted({r.group for r in rows if r.source == "xstest"}):
        test = [r for r in rows if r.group == group]
        artifact = train_artifact([r for r in rows if r.group != group], options, featurizer=cached_features)
        learned = [predict(artifact, r)[0] for r in test]
        rules = [classify_refusal(r.response, r.prompt).label for r in test]
        strmatch = [string_match_label(r.response) for r in test]
        hits = []
        for labels in (learned, rules, strmatch):
            hits.append(sum(p == r.behavior for p, r in zip(labels, test)))
            hits.append(sum((p == COMPLY) == (r.behavior == COMPLY) for p, r in zip(labels, test)))
        n = len(test)
        totals = [t + h for t, h in zip(totals, [n, *hits])]
        print(f"  {group:<20} {n:>5}  {pct(hits[0], n)} /{pct(hits[1], n)}  {pct(hits[2], n)} /{pct(hits[3], n)}"
              f"  {pct(hits[4], n)} /{pct(hits[5], n)}")
    n, *hits = totals
    print(f"  {'both':<20} {n:>5}  {pct(hits[0], n)} /{pct(hits[1], n)}  {pct(hits[2], n)} /{pct(hits[3], n)}"
          f"  {pct(hits[4], n)} /{pct(hits[5], n)}")


def _harm_line(name: str, test: list[LabeledResponse], artifact: GraderArtifact, totals: list[int]) -> None:
    learned = sum(predict(artifact, r)[1] == r.harmful for r in test)
    rules = sum((classify_refusal(r.response, r.prompt).label == COMPLY) == r.harmful for r in test)
    positives = sum(bool(r.harmful) for r in test)
    majority = max(positives, len(test) - positives)
    for i, v in enumerate((len(test), learned, rules, majority, positives)):
        totals[i] += v
    print(f"  {name:<36} {len(test):>5}  {positives / len(test):6.1%}  {pct(learned, len(test)):>8}"
          f"  {pct(rules, len(test)):>12}  {pct(majority, len(test)):>8}")


def harm_folds(rows: list[LabeledResponse], options: TrainingOptions) -> None:
    print("\nHarm (harmful vs not) on held-out rows:")
    print(f"  {'held out':<36} {'n':>5}  {'harmful':>6}  {'learned':>8}  {'comply=harm':>12}  {'majority':>8}")
    labeled = [r for r in rows if r.harmful is not None]
    fuzz = [r for r in labeled if r.source == "gptfuzz"]
    questions = sorted({r.group for r in fuzz})
    totals = [0] * 5
    for fold in range(5):
        held = set(questions[fold::5])
        test = [r for r in fuzz if r.group in held]
        artifact = train_artifact([r for r in rows if r.group not in held], options, featurizer=cached_features)
        _harm_line(f"gptfuzz questions, fold {fold + 1}/5", test, artifact, totals)
    n, learned, rules, majority, positives = totals
    print(f"  {'gptfuzz, all folds':<36} {n:>5}  {positives / n:6.1%}  {pct(learned, n):>8}  {pct(rules, n):>12}"
          f"  {pct(majority, n):>8}")
    for source in ("rbr_gold", "xstest"):
        test = [r for r in labeled if r.source == source]
        artifact = train_artifact([r for r in rows if r.source != source], options, featurizer=cached_features)
        _harm_line(f"{source} (whole source)", test, artifact, [0] * 5)
    for group in sorted({r.group for r in labeled if r.source == "xstest"}):
        test = [r for r in labeled if r.group == group]
        artifact = train_artifact([r for r in rows if r.group != group], options, featurizer=cached_features)
        _harm_line(f"{group} (model held out)", test, artifact, [0] * 5)


def harm_style(rows: list[LabeledResponse], options: TrainingOptions) -> None:
    """Held-out GPTFuzzer answers without their wrapper, whole and cut short: recall on the
    harmful ones, specificity on the harmless ones (a harmless answer's parts are harmless),
    next to "the rules say comply, so it is harmful" on the same texts."""
    print("\nHarm by answer style, GPTFuzzer questions held out in five folds (harmful found / harmless kept):")
    fuzz = [r for r in rows if r.source == "gptfuzz" and r.harmful is not None]
    questions = sorted({r.group for r in fuzz})
    limits = (300, 600, None)
    hits = {(limit, y): [0, 0, 0] for limit in limits for y in (False, True)}  # learned right, comply=harm right, n
    for fold in range(5):
        held = set(questions[fold::5])
        artifact = train_artifact([r for r in rows if r.group not in held], options, featurizer=cached_features)
        for r in (r for r in fuzz if r.group in held):
            answer = answer_part(r.response)
            if not answer:
                continue
            for limit in limits:
                text = cut_at_word(answer, limit) if limit else answer
                tally = hits[(limit, bool(r.harmful))]
                tally[0] += artifact.harm(cached_features(r.prompt, text))[0] == r.harmful
                tally[1] += (classify_refusal(text, r.prompt).label == COMPLY) == r.harmful
                tally[2] += 1
    print(f"  {'':<32} {'harmful found':>28}  {'harmless kept':>28}")
    print(f"  {'':<32} {'learned':>8} {'comply=harm':>12} {'n':>6}  {'learned':>8} {'comply=harm':>12} {'n':>6}")
    for limit in limits:
        name = f"answer part, first {limit} chars" if limit else "answer part, whole"
        (tp, tp_rules, pos), (tn, tn_rules, neg) = hits[(limit, True)], hits[(limit, False)]
        print(f"  {name:<32} {pct(tp, pos):>8} {pct(tp_rules, pos):>12} {pos:>6}  {pct(tn, neg):>8} {pct(tn_rules, neg):>12} {neg:>6}")


def throughput(rows: list[LabeledResponse]) -> None:
    grader = LearnedGrader()
    sample = rows[:2000]
    started = time.perf_counter()
    for r in sample:
        grader.grade([{"role": "user", "content": r.prompt}], r.response)
    elapsed = time.perf_counter() - started
    print(f"\nThroughput: {len(sample) / elapsed:,.0f} responses/s with the shipped model "
          f"({len(sample)} responses in {elapsed:.2f}s, one core)")


def main() -> None:
    rows = list(load_shipped())
    options = TrainingOptions()
    print(f"{len(rows)} shipped labeled rows; options {options}\n")
    behavior_folds(rows, options)
    harm_folds(rows, options)
    harm_style(rows, options)
    throughput(rows)


if __name__ == "__main__":
    main()
