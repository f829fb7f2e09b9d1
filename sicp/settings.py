"""Where things live. Every path can be moved with an environment variable (see README)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The repository root (this file lives in <root>/sicp/).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The dbt project (models, seeds, tests); its parsed manifest is read by sicp.dbt_schema.
DBT_DIR = PROJECT_ROOT / "dbt"


@dataclass(frozen=True)
class Paths:
    input_dir: Path
    warehouse: Path
    results_dir: Path
    reports_dir: Path
    protocols_dir: Path
    dbt_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        def env(name: str, default: Path) -> Path:
            return Path(os.environ.get(name, str(default))).resolve()

        return cls(
            input_dir=env("SICP_INPUT_DIR", PROJECT_ROOT / "data" / "raw"),
            warehouse=env("SICP_WAREHOUSE", PROJECT_ROOT / "data" / "warehouse.duckdb"),
            results_dir=env("SICP_RESULTS_DIR", PROJECT_ROOT / "data" / "results"),
            reports_dir=env("SICP_REPORTS_DIR", PROJECT_ROOT / "reports" / "output"),
            protocols_dir=env("SICP_PROTOCOLS_DIR", PROJECT_ROOT / "protocols"),
            dbt_dir=DBT_DIR,
        )
