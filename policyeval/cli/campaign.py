"""`policyeval campaign ...`: human data campaigns from guidance to gold set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError, PolicyevalError


def _names(value: str, what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise PolicyevalError(f"{what}: give at least one name")
    return names


def _aliases(values: tuple[str, ...]) -> dict[str, str]:
    aliases = {}
    for value in values:
        user, sep, name = value.partition("=")
        if not sep or not user.strip() or not name.strip():
            raise PolicyevalError(f"--alias {value!r}: expected USER=ANNOTATOR")
        aliases[user.strip()] = name.strip()
    return aliases


def _import_or_report(run):
    """Run an import; on rejection print every problem, then fail with the one-line summary."""
    from ..campaigns import ImportRejected

    try:
        return run()
    except ImportRejected as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise


def _show(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "undefined"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


@click.group()
def campaign() -> None:
    """Human data campaigns: guidance, batches, annotations, agreement, adjudication, gold sets."""


@campaign.command()
@click.argument("pack", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for guidance.md and guidance.html.")
def guidance(pack: Path, out: Path) -> None:
    """Render the labeling guidance of the policy pack at PACK (Markdown and HTML)."""
    from ..campaigns import render_guidance
    from ..policy import load_policy
    from ..tables import atomic_write_bytes

    rendered = render_guidance(load_policy(pack, check_registry=False))
    atomic_write_bytes(out / "guidance.md", rendered.markdown.encode("utf-8"))
    atomic_write_bytes(out / "guidance.html", rendered.html.encode("utf-8"))
    click.echo(f"{out}: guidance for {rendered.policy_id} {rendered.policy_version} "
               f"(policy {rendered.policy_hash[:12]}), guidance hash {rendered.guidance_hash}")


@campaign.command()
@click.argument("grades", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--policy", "pack", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The policy pack the grades were made under.")
@click.option("--id", "campaign_id", required=True, help="Campaign id (also the folder name).")
@click.option("--size", type=click.IntRange(min=1), required=True, help="Responses to sample (gold items come on top).")
@click.option("--overlap", type=click.IntRange(min=1), default=2, show_default=True, help="Annotators per item.")
@click.option("--annotators", required=True, metavar="A,B,C", help="Comma-separated annotator names.")
@click.option("--gold", "gold_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="An earlier gold set (Parquet: item_id, label) to mix in as hidden gold items.")
@click.option("--n-gold", type=click.IntRange(min=0), default=None, help="Hidden gold items (default: a tenth of --size).")
@click.option("--checkpoint", default=None, help="The checkpoint whose responses to label (needed if GRADES holds several).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Campaigns folder; the campaign is written to OUT/ID.")
def create(grades: Path, pack: Path, campaign_id: str, size: int, overlap: int, annotators: str,
           gold_path: Path | None, n_gold: int | None, checkpoint: str | None, seed: int, out: Path) -> None:
    """Sample GRADES.parquet into a campaign and write its batches, Label Studio files and manifest."""
    from ..campaigns import create_campaign, export_campaign, read_gold_set
    from ..policy import load_policy
    from ..tables import read_parquet

    policy = load_policy(pack, check_registry=False)
    table = read_parquet(grades, required=("item_id", "category_id", "behavior", "outcome", "prompt_text", "response_text"))
    gold = read_gold_set(gold_path) if gold_path is not None else None
    created = create_campaign(table, policy, campaign_id=campaign_id, size=size, overlap_k=overlap,
                              annotators=_names(annotators, "--annotators"), gold=gold, n_gold=n_gold, seed=seed,
                              checkpoint_id=checkpoint)
    folder = export_campaign(created, out)
    manifest = created.manifest()
    loads = ", ".join(f"{a} {n}" for a, n in manifest["load"].items())
    click.echo(f"{folder}: {manifest['n_items']} items (requested {size}) + {manifest['n_gold']} hidden gold, "
               f"{overlap} annotators each; load: {loads}; guidance {manifest['guidance_hash']}")


@campaign.command("import")
@click.argument("campaign_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--annotator", default=None, help="Annotator of a single-annotator batch CSV (default: the file name).")
@click.option("--alias", multiple=True, metavar="USER=ANNOTATOR",
              help="Map a Label Studio user (id or e-mail) to an annotator; repeatable.")
@click.option("--replace", is_flag=True, help="Let this file change labels already imported (a correction).")
def import_(campaign_dir: Path, file: Path, annotator: str | None, alias: tuple[str, ...], replace: bool) -> None:
    """Import annotations (CSV or Label Studio JSON) into the campaign at DIR; all or nothing."""
    from ..campaigns import import_annotations

    result = _import_or_report(lambda: import_annotations(campaign_dir, file, annotator=annotator,
                                                          aliases=_aliases(alias), replace=replace))
    click.echo(f"{file}: {result.added} added, {result.unchanged} unchanged, {result.replaced} replaced, "
               f"{result.unlabeled} unlabeled; {result.total} labels stored")


@campaign.command("agreement")
@click.argument("campaign_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--min-kappa", type=float, default=None, help="Flag annotators under this kappa vs gold (default 0.6).")
@click.option("--min-accuracy", type=float, default=None, help="Flag annotators under this accuracy on gold (default 0.8).")
def agreement_(campaign_dir: Path, as_json: bool, min_kappa: float | None, min_accuracy: float | None) -> None:
    """Agreement overall, per category and per annotator pair, and each annotator vs hidden gold."""
    from ..campaigns import DEFAULT_MIN_ACCURACY, DEFAULT_MIN_KAPPA, calibrate, load_annotations, load_campaign

    loaded = load_campaign(campaign_dir)
    annotations = load_annotations(campaign_dir)
    if annotations.empty:
        raise InputError(campaign_dir, "no annotations imported yet")
    report = calibrate(loaded, annotations,
                       min_kappa=DEFAULT_MIN_KAPPA if min_kappa is None else min_kappa,
                       min_accuracy=DEFAULT_MIN_ACCURACY if min_accuracy is None else min_accuracy)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    lines = [f"campaign {report.campaign_id}: {report.n_labels} labels"]
    header = f"{'':<32} {'n':>5} {'agree':>8} {'cohen':>8} {'fleiss':>8} {'alpha':>8}"

    def row(name: str, result) -> str:
        if result is None:
            return f"{name:<32} {'-':>5} (fewer than two labels per item)"
        return (f"{name:<32} {result.n_items:>5} {_show(result.percent_agreement, True):>8} "
                f"{_show(result.cohen_kappa):>8} {_show(result.fleiss_kappa):>8} {_show(result.krippendorff_alpha):>8}")

    lines += ["", header, row("overall", report.overall)]
    lines += [row(f"category {c}", r) for c, r in report.by_category.items()]
    lines += [row(f"pair {p.first} / {p.second}", p.result) for p in report.by_pair]
    gold = [g for g in report.gold if g.n_gold]
    if gold:
        lines += ["", f"vs hidden gold (flag under kappa {report.min_kappa} or accuracy {report.min_accuracy}):"]
        for g in report.gold:
            flag = "  FLAGGED, missed: " + ", ".join(i for i, _, _ in g.missed) if g.flagged else ""
            lines.append(f"  {g.annotator}: {g.correct}/{g.n_gold} accuracy {_show(g.accuracy, True)}, "
                         f"kappa {_show(g.kappa)}{flag}")
    click.echo("\n".join(lines))


@campaign.command("adjudication-queue")
@click.argument("campaign_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The queue (CSV).")
def adjudication_queue(campaign_dir: Path, out: Path) -> None:
    """Write the items whose labels disagree (with each other or with gold) for an adjudicator."""
    from ..campaigns import write_adjudication_queue

    if out.suffix.lower() != ".csv":
        raise InputError(out, "the queue is written as CSV: name it FILE.csv")
    n = write_adjudication_queue(campaign_dir, out)
    click.echo(f"{out}: {n} item(s) to adjudicate")


@campaign.command("import-adjudication")
@click.argument("campaign_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--adjudicator", default=None, help="Adjudicator of rows whose adjudicator cell is empty.")
@click.option("--replace", is_flag=True, help="Let this file change adjudications already imported.")
def import_adjudication(campaign_dir: Path, file: Path, adjudicator: str | None, replace: bool) -> None:
    """Import an adjudicated queue CSV (item_id, adjudicated_label[, adjudicator]); all or nothing."""
    from ..campaigns import import_adjudications

    result = _import_or_report(lambda: import_adjudications(campaign_dir, file, adjudicator=adjudicator,
                                                            replace=replace))
    click.echo(f"{file}: {result.added} added, {result.unchanged} unchanged, {result.replaced} replaced, "
               f"{result.unlabeled} left open; {result.total} adjudications stored")


@campaign.command()
@click.argument("campaign_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The gold set (Parquet).")
@click.option("--min-labels", type=click.IntRange(min=1), default=2, show_default=True,
              help="Labels an item needs to be gold without adjudication.")
def gold(campaign_dir: Path, out: Path, min_labels: int) -> None:
    """Assemble the gold set: unanimous and adjudicated labels with provenance."""
    from ..campaigns import assemble_gold, load_adjudications, load_annotations, load_campaign, write_gold_set

    if out.suffix.lower() != ".parquet":
        raise InputError(out, "the gold set is written as Parquet: name it FILE.parquet")
    result = assemble_gold(load_campaign(campaign_dir), load_annotations(campaign_dir),
                           load_adjudications(campaign_dir), min_labels=min_labels)
    write_gold_set(result.table, out)
    click.echo(f"{out}: {len(result.table)} gold labels ({result.n_unanimous} unanimous, {result.n_adjudicated} "
               f"adjudicated), version {result.gold_version}; left out: {result.n_unresolved} unresolved, "
               f"{result.n_incomplete} with fewer than {min_labels} labels")
