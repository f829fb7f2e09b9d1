"""Run the dbt project against the warehouse from Python (``sicp build``), and the DuckDB
settings every writer of the warehouse uses.

DuckDB's defaults suit an interactive session, not a batch build beside other work: it may use
80% of RAM (18.8 GiB on a 24 GiB machine), which the ``mid`` world's person-month models
exhausted. A writer gets a fixed memory limit instead and spills what does not fit to
a temporary directory next to the warehouse. The same defaults are written in
``dbt/profiles.yml`` (YAML cannot import them); ``tests/test_bench.py`` keeps the two equal.
See docs/scaling.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from sicp.settings import Paths

#: Environment variables that override the writer settings (ingest and dbt alike).
MEMORY_LIMIT_ENV = "SICP_DUCKDB_MEMORY_LIMIT"
THREADS_ENV = "SICP_DUCKDB_THREADS"
TEMP_DIR_ENV = "SICP_DUCKDB_TEMP_DIR"
#: Enough for the gm world's largest join with room for the Python process and other work.
DEFAULT_MEMORY_LIMIT = "8GB"
#: Two cores on the reference machine; DuckDB's own default is every core.
DEFAULT_THREADS = "2"


def duckdb_config(warehouse: Path) -> dict[str, str]:
    """Settings for a DuckDB connection that writes ``warehouse``.

    Insertion order stays preserved (DuckDB's default): ``sicp.export`` writes the marts in
    their stored row order, and the memory limit alone keeps the builds within budget.
    """
    return {
        "memory_limit": os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT),
        "threads": os.environ.get(THREADS_ENV, DEFAULT_THREADS),
        "temp_directory": os.environ.get(TEMP_DIR_ENV, f"{warehouse}.tmp"),
    }


#: dbt target to build against (a profile output in dbt/profiles.yml, e.g. a Spark or Trino
#: cluster); unset means the profile's default, the DuckDB warehouse. docs/scaling.md.
DBT_TARGET_ENV = "SICP_DBT_TARGET"


def dbt_target() -> str | None:
    return os.environ.get(DBT_TARGET_ENV) or None


def dbt_args(paths: Paths, command: str, *extra: str) -> list[str]:
    target = ["--target", t] if (t := dbt_target()) else []
    return [command, "--project-dir", str(paths.dbt_dir), "--profiles-dir", str(paths.dbt_dir),
            *target, *extra]


def dbt_build(paths: Paths, select: str | None = None) -> int:
    """``dbt build`` (seeds, models, snapshots, tests); returns 0 on success, 1 on failure."""
    from dbt.cli.main import dbtRunner

    os.environ["SICP_WAREHOUSE"] = str(paths.warehouse)
    extra = ["--select", select] if select else []
    result = dbtRunner().invoke(dbt_args(paths, "build", *extra))
    return 0 if result.success else 1
