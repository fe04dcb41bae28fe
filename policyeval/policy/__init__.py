"""Policies as code: typed records, loading with line-accurate errors, validation,
version identity, the release registry and diffs."""

from .hashing import pack_content_hash
from .loader import load_policy, read_pack
from .model import (
    MUTATION_KINDS,
    SEVERITIES,
    Behavior,
    Boundary,
    Category,
    Domain,
    Example,
    Grading,
    PackHeader,
    PolicyPack,
    Proposition,
    Template,
    Thresholds,
)
from .problems import PolicyValidationError, Problem
from .registry import check_release, read_releases, release
from .validate import template_placeholders, validate_pack

__all__ = [
    "MUTATION_KINDS", "SEVERITIES", "Behavior", "Boundary", "Category", "Domain", "Example",
    "Grading", "PackHeader", "PolicyPack", "Proposition", "Template", "Thresholds",
    "PolicyValidationError", "Problem", "check_release", "load_policy", "pack_content_hash",
    "read_pack", "read_releases", "release", "template_placeholders", "validate_pack",
]
