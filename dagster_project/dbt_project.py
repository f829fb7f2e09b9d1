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

from sicp.settings import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt"
_SOURCES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml", "models",
            "macros", "seeds", "snapshots", "tests", "analyses")


@functools.cache
def get_dbt_project() -> DbtProject:
    """The project, with a manifest that matches its files (parsed at most once per process)."""
    _put_dbt_on_path()
    project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
    project.prepare_if_dev()
    if _stale(project):
        project.preparer.prepare(project)
    return project


def _put_dbt_on_path() -> None:
    """dagster-dbt runs the ``dbt`` executable; when the virtualenv is used without being
    activated (``.venv/bin/python -m ...``), its ``bin`` is not on PATH, so add it."""
    if shutil.which("dbt") is None:
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _project_files(project.project_dir))


def _project_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in _SOURCES:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
    return files
