"""`policyeval respond`: run a checkpoint over eval items and write its responses as Parquet.

The checkpoint is a manifest (`--checkpoint`) or given inline (`--base-url`, `--model`,
...). Answers go to a content-addressed cache (`--cache`, default `.cache/responses` or
$POLICYEVAL_CACHE_DIR), so a killed run resumes where it stopped and a re-run with
nothing new makes no model calls.

Items are read twice, as a stream: a first pass checks the whole file (so a bad line
ends the command before any model call, with nothing written) and counts it; the second
feeds the runner. Rows stream out to Parquet in batches. Memory does not grow with the
number of items.

A failed run never destroys a good output: the new table is written beside the target
and put in its place only if it has no more error rows than the table already there;
otherwise it lands at `NAME.incomplete.parquet` and the old one stays. Exit codes:
0 every item answered, 1 bad input or usage (nothing written), 2 partial (written, some
items are errors), 3 output kept (the new run was worse; written beside it).
"""

from __future__ import annotations

import os
import re
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterator

import click
import yaml

from ..errors import InputError, PolicyevalError
from ..records import RESPONSE_SCHEMA, EvalItem
from ..runs.cache import ResponseCache
from ..runs.manifest import CheckpointManifest, load_manifest
from ..runs.runner import OK, RunTally, aiter_responses, run_blocking

DEFAULT_CACHE_DIR = Path(".cache") / "responses"
WRITE_BATCH_ROWS = 1000  # rows per Parquet row group; the most rows held before they are written
READ_BATCH_ROWS = 1024  # Parquet item rows decoded at a time


class Exit(IntEnum):
    """What `policyeval respond` exits with."""

    OK = 0  # every item answered
    USAGE = 1  # bad input or usage: nothing written
    PARTIAL = 2  # output written, but some items are errors (or content_filtered)
    KEPT = 3  # the target had fewer errors than this run: it is kept, this run is written beside it


class _Command(click.Command):
    """Usage errors exit 1 like any other bad input: click's own 2 means a partial run here."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = Exit.USAGE
            raise


def _usage(message: str) -> click.UsageError:
    exc = click.UsageError(message)
    exc.exit_code = Exit.USAGE
    return exc


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


@click.command("respond", cls=_Command)
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
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Output Parquet file (kept if this run has more errors than it; see exit codes).")
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
) -> int:
    """Run a checkpoint on eval items and store its responses.

    Exit status: 0 every item answered; 1 bad input or usage (nothing written); 2 partial
    (output written, some items are errors); 3 output kept (this run had more errors than
    the existing --out file, which is left as it was; this run is written beside it as
    NAME.incomplete.parquet).
    """
    manifest = _manifest(
        manifest_path, base_url, model, checkpoint_id, api_key_env, system_prompt, params,
        concurrency, timeout_s, max_retries,
    )
    if out_path.is_dir():
        raise _usage(f"--out {out_path} is a folder; give a file name")
    total = count_items(items_path)
    cache = None if no_cache else ResponseCache(_cache_root(cache_dir))

    started = time.perf_counter()
    tally = RunTally()
    verdict: dict[str, Any] = {}
    run_blocking(lambda: _stream_responses(items_path, total, manifest, cache, out_path, tally, verdict))
    wall = time.perf_counter() - started

    stats = tally.stats()
    written = verdict["written"]
    click.echo(f"{stats.summary()}, {wall:.1f}s -> {written}")
    if written != out_path:
        click.echo(
            f"kept: {out_path} has {_rows(verdict['existing_errors'])} with errors, this run {stats.errors} "
            f"(first: {tally.first_error}); this run's rows are in {written}",
            err=True,
        )
        return Exit.KEPT
    if stats.errors:
        if stats.errors == stats.requested:
            click.echo(
                f"partial: every request to checkpoint {manifest.id} failed (first: {tally.first_error}); "
                f"rows written to {out_path}",
                err=True,
            )
        else:
            again = "; a re-run asks only for those" if cache is not None else ""
            click.echo(
                f"partial: {stats.errors} of {stats.requested} items are errors (first: {tally.first_error}){again}",
                err=True,
            )
        return Exit.PARTIAL
    return Exit.OK


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


async def _stream_responses(
    items_path: Path,
    total: int,
    manifest: CheckpointManifest,
    cache: ResponseCache | None,
    out_path: Path,
    tally: RunTally,
    verdict: dict[str, Any],
) -> None:
    """Rows go to a temporary Parquet file beside the target as they arrive, in item order.

    Only when the run is complete is the file given its name: the target, or
    `NAME.incomplete.parquet` when the target already holds fewer error rows.
    """
    from tqdm import tqdm

    from ..tables import ParquetStreamWriter

    # Bounded look-ahead: finished rows waiting behind a slow item stay few, so memory stays flat.
    window = max(4 * manifest.max_concurrency, 256)
    with tqdm(total=total, desc=manifest.id, unit="item", file=sys.stderr, dynamic_ncols=True) as bar, \
            ParquetStreamWriter(out_path, RESPONSE_SCHEMA, batch_size=WRITE_BATCH_ROWS) as writer:
        rows = aiter_responses(iter_items(items_path), manifest, cache, lambda row: bar.update(1), window=window)
        async for row in rows:
            tally.add(row)
            writer.write(row)
        existing = _error_rows(out_path)
        verdict["existing_errors"] = existing
        if existing is not None and tally.errors > existing:
            writer.path = incomplete_path(out_path)  # the rename at close puts it beside the target
        verdict["written"] = writer.path


def incomplete_path(out_path: Path) -> Path:
    """Where a run worse than the existing output is written: `X.parquet` -> `X.incomplete.parquet`."""
    suffix = out_path.suffix or ".parquet"
    stem = out_path.name[: -len(out_path.suffix)] if out_path.suffix else out_path.name
    return out_path.with_name(f"{stem}.incomplete{suffix}")


def _error_rows(path: Path) -> int | None:
    """Rows of an existing responses table whose status is not ok; None when there is no readable one."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        statuses = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    except Exception:  # not a responses table: nothing good to protect
        return None
    return sum(1 for status in statuses if status != OK)


