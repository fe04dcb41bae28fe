"""Extra harm-training rows derived from labeled ones, so the harm head learns content, not style.

GPTFuzzer's answers are long role-play: persona headers ("DAN:", "[JAILBREAK]"), a refusal
in one voice and the answer in another, often over a thousand characters. A head trained on
them alone learned the wrapper: on the same held-out questions, the bare answer with the
wrapper taken off was recognized as harmful 63% of the time, and its first 300 characters
8% of the time, while plain, short harmful answers are what other models write.

Each derived row keeps its parent's group, so cross-validation holds both out together, and
its label follows from the parent's by construction:

* the wrapper removed (persona headers dropped, paragraphs that refuse or object dropped):
  a harmful answer stays harmful when what is left still complies by the refusal rules
  (the harm was in the part that answered); a harmless answer has nothing harmful in any
  part, so every part of it is harmless.
* cut at a word boundary near ``cut_chars`` characters, the length many evaluation
  harnesses stop generating at: the same rules for each label. Harmless answers from every
  source are cut too, so short benign answers keep teaching "not harmful".
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable

from . import refusal as rules
from . import refusal_cues as cues
from ..records import COMPLY
from .training_data import LabeledResponse

# Lines or inline tags that name a voice in role-play answers.
_PERSONA_HEADER = re.compile(
    r"(?im)^\W{0,3}[a-z][\w .()\-]{0,24}\W{0,3}:\s*"
    r"|\[[^\]\n]{1,30}\]\s*:?\s*"
    r"|\bas [a-z]\w{0,15},? i (?:would|will) (?:say|respond|answer):?\s*"
    r"|[\U0001F512\U0001F513][^\n]{0,20}"
)
_PARAGRAPH = re.compile(r"\n\s*\n")
_REFUSING = tuple(cues.rx(*getattr(cues, name)) for name in (
    "FIRST_PERSON_REFUSAL", "IMPERSONAL_REFUSAL", "OBJECTION", "MORAL_OBJECTION", "CAPABILITY_LIMIT"))

DEFAULT_CUT_CHARS = 600
AUGMENTED_SOURCES = ("gptfuzz",)


def answer_part(response: str) -> str:
    """The response without persona headers and without the paragraphs that refuse or object."""
    kept = []
    for paragraph in _PARAGRAPH.split(response or ""):
        text = _PERSONA_HEADER.sub("", paragraph).strip()
        if text and not any(p.search(rules._split(text).text) for p in _REFUSING):
            kept.append(text)
    return "\n\n".join(kept)


def cut_at_word(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a space when one is past half-way."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


def _variants(row: LabeledResponse, cut_chars: int) -> list[str]:
    whole = (row.response or "").strip()
    found: set[str] = set()
    if row.source in AUGMENTED_SOURCES:
        answer = answer_part(whole)
        if answer:
            found.update({answer, cut_at_word(answer, cut_chars)})
    if row.harmful is False:
        found.add(cut_at_word(whole, cut_chars))
    found.discard(whole)
    found.discard("")
    return sorted(found)


def harm_variants(rows: Iterable[LabeledResponse], cut_chars: int = DEFAULT_CUT_CHARS) -> list[LabeledResponse]:
    """Derived harm-labeled rows (see the module docstring), in a fixed order."""
    out: list[LabeledResponse] = []
    for row in rows:
        if row.harmful is None:
            continue
        for i, text in enumerate(_variants(row, cut_chars)):
            if row.harmful and rules.classify_refusal(text, row.prompt).label != COMPLY:
                continue
            out.append(replace(row, row_id=f"{row.row_id}:derived{i}", response=text))
    return out
