"""`policyeval report ...`: self-contained HTML (and optional Markdown) reports.

Every subcommand writes one HTML page that opens offline (charts and styles inlined)
and, with --markdown, the same content as Markdown. Bad input ends with a one-line
error naming the file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click
import pandas as pd

from ..errors import InputError
from ..tables import atomic_write_bytes, read_parquet

GRADE_COLUMNS = ("item_id", "category_id", "expected_behavior", "behavior")
FilePath = click.Path(path_type=Path, dir_okay=False)
PackPath = click.Path(path_type=Path, file_okay=False)


def output_options(command: Callable) -> Callable:
    command = click.option("--markdown", type=FilePath, default=None, metavar="REPORT.md",
                           help="Also write the report as Markdown.")(command)
    command = click.option("--out", type=FilePath, required=True, metavar="REPORT.html",
                           help="The HTML report to write.")(command)
    return command


def redact_option(command: Callable) -> Callable:
    return click.option(
        "--redact", type=click.Choice(["none", "truncate", "redact"]), default="none", show_default=True,
        help="Model responses: in full, truncated to 280 characters, or with under-refusal responses "
             "replaced by their length (for wide distribution).")(command)


def _write(document: Any, out: Path, markdown: Path | None) -> None:
    atomic_write_bytes(out, document.to_html().encode("utf-8"))
    click.echo(f"wrote {out}", err=True)
    if markdown is not None:
        atomic_write_bytes(markdown, document.to_markdown().encode("utf-8"))
        click.echo(f"wrote {markdown}", err=True)


def _lineage(**extra: Any) -> dict[str, Any]:
    return {**{k: v for k, v in extra.items() if v}, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _grades(path: Path, checkpoint: str | None = None) -> pd.DataFrame:
    frame = read_parquet(path, required=GRADE_COLUMNS)
    if checkpoint is not None:
        if "checkpoint_id" not in frame.columns:
            raise InputError(path, "no checkpoint_id column to select --checkpoint from")
        frame = frame[frame["checkpoint_id"] == checkpoint].reset_index(drop=True)
        if frame.empty:
            raise InputError(path, f"no grades of checkpoint {checkpoint!r}")
    if frame.empty:
        raise InputError(path, "no grades in the table")
    return frame


def _pack(path: Path):
    from ..policy import load_policy

    return load_policy(path, check_registry=False)


@click.group()
def report() -> None:
    """Safety, comparison, policy-diff, coverage, drift and emerging-risk reports (HTML and Markdown)."""


@report.command()
@click.argument("grades", type=FilePath, metavar="GRADES.parquet")
@click.option("--policy", type=PackPath, required=True, metavar="PACK", help="The policy pack (thresholds, severities).")
@output_options
@redact_option
@click.option("--checkpoint", default=None, help="Report on this checkpoint of a table holding several.")
@click.option("--grader-validation", type=FilePath, default=None, metavar="VALIDATION.json",
              help="Output of `policyeval validate-grader --json`: adds grader validity and corrected rates.")
@click.option("--manifest", type=FilePath, default=None, metavar="CHECKPOINT.yaml",
              help="The checkpoint manifest, for its hash in the lineage footer.")
@click.option("--run-id", default=None, help="Dagster run id for the lineage footer.")
@click.option("--max-failures", type=click.IntRange(0, 200), default=10, show_default=True,
              help="Worst under- and over-refusals shown in full (each).")
def safety(grades: Path, policy: Path, out: Path, markdown: Path | None, redact: str, checkpoint: str | None,
           grader_validation: Path | None, manifest: Path | None, run_id: str | None, max_failures: int) -> None:
    """Safety report of one checkpoint's GRADES.parquet under a policy pack."""
    from ..reports.safety import load_grader_validation, safety_document

    manifest_hash = None
    if manifest is not None:
        from ..runs.manifest import load_manifest, manifest_hash as hash_of

        manifest_hash = hash_of(load_manifest(manifest))
    validation = load_grader_validation(grader_validation) if grader_validation is not None else None
    document = safety_document(_grades(grades, checkpoint), _pack(policy), validation=validation,
                               lineage=_lineage(manifest_hash=manifest_hash, run_id=run_id, grades_file=str(grades)),
                               redact=redact, max_failures=max_failures)  # type: ignore[arg-type]
    _write(document, out, markdown)


