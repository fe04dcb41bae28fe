"""Grader validation: how far a grader's verdicts can be trusted, and what that does to a rate.

`validate_grader` scores a grader against human labels (accuracy, Cohen's kappa,
confusion, per-behavior sensitivity and specificity); `corrected_rate` undoes the
grader's measured error in an observed rate (Rogan-Gladen) with an interval that also
carries the gold set's uncertainty; label maps read gold sets labeled in other schemes.
"""

from .correction import DECIDING_BEHAVIOR, CorrectedRate, corrected_columns, corrected_rate, corrected_rate_for, rogan_gladen
from .grader_validation import CategoryAgreement, Detection, GraderValidation, detection, validate_grader
from .label_map import load_label_map, map_gold_labels

__all__ = [
    "DECIDING_BEHAVIOR", "CategoryAgreement", "CorrectedRate", "Detection", "GraderValidation",
    "corrected_columns", "corrected_rate", "corrected_rate_for", "detection", "load_label_map", "map_gold_labels",
    "rogan_gladen", "validate_grader",
]
