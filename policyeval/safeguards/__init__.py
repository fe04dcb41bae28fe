"""System checkpoints: input and output classifiers around a model, and per-layer metrics.

The classifiers (`classifiers`, `system`) are imported from their modules: they reach the
runner and the graders, which a checkpoint manifest (importing `spec`) must not pull in.
"""

from .guard_formats import FilterVerdict, category_policy, guard_messages, parse_guard_reply
from .layers import (
    ANSWERED, CATCH, INPUT_LAYER, MODEL_LAYER, OUTPUT_LAYER, OVER_BLOCKING, SAFEGUARD_COLUMNS, SHOULD_COMPLY, SHOULD_REFUSE,
    THROUGH, apply_safeguards, has_safeguards, layer_attribution, layer_of,
)
from .spec import FilterSpec, Safeguards

__all__ = [
    "ANSWERED", "CATCH", "INPUT_LAYER", "MODEL_LAYER", "OUTPUT_LAYER", "OVER_BLOCKING", "SAFEGUARD_COLUMNS",
    "SHOULD_COMPLY", "SHOULD_REFUSE", "THROUGH", "FilterSpec", "FilterVerdict", "Safeguards", "apply_safeguards",
    "category_policy", "guard_messages", "has_safeguards", "layer_attribution", "layer_of", "parse_guard_reply",
]
