"""`policyeval respond`: run a checkpoint over eval items and write its responses as Parquet.

The checkpoint is a manifest (`--checkpoint`) or given inline (`--base-url`, `--model`,
...). Answers go to a content-addressed cache (`--cache`, default `.cache/responses` or
$POLICYEVAL_CACHE_DIR), so a killed run resumes where it stopped and a re-run with
nothing new makes no model calls.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import PolicyevalError
from ..generate import read_items
from ..records import RESPONSE_SCHEMA, EvalItem
from ..runs.cache import ResponseCache
from ..runs.manifest import CheckpointManifest, load_manifest
from ..runs.runner import RunTally, aiter_responses, run_blocking

DEFAULT_CACHE_DIR = Path(".cache") / "responses"
WRITE_BATCH_ROWS = 1000  # rows per Parquet row group; the most rows held before they are written


def _parse_param(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {value!r}", ctx=ctx, param=param)
        try:
            params[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            params[key.strip()] = raw
    return params


@click.command("respond")
@click.option("--items", "items_path", required=True, type=click.Path(path_type=Path),
              help="Eval items: Parquet from `generate`, or JSONL with `id` and `messages` or `prompt`.")
@click.option("--checkpoint", "manifest_path", type=click.Path(path_type=Path), help="Checkpoint manifest (YAML).")
@click.option("--base-url", help="OpenAI-compatible base URL (or `local`), instead of a manifest.")
@click.option("--model", help="Model name to ask for, with --base-url.")
@click.option("--checkpoint-id", help="Checkpoint id for --base-url runs (default: derived from --model).")
@click.option("--api-key-env", help="Name of the environment variable holding the API key.")
@click.option("--system-prompt", help="System prompt prepended to items that have none.")
@click.option("--param", "params", multiple=True, callback=_parse_param, metavar="KEY=VALUE",
              help="Sampling parameter, repeatable (e.g. --param temperature=0 --param max_tokens=256).")
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight at once.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), help="Seconds per request.")
@click.option("--max-retries", type=click.IntRange(0, 50), help="Retries per item on 429/5xx/timeouts.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path),
              help="Response cache folder (default: $POLICYEVAL_CACHE_DIR or .cache/responses).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="Output Parquet file.")
def respond(
    items_path: Path,
    manifest_path: Path | None,
    base_url: str | None,
    model: str | None,
    checkpoint_id: str | None,
    api_key_env: str | None,
    system_prompt: str | None,
    params: dict[str, Any],
    concurrency: int | None,
    timeout_s: float | None,
    max_retries: int | None,
    cache_dir: Path | None,
    no_cache: bool,
    out_path: Path,
) -> None:
    """Run a checkpoint on eval items and store its responses."""
    manifest = _manifest(
        manifest_path, base_url, model, checkpoint_id, api_key_env, system_prompt, params,
        concurrency, timeout_s, max_retries,
    )
    items = read_items(items_path)
    cache = None if no_cache else ResponseCache(_cache_root(cache_dir))

    started = time.perf_counter()
    tally = RunTally()
    run_blocking(lambda: _stream_responses(items, manifest, cache, out_path, tally))
    wall = time.perf_counter() - started

    stats = tally.stats()
    click.echo(f"{stats.summary()}, {wall:.1f}s -> {out_path}")
    if stats.sent and stats.errors == stats.sent and stats.from_cache == 0:
        raise PolicyevalError(
            f"every request to checkpoint {manifest.id} failed (first: {tally.first_error}); rows written to {out_path}"
        )


async def _stream_responses(
    items: list[EvalItem], manifest: CheckpointManifest, cache: ResponseCache | None, out_path: Path, tally: RunTally
) -> None:
    """Rows go to the Parquet file as they arrive, in item order; the file appears only if the run completes."""
    from tqdm import tqdm

    from ..tables import ParquetStreamWriter

    total = len(items)
    # Hand items to the runner one at a time and drop our references as they go: the rows carry
    # every item column, so the originals are not needed once their requests are built.
    pending = items[::-1]
    items.clear()

    def feed():
        while pending:
            yield pending.pop()

    # Bounded look-ahead: finished rows waiting behind a slow item stay few, so memory stays flat.
    window = max(4 * manifest.max_concurrency, 256)
    with tqdm(total=total, desc=manifest.id, unit="item", file=sys.stderr, dynamic_ncols=True) as bar, \
            ParquetStreamWriter(out_path, RESPONSE_SCHEMA, batch_size=WRITE_BATCH_ROWS) as writer:
        async for row in aiter_responses(feed(), manifest, cache, lambda row: bar.update(1), window=window):
            tally.add(row)
            writer.write(row)


def _manifest(
    manifest_path: Path | None,
    base_url: str | None,
    model: str | None,
    checkpoint_id: str | None,
    api_key_env: str | None,
    system_prompt: str | None,
    params: dict[str, Any],
    concurrency: int | None,
    timeout_s: float | None,
    max_retries: int | None,
) -> CheckpointManifest:
    # Load limits may be overridden on a manifest; what is asked may not, or the manifest would lie.
    limits = {
        key: value
        for key, value in (("max_concurrency", concurrency), ("timeout_s", timeout_s), ("max_retries", max_retries))
        if value is not None
    }
    if manifest_path is not None:
        inline = [name for name, value in (
            ("--base-url", base_url), ("--model", model), ("--checkpoint-id", checkpoint_id),
            ("--api-key-env", api_key_env), ("--system-prompt", system_prompt), ("--param", params),
        ) if value]
        if inline:
            raise click.UsageError(f"--checkpoint cannot be combined with {', '.join(inline)}; edit the manifest instead")
        manifest = load_manifest(manifest_path)
        if limits:
            updated = manifest.model_copy(update=limits)
            updated._source = manifest.source
            manifest = updated
        return manifest
    if not base_url:
        raise click.UsageError("give --checkpoint MANIFEST, or --base-url URL with --model NAME")
    if not model and base_url.strip() != "local":
        raise click.UsageError("--base-url needs --model")
    derived = re.sub(r"[^A-Za-z0-9._-]+", "-", model or "local").strip("-._")[:64] or "checkpoint"
    try:
        return CheckpointManifest(
            id=checkpoint_id or derived,
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            system_prompt=system_prompt,
            params=params,
            **limits,
        )
    except Exception as exc:  # pydantic ValidationError: report the first problem in one line
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "checkpoint"
            message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
            raise PolicyevalError(f"invalid checkpoint options: {field}: {message}") from None
        raise


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return cache_dir
    env = os.environ.get("POLICYEVAL_CACHE_DIR")
    return Path(env) if env else DEFAULT_CACHE_DIR
