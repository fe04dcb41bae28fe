"""The ambiguity queue: where the policy text can be read two ways, as clarification items.

Three detectors look for disagreement that the measurement cannot settle by itself:

* `graders`: two graders give the same response different behaviors or harm verdicts;
* `annotators`: the people labeling a response split without a clear majority;
* `flips`: the same response of the same checkpoint is graded differently under two
  policy versions (the response did not change, so the policy text did).

Each reports `Signal`s (`signals.py`); `queue.build_queue` groups them by category and
the boundary line(s) they concern (`boundary.py`) into `ClarificationItem`s, ordered by
how many measurements each touches. The report (`policyeval.reports.ambiguity`) shows
them with their boundary text, examples and disagreements.
"""

from .annotators import DEFAULT_MIN_MAJORITY, annotator_splits, is_split
from .boundary import BoundaryLine, boundary_lines, content_words, related_lines
from .flips import FlipScan, grade_flips
from .graders import grader_disagreements, second_grader_name, second_opinion
from .queue import QUEUE_COLUMNS, ClarificationItem, Example, build_queue, queue_table
from .signals import ANNOTATOR_SPLIT, GRADE_FLIP, GRADER_DISAGREEMENT, KIND_LABELS, KINDS, Measurement, Signal, Verdict

__all__ = [
    "ANNOTATOR_SPLIT", "DEFAULT_MIN_MAJORITY", "GRADER_DISAGREEMENT", "GRADE_FLIP", "KINDS", "KIND_LABELS", "QUEUE_COLUMNS",
    "BoundaryLine", "ClarificationItem", "Example", "FlipScan", "Measurement", "Signal", "Verdict",
    "annotator_splits", "boundary_lines", "build_queue", "content_words", "grade_flips", "grader_disagreements",
    "is_split", "queue_table", "related_lines", "second_grader_name", "second_opinion",
]
