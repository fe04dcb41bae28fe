"""`policyeval validate PACK` and `policyeval release PACK`."""

from __future__ import annotations

from pathlib import Path

import click

from ..policy import release as record_release
from ..policy import validate_pack


@click.command()
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--release", "do_release", is_flag=True, help="If valid, record this version label and content hash in releases.yaml.")
@click.option("--with", "extra_domains", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="A domain file to check as part of the pack (repeatable), e.g. a draft category the emerging-risk "
                   "report proposed; the release registry is then not consulted, since pack and proposal are not a release.")
@click.pass_context
def validate(ctx: click.Context, pack: Path, strict: bool, do_release: bool, extra_domains: tuple[Path, ...] = ()) -> None:
    """Check a policy pack's schema and meaning; report every problem at once.

    Each problem names its file, line and field path. Exits 1 on any error.
    """
    if extra_domains and do_release:
        raise click.UsageError("--with checks a proposal; it cannot be released (add the files to the pack first)")
    loaded, problems = validate_pack(pack, check_registry=not extra_domains, extra_domains=extra_domains)
    errors = [p for p in problems if p.severity == "error" or strict]
    for problem in problems:
        click.echo(str(problem), err=True)
    if errors or loaded is None:
        click.echo(f"{pack}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)", err=True)
        ctx.exit(1)
    assert loaded is not None
    categories = loaded.categories()
    drafts = loaded.drafts()
    click.echo(
        f"{pack}{''.join(f' + {p}' for p in extra_domains)}: valid: {loaded.id} version {loaded.version}, "
        f"content hash {loaded.content_hash[:12]}, {len(loaded.domains)} domains, {len(categories)} categories"
        + (f", {len(drafts)} draft(s): {', '.join(c.id for _, c in drafts)}" if drafts else "")
        + (f", {len(problems)} warning(s)" if problems else "")
    )
    if do_release:
        entry = record_release(loaded)
        click.echo(f"released {entry.version} = {entry.content_hash[:12]} ({entry.released_at})")


@click.command()
@click.argument("pack", type=click.Path(path_type=Path))
@click.pass_context
def release(ctx: click.Context, pack: Path) -> None:
    """Record the pack's version label and content hash in its releases.yaml.

    A released label is immutable: releasing changed content under the same label fails.
    """
    ctx.invoke(validate, pack=pack, strict=False, do_release=True)
