"""`policyeval train-grader`: rebuild the shipped default grader, or train one on a team's gold set."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import PolicyevalError
from ..graders.gold_training import (
    GOLD_WEIGHT,
    GoldColumns,
    GoldSplit,
    gold_examples,
    heldout_validation,
    read_gold_table,
    train_from_gold,
    untrainable_reason,
)
from ..graders.learned import DEFAULT_ARTIFACT, LearnedGrader
from ..graders.refusal_grader import RAW_LABELS
from ..graders.training import train_artifact
from ..graders.training_data import load_shipped
from ..stats.intervals import format_rate
from ..validation import GraderValidation, load_label_map, map_gold_labels


@click.command("train-grader")
@click.argument("gold", metavar="[GOLD.csv|GOLD.parquet]", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--shipped", is_flag=True, help="Rebuild the default grader from the labeled data shipped with policyeval.")
@click.option("--prompt-column", metavar="COL", help="Gold set: the prompt.")
@click.option("--response-column", metavar="COL", help="Gold set: the response the label judges.")
@click.option("--label-column", metavar="COL", help="Gold set: the human label; an empty cell is unlabeled and left out.")
@click.option("--label-map", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="MAP.yaml",
              help="YAML mapping of the gold set's labels onto the compared labels (e.g. 1_full_compliance: comply).")
@click.option("--harmful-column", metavar="COL", default=None, help="Gold set: true/false, whether the response is harmful.")
@click.option("--id-column", metavar="COL", default=None,
              help="Gold set: the item id the train / held-out split hashes (default: the prompt's hash).")
@click.option("--policy", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="PACK",
              help="Policy pack: labels are its behaviors (middle ones train `partial`) and held-out rows are "
                   "graded with its rules. Without it labels are comply / refuse / partial.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="GRADER.json",
              help=f"Where to write the model (with --shipped, default: the packaged {DEFAULT_ARTIFACT.name}).")
def train_grader(gold: Path | None, shipped: bool, prompt_column: str | None, response_column: str | None,
                 label_column: str | None, label_map: Path | None, harmful_column: str | None, id_column: str | None,
                 policy: Path | None, out: Path | None) -> None:
    """Train the learned grader; the file's content hash is the grader version.

    --shipped rebuilds policyeval/graders/artifacts/default_grader.json bit for bit from
    policyeval/graders/training_data/ (XSTest dev completions, GPTFuzzer, RBR gold).

    With GOLD, the shipped rows plus the gold set's training part (70% of its items, by
    a hash of the item id) train a new model; the held-out 30% score it beside the
    shipped default (accuracy, Cohen's kappa). Use the model with
    `policyeval grade --grader-model GRADER.json`.
    """
    if shipped and gold is not None:
        raise click.UsageError("give --shipped or a gold set, not both")
    if shipped:
        _train_shipped(out or DEFAULT_ARTIFACT)
        return
    if gold is None:
        raise click.UsageError("give a gold set (GOLD.csv or GOLD.parquet) or --shipped")
    missing = [f"--{n}" for n, v in (("prompt-column", prompt_column), ("response-column", response_column),
                                     ("label-column", label_column), ("out", out)) if not v]
    if missing:
        raise click.UsageError(f"training on a gold set needs {', '.join(missing)}")
    assert prompt_column and response_column and label_column and out
    _train_gold(gold, GoldColumns(prompt=prompt_column, response=response_column, label=label_column,
                                  item_id=id_column, harmful=harmful_column, category=None),
                label_map, policy, out)


def _train_shipped(out: Path) -> None:
    started = time.perf_counter()
    rows = load_shipped()
    artifact = train_artifact(rows, provenance={"trained_from": "policyeval shipped training data"})
    digest = artifact.write(out)
    click.echo(f"trained on {len(rows)} labeled rows in {time.perf_counter() - started:.1f}s: "
               f"behavior {dict(artifact.provenance['behavior_rows'])}, harm {dict(artifact.provenance['harm_rows'])}")
    click.echo(f"wrote {out} (grader version {digest[:16]})")


def _train_gold(path: Path, columns: GoldColumns, label_map: Path | None, policy: Path | None, out: Path) -> None:
    from .grade import _load_pack

    pack = _load_pack(policy)
    labels = list(pack.behaviors) if pack is not None else list(RAW_LABELS)
    mapping = load_label_map(label_map, targets=labels) if label_map is not None else {}
    wanted = [c for c in (columns.prompt, columns.response, columns.label, columns.item_id, columns.harmful) if c]
    frame = read_gold_table(path, list(dict.fromkeys(wanted)))
    mapped = map_gold_labels(list(frame[columns.label]), mapping, labels, source=path, column=columns.label,
                             map_source=label_map)
    examples = gold_examples(frame, columns, source=path, labels=mapped)
    split = GoldSplit()
    reason = untrainable_reason(examples, split)
    if reason is not None:
        raise PolicyevalError(f"{path}: cannot train on this gold set: {reason}")

    started = time.perf_counter()
    artifact, heldout = train_from_gold(examples, split=split, provenance={"file": path.name})
    digest = artifact.write(out)
    info = artifact.provenance["gold"]
    click.echo(f"gold set {path}: {len(examples)} labeled rows (unlabeled, left out: {len(frame) - len(examples)})")
    click.echo(f"split by item id: {info['train_rows']} rows train, {info['heldout_rows']} held out "
               f"({split.heldout_fraction:.0%} of items)")
    click.echo(f"trained on {artifact.provenance['rows']} rows (shipped + each gold training row x{GOLD_WEIGHT}) "
               f"in {time.perf_counter() - started:.1f}s")
    click.echo(f"wrote {out} (grader version {digest[:16]})")
    if not heldout:
        click.echo("no held-out rows: the gold set is too small to score the new model on items it never saw")
        return
    trained = heldout_validation(heldout, LearnedGrader(out, pack=pack), labels, pack)
    default = heldout_validation(heldout, LearnedGrader(None, pack=pack), labels, pack)
    click.echo("")
    click.echo(f"held-out gold: {len(heldout)} rows never trained on, labels {' / '.join(labels)}")
    click.echo(_comparison([(f"trained  learned@{digest[:16]}", trained),
                            (f"shipped  learned@{LearnedGrader().version}", default)]))


def _comparison(rows: list[tuple[str, GraderValidation]]) -> str:
    def kappa(v: GraderValidation) -> str:
        return "undefined" if v.cohen_kappa is None else f"{v.cohen_kappa:.3f}"

    table = [("grader", "accuracy", "Cohen's kappa")]
    table += [(name, format_rate(v.n_correct, v.n_items, v.accuracy, v.accuracy_low, v.accuracy_high), kappa(v))
              for name, v in rows]
    widths = [max(len(r[j]) for r in table) for j in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)
