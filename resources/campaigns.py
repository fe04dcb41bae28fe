"""The campaign store: where human-data campaigns, their inboxes, guidance and gold sets live.

Layout under `root` (default $POLICYEVAL_DATA_DIR/campaigns, or data/campaigns):

    <campaign_id>/                     one campaign folder (see policyeval.campaigns.export)
        inbox/annotations/             annotators drop returned batches / Label Studio exports here
        inbox/adjudications/           adjudicators drop the filled queue here
        adjudication_queue.csv         the open queue, rewritten on every run
    _guidance/<policy_version>/        guidance.md and guidance.html of a policy version
    _gold/<policy_version>.parquet     the gold set of a policy version
    _grader_models/<policy_version>/<sha256>.json
                                       learned graders trained on that gold set, by content hash

Campaign ids start with a letter or digit, so the `_` folders never collide with one.
A campaign belongs to one policy version x checkpoint partition; the partition is read
back from the campaign's own manifest (policy id, version label and content hash give
the policy-version key; the checkpoint id is recorded), so a folder needs no side file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd

from policyeval.keys import policy_version_key, safe_key
from policyeval.campaigns import Campaign, load_campaign, read_gold_set
from policyeval.campaigns.layout import CampaignPaths, is_valid_name
from policyeval.errors import PolicyevalError
from policyeval.records import content_hash
from .environment import CAMPAIGNS, data_root

INBOX = "inbox"
ANNOTATION_INBOX = "annotations"
ADJUDICATION_INBOX = "adjudications"
QUEUE_FILE = "adjudication_queue.csv"
MAX_CAMPAIGN_ID = 128


@dataclass(frozen=True)
class InboxFile:
    """A file waiting in a campaign inbox, with the partition its campaign belongs to."""

    campaign_id: str
    policy_version: str
    checkpoint: str
    kind: str  # annotations | adjudications
    path: Path


class CampaignStore(dg.ConfigurableResource):
    """Campaign folders under `root`, and the settings for campaigns created from now on.

    `size`: sampled responses per campaign (hidden gold items come on top); `overlap_k`:
    annotators per item; `n_gold`: hidden gold items (None: a tenth of `size`);
    `min_labels`: labels an item needs to become gold without adjudication;
    `min_annotator_kappa` / `min_annotator_accuracy`: an annotator under either on the
    hidden gold items is flagged.
    """

    root: str = ""
    size: int = 50
    overlap_k: int = 2
    annotators: list[str] = ["annotator_1", "annotator_2", "annotator_3"]
    n_gold: Optional[int] = None
    seed: int = 0
    min_labels: int = 2
    min_annotator_kappa: float = 0.6
    min_annotator_accuracy: float = 0.8

    # -- where things are

    def root_dir(self) -> Path:
        return Path(self.root) if self.root else data_root() / CAMPAIGNS

    @staticmethod
    def campaign_id(policy_version: str, checkpoint: str) -> str:
        """The campaign id of a partition: readable, and safe as a file and batch name."""
        readable = f"{safe_key(policy_version)}.{safe_key(checkpoint)}"
        if len(readable) <= MAX_CAMPAIGN_ID and is_valid_name(readable):
            return readable
        return f"{readable[: MAX_CAMPAIGN_ID - 17].rstrip('.-')}-{content_hash([policy_version, checkpoint])}"

    def campaign_dir(self, policy_version: str, checkpoint: str) -> Path:
        return self.root_dir() / self.campaign_id(policy_version, checkpoint)

    def has_campaign(self, policy_version: str, checkpoint: str) -> bool:
        return CampaignPaths(self.campaign_dir(policy_version, checkpoint)).manifest.is_file()

    def load(self, policy_version: str, checkpoint: str) -> Campaign:
        folder = self.campaign_dir(policy_version, checkpoint)
        if not CampaignPaths(folder).manifest.is_file():
            raise PolicyevalError(f"no campaign for {policy_version} x {checkpoint} yet (expected {folder}): materialize labeling_campaign first")
        return load_campaign(folder)

    def inbox(self, campaign_dir: Path, kind: str) -> Path:
        return campaign_dir / INBOX / kind

    def ensure_inboxes(self, campaign_dir: Path) -> dict[str, Path]:
        folders = {kind: self.inbox(campaign_dir, kind) for kind in (ANNOTATION_INBOX, ADJUDICATION_INBOX)}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    def queue_path(self, campaign_dir: Path) -> Path:
        return campaign_dir / QUEUE_FILE

    def guidance_dir(self, policy_version: str) -> Path:
        return self.root_dir() / "_guidance" / safe_key(policy_version)

    def gold_path(self, policy_version: str) -> Path:
        return self.root_dir() / "_gold" / f"{safe_key(policy_version)}.parquet"

    def load_gold(self, policy_version: str) -> pd.DataFrame | None:
        """The gold set of a policy version, or None when none was assembled yet."""
        path = self.gold_path(policy_version)
        return read_gold_set(path) if path.is_file() else None

    def grader_models_dir(self, policy_version: str) -> Path:
        return self.root_dir() / "_grader_models" / safe_key(policy_version)

    def grader_model_path(self, policy_version: str, artifact_hash: str) -> Path:
        return self.grader_models_dir(policy_version) / f"{artifact_hash}.json"

    def find_grader_model(self, policy_version: str, grader_version: str) -> Path | None:
        """The trained model of a policy version whose hash starts with `grader_version`
        (what a grades row records), or None (e.g. the shipped default made those grades)."""
        folder = self.grader_models_dir(policy_version)
        if not grader_version or not folder.is_dir():
            return None
        found = sorted(folder.glob(f"{safe_key(grader_version)}*.json"))
        return found[0] if found else None

    # -- what is there

    @staticmethod
    def inbox_files_of(folder: Path) -> list[Path]:
        """Files in one inbox folder, sorted; hidden and partial files (editor locks, downloads) are left alone."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "~")) and not p.name.endswith((".tmp", ".part")))

    def campaigns(self) -> list[tuple[str, str, Path]]:
        """Every campaign folder made by this store: (policy version, checkpoint, folder).

        A folder whose manifest does not name a checkpoint, or whose id is not the one its
        partition would get (a campaign made by hand with the CLI), is not a partition's
        campaign and is left out.
        """
        root = self.root_dir()
        if not root.is_dir():
            return []
        found = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            partition = self.partition_of(folder)
            if partition is not None:
                found.append((*partition, folder))
        return found

    def partition_of(self, folder: Path) -> tuple[str, str] | None:
        """(policy version, checkpoint) of a campaign folder, from its manifest; None if it is not one of ours."""
        manifest = CampaignPaths(folder).manifest
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            policy = policy_version_key(meta["policy_id"], meta["policy_version"], meta["policy_hash"])
            checkpoint = meta["checkpoint_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not checkpoint or self.campaign_id(policy, checkpoint) != folder.name:
            return None
        return policy, checkpoint

    def inbox_files(self) -> list[InboxFile]:
        """Every file waiting in every campaign inbox."""
        out = []
        for policy, checkpoint, folder in self.campaigns():
            for kind in (ANNOTATION_INBOX, ADJUDICATION_INBOX):
                for path in self.inbox_files_of(self.inbox(folder, kind)):
                    out.append(InboxFile(folder.name, policy, checkpoint, kind, path))
        return out