@report.command()
@click.argument("grades_a", type=FilePath, metavar="GRADES_A.parquet")
@click.argument("grades_b", type=FilePath, metavar="GRADES_B.parquet")
@output_options
@redact_option
@click.option("--name-a", default=None, help="Name of checkpoint A (default: its checkpoint_id).")
@click.option("--name-b", default=None, help="Name of checkpoint B (default: its checkpoint_id).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level for the Holm-adjusted per-category tests.")
def compare(grades_a: Path, grades_b: Path, out: Path, markdown: Path | None, redact: str, name_a: str | None,
            name_b: str | None, alpha: float) -> None:
    """Checkpoint A vs B on the same items: regressions, improvements, flipped items, summary."""
    from ..reports.comparison import comparison_document

    document = comparison_document(_grades(grades_a), _grades(grades_b), name_a=name_a, name_b=name_b, alpha=alpha,
                                   redact=redact, lineage=_lineage())  # type: ignore[arg-type]
    _write(document, out, markdown)


@report.command("policy-diff")
@click.argument("old", type=PackPath, metavar="OLD_PACK")
@click.argument("new", type=PackPath, metavar="NEW_PACK")
@click.option("--old-grades", type=FilePath, default=None, metavar="G.parquet",
              help="Grades of the old version's eval set (with --new-grades: measurement changes).")
@click.option("--new-grades", type=FilePath, default=None, metavar="G.parquet",
              help="Grades of the new version's eval set on the same checkpoint.")
@click.option("--no-items", is_flag=True, help="Skip generating both eval sets for the item-level comparison.")
@output_options
def policy_diff(old: Path, new: Path, old_grades: Path | None, new_grades: Path | None, no_items: bool, out: Path,
                markdown: Path | None) -> None:
    """What changed between two policy versions, and in the measurements."""
    from ..policy.diff import diff_packs
    from ..reports.policy_diff import policy_diff_document

    if (old_grades is None) != (new_grades is None):
        raise click.UsageError("give both --old-grades and --new-grades, or neither")
    old_pack, new_pack = _pack(old), _pack(new)
    diff = diff_packs(old_pack, new_pack, with_items=not no_items)
    old_items = new_items = None
    if old_grades is None and not no_items:
        from ..generate import generate_eval_set

        old_items = pd.DataFrame([i.to_row() for i in generate_eval_set(old_pack).items])
        new_items = pd.DataFrame([i.to_row() for i in generate_eval_set(new_pack).items])
    document = policy_diff_document(
        diff,
        old_grades=_grades(old_grades) if old_grades is not None else None,
        new_grades=_grades(new_grades) if new_grades is not None else None,
        old_items=old_items, new_items=new_items, lineage=_lineage(),
    )
    _write(document, out, markdown)


@report.command()
@click.argument("items", type=FilePath, metavar="ITEMS.parquet")
@click.option("--policy", type=PackPath, required=True, metavar="PACK")
@output_options
def coverage(items: Path, policy: Path, out: Path, markdown: Path | None) -> None:
    """Coverage heatmap of an eval set against the pack's minimums, with the gaps."""
    from ..reports.coverage import coverage_document

    table = read_parquet(items, required=("item_id", "category_id", "expected_behavior"))
    for column in ("domain_id", "severity", "source"):
        if column not in table.columns:
            table[column] = ""
    document = coverage_document(_pack(policy), table, lineage=_lineage(items_file=str(items)))
    _write(document, out, markdown)


