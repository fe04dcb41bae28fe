"""Human data campaigns: guidance, sampled batches, annotations, agreement, adjudication, gold sets.

The flow, one module per step: `guidance` renders what annotators read from a policy
version; `campaign` samples graded responses and assigns them; `export` writes the
campaign folder; `annotations` imports labels; `calibration` measures agreement and
accuracy on hidden gold; `adjudication` settles disagreements; `gold` assembles the
gold set of the policy version; `inbox` imports the label files dropped into a campaign.
"""

from .adjudication import (
    ADJUDICATION_SCHEMA,
    adjudication_queue,
    import_adjudications,
    load_adjudications,
    queue_with_decisions,
    read_adjudications,
    write_adjudication_queue,
)
from .annotations import ANNOTATION_SCHEMA, ImportResult, annotation_progress, import_annotations, load_annotations, read_annotations
from .calibration import (
    AGREEMENT_COLUMNS,
    DEFAULT_MIN_ACCURACY,
    DEFAULT_MIN_KAPPA,
    CalibrationReport,
    GoldCalibration,
    PairAgreement,
    agreement_table,
    calibrate,
    label_matrix,
)
from .campaign import ASSIGNMENT_SCHEMA, CAMPAIGN_ITEM_SCHEMA, Campaign, create_campaign, load_campaign
from .export import BATCH_COLUMNS, batch_table, export_campaign, label_studio_config, label_studio_tasks
from .gold import GOLD_SCHEMA, GoldSet, assemble_gold, assemble_gold_set, combine_gold, read_gold_set, seed_gold, write_gold_set
from .guidance import Guidance, render_guidance
from .importing import ImportProblem, ImportRejected
from .inbox import InboxImport, import_inbox
from .layout import CampaignPaths

__all__ = [
    "ADJUDICATION_SCHEMA", "AGREEMENT_COLUMNS", "ANNOTATION_SCHEMA", "ASSIGNMENT_SCHEMA", "BATCH_COLUMNS",
    "CAMPAIGN_ITEM_SCHEMA", "DEFAULT_MIN_ACCURACY", "DEFAULT_MIN_KAPPA", "GOLD_SCHEMA", "CalibrationReport", "Campaign",
    "CampaignPaths", "GoldCalibration", "GoldSet", "Guidance", "ImportProblem", "ImportRejected", "ImportResult",
    "InboxImport", "PairAgreement", "adjudication_queue", "agreement_table", "annotation_progress", "assemble_gold",
    "assemble_gold_set", "batch_table", "calibrate", "combine_gold", "create_campaign", "export_campaign",
    "import_adjudications", "import_annotations", "import_inbox", "label_matrix", "label_studio_config",
    "label_studio_tasks", "load_adjudications", "load_annotations", "load_campaign", "queue_with_decisions",
    "read_adjudications", "read_annotations", "read_gold_set", "render_guidance", "seed_gold",
    "write_adjudication_queue", "write_gold_set",
]
