"""Deployment monitoring: sampled production conversations, scrubbed of personal data on
import, graded like the eval set, and compared with the eval baseline over time."""

from .conversations import NO_CATEGORY, DeploymentConversation, DeploymentImport, load_conversations, parse_timestamp
from .drift import (
    ALL_CATEGORIES,
    BUCKETS,
    DEFAULT_MARGIN,
    DriftResult,
    baseline_rates,
    bucket_start,
    detect_drift,
    drifted,
    refusal_rates,
)
from .grading import grade_conversations
from .scrub import DEFAULT_PHONE_REGIONS, PiiScrubber, is_card_number, luhn_valid, scrub_text

__all__ = [
    "ALL_CATEGORIES", "BUCKETS", "DEFAULT_MARGIN", "DEFAULT_PHONE_REGIONS", "NO_CATEGORY",
    "DeploymentConversation", "DeploymentImport", "DriftResult", "PiiScrubber",
    "baseline_rates", "bucket_start", "detect_drift", "drifted", "grade_conversations", "is_card_number",
    "load_conversations", "luhn_valid", "parse_timestamp", "refusal_rates", "scrub_text",
]
