"""Eval-set generation: seeds, template expansion, jailbreak-style mutations, LLM
synthesis, importers (XSTest, red-team findings) and near-duplicate removal.

Domain core only: no orchestration imports, so the CLI, tests and pipelines share it.
"""

from .dedupe import DedupeReport, dedupe_items, normalize_text, shingles
from .eval_set import (
    EvalSetResult,
    Shortfall,
    generate_eval_set,
    items_to_frame,
    read_items,
    summarize,
    write_items,
)
from .mutations import MUTATIONS, mutate_item, mutate_messages, mutation_items
from .redteam import import_redteam
from .sample import added_items, edit_aware_sample, stratified_sample
from .seeds import GENERATOR, GENERATOR_VERSION, make_item, seed_items
from .synthesis import (
    SYNTHESIS_PROMPT_VERSION,
    SynthesisConfig,
    SynthesisReport,
    build_messages,
    parse_reply,
    synthesize,
)
from .templates import expand_template, template_items
from .xstest import XSTestImport, XSTestMapping, import_xstest, load_mapping

__all__ = [
    "stratified_sample",
    "edit_aware_sample",
    "added_items",
    "GENERATOR", "GENERATOR_VERSION", "MUTATIONS", "SYNTHESIS_PROMPT_VERSION",
    "DedupeReport", "EvalSetResult", "Shortfall", "SynthesisConfig", "SynthesisReport",
    "XSTestImport", "XSTestMapping",
    "build_messages", "dedupe_items", "expand_template", "generate_eval_set", "import_redteam",
    "import_xstest", "items_to_frame", "load_mapping", "make_item", "mutate_item",
    "mutate_messages", "mutation_items", "normalize_text", "parse_reply", "read_items",
    "seed_items", "shingles", "summarize", "synthesize", "template_items", "write_items",
]
