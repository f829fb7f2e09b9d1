"""The Dagster instance that ``sicp demo`` writes and ``make ui`` reads.

One instance folder per warehouse, outside the source tree: ``$DAGSTER_HOME`` when set, else
``dagster_home/`` beside the warehouse (``data/dagster_home`` by default). It is created with
the project's ``dagster.yaml`` (the single-writer pool limit), so the demo's run, its
materialisations and asset checks are what the UI shows afterwards.

``python -m dagster_project.instance`` prepares the folder and prints it (``make ui`` uses it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from sicp.settings import Paths

INSTANCE_YAML = Path(__file__).with_name("dagster.yaml")
DAGSTER_HOME_ENV = "DAGSTER_HOME"


def dagster_home(paths: Paths) -> Path:
    """``$DAGSTER_HOME``, else ``dagster_home/`` in the warehouse's folder."""
    home = os.environ.get(DAGSTER_HOME_ENV)
    return Path(home).resolve() if home else paths.warehouse.parent / "dagster_home"


def prepare_home(home: Path) -> Path:
    """Create ``home`` with the project's ``dagster.yaml``; a ``dagster.yaml`` already there is
    kept (a site may have pointed it at Postgres)."""
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        shutil.copyfile(INSTANCE_YAML, settings)
    return home


def project_instance(paths: Paths) -> dg.DagsterInstance:
    """The persistent instance for ``paths``' warehouse (close it, or use it in ``with``)."""
    return dg.DagsterInstance.from_config(str(prepare_home(dagster_home(paths))))


if __name__ == "__main__":
    print(prepare_home(dagster_home(Paths.from_env())))
