"""The local Dagster instance: $DAGSTER_HOME, or `.dagster_home` in the working directory.

Without DAGSTER_HOME, `dagster dev` uses a temporary instance deleted on exit; a fixed
home keeps the runs of `policyeval run` visible in the UI afterwards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_HOME = ".dagster_home"
SQLITE_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "sqlite" / "dagster.yaml"
MINIMAL_CONFIG = "telemetry:\n  enabled: false\n"


def ensure_dagster_home() -> Path:
    """Create the instance folder (with the SQLite dagster.yaml) and export DAGSTER_HOME."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        if SQLITE_CONFIG.exists():
            shutil.copyfile(SQLITE_CONFIG, config)
        else:
            config.write_text(MINIMAL_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
