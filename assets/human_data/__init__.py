"""Human data: labeling guidance, campaigns, annotations, agreement, adjudication, gold,
the learned grader trained on gold and its validation, with their check and sensors."""

from __future__ import annotations

from .automation import JOBS, SENSORS
from .campaigns import (
    adjudication_queue,
    annotations,
    annotator_agreement,
    gold_set,
    grader_validation,
    labeling_campaign,
    labeling_guidance,
    published_metrics,
)
from .grader_checks import grader_kappa_vs_gold
from .grader_model import grader_model

# `grader_model` is apart because `grades` reads it: the evaluation chain needs it even
# where the rest of the human data loop is left out.
GRADER_ASSETS = [grader_model]
CAMPAIGN_ASSETS = [labeling_guidance, labeling_campaign, annotations, annotator_agreement, adjudication_queue, gold_set,
                   grader_validation, published_metrics]
CHECKS = [grader_kappa_vs_gold]
SCHEDULES: list = []

__all__ = ["CAMPAIGN_ASSETS", "CHECKS", "GRADER_ASSETS", "JOBS", "SCHEDULES", "SENSORS"]
