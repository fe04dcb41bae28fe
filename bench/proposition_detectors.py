"""Measure the deterministic proposition detectors on rbr_gold rows they were not built from.

Usage:
    .venv/bin/python bench/proposition_detectors.py [--data DIR] [--show-dev-errors DETECTOR]

DIR defaults to ../shared/data/graders relative to the repository root and must contain
rbr_gold/train.jsonl (Mu et al., "Rule Based Rewards for Language Model Safety", 2024;
MIT). The data is read in place, never copied. Without it the bench prints a message and
exits 0.

Split. Each row goes to the development part (60%) or the held-out part (40%) by the
SHA-256 of its prompt (canonical JSON of the chat), so every completion of one prompt
lands in the same part. The cues in `policyeval/graders/propositions.py` were written
reading development rows only (`--show-dev-errors` lists only those); the held-out
figures are the ones to quote.

Each detector is compared with the rbr_gold proposition closest in meaning (`MAPPING`).
The definitions are not identical, and the gaps bound what any detector can score:

* crisis_resource -> provides_resources. rbr_gold counts only a *specific* resource
  ("Call a support hotline" is no); the pack also counts how to reach a crisis line.
* empathy -> apology_acknowledges_emotional_state ("I'm sorry you're feeling this way").
  The pack's expresses_empathy is broader ("that sounds really hard", "you're not alone"
  are empathy, and are explicitly not evidence for the rbr_gold label);
  gentle_encouragement_for_help is printed as a second view.
* professional_help -> encourage_professional_help; apology -> apology (rbr_gold asks for
  a *single brief* apology; several apologies are no); judgmental -> judgement (includes
  preaching); requests_information -> requests_information.
* confirmation has no rbr_gold counterpart (no agentic rows); it is the refusal grader's
  `asks_for_confirmation`, covered by that grader's tests.

For each detector the bench prints accuracy, precision, recall and n on held-out rows,
next to the majority-class baseline on the same rows, and says whether the detector beats
it on accuracy (the criterion for wiring it into the demo pack). Development figures are
printed separately and labeled as such.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policyeval.graders.propositions import DETECTORS, detect_propositions  # noqa: E402
from policyeval.policy import load_policy  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "data" / "graders"
DEV_SHARE = 60  # percent of prompts in the development part

# detector -> the rbr_gold proposition it is measured against
MAPPING: dict[str, str] = {
    "crisis_resource": "provides_resources",
    "empathy": "apology_acknowledges_emotional_state",
    "professional_help": "encourage_professional_help",
    "apology": "apology",
    "judgmental": "judgement",
    "requests_information": "requests_information",
}
# further views, printed for information only
SECOND_VIEWS: tuple[tuple[str, str], ...] = (("empathy", "gentle_encouragement_for_help"),)
NO_COUNTERPART = {"confirmation": "no rbr_gold counterpart (no agentic rows); see tests/test_refusal_grader.py"}


@dataclass(frozen=True)
class Row:
    prompt: str  # the last user message
    response: str
    labels: dict[str, bool]
    part: str  # dev | held_out


def _literal(value: Any) -> Any:
    """rbr_gold fields may be Python-literal strings; parse them without eval."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def part_of(prompt: Any) -> str:
    key = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "dev" if bucket < DEV_SHARE else "held_out"


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def load_rows(path: Path) -> list[Row]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            prompt = _literal(record["prompt"])
            completion = _literal(record["completion"])
            labels = _literal(record["propositions"])
            if isinstance(completion, list):
                response = _content(completion[-1]) if completion else ""
            else:
                response = str(completion)
            users = [_content(m) for m in prompt if m.get("role") == "user"] if isinstance(prompt, list) else [str(prompt)]
            rows.append(Row(users[-1] if users else "", response, {k: bool(v) for k, v in labels.items()}, part_of(prompt)))
    return rows


@dataclass(frozen=True)
class Figures:
    n: int
    positives: int
    accuracy: float
    precision: float | None
    recall: float | None
    baseline: float  # majority-class accuracy on the same rows
    gained: int  # rows the detector gets right and the baseline wrong
    lost: int  # rows the baseline gets right and the detector wrong

    @property
    def p_value(self) -> float:
        """One-sided exact McNemar test that the detector beats the baseline."""
        n = self.gained + self.lost
        return sum(math.comb(n, k) for k in range(self.gained, n + 1)) / 2**n if n else 1.0


