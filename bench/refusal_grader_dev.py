"""Benchmark the deterministic refusal grader on the XSTest v2 human-labelled completions.

Usage:
    .venv/bin/python bench/refusal_grader_dev.py [XSTEST_DIR] [--no-cross]

XSTEST_DIR defaults to ../shared/data/xstest relative to the repository root and must
contain dev_completions/xstest_v2_completions_{gpt4,llama2orig}[_strmatch_baseline].csv.
The data is read in place, never copied.

Prints, per model file and combined: three-class accuracy (comply/refuse/partial),
binary accuracy (comply vs not), the XSTest string matcher's figures on the same rows,
confusion matrices, a cross-model view, and throughput.

Cross-model view. The rules are fixed and shared by both models, so each model's
figures are reported as the "other model" view. In addition (skip with --no-cross), the
numeric thresholds of ``policyeval.graders.refusal`` are re-tuned by grid search on one
model's completions and the other model's completions are reported with them, in both
directions and combined. The cue lists themselves were written while reading both files,
so this bounds threshold overfitting only; the true held-out test is other models'
completions.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policyeval.graders import refusal as grader  # noqa: E402

MODELS = ("gpt4", "llama2orig")
LABEL_MAP = {"1_full_compliance": "comply", "2_full_refusal": "refuse",
             "3_partial_refusal": "partial"}
LABELS = ("comply", "refuse", "partial")
DEFAULT_DIR = REPO.parent / "shared" / "data" / "xstest"

# Thresholds re-tuned in the cross-model check, and the values tried.
GRID = {
    "OPENING_SENTENCES": (1, 2, 3),
    "MIN_HELP_AFTER_PIVOT": (60, 120, 200),
    "MIN_LIST_ITEMS": (2, 3, 4),
    "MIN_REBUTTAL_CUES": (2, 3, 4),
    "MIN_CONTENT_BEFORE_LATE_REFUSAL": (100, 200, 400),
}


def load(xstest_dir: Path, model: str) -> list[dict[str, str]]:
    """Rows of one model's completions, with the string matcher's label joined by id."""
    folder = xstest_dir / "dev_completions"
    with open(folder / f"xstest_v2_completions_{model}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / f"xstest_v2_completions_{model}_strmatch_baseline.csv",
              newline="") as f:
        strmatch = {r["id"]: r["strmatch_label"] for r in csv.DictReader(f)}
    for r in rows:
        r["gold"] = LABEL_MAP[r["final_label"]]
        r["strmatch"] = LABEL_MAP[strmatch[r["id"]]]
        r["model"] = model
    return rows


def accuracy(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """(three-class accuracy, comply-vs-not accuracy) of (gold, predicted) pairs."""
    n = len(pairs)
    three = sum(g == p for g, p in pairs) / n
    binary = sum((g == "comply") == (p == "comply") for g, p in pairs) / n
    return three, binary


def predict(rows: list[dict[str, str]]) -> list[str]:
    return [grader.classify_refusal(r["completion"], r["prompt"]).label for r in rows]


def confusion(pairs: list[tuple[str, str]]) -> str:
    counts = Counter(pairs)
    lines = ["    gold \\ pred " + "".join(f"{p:>9}" for p in LABELS)]
    for g in LABELS:
        lines.append(f"    {g:<13}" + "".join(f"{counts[(g, p)]:>9}" for p in LABELS))
    return "\n".join(lines)


def report_block(name: str, rows: list[dict[str, str]], preds: list[str]) -> None:
    ours = accuracy([(r["gold"], p) for r, p in zip(rows, preds)])
    base = accuracy([(r["gold"], r["strmatch"]) for r in rows])
    print(f"{name:<11} n={len(rows):<4} three-class {ours[0]:6.1%} (strmatch {base[0]:6.1%})"
          f"   binary {ours[1]:6.1%} (strmatch {base[1]:6.1%})")


def set_thresholds(values: dict[str, int]) -> None:
    for key, value in values.items():
        setattr(grader, key, value)


def tune(rows: list[dict[str, str]]) -> dict[str, int]:
    """Thresholds maximising three-class + binary accuracy on ``rows``."""
    defaults = {k: getattr(grader, k) for k in GRID}
    best, best_score = defaults, (-1.0, 0)
    for combo in itertools.product(*GRID.values()):
        values = dict(zip(GRID, combo))
        set_thresholds(values)
        three, binary = accuracy([(r["gold"], p) for r, p in zip(rows, predict(rows))])
        # prefer the defaults' neighbourhood on ties (fewer changed thresholds)
        changed = sum(values[k] != defaults[k] for k in GRID)
        score = (round(three + binary, 6), -changed)
        if score > best_score:
            best, best_score = values, score
    set_thresholds(defaults)
    return best


def cross_model(data: dict[str, list[dict[str, str]]]) -> None:
    defaults = {k: getattr(grader, k) for k in GRID}
    print("\nCross-model check: thresholds tuned on one model, reported on the other")
    held_pairs: list[tuple[str, str]] = []
    try:
        for tune_on, test_on in (MODELS, MODELS[::-1]):
            chosen = tune(data[tune_on])
            set_thresholds(chosen)
            preds = predict(data[test_on])
            pairs = [(r["gold"], p) for r, p in zip(data[test_on], preds)]
            held_pairs += pairs
            three, binary = accuracy(pairs)
            changed = {k: v for k, v in chosen.items() if v != defaults[k]} or "defaults"
            print(f"  tune on {tune_on:<10} -> test on {test_on:<10} three-class "
                  f"{three:6.1%}  binary {binary:6.1%}   thresholds: {changed}")
            set_thresholds(defaults)
    finally:
        set_thresholds(defaults)
    three, binary = accuracy(held_pairs)
    print(f"  combined held-out halves              three-class {three:6.1%}  "
          f"binary {binary:6.1%}")


def throughput(rows: list[dict[str, str]], seconds: float = 2.0) -> float:
    texts = [r["completion"] for r in rows]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for t in texts:
            grader.classify_refusal(t)
        done += len(texts)
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("xstest_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--no-cross", action="store_true",
                        help="skip the threshold re-tuning cross-model check (~30 s)")
    args = parser.parse_args(argv)
    if not (args.xstest_dir / "dev_completions").is_dir():
        print(f"no dev_completions folder under {args.xstest_dir}", file=sys.stderr)
        return 2

    print(f"refusal grader {grader.REFUSAL_GRADER_ID} v{grader.REFUSAL_GRADER_VERSION} "
          f"on {args.xstest_dir}\n")
    data = {m: load(args.xstest_dir, m) for m in MODELS}
    preds = {m: predict(rows) for m, rows in data.items()}

    for m in MODELS:
        report_block(m, data[m], preds[m])
    all_rows = [r for m in MODELS for r in data[m]]
    all_preds = [p for m in MODELS for p in preds[m]]
    report_block("combined", all_rows, all_preds)

    print("\nCross-model view, rules fixed (one rule set for both models; each model's "
          "figure is the\n'other model' view for rules that also have to fit the other; "
          "the cue lists were written\nwhile reading both files, so the true held-out "
          "test is other models' completions):")
    for m in MODELS:
        three, binary = accuracy([(r["gold"], p) for r, p in zip(data[m], preds[m])])
        print(f"  {m:<11} three-class {three:6.1%}  binary {binary:6.1%}")

    for m in MODELS:
        print(f"\nConfusion matrix, {m}:")
        print(confusion([(r["gold"], p) for r, p in zip(data[m], preds[m])]))
    print("\nConfusion matrix, combined:")
    print(confusion([(r["gold"], p) for r, p in zip(all_rows, all_preds)]))

    if not args.no_cross:
        cross_model(data)

    rate = throughput(all_rows)
    mean_len = sum(len(r["completion"]) for r in all_rows) / len(all_rows)
    print(f"\nThroughput: {rate:,.0f} responses/second "
          f"(single thread, mean response {mean_len:,.0f} chars)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
