"""`policyeval generate`: a policy pack (plus optional imports and synthesis) -> eval items Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError, PolicyevalError


@click.command()
@click.argument("pack", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where to write the items (Parquet).")
@click.option("--no-mutations", is_flag=True, help="Skip jailbreak-style mutations.")
@click.option("--max-mutations-per-item", type=click.IntRange(min=0), default=None,
              help="At most N of a category's mutation kinds per item (chosen by item id).")
@click.option("--xstest", "xstest_csv", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Import an XSTest prompts CSV (needs --xstest-mapping).")
@click.option("--xstest-mapping", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="YAML mapping of XSTest types onto the pack's categories.")
@click.option("--redteam", "redteam_jsonl", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="Import red-team findings (JSON Lines); repeatable.")
@click.option("--synth-base-url", default=None, help="OpenAI-compatible endpoint of the generator model.")
@click.option("--synth-model", default=None, help="Generator model name.")
@click.option("--synth-api-key-env", default=None, help="Environment variable holding the generator's API key.")
@click.option("--synth-per-side", type=click.IntRange(min=1), default=5, show_default=True,
              help="Requests to synthesize per category on each side of the boundary.")
@click.option("--no-dedupe", is_flag=True, help="Keep near-duplicates (exact repeats are always dropped).")
def generate(
    pack: Path, out: Path, no_mutations: bool, max_mutations_per_item: int | None,
    xstest_csv: Path | None, xstest_mapping: Path | None, redteam_jsonl: tuple[Path, ...],
    synth_base_url: str | None, synth_model: str | None, synth_api_key_env: str | None,
    synth_per_side: int, no_dedupe: bool,
) -> None:
    """Generate the eval set of the policy pack at PACK and write it to --out."""
    from ..generate import SynthesisConfig, generate_eval_set, import_redteam, import_xstest, write_items
    from ..policy import load_policy

    if out.suffix.lower() != ".parquet":
        raise InputError(out, "output must end in .parquet")
    if (xstest_csv is None) != (xstest_mapping is None):
        raise PolicyevalError("--xstest and --xstest-mapping go together")
    if (synth_base_url is None) != (synth_model is None):
        raise PolicyevalError("--synth-base-url and --synth-model go together")

    policy = load_policy(pack)
    extra = []
    dropped = {}
    if xstest_csv is not None:
        imported = import_xstest(xstest_csv, xstest_mapping, policy)
        extra.extend(imported.items)
        dropped = dict(imported.dropped)
    for path in redteam_jsonl:
        extra.extend(import_redteam(path, policy))
    synthesis = None
    if synth_base_url is not None:
        synthesis = SynthesisConfig(
            base_url=synth_base_url, model=synth_model, api_key_env=synth_api_key_env, n_per_side=synth_per_side,
        )

    result = generate_eval_set(
        policy,
        mutations=not no_mutations,
        max_mutations_per_item=max_mutations_per_item,
        synthesis=synthesis,
        dedupe=not no_dedupe,
        extra_items=extra,
        progress=True,
    )
    write_items(result.items, out)

    click.echo(f"{len(result.items)} items for policy {policy.id} {policy.version} "
               f"({policy.content_hash[:12]}) -> {out}\n")
    by_behavior = result.summary.groupby(["category_id", "expected_behavior"])["n"].sum()
    click.echo(_table(["category", "expected", "items"], [[c, e, str(int(n))] for (c, e), n in by_behavior.items()]))
    by_source = result.summary.groupby("source")["n"].sum()
    click.echo("\n" + _table(["source", "items"], [[s, str(int(n))] for s, n in by_source.items()]))
    click.echo("")
    if result.dedupe is not None:
        detail = ", ".join(f"{k} {v}" for k, v in result.dedupe.counts().items())
        click.echo(f"duplicates removed: {result.dedupe.count}" + (f" ({detail})" if detail else ""))
    if dropped:
        click.echo("xstest rows dropped (unmapped type): " + ", ".join(f"{t} {n}" for t, n in sorted(dropped.items())))
    if result.synthesis is not None:
        report = result.synthesis
        detail = ", ".join(f"{k} {v}" for k, v in sorted(report.rejected.items()))
        click.echo(f"synthesis ({report.model}): accepted {report.accepted}, rejected {report.rejected_total}"
                   + (f" ({detail})" if detail else ""))
        for error in report.errors:
            click.echo(f"  request failed: {error}", err=True)
    for shortfall in result.shortfalls:
        click.echo(f"warning: {shortfall}", err=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
