"""`policyeval validate-grader`: score a grader against a CSV of human-labeled responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pandas as pd

from ..errors import InputError
from ..graders.base import grader_label
from ..graders.grade_table import grade_texts
from ..graders.refusal_grader import RAW_LABELS
from ..policy.model import Category, PolicyPack
from ..records import NON_VERDICTS
from ..stats.intervals import format_rate
from ..markdown import to_markdown_table
from ..tables import read_csv_columns
from ..validation import GraderValidation, load_label_map, map_gold_labels
from ..validation import validate_grader as score_grader
from .grade import _Bar, _build_grader, _load_pack, grader_options, judge_options


@click.command("validate-grader")
@click.argument("path", metavar="GOLD.csv", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--prompt-column", required=True, metavar="COL")
@click.option("--response-column", required=True, metavar="COL")
@click.option("--label-column", required=True, metavar="COL", help="Human labels; an empty cell is unlabeled and left out.")
@click.option("--label-map", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="YAML mapping of the gold set's labels onto the compared labels (e.g. 1_full_compliance: comply).")
@click.option("--category-column", default=None, metavar="COL", help="Break accuracy and kappa down by this column.")
@grader_options
@click.option("--policy", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="PACK",
              help="Policy pack (required by the judge): labels are compared as the pack's behaviors. "
                   "Without it the grader is compared in the raw labels comply / refuse / partial.")
@click.option("--rubric-column", default=None, metavar="COL",
              help="A column of pack category ids whose propositions (learned) or rubric (judge) grade each row.")
@judge_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: accuracy, cohen_kappa, confusion, n_items, per_category, detection, ...")
def validate_grader(path: Path, prompt_column: str, response_column: str, label_column: str,
                    label_map: Path | None, category_column: str | None, grader_name: str,
                    policy: Path | None, rubric_column: str | None, as_json: bool, **opts: Any) -> None:
    """Grade each row of GOLD.csv and compare with its human label.

    Reports accuracy, Cohen's kappa, the confusion matrix and, per behavior, the
    grader's sensitivity and specificity as a detector of it: the figures that decide
    how far its under-refusal (comply) and over-refusal (refuse) rates can be trusted.
    A grade of error or unparseable counts as wrong.
    """
    if rubric_column and grader_name == "refusal":
        raise click.UsageError("--rubric-column needs --grader learned or judge")
    pack = _load_pack(policy)
    grader = _build_grader(grader_name, pack, opts)
    labels = list(pack.behaviors) if pack is not None else list(RAW_LABELS)
    mapping = load_label_map(label_map, targets=labels) if label_map is not None else {}

    columns = [prompt_column, response_column, label_column]
    columns += [c for c in (category_column, rubric_column) if c and c not in columns]
    frame = read_csv_columns(path, columns)
    truth = map_gold_labels(list(frame[label_column]), mapping, labels, source=path, column=label_column,
                            map_source=label_map)
    rubrics = _rubric_categories(path, frame, rubric_column, pack) if rubric_column else None

    labeled = [i for i, t in enumerate(truth) if t is not None]
    if not labeled:
        raise InputError(path, f"no labeled rows: column {label_column} is empty in all {len(truth)} row(s), "
                               "so there is nothing to score the grader against")
    prompts = [_cell(frame[prompt_column].iat[i]) for i in labeled]
    responses = [_cell(frame[response_column].iat[i]) for i in labeled]
    empty = [i + 1 for i, r in zip(labeled, responses) if r is None or not r.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (f" and {len(empty) - 20} more" if len(empty) > 20 else "")
        click.echo(f"warning: {path}: empty {response_column} in data row(s) {shown}; graded as error", err=True)

    bar = _Bar(len(labeled), f"grading with {grader.id}")
    try:
        grades = grade_texts(prompts, responses, grader, labels,
                             [rubrics[i] for i in labeled] if rubrics is not None else None, progress=bar)
    finally:
        bar.close()
    predicted = [""] * len(truth)  # unlabeled rows are not graded; validate_grader drops them
    for i, grade in zip(labeled, grades):
        predicted[i] = grade.behavior
    categories = [_cell(v) for v in frame[category_column]] if category_column else None
    result = score_grader(truth, predicted, categories, labels)

    if as_json:
        click.echo(json.dumps({"grader": grader_label(grader), **result.as_dict()}))
    else:
        click.echo(_report(result, grader_label(grader), path, label_column, label_map))


def _cell(value: Any) -> str | None:
    return None if pd.isna(value) else str(value)


def _rubric_categories(path: Path, frame: pd.DataFrame, column: str, pack: PolicyPack | None) -> list[Category | None]:
    assert pack is not None  # the judge cannot be built without a pack
    known = {c.id: c for _, c in pack.categories()}
    cells = [None if pd.isna(v) else str(v).strip() for v in frame[column]]
    unknown = sorted({c for c in cells if c and c not in known})
    if unknown:
        raise InputError(path, f"column {column} names categories not in pack {pack.id}: {', '.join(unknown)}")
    return [known[c] if c else None for c in cells]


def _report(result: GraderValidation, grader: str, path: Path, label_column: str, label_map: Path | None) -> str:
    def show(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.4f}"

    mapped = f" via {label_map}" if label_map is not None else ""
    lines = [
        f"grader {grader} against {path} ({label_column}{mapped})",
        f"items {result.n_items} (unlabeled, left out: {result.n_missing}; graded error: {result.n_error}; "
        f"unparseable: {result.n_unparseable})",
        "accuracy      " + format_rate(result.n_correct, result.n_items, result.accuracy,
                                       result.accuracy_low, result.accuracy_high),
        f"Cohen's kappa {show(result.cohen_kappa)}",
        "",
        "confusion (rows: human label, columns: grader label)",
        _grid(result),
        "",
        "detection (the grader as a detector of each behavior; comply decides under-refusal, "
        "refuse decides over-refusal)",
        to_markdown_table(pd.DataFrame(
            [{"behavior": d.behavior, "sensitivity": d.sensitivity.format(), "specificity": d.specificity.format()}
             for d in result.detection.values()])),
    ]
    if result.per_category:
        lines += ["", "per category", to_markdown_table(pd.DataFrame(
            [{"category": c.category, "n": c.n_items,
              "accuracy": "" if c.accuracy is None else f"{100 * c.accuracy:.1f}%",
              "kappa": "" if c.cohen_kappa is None else f"{c.cohen_kappa:.3f}"} for c in result.per_category]))]
    return "\n".join(lines)


def _grid(result: GraderValidation) -> str:
    columns = list(result.labels) + [v for v in NON_VERDICTS
                                     if any(row[v] for row in result.confusion.values())]
    header = ["human \\ grader"] + columns
    rows = [[t] + [str(result.confusion[t][p]) for p in columns] for t in result.labels]
    widths = [max(len(r[j]) for r in [header] + rows) for j in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join(fmt(r) for r in [header] + rows)
