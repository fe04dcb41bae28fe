"""The human-labeled responses the default grader learns from, shipped with their licenses.

Three public sets (see README.md beside this file for provenance and terms):

* ``xstest``: GPT-4 and Llama-2 answers to the 450 XSTest prompts, labeled comply /
  refuse / partial by two annotators and adjudicated. Harm is derived: complying with a
  prompt the suite marks unsafe is harmful, an answer to a safe prompt is not.
* ``gptfuzz``: 6,160 answers of several chat models to jailbreak-templated harmful
  questions, labeled 1 when the answer does what the harmful question asked. That is the
  harm axis; an answer labeled 1 also complied.
* ``rbr_gold``: 351 conversations with 23 hand-labeled propositions each;
  ``fully_complies`` gives the behavior, ``disallowed_content`` the harm, and the ideal
  ``response_type`` whether the request itself was harmful.

Every row is a `LabeledResponse` with a ``group`` (the model for XSTest, the question
for GPTFuzzer, the prompt for RBR), so cross-validation can hold out a model, a question
or a whole source at a time.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...errors import InputError
from ...records import COMPLY, PARTIAL, REFUSE, content_hash

DATA_DIR = Path(__file__).resolve().parent

XSTEST_LABELS = {"1_full_compliance": COMPLY, "2_full_refusal": REFUSE, "3_partial_refusal": PARTIAL}
XSTEST_MODELS = ("gpt4", "llama2orig")
SOURCES = ("xstest", "gptfuzz", "rbr_gold")


@dataclass(frozen=True)
class LabeledResponse:
    """One human-labeled (prompt, response); a label is None where the source does not say."""

    source: str  # xstest | gptfuzz | rbr_gold
    group: str  # the unit to hold out together: model, question or prompt
    row_id: str
    prompt: str
    response: str
    behavior: str | None  # comply | refuse | partial
    harmful: bool | None
    model: str = ""  # the answering model, where the source names it


def _read_text(path: Path) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(path, f"cannot read training data: {exc}") from exc


def load_xstest(folder: Path = DATA_DIR / "xstest") -> list[LabeledResponse]:
    rows: list[LabeledResponse] = []
    for model in XSTEST_MODELS:
        path = folder / f"xstest_v2_completions_{model}.csv.gz"
        for line, row in enumerate(csv.DictReader(io.StringIO(_read_text(path), newline="")), start=2):
            label = XSTEST_LABELS.get(row.get("final_label", ""))
            if label is None:
                raise InputError(path, f"unknown final_label {row.get('final_label')!r}", line)
            unsafe = row["type"].startswith("contrast_")
            rows.append(LabeledResponse(
                source="xstest", group=f"xstest:{model}", row_id=f"{model}:{row['id']}",
                prompt=row["prompt"], response=row["completion"], behavior=label,
                harmful=unsafe and label == COMPLY, model=model))
    return rows


def load_gptfuzz(folder: Path = DATA_DIR / "gptfuzz") -> list[LabeledResponse]:
    questions_path = folder / "question_list.csv"
    questions = {r["index"]: r["text"] for r in csv.DictReader(io.StringIO(_read_text(questions_path), newline=""))}
    path = folder / "train.csv.gz"
    rows: list[LabeledResponse] = []
    for line, row in enumerate(csv.DictReader(io.StringIO(_read_text(path), newline="")), start=2):
        question = row.get("question", "")
        if question not in questions or row.get("label") not in ("0", "1"):
            raise InputError(path, f"row with question {question!r} and label {row.get('label')!r}", line)
        harmful = row["label"] == "1"
        rows.append(LabeledResponse(
            source="gptfuzz", group=f"gptfuzz:q{question}", row_id=f"gptfuzz:{line}",
            prompt=questions[question], response=row["Response"],
            behavior=COMPLY if harmful else None, harmful=harmful))
    return rows


def _literal(value: object) -> object:
    """rbr_gold stores some fields as Python-literal strings: parse, never evaluate."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def _chat_text(messages: object) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return ""


def load_rbr_gold(folder: Path = DATA_DIR / "rbr_gold") -> list[LabeledResponse]:
    path = folder / "train.jsonl.gz"
    rows: list[LabeledResponse] = []
    for line, text in enumerate(_read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            prompt_messages = _literal(record["prompt"])
            completion = _literal(record["completion"])
            props = _literal(record["propositions"])
        except (ValueError, SyntaxError, KeyError, TypeError) as exc:
            raise InputError(path, f"malformed record: {exc}", line) from exc
        user_turns = [m for m in prompt_messages if isinstance(m, dict) and m.get("role") == "user"]
        prompt = str(user_turns[-1].get("content", "")) if user_turns else _chat_text(prompt_messages)
        behavior = COMPLY if props.get("fully_complies") else (
            REFUSE if not props.get("partially_complies") else None)
        rows.append(LabeledResponse(
            source="rbr_gold", group=f"rbr_gold:{content_hash(prompt, 8)}", row_id=f"rbr_gold:{line}",
            prompt=prompt, response=_chat_text(completion), behavior=behavior,
            harmful=bool(props.get("disallowed_content"))))
    return rows


@lru_cache(maxsize=1)
def load_shipped() -> tuple[LabeledResponse, ...]:
    """Every shipped labeled row, in a fixed order (the training set of the default grader)."""
    return tuple(load_xstest() + load_gptfuzz() + load_rbr_gold())
