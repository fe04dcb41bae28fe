"""The import layering: the core (`policyeval`) imports neither Dagster nor the shell
(`assets`, `checks`, `pipelines`, `resources`), `resources` imports no assets, checks
or pipelines, and the evaluation domain imports no other domain. import-linter checks it, with the contracts in pyproject.toml; this test
also holds those contracts to the rule, so weakening the configuration fails here too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = {
    "policyeval": {"dagster", "assets", "checks", "pipelines", "resources"},
    "resources": {"assets", "checks", "pipelines"},
    "assets.evaluation": {"assets.human_data", "assets.reports"},
}


def contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]["contracts"]


def test_contracts_state_the_rule() -> None:
    for source, forbidden in RULES.items():
        covering = [
            c for c in contracts()
            if c["type"] == "forbidden" and source in c["source_modules"] and not c.get("allow_indirect_imports")
        ]
        covered = set().union(*(set(c["forbidden_modules"]) for c in covering)) if covering else set()
        assert forbidden <= covered, f"no forbidden contract keeps {source} from importing {sorted(forbidden - covered)}"


def test_imports_follow_the_layering() -> None:
    bin_dir = Path(sys.executable).parent
    lint_imports = shutil.which("lint-imports", path=str(bin_dir))
    assert lint_imports, f"lint-imports not found in {bin_dir}: install the dev extra (pip install -e '.[dev]')"
    result = subprocess.run(
        [lint_imports, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"import layering broken:\n{result.stdout}\n{result.stderr}"
