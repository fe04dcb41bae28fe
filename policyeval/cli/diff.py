"""`policyeval diff OLD NEW`: categories added, removed and changed, and what that invalidates."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..policy import load_policy
from ..policy.diff import diff_packs


@click.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-items", is_flag=True, help="Skip the item-level comparison of the two eval sets.")
def diff(old: Path, new: Path, as_json: bool, no_items: bool) -> None:
    """Compare two versions of a policy pack (two pack directories)."""
    result = diff_packs(load_policy(old, check_registry=False), load_policy(new, check_registry=False), with_items=not no_items)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"old: {result.old_version} ({result.old_hash[:12]})  new: {result.new_version} ({result.new_hash[:12]})")
    if result.identical:
        click.echo("identical content: nothing to recompute")
        return
    for cid in result.added:
        click.echo(f"+ {cid}: category added")
    for cid in result.removed:
        click.echo(f"- {cid}: category removed")
    for change in result.changed:
        moved = f" (moved {change.domain_from} -> {change.domain_to})" if change.domain_from != change.domain_to else ""
        click.echo(f"~ {change.category_id}: {', '.join(change.fields) or 'domain'} changed{moved}; invalidates {', '.join(change.effects)}")
        for detail in change.details[:12]:
            click.echo(f"    {detail}")
        if len(change.details) > 12:
            click.echo(f"    ... {len(change.details) - 12} more")
    for path in result.pack_changes:
        click.echo(f"~ pack.yaml: {path}")
    data = result.to_dict()["invalidated"]
    if not no_items:
        click.echo(
            f"items: +{data['responses_needed']} new (each needs a response and a grade), "
            f"-{data['grades_dropped']} removed"
        )
        for cid, ids in result.items_added.items():
            click.echo(f"    {cid}: +{len(ids)}")
        for cid, ids in result.items_removed.items():
            click.echo(f"    {cid}: -{len(ids)}")
    if result.judge_regrade:
        click.echo("judge grades to redo (rubric inputs changed): " + ", ".join(f"{k} ({v})" for k, v in result.judge_regrade.items()))
    else:
        click.echo("judge grades to redo: none")