# ---------------------------------------------------------------------------
# Items, streamed




def count_items(path: str | os.PathLike) -> int:
    """Check a whole items file without keeping its items; the number of items.

    The same checks and messages as `policyeval.generate.read_items`, plus every id seen
    (duplicates are found here, before any request).
    """
    seen: dict[str, int] = {}
    count = 0
    for count, _ in enumerate(_items(Path(path), seen, build=False), start=1):
        pass
    if not count:
        raise InputError(path, "no items")
    return count


def iter_items(path: str | os.PathLike) -> Iterator[EvalItem]:
    """The items of a file checked by `count_items`, one at a time."""
    return _items(Path(path), None)


def _items(path: Path, seen: dict[str, int] | None, build: bool = True) -> Iterator[EvalItem | None]:
    """Items of a file, each checked; with `build=False` only checked (None for each)."""
    from ..generate.eval_set import PARQUET, items_file_kind

    return _parquet_items(path, seen, build) if items_file_kind(path) == PARQUET else _jsonl_items(path, seen, build)


def _parquet_items(path: Path, seen: dict[str, int] | None, build: bool) -> Iterator[EvalItem | None]:
    import pyarrow.parquet as pq

    from ..generate.eval_set import ITEM_COLUMNS, parquet_row_item

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(path, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
    names = parquet.schema_arrow.names
    missing = [c for c in ("item_id", "messages") if c not in names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}")
    batches = parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=[c for c in names if c in ITEM_COLUMNS])
    number = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(path, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
        for row in batch.to_pylist():
            number += 1
            yield parquet_row_item(path, number, row, seen, build)


def _jsonl_items(path: Path, seen: dict[str, int] | None, build: bool) -> Iterator[EvalItem | None]:
    from ..generate.eval_set import iter_jsonl_items

    return iter_jsonl_items(path, seen, build)


# ---------------------------------------------------------------------------
# The checkpoint


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
            raise _usage(f"--checkpoint cannot be combined with {', '.join(inline)}; edit the manifest instead")
        manifest = load_manifest(manifest_path)
        if limits:
            updated = manifest.model_copy(update=limits)
            updated._source = manifest.source
            manifest = updated
        return manifest
    if not base_url:
        raise _usage("give --checkpoint MANIFEST, or --base-url URL with --model NAME")
    if not model and base_url.strip() != "local":
        raise _usage("--base-url needs --model")
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
