"""Where each file of a campaign folder lives.

One folder per campaign keeps everything a policy team hands out and gets back in one
place. Files under `batches/` and `label_studio/` go to annotators and never carry gold
flags; the manifest and the Parquet tables stay with the campaign owner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Campaign ids and annotator names become file names, so they are kept to a safe alphabet
# (an e-mail address fits, as Label Studio names its users by e-mail).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


@dataclass(frozen=True)
class CampaignPaths:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "campaign.json"

    @property
    def items(self) -> Path:
        return self.root / "items.parquet"

    @property
    def assignments(self) -> Path:
        return self.root / "assignments.parquet"

    @property
    def guidance_md(self) -> Path:
        return self.root / "guidance.md"

    @property
    def guidance_html(self) -> Path:
        return self.root / "guidance.html"

    @property
    def batches(self) -> Path:
        return self.root / "batches"

    def batch(self, annotator: str) -> Path:
        return self.batches / f"{annotator}.csv"

    @property
    def label_studio(self) -> Path:
        return self.root / "label_studio"

    @property
    def label_studio_tasks(self) -> Path:
        return self.label_studio / "tasks.json"

    @property
    def label_studio_config(self) -> Path:
        return self.label_studio / "config.xml"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations.parquet"

    @property
    def adjudications(self) -> Path:
        return self.root / "adjudications.parquet"


def is_valid_name(name: str) -> bool:
    return bool(NAME_PATTERN.match(name))
