"""Human data campaigns: guidance, sampled batches, annotations, agreement, adjudication, gold sets.

The flow, one module per step: `guidance` renders what annotators read from a policy
version; `campaign` samples graded responses and assigns them; `export` writes the
campaign folder; `annotations` imports labels; `calibration` measures agreement and
accuracy on hidden gold; `adjudication` settles disagreements; `gold` assembles the
gold set of the policy version.
"""

from .adjudication import (
    ADJUDICATION_SCHEMA,
    adjudication_queue,
    import_adjudications,
    load_adjudications,
    read_adjudications,
    write_adjudication_queue,
)
from .annotations import ANNOTATION_SCHEMA, ImportResult, import_annotations, load_annotations, read_annotations
from .calibration import (
    DEFAULT_MIN_ACCURACY,
    DEFAULT_MIN_KAPPA,
    CalibrationReport,
    GoldCalibration,
    PairAgreement,
    calibrate,
    label_matrix,
)
from .campaign import ASSIGNMENT_SCHEMA, CAMPAIGN_ITEM_SCHEMA, Campaign, create_campaign, load_campaign
from .export import BATCH_COLUMNS, batch_table, export_campaign, label_studio_config, label_studio_tasks
from .gold import GOLD_SCHEMA, GoldSet, assemble_gold, assemble_gold_set, read_gold_set, write_gold_set
from .guidance import Guidance, render_guidance
from .importing import ImportProblem, ImportRejected
from .layout import CampaignPaths

__all__ = [
    "ADJUDICATION_SCHEMA", "ANNOTATION_SCHEMA", "ASSIGNMENT_SCHEMA", "BATCH_COLUMNS", "CAMPAIGN_ITEM_SCHEMA",
    "DEFAULT_MIN_ACCURACY", "DEFAULT_MIN_KAPPA", "GOLD_SCHEMA", "CalibrationReport", "Campaign", "CampaignPaths",
    "GoldCalibration", "GoldSet", "Guidance", "ImportProblem", "ImportRejected", "ImportResult", "PairAgreement",
    "adjudication_queue", "assemble_gold", "assemble_gold_set", "batch_table", "calibrate", "create_campaign",
    "export_campaign", "import_adjudications", "import_annotations", "label_matrix", "label_studio_config",
    "label_studio_tasks", "load_adjudications", "load_annotations", "load_campaign", "read_adjudications",
    "read_annotations", "read_gold_set", "render_guidance", "write_adjudication_queue", "write_gold_set",
]
