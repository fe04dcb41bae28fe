"""`policyeval agreement`: inter-rater agreement of label columns in a CSV."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from ..errors import InputError
from ..stats.agreement import AgreementResult, agreement as agreement_of
from ..tables import read_csv_columns


@click.command()
@click.argument("path", metavar="IN.csv", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--raters", required=True, metavar="COL1,COL2[,...]",
              help="Comma-separated label columns, one per rater.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: percent_agreement, cohen_kappa, fleiss_kappa, "
                   "krippendorff_alpha, n_items, n_raters.")
def agreement(path: Path, raters: str, as_json: bool) -> None:
    """Percent agreement, Cohen's and Fleiss' kappa and Krippendorff's alpha (nominal).

    An empty cell is a missing label, not a category.
    """
    columns = [c.strip() for c in raters.split(",") if c.strip()]
    if len(columns) < 2:
        raise InputError(path, f"--raters needs at least 2 columns, got {len(columns)}")
    if len(set(columns)) != len(columns):
        raise InputError(path, f"--raters names a column twice: {raters}")
    table = read_labels(path, columns)
    result = agreement_of(table)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(_text(result, columns))


def read_labels(path: Path, columns: list[str]) -> pd.DataFrame:
    """The rater columns of a CSV as text; only empty cells are missing ("NA" is a label)."""
    return read_csv_columns(path, columns)[columns]


def _text(result: AgreementResult, columns: list[str]) -> str:
    def show(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.4f}"

    cohen = "Cohen's kappa" if result.n_raters == 2 else "Cohen's kappa (mean pairwise)"
    rows = [
        ("raters", ", ".join(columns)),
        ("items with >= 2 labels", str(result.n_items)),
        ("items labeled by all raters", str(result.n_items_complete)),
        ("categories", ", ".join(result.categories)),
        ("percent agreement", f"{100 * result.percent_agreement:.2f}%"),
        (cohen, show(result.cohen_kappa)),
        (f"Fleiss' kappa ({result.n_items_complete} complete items)", show(result.fleiss_kappa)),
        ("Krippendorff's alpha (nominal)", show(result.krippendorff_alpha)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
