"""The marts and their columns, as the dbt project declares them (its parsed manifest).

Protocol validation, the exports and the audit ask this module which marts exist, which of
them are analysis panels (tag ``analysis_panel`` in the mart's ``.yml``) and which columns each
holds, instead of keeping lists of their own. The manifest is dbt's parse of the project
(``dbt/target/manifest.json``); it is parsed again when missing or older than a file of the
project, so the answer always describes the models as they are now. A test keeps every mart's
documented columns equal to the columns the built table has (tests/test_dbt_schema.py).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sicp.settings import DBT_DIR

#: The parse artefact of the project (not a run's target folder: a property of the code).
MANIFEST = DBT_DIR / "target" / "manifest.json"
#: What dbt reads to build the manifest; a newer file means the manifest is stale.
PROJECT_FILES = (
    "dbt_project.yml",
    "profiles.yml",
    "packages.yml",
    "dependencies.yml",
    "models",
    "macros",
    "seeds",
    "snapshots",
    "tests",
    "analyses",
)
#: The tag a mart carries when protocols may name it as their ``data.panel``.
ANALYSIS_PANEL_TAG = "analysis_panel"
MARTS_LAYER = "marts"


@dataclass(frozen=True)
class Mart:
    """A mart as documented: its description, tags and columns (name -> description)."""

    name: str
    description: str
    tags: tuple[str, ...]
    columns: dict[str, str]

    @property
    def analysis_panel(self) -> bool:
        return ANALYSIS_PANEL_TAG in self.tags


def project_files(root: Path = DBT_DIR) -> list[Path]:
    """Every file dbt parses."""
    files: list[Path] = []
    for name in PROJECT_FILES:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
    return files


def manifest_stale(manifest: Path = MANIFEST, root: Path = DBT_DIR) -> bool:
    """Whether ``manifest`` is missing or older than a file of the project."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(p.stat().st_mtime > built for p in project_files(root))


def parse_project(manifest: Path = MANIFEST) -> None:
    """``dbt parse`` into the folder of ``manifest`` (a subprocess: dbt's runner keeps global
    state that a later build in the same process must not inherit)."""
    dbt = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    env = {**os.environ, "DBT_TARGET_PATH": str(manifest.parent)}
    done = subprocess.run(
        [dbt, "parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not manifest.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError("dbt parse failed, so the marts' schema is unknown:\n" + "\n".join(tail))


@functools.cache
def _load(manifest: Path, mtime: float) -> dict[str, Any]:
    return json.loads(manifest.read_text(encoding="utf-8"))


def load_manifest(manifest: Path = MANIFEST) -> dict[str, Any]:
    """The parsed manifest of the project as it is now (parsed again if stale)."""
    if manifest_stale(manifest):
        parse_project(manifest)
    return _load(manifest, manifest.stat().st_mtime)


@functools.cache
def _marts(manifest: Path, mtime: float) -> dict[str, Mart]:
    nodes = _load(manifest, mtime)["nodes"].values()
    marts = (
        n
        for n in nodes
        if n["resource_type"] == "model" and len(n["fqn"]) > 2 and n["fqn"][1] == MARTS_LAYER
    )
    return {
        n["name"]: Mart(
            n["name"],
            n.get("description", ""),
            tuple(n.get("config", {}).get("tags", []) or n.get("tags", [])),
            {c: meta.get("description", "") for c, meta in n["columns"].items()},
        )
        for n in sorted(marts, key=lambda n: n["name"])
    }


def marts(manifest: Path = MANIFEST) -> dict[str, Mart]:
    """Every mart by name, from a manifest that matches the project (parsed if needed)."""
    load_manifest(manifest)
    return _marts(manifest, manifest.stat().st_mtime)


def analysis_panels(manifest: Path = MANIFEST) -> dict[str, Mart]:
    """The marts a protocol may read (tag :data:`ANALYSIS_PANEL_TAG`)."""
    return {name: m for name, m in marts(manifest).items() if m.analysis_panel}
