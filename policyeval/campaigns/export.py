"""Write a campaign folder: annotator batches, Label Studio files and the owner's manifest.

    <out>/<campaign_id>/
        campaign.json              manifest (policy version, guidance hash, parameters, strata, loads)
        items.parquet              the owner's item table (gold flags and gold labels)
        assignments.parquet        who labels what, in which position (gold flags)
        guidance.md, guidance.html labeling guidance of the policy version
        batches/<annotator>.csv    one batch per annotator
        label_studio/tasks.json    Label Studio import: one task per item
        label_studio/config.xml    Label Studio labeling config with the pack's behaviors

Annotator files carry the same columns for every item and list items in a shuffled
order, so a hidden gold item cannot be told apart. The folder is built beside its
final place and renamed into it, so a campaign folder is either complete or absent.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..tables import write_parquet
from .campaign import ASSIGNMENT_SCHEMA, CAMPAIGN_ITEM_SCHEMA, Campaign
from .layout import CampaignPaths

BATCH_COLUMNS = ("task_id", "item_id", "prompt", "response", "category", "label", "notes")
LABEL_FIELD = "label"  # the Choices name in the Label Studio config, and the label column of a batch


def batch_table(campaign: Campaign, annotator: str) -> pd.DataFrame:
    """One annotator's batch, in batch order, with empty label and notes."""
    mine = campaign.assignments[campaign.assignments["annotator"] == annotator].sort_values("position")
    items = campaign.items.set_index("item_id")
    return pd.DataFrame({
        "task_id": mine["task_id"].tolist(),
        "item_id": mine["item_id"].tolist(),
        "prompt": [items.at[i, "prompt_text"] for i in mine["item_id"]],
        "response": [items.at[i, "response_text"] for i in mine["item_id"]],
        "category": [items.at[i, "category_id"] for i in mine["item_id"]],
        "label": "",
        "notes": "",
    }, columns=list(BATCH_COLUMNS))


def label_studio_tasks(campaign: Campaign) -> list[dict]:
    """Label Studio import tasks, one per item, in the campaign's shuffled item order."""
    return [
        {"id": n, "data": {"item_id": row["item_id"], "prompt": row["prompt_text"],
                           "response": row["response_text"], "category": row["category_id"]}}
        for n, row in enumerate(campaign.items.to_dict("records"), start=1)
    ]


def label_studio_config(behaviors: tuple[str, ...] | list[str]) -> str:
    """A Label Studio labeling config: prompt and response shown, one behavior chosen."""
    choices = "".join(f'<Choice value="{html.escape(b, quote=True)}"/>' for b in behaviors)
    return ('<View><Text name="prompt" value="$prompt"/><Text name="response" value="$response"/>'
            f'<Choices name="{LABEL_FIELD}" toName="response" choice="single" showInLine="true">'
            f"{choices}</Choices></View>\n")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV, every cell quoted as needed; newlines inside responses survive a round trip."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in frame.itertuples(index=False, name=None):
        writer.writerow(["" if v is None or (isinstance(v, float) and v != v) else v for v in row])
    return buffer.getvalue().encode("utf-8")


def export_campaign(campaign: Campaign, out: str | os.PathLike) -> Path:
    """Write the campaign folder `<out>/<campaign_id>`; an existing campaign is never overwritten."""
    out = Path(out)
    final = out / campaign.campaign_id
    if final.exists():
        raise InputError(final, "campaign folder already exists (choose another --id, or remove it)")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{campaign.campaign_id}.", suffix=".tmp", dir=out))
    try:
        paths = CampaignPaths(staging)
        write_parquet(campaign.items, paths.items, CAMPAIGN_ITEM_SCHEMA)
        write_parquet(campaign.assignments, paths.assignments, ASSIGNMENT_SCHEMA)
        paths.guidance_md.write_text(campaign.guidance.markdown, encoding="utf-8")
        paths.guidance_html.write_text(campaign.guidance.html, encoding="utf-8")
        paths.batches.mkdir()
        for annotator in campaign.annotators:
            paths.batch(annotator).write_bytes(csv_bytes(batch_table(campaign, annotator)))
        paths.label_studio.mkdir()
        paths.label_studio_tasks.write_text(
            json.dumps(label_studio_tasks(campaign), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        paths.label_studio_config.write_text(label_studio_config(campaign.behaviors), encoding="utf-8")
        paths.manifest.write_text(json.dumps(campaign.manifest(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
