"""Run the dbt project against the warehouse from Python (``sicp build``)."""

from __future__ import annotations

import os

from sicp.settings import Paths


def dbt_args(paths: Paths, command: str, *extra: str) -> list[str]:
    return [command, "--project-dir", str(paths.dbt_dir), "--profiles-dir", str(paths.dbt_dir),
            *extra]


def dbt_build(paths: Paths, select: str | None = None) -> int:
    """``dbt build`` (seeds, models, snapshots, tests); returns 0 on success, 1 on failure."""
    from dbt.cli.main import dbtRunner

    os.environ["SICP_WAREHOUSE"] = str(paths.warehouse)
    extra = ["--select", select] if select else []
    result = dbtRunner().invoke(dbt_args(paths, "build", *extra))
    return 0 if result.success else 1
