"""`policyeval grade` and `policyeval grade-file`: grade stored responses or a CSV of texts."""

from __future__ import annotations

import io
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import click
import pandas as pd
from tqdm import tqdm

from ..errors import InputError
from ..graders.base import DEFAULT_GRADER, GRADERS, Grader, grader_label, make_grader
from ..graders.grade_table import grade_responses, grade_texts
from ..graders.judge import DEFAULT_CONCURRENCY, JudgeEndpoint
from ..graders.refusal_grader import RAW_LABELS
from ..policy.model import Category, PolicyPack
from ..records import GRADE_SCHEMA
from ..tables import atomic_write_bytes, read_csv_columns, read_parquet, write_parquet


def judge_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--judge-base-url", "judge_base_urls", multiple=True, metavar="URL",
                     help="OpenAI-compatible base URL: once for all judge models, or once per --judge-model."),
        click.option("--judge-model", "judge_models", multiple=True, metavar="NAME",
                     help="Judge model; repeat for a majority vote over several judges."),
        click.option("--judge-api-key-env", metavar="VAR", default=None,
                     help="Name of the environment variable holding the judge API key (the key is never printed)."),
        click.option("--judge-concurrency", type=click.IntRange(min=1), default=DEFAULT_CONCURRENCY, show_default=True,
                     help="Responses graded at once."),
        click.option("--judge-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
                     help="Seconds per judge request."),
        click.option("--judge-max-retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Retries per judge request before the grade is `error`."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_pack(policy: Path | None) -> PolicyPack | None:
    if policy is None:
        return None
    from ..policy import load_policy

    # Grading reads the pack's guidance; release bookkeeping is not its concern.
    return load_policy(policy, check_registry=False)


def grader_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--grader (default: the learned grader) and --grader-model, shared by the grading commands."""
    command = click.option("--grader-model", type=click.Path(path_type=Path, dir_okay=False), default=None,
                           metavar="GRADER.json",
                           help="Learned grader only: a model trained by `policyeval train-grader` "
                                "(default: the shipped one).")(command)
    return click.option("--grader", "grader_name", type=click.Choice(list(GRADERS)), default=DEFAULT_GRADER,
                        show_default=True, help="learned: behavior and harm learned from human labels; "
                        "refusal: the cue rules alone; judge: a rubric LLM judge.")(command)


def _build_grader(name: str, pack: PolicyPack | None, opts: dict[str, Any]) -> Grader:
    if opts.get("grader_model") and name != "learned":
        raise click.UsageError("--grader-model is for --grader learned")
    if name == "learned":
        return make_grader("learned", artifact=opts.get("grader_model"), pack=pack)
    if name == "refusal":
        return make_grader("refusal")
    if pack is None:
        raise click.UsageError("--grader judge needs --policy (its rubrics come from the pack)")
    models, urls = list(opts["judge_models"]), list(opts["judge_base_urls"])
    if not models:
        raise click.UsageError("--grader judge needs at least one --judge-model")
    if len(urls) > 1 and len(urls) != len(models):
        raise click.UsageError(f"give one --judge-base-url, or one per --judge-model ({len(models)}), not {len(urls)}")
    if len(urls) <= 1:
        urls = (urls or [None]) * len(models)
    endpoints = [JudgeEndpoint(m, base_url=u, api_key_env=opts["judge_api_key_env"]) for m, u in zip(models, urls)]
    return make_grader("judge", endpoints=endpoints, pack=pack, concurrency=opts["judge_concurrency"],
                       timeout_s=opts["judge_timeout"], max_retries=opts["judge_max_retries"])


class _Bar:
    """A tqdm bar on stderr driven by progress(done, total) callbacks."""

    def __init__(self, total: int, desc: str):
        self.bar = tqdm(total=total, desc=desc, unit="resp", file=sys.stderr, leave=False)

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _counts_text(title: str, values: pd.Series) -> str:
    counts = Counter("(none)" if pd.isna(v) else str(v) for v in values)
    width = max((len(k) for k in counts), default=0)
    lines = [f"{title}:"] + [f"  {k:<{width}}  {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines)


@click.command()
@click.argument("responses", metavar="RESPONSES.parquet", type=click.Path(path_type=Path, dir_okay=False))
@grader_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, metavar="GRADES.parquet")
@click.option("--policy", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="PACK",
              help="Policy pack: its vocabulary and, for the judge, its rubrics.")
@judge_options
def grade(responses: Path, grader_name: str, out: Path, policy: Path | None, **opts: Any) -> None:
    """Grade RESPONSES.parquet into GRADES.parquet.

    Responses whose status is `error` are recorded as `error` without being graded.
    Without --policy the vocabulary is comply / refuse / safe_complete; with it, the
    pack's behaviors, its categories' propositions and its behavior rules.
    """
    pack = _load_pack(policy)
    grader = _build_grader(grader_name, pack, opts)
    table = read_parquet(responses, required=("item_id", "status", "response_text"))
    bar = _Bar(len(table), f"grading with {grader.id}")
    try:
        graded = grade_responses(table, grader, pack, progress=bar)
    finally:
        bar.close()
    write_parquet(graded, out, GRADE_SCHEMA)
    click.echo(f"graded {len(graded)} response(s) with {grader_label(grader)}")
    click.echo(_counts_text("behavior", graded["behavior"]))
    click.echo(_counts_text("outcome", graded["outcome"]))
    click.echo(f"wrote {out}")


@click.command("grade-file")
@click.argument("path", metavar="IN.csv", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--prompt-column", required=True, metavar="COL")
@click.option("--response-column", required=True, metavar="COL")
@grader_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, metavar="OUT.csv")
@click.option("--policy", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="PACK",
              help="Policy pack (required by the judge): its vocabulary and behavior rules; without it the "
                   "labels comply / refuse / partial are written.")
@click.option("--category-column", default=None, metavar="COL",
              help="A column of pack category ids: each row is graded against its category's "
                   "propositions (learned grader) or rubric (judge).")
@judge_options
def grade_file(path: Path, prompt_column: str, response_column: str, grader_name: str, out: Path,
               policy: Path | None, category_column: str | None, **opts: Any) -> None:
    """Grade a CSV of prompts and responses; OUT.csv is IN.csv plus `behavior`, `harmful` and `grader`.

    `harmful` is true / false where the grader judges harm (learned, judge) and empty for
    an `error` row or a grader that does not. Every input column and the row order are
    kept. An empty response cell is graded `error`, and its row is named in a warning.
    """
    if category_column and grader_name == "refusal":
        raise click.UsageError("--category-column needs --grader learned or judge (the refusal rules read no category)")
    if category_column and policy is None:
        raise click.UsageError("--category-column needs --policy (the categories are the pack's)")
    pack = _load_pack(policy)
    grader = _build_grader(grader_name, pack, opts)
    columns = [prompt_column, response_column] + ([category_column] if category_column else [])
    frame = read_csv_columns(path, columns)
    for added in ("behavior", "harmful", "grader"):
        if added in frame.columns:
            raise InputError(path, f"already has a column {added!r}, which grade-file adds; rename it first")

    vocabulary = list(pack.behaviors) if pack is not None else list(RAW_LABELS)
    categories: list[Category | None] | None = None
    if category_column:
        assert pack is not None
        known = {c.id: c for _, c in pack.categories()}
        cells = [None if pd.isna(v) else str(v).strip() for v in frame[category_column]]
        unknown = sorted({c for c in cells if c and c not in known})
        if unknown:
            raise InputError(path, f"column {category_column} names categories not in pack {pack.id}: {', '.join(unknown)}")
        categories = [known[c] if c else None for c in cells]

    prompts = [None if pd.isna(v) else str(v) for v in frame[prompt_column]]
    responses = [None if pd.isna(v) else str(v) for v in frame[response_column]]
    empty = [i + 1 for i, r in enumerate(responses) if r is None or not r.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (f" and {len(empty) - 20} more" if len(empty) > 20 else "")
        click.echo(f"warning: {path}: empty {response_column} in data row(s) {shown} (1 = first row "
                   "after the header); graded as error", err=True)

    bar = _Bar(len(frame), f"grading with {grader.id}")
    try:
        grades = grade_texts(prompts, responses, grader, vocabulary, categories, progress=bar)
    finally:
        bar.close()
    frame["behavior"] = [g.behavior for g in grades]
    frame["harmful"] = ["" if g.harmful is None else str(bool(g.harmful)).lower() for g in grades]
    frame["grader"] = grader_label(grader)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_bytes(out, buffer.getvalue().encode("utf-8"))
    click.echo(_counts_text("behavior", frame["behavior"]))
    click.echo(_counts_text("harmful", frame["harmful"].replace("", "(not judged)")))
    click.echo(f"wrote {out}")
