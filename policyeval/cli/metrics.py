"""`policyeval metrics` and `policyeval compare`: refusal rates and paired checkpoint tests."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import click
import pandas as pd

from ..errors import InputError
from ..stats.intervals import format_rate
from ..markdown import to_markdown_table
from ..stats.metrics import LEVELS, ComparisonResult, compare_checkpoints, metrics_report
from ..tables import atomic_write_bytes, read_parquet

RATE_LABELS = {
    "under_refusal": "under-refusal",
    "harmful_compliance": "harmful compliance",
    "over_refusal": "over-refusal",
    "partial": "partial",
    "correct": "correct",
}
DEFAULT_ORDER = ("overall", "domain", "severity", "category")


@click.command()
@click.argument("grades", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--by", "level", type=click.Choice(list(LEVELS)), default=None,
              help="One level only (default: overall, domain, severity and category).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: level -> rows.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the table(s) to FILE.csv or FILE.parquet (a `level` column tells them apart).")
def metrics(grades: Path, level: str | None, as_json: bool, out: Path | None) -> None:
    """Under-refusal, harmful-compliance and over-refusal rates of GRADES.parquet, with Wilson 95% intervals.

    Errors and unparseable grades are counted, never treated as refusals or compliance.
    Harmful compliance counts grades judged harmful, over every item with a harm judgment.
    """
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(out, "output must end in .csv or .parquet")
    table = read_parquet(grades, required=("expected_behavior", "outcome"))
    report = metrics_report(table)
    levels = [level] if level else list(DEFAULT_ORDER)
    chosen = {name: report[name] for name in levels}

    if out is not None:
        _write(pd.concat([df.assign(level=name) for name, df in chosen.items()], ignore_index=True), out)
    if as_json:
        click.echo(json.dumps({name: _records(df) for name, df in chosen.items()}, indent=2))
        return
    for name, df in chosen.items():
        click.echo(f"## {name}\n")
        # The rate cells are composed here from numbers; the key columns (category ids...) are escaped.
        click.echo(to_markdown_table(_readable(df), markdown_columns=RATE_LABELS.values()) if len(df) else "(no grades)")
        click.echo("")


@click.command()
@click.argument("grades_a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("grades_b", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare(grades_a: Path, grades_b: Path, as_json: bool) -> None:
    """Checkpoint A vs B on the same items: exact McNemar per category and overall, and flipped items."""
    required = ("item_id", "category_id", "expected_behavior", "behavior", "outcome")
    result = compare_checkpoints(read_parquet(grades_a, required=required), read_parquet(grades_b, required=required))
    if as_json:
        click.echo(json.dumps(_comparison_dict(result), indent=2))
        return
    click.echo(_comparison_text(result, grades_a, grades_b))


# ---------------------------------------------------------------------------


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if c in ("policy_version", "policy_hash", "checkpoint_id",
                                           "domain_id", "category_id", "severity")]
    out = df[keys].copy()
    out["n"] = df["n"]
    for name, label in RATE_LABELS.items():
        out[label] = [
            format_rate(k, n, r, lo, hi)
            for k, n, r, lo, hi in zip(df[f"{name}_k"], df[f"{name}_n"], df[f"{name}_rate"],
                                       df[f"{name}_low"], df[f"{name}_high"])
        ]
    out["errors"] = df["n_error"]
    out["unparseable"] = df["n_unparseable"]
    return out


def _comparison_text(result: ComparisonResult, path_a: Path, path_b: Path) -> str:
    name_a = result.checkpoint_a or str(path_a)
    name_b = result.checkpoint_b or str(path_b)
    o = result.overall
    lines = [
        f"A: {name_a} ({result.n_a} items)",
        f"B: {name_b} ({result.n_b} items)",
        f"paired items graded validly in both: {result.n_paired} "
        f"(in only one table: {result.n_unpaired}; error/unparseable in either: {result.n_invalid})",
        "",
        "## overall",
        "",
        f"correct: A {result.correct_a}/{result.n_paired}, B {result.correct_b}/{result.n_paired}",
        f"McNemar exact: b (A right, B wrong) = {o.b}, c (A wrong, B right) = {o.c}, p = {o.p_value:.4g}",
        "",
        "## by category",
        "",
        to_markdown_table(result.by_category) if len(result.by_category) else "(no paired items)",
        "",
        f"## flipped items ({len(result.flipped)})",
        "",
        to_markdown_table(result.flipped) if len(result.flipped) else "(none)",
    ]
    return "\n".join(lines)


def _comparison_dict(result: ComparisonResult) -> dict[str, Any]:
    o = result.overall
    return {
        "checkpoint_a": result.checkpoint_a,
        "checkpoint_b": result.checkpoint_b,
        "n_a": result.n_a,
        "n_b": result.n_b,
        "n_paired": result.n_paired,
        "n_unpaired": result.n_unpaired,
        "n_invalid": result.n_invalid,
        "correct_a": result.correct_a,
        "correct_b": result.correct_b,
        "overall": {"b": o.b, "c": o.c, "n_discordant": o.n_discordant,
                    "statistic": o.statistic, "p_value": o.p_value},
        "by_category": _records(result.by_category),
        "flipped": _records(result.flipped),
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _plain(value: Any) -> Any:
    """numpy scalars to Python, NaN to None: what json.dumps can write strictly."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _write(df: pd.DataFrame, path: Path) -> None:
    df = df[["level", *[c for c in df.columns if c != "level"]]]
    if path.suffix.lower() == ".csv":
        atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    else:
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
    click.echo(f"wrote {path}", err=True)