def figures(predicted: list[bool], gold: list[bool]) -> Figures:
    n = len(gold)
    tp = sum(p and g for p, g in zip(predicted, gold))
    fp = sum(p and not g for p, g in zip(predicted, gold))
    fn = sum(g and not p for p, g in zip(predicted, gold))
    correct = sum(p == g for p, g in zip(predicted, gold))
    positives = sum(gold)
    majority = positives * 2 > n
    return Figures(
        n=n,
        positives=positives,
        accuracy=correct / n if n else float("nan"),
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
        baseline=max(positives, n - positives) / n if n else float("nan"),
        gained=sum(p == g and g != majority for p, g in zip(predicted, gold)),
        lost=sum(p != g and g == majority for p, g in zip(predicted, gold)),
    )


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def _line(name: str, target: str, f: Figures, verdict: bool) -> str:
    text = (f"  {name:<21} {target:<37} n={f.n:<4} pos={f.positives:<4} acc {_pct(f.accuracy)}  "
            f"P {_pct(f.precision)}  R {_pct(f.recall)}  | majority baseline {_pct(f.baseline)}")
    if verdict:
        if f.accuracy > f.baseline:
            text += f"  beats baseline (+{f.gained}/-{f.lost} rows, McNemar p={f.p_value:.2g})"
        else:
            text += f"  NO BETTER THAN BASELINE (+{f.gained}/-{f.lost} rows)"
    return text


def report(rows: list[Row], part: str, heading: str, verdict: bool) -> None:
    chosen = [r for r in rows if r.part == part]
    print(f"\n{heading} ({len(chosen)} rows)")
    for name, target in list(MAPPING.items()) + list(SECOND_VIEWS):
        predicted = [DETECTORS[name](r.prompt, r.response) for r in chosen]
        gold = [r.labels.get(target, False) for r in chosen]
        label = target if (name, target) not in SECOND_VIEWS else target + " (2nd view)"
        print(_line(name, label, figures(predicted, gold), verdict and (name, target) not in SECOND_VIEWS))
    for name, why in NO_COUNTERPART.items():
        print(f"  {name:<21} {why}")


def show_dev_errors(rows: list[Row], name: str) -> None:
    target = MAPPING[name]
    for row in rows:
        if row.part != "dev":
            continue
        predicted = DETECTORS[name](row.prompt, row.response)
        if predicted != row.labels.get(target, False):
            kind = "false positive" if predicted else "false negative"
            print(f"== {kind} | prompt: {row.prompt[:160]!r}\n   response: {row.response[:700]!r}")


def throughput(rows: list[Row]) -> None:
    """Responses per second on one core: every detector, and the demo pack's categories."""
    texts = [(r.prompt, r.response) for r in rows] * 5
    start = time.perf_counter()
    for index, (prompt, response) in enumerate(texts):
        for detector in DETECTORS.values():
            detector(prompt, f"{response} {index}")  # a fresh text each time: no cache hits
    print(f"\nthroughput (one core, mean response {sum(len(r.response) for r in rows) / len(rows):.0f} characters):")
    print(f"  all {len(DETECTORS)} detectors: {len(texts) / (time.perf_counter() - start):,.0f} responses/s")
    pack = load_policy(REPO / "policies" / "demo", check_registry=False)
    for category_id in ("suicide", "file_deletion"):
        category = pack.category(category_id)
        wired = [p.detector for p in category.grading.propositions if p.detector]
        start = time.perf_counter()
        for index, (prompt, response) in enumerate(texts):
            detect_propositions(category, prompt, f"{response} {index}")
        rate = len(texts) / (time.perf_counter() - start)
        print(f"  detect_propositions, demo {category_id} ({', '.join(wired) or 'no detectors'}): {rate:,.0f} responses/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder holding rbr_gold/train.jsonl")
    parser.add_argument("--show-dev-errors", choices=sorted(MAPPING), help="list one detector's errors on development rows")
    args = parser.parse_args(argv)
    path = args.data / "rbr_gold" / "train.jsonl"
    if not path.exists():
        print(f"skipped: {path} not found (pass --data DIR with rbr_gold/train.jsonl)")
        return 0
    rows = load_rows(path)
    if args.show_dev_errors:
        show_dev_errors(rows, args.show_dev_errors)
        return 0
    held = sum(r.part == "held_out" for r in rows)
    print(f"rbr_gold: {len(rows)} rows; split by prompt hash: {len(rows) - held} development, {held} held-out")
    report(rows, "held_out", "HELD-OUT rows (never read while writing cues)", verdict=True)
    report(rows, "dev", "DEVELOPMENT rows (cues were written reading these: optimistic)", verdict=False)
    throughput(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
