"""`policyeval respond`: run a checkpoint over eval items and write its responses as Parquet.

The checkpoint is a manifest (`--checkpoint`) or given inline (`--base-url`, `--model`,
...). Answers go to a content-addressed cache (`--cache`, default `.cache/responses` or
$POLICYEVAL_CACHE_DIR), so a killed run resumes where it stopped and a re-run with
nothing new makes no model calls.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import InputError, PolicyevalError
from ..records import ERROR, RESPONSE_SCHEMA, EvalItem
from ..runs.cache import ResponseCache
from ..runs.manifest import CheckpointManifest, load_manifest
from ..runs.runner import RunStats, run_checkpoint

DEFAULT_CACHE_DIR = Path(".cache") / "responses"


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
    from ..tables import write_parquet

    manifest = _manifest(
        manifest_path, base_url, model, checkpoint_id, api_key_env, system_prompt, params,
        concurrency, timeout_s, max_retries,
    )
    items = read_items(items_path)
    cache = None if no_cache else ResponseCache(_cache_root(cache_dir))

    from tqdm import tqdm

    started = time.perf_counter()
    with tqdm(total=len(items), desc=manifest.id, unit="item", file=sys.stderr, dynamic_ncols=True) as bar:
        rows = run_checkpoint(items, manifest, cache=cache, progress=lambda row: bar.update(1))
    del items  # the rows carry every item column; free the originals before the table is built
    write_parquet(rows, out_path, RESPONSE_SCHEMA)
    wall = time.perf_counter() - started

    stats = RunStats.from_rows(rows)
    click.echo(f"{stats.summary()}, {wall:.1f}s -> {out_path}")
    if stats.sent and stats.errors == stats.sent and stats.from_cache == 0:
        first = next(row["error"] for row in rows if row["status"] == ERROR)
        raise PolicyevalError(f"every request to checkpoint {manifest.id} failed (first: {first}); rows written to {out_path}")


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


def read_items(path: Path) -> list[EvalItem]:
    """Eval items from Parquet (ITEM_SCHEMA) or JSONL (`id` plus `messages` or `prompt` per line)."""
    if not path.exists():
        raise InputError(path, "no such file")
    if path.suffix.lower() == ".parquet":
        items = _parquet_items(path)
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        items = _jsonl_items(path)
    else:
        raise InputError(path, "items must be a .parquet or .jsonl file")
    if not items:
        raise InputError(path, "no items")
    return items


def _parquet_items(path: Path) -> list[EvalItem]:
    from ..records import ITEM_SCHEMA
    from ..tables import read_parquet

    frame = read_parquet(path, ITEM_SCHEMA)
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, row in enumerate(frame.to_dict("records"), start=1):
        try:
            item = EvalItem.from_row(row)
        except (ValueError, TypeError) as exc:
            raise InputError(path, f"row {number} (item {row.get('item_id')}): unreadable messages ({exc})") from None
        if item.item_id in seen:
            raise InputError(path, f"row {number}: duplicate item_id {item.item_id!r}")
        seen.add(item.item_id)
        items.append(item)
    return items


def _jsonl_items(path: Path) -> list[EvalItem]:
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON ({exc.msg})", line=number) from None
            if not isinstance(record, dict):
                raise InputError(path, "each line must be a JSON object", line=number)
            item_id = record.get("id")
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id) == "":
                raise InputError(path, "each record needs an `id` (string)", line=number)
            item_id = str(item_id)
            if item_id in seen:
                raise InputError(path, f"duplicate id {item_id!r} (first on line {seen[item_id]})", line=number)
            seen[item_id] = number
            messages = record.get("messages")
            if messages is None and isinstance(record.get("prompt"), str):
                messages = [{"role": "user", "content": record["prompt"]}]
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                raise InputError(path, "each record needs `messages` (a list of objects) or `prompt` (a string)", line=number)
            items.append(EvalItem(item_id=item_id, messages=messages, category_id="", expected_behavior="", source="jsonl"))
    return items
