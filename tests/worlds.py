"""Build synthetic worlds through the real pipeline for end-to-end tests."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from analysis.protocol import load_protocols
from analysis.store import read_results
from sicp.pipeline import run_pipeline
from sicp.settings import PROJECT_ROOT, Paths
from sicp.synth import generate_world


def world_paths(root: Path, protocols_dir: Path | None = None) -> Paths:
    """Every path of a pipeline run under one temporary folder (dbt and, by default, the
    protocols: the repository's)."""
    return Paths(input_dir=root / "raw", warehouse=root / "warehouse.duckdb",
                 results_dir=root / "results", reports_dir=root / "reports",
                 protocols_dir=protocols_dir or PROJECT_ROOT / "protocols",
                 dbt_dir=PROJECT_ROOT / "dbt")


def build_world(root: Path, scenario: str, seed: int,
                protocols_dir: Path | None = None) -> Paths:
    """Generate a world and run ingest, dbt and every protocol on it (one Dagster run)."""
    paths = world_paths(root, protocols_dir)
    generate_world(scenario, seed, paths.input_dir)
    run_pipeline(paths)
    return paths


def truth_checks(paths: Paths) -> Iterator[tuple[str, str, pd.Series, float]]:
    """(protocol id, analysis id, stored row, true value on the row's scale) for every truth a
    protocol declares."""
    truth = json.loads((paths.input_dir / "truth.json").read_text())["effects"]
    store = read_results(paths.results_dir)
    for protocol in load_protocols(paths.protocols_dir):
        for analysis_id, spec in protocol.truth.items():
            row = store[(store["protocol_id"] == protocol.id)
                        & (store["analysis_id"] == analysis_id) & (store["term"] == spec["term"])]
            assert len(row) == 1, (protocol.id, analysis_id, spec["term"])
            value = float(truth[spec["effect"]]["value"])
            if spec.get("transform") == "exp":
                value = math.log(value)
            yield protocol.id, analysis_id, row.iloc[0], value