@report.command()
@click.argument("deployment", type=FilePath, metavar="DEPLOYMENT.jsonl")
@click.option("--baseline", type=FilePath, required=True, metavar="GRADES.parquet",
              help="The checkpoint's eval grades: refusal rates per category to compare with.")
@click.option("--policy", type=PackPath, default=None, metavar="PACK",
              help="Grade in the pack's vocabulary (default: the refusal classifier's raw labels).")
@click.option("--checkpoint", default=None, help="Baseline checkpoint, when the baseline table holds several.")
@click.option("--bucket", type=click.Choice(["day", "week"]), default="week", show_default=True)
@click.option("--margin", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Flag a bucket when |deployment - eval| refusal rate exceeds this and the intervals are apart.")
@output_options
def drift(deployment: Path, baseline: Path, policy: Path | None, checkpoint: str | None, bucket: str, margin: float,
          out: Path, markdown: Path | None) -> None:
    """Refusal rates of sampled deployment conversations over time against the eval baseline.

    Emails, phone numbers, payment card numbers and IP addresses are scrubbed as the
    file is read.
    """
    from ..deployment import detect_drift, grade_conversations, load_conversations
    from ..reports.drift import drift_document

    imported = load_conversations(deployment)
    baseline_grades = read_parquet(baseline, required=("category_id", "behavior"))
    if checkpoint is not None:
        if "checkpoint_id" not in baseline_grades.columns:
            raise InputError(baseline, "no checkpoint_id column to select --checkpoint from")
        baseline_grades = baseline_grades[baseline_grades["checkpoint_id"] == checkpoint]
        if baseline_grades.empty:
            raise InputError(baseline, f"no grades of checkpoint {checkpoint!r}")
    pack = _pack(policy) if policy is not None else None
    graded = grade_conversations(imported.conversations, pack)
    result = detect_drift(graded, baseline_grades, bucket, margin, imported.scrubbed)  # type: ignore[arg-type]
    document = drift_document(result, source=str(deployment), lineage=_lineage())
    _write(document, out, markdown)


@report.command()
@click.argument("policy", type=PackPath, metavar="PACK")
@click.option("--redteam", "redteam_dir", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="A folder of red-team findings (*.jsonl).")
@click.option("--deployment", "deployment_dir", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="A folder of deployment conversations (*.jsonl, one file per UTC day).")
@click.option("--drafts", "drafts_dir", type=click.Path(path_type=Path, file_okay=False), required=True, metavar="DIR",
              help="Where to write one draft category (domain file, status: draft) per cluster.")
@output_options
def emerging(policy: Path, redteam_dir: Path | None, deployment_dir: Path | None, drafts_dir: Path, out: Path,
             markdown: Path | None) -> None:
    """What no category of PACK covers in red-team findings and deployment conversations: clusters with
    counts over time and redacted examples, and a draft category per cluster.

    Personal data is scrubbed as the files are read; no model is called.
    """
    from ..emerging import analyze, read_deployment, read_redteam
    from ..reports.emerging import emerging_document

    if redteam_dir is None and deployment_dir is None:
        raise click.UsageError("give --redteam, --deployment or both")
    pack = _pack(policy)
    records = [*(read_redteam(redteam_dir).records if redteam_dir else ()),
               *(read_deployment(deployment_dir).records if deployment_dir else ())]
    result = analyze(records, pack, f"{pack.id} {pack.version} ({pack.content_hash[:12]})")
    drafts_dir.mkdir(parents=True, exist_ok=True)
    for draft in result.drafts:
        atomic_write_bytes(drafts_dir / draft.file_name, draft.yaml_text.encode("utf-8"))
        click.echo(f"wrote {drafts_dir / draft.file_name}", err=True)
    sources = {name: str(path) for name, path in (("red-team", redteam_dir), ("deployment", deployment_dir)) if path}
    _write(emerging_document(result, drafts_dir=str(drafts_dir), sources=sources, pack_dir=str(policy), lineage=_lineage()),
           out, markdown)
