"""The dbt project (``dbt/``) as dagster-dbt sees it.

dagster-dbt builds its assets from ``dbt/target/manifest.json``. ``dagster dev`` re-parses on
start (``prepare_if_dev``); elsewhere (tests, ``sicp``, a deployed code location) the manifest is
parsed only when it is missing or older than a file of the dbt project, so definitions load
on a fresh checkout and never describe models that have since changed.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from sicp.dbt_schema import manifest_stale
from sicp.settings import DBT_DIR


@functools.cache
def get_dbt_project() -> DbtProject:
    """The project, with a manifest that matches its files (parsed at most once per process)."""
    _put_dbt_on_path()
    project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
    project.prepare_if_dev()
    if manifest_stale(Path(project.manifest_path), Path(project.project_dir)):
        project.preparer.prepare(project)
    return project


def _put_dbt_on_path() -> None:
    """dagster-dbt runs the ``dbt`` executable; when the virtualenv is used without being
    activated (``.venv/bin/python -m ...``), its ``bin`` is not on PATH, so add it."""
    if shutil.which("dbt") is None:
        os.environ["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
