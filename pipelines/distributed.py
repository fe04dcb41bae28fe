"""The code location for several machines: runs without `execution` config send their steps
to Celery workers.

What `deploy/distributed/workspace.yaml` loads, so runs from the UI, sensors, schedules and
backfills use the workers with nothing in their run config; the same graph and resources as
`pipelines.definitions`, only the default executor differs. The Celery settings come from
$POLICYEVAL_CELERY_SETTINGS, else deploy/distributed/celery.yaml.
"""

from __future__ import annotations

from .definitions import build_definitions

defs = build_definitions(executor="celery")
