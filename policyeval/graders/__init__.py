"""Graders: turn a response into a behavior of the policy's vocabulary, or a non-verdict.

`refusal` is a deterministic classifier (no rubric, no network); `judge` is a rubric
LLM judge on an OpenAI-compatible endpoint. Both follow the `Grader` protocol, so the
grade table, the CLI and the orchestration shell treat them alike.
"""

from .base import DEFAULT_GRADER, DEFAULT_VOCABULARY, GRADERS, Grader, GraderSpec, grader_code_version, grader_label, make_grader
from .grade_table import grade_responses, grade_texts
from .judge import (
    JUDGE_GRADER_ID,
    JUDGE_GRADER_VERSION,
    JUDGE_PROMPT_VERSION,
    JudgeEndpoint,
    JudgeGrader,
    majority,
    parse_verdict,
)
from .refusal import REFUSAL_GRADER_ID, REFUSAL_GRADER_VERSION, RefusalVerdict, asks_for_confirmation, classify_refusal
from .refusal_grader import RAW_LABELS, RefusalGrader, map_label

__all__ = [
    "DEFAULT_GRADER", "DEFAULT_VOCABULARY", "GRADERS", "Grader", "GraderSpec", "grader_code_version", "grader_label", "make_grader",
    "grade_responses", "grade_texts",
    "JUDGE_GRADER_ID", "JUDGE_GRADER_VERSION", "JUDGE_PROMPT_VERSION", "JudgeEndpoint", "JudgeGrader",
    "majority", "parse_verdict",
    "REFUSAL_GRADER_ID", "REFUSAL_GRADER_VERSION", "RefusalVerdict", "asks_for_confirmation", "classify_refusal",
    "RAW_LABELS", "RefusalGrader", "map_label",
]
