"""`policyeval demo`: the whole core chain on the embedded defaults, in one command.

Validate the demo pack, generate its eval set, run every checkpoint manifest on a
stratified sample (starting the local model when a manifest needs it), grade with the
refusal classifier, and print metrics and the checkpoint comparison. Responses are
cached, so a second run with nothing changed makes no model calls and says so.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import click
import pandas as pd
from tqdm import tqdm

from ..generate import generate_eval_set, stratified_sample, write_items
from ..graders import DEFAULT_GRADER, grade_responses, make_grader
from ..policy import load_policy
from ..records import RESPONSE_SCHEMA, grade_schema_for
from ..runs.cache import ResponseCache
from ..runs.local_replicas import LocalModelReplicas
from ..runs.manifest import load_manifests
from ..safeguards.system import grade_with_safeguards
from ..runs.runner import RunStats, run_checkpoint
from ..stats import compare_checkpoints, metrics_report
from ..tables import write_parquet


def _format_rate(row, name: str) -> str:
    rate = row[f"{name}_rate"]
    if rate is None or rate != rate:
        return "n/a"
    return f"{rate:.1%} [{row[f'{name}_low']:.1%}-{row[f'{name}_high']:.1%}] ({int(row[f'{name}_k'])}/{int(row[f'{name}_n'])})"


@click.command()
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), default=Path("policies/demo"), show_default=True)
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(path_type=Path), default=Path("checkpoints"), show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Output folder [default: $POLICYEVAL_DATA_DIR/demo or data/demo].")
@click.option("--per-cell", type=int, default=2, show_default=True, help="Items per category x expected behavior (0 = the full eval set).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None, help="Response cache [default: $POLICYEVAL_CACHE_DIR or .cache/responses].")
def demo(policy_dir: Path, checkpoints_dir: Path, out_dir: Path | None, per_cell: int, cache_dir: Path | None) -> None:
    """Run the core chain end to end: generate, respond, grade, metrics, compare."""
    started = time.monotonic()
    out_dir = out_dir or Path(os.environ.get("POLICYEVAL_DATA_DIR", "data")) / "demo"
    cache = ResponseCache(cache_dir or Path(os.environ.get("POLICYEVAL_CACHE_DIR", ".cache/responses")))

    pack = load_policy(policy_dir)
    eval_set = generate_eval_set(pack)
    items_path = write_items(eval_set.items, out_dir / "items.parquet")
    sample = stratified_sample(eval_set.items, per_cell)
    click.echo(f"policy {pack.id} {pack.version} ({pack.content_hash[:12]}): {len(eval_set.items)} items -> {items_path}")
    click.echo(f"measuring a stratified sample of {len(sample)} items ({per_cell} per category x expected behavior)")

    manifests = load_manifests(checkpoints_dir)
    grader = make_grader(DEFAULT_GRADER, pack=pack)
    grades_by_checkpoint = {}
    total_sent = 0
    with ExitStack() as stack:
        local = None
        if any(m.is_local for m in manifests):
            click.echo("starting the local model ...")
            local = stack.enter_context(LocalModelReplicas())
        for manifest in manifests:
            base_url = local.base_url if manifest.is_local and local else None
            with tqdm(total=len(sample), desc=manifest.id, unit="item", file=sys.stderr, leave=False) as bar:
                rows = run_checkpoint(sample, manifest, cache, progress=lambda row: bar.update(1), base_url=base_url)
            stats = RunStats.from_rows(rows)
            total_sent += stats.sent
            responses_path = write_parquet(rows, out_dir / f"responses-{manifest.id}.parquet", RESPONSE_SCHEMA)
            grades = grade_responses(pd.DataFrame(rows), grader, pack)
            if manifest.safeguards is not None:  # a system: the filters around the model decide what reaches the user
                grades = grade_with_safeguards(grades, manifest.safeguards, pack, cache=cache,
                                               base_url_for=lambda url: local.base_url if url == "local" and local else None)
            grades_path = write_parquet(grades, out_dir / f"grades-{manifest.id}.parquet", grade_schema_for(grades.columns))
            grades_by_checkpoint[manifest.id] = grades
            overall = metrics_report(grades)["overall"].iloc[0]
            click.echo(f"{manifest.id}: {stats.summary()}")
            click.echo(f"  under-refusal {_format_rate(overall, 'under_refusal')}   over-refusal {_format_rate(overall, 'over_refusal')}")
            click.echo(f"  {responses_path}\n  {grades_path}")

    ids = list(grades_by_checkpoint)
    if len(ids) >= 2:
        comparison = compare_checkpoints(grades_by_checkpoint[ids[0]], grades_by_checkpoint[ids[1]])
        o = comparison.overall
        click.echo(
            f"{ids[0]} vs {ids[1]}: {len(comparison.flipped)} items flipped "
            f"({o.b} regressed, {o.c} improved), McNemar exact p = {o.p_value:.3g}"
        )
    click.echo(
        ("no model calls: every response came from the cache" if total_sent == 0 else f"{total_sent} model calls")
        + f"; finished in {time.monotonic() - started:.0f}s; data in {out_dir}"
    )
