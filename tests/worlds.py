"""Build synthetic worlds through the real pipeline for end-to-end tests."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.protocol import load_protocols
from analysis.store import read_results
from dagster_project.pipeline import run_pipeline
from sicp.ingest import ingest_all
from sicp.settings import PROJECT_ROOT, Paths
from sicp.synth import generate_world
from sicp.warehouse import dbt_args, record_build

DBT = Path(sys.executable).with_name("dbt")


def world_paths(root: Path, protocols_dir: Path | None = None) -> Paths:
    """Every path of a pipeline run under one temporary folder (dbt and, by default, the
    protocols: the repository's)."""
    return Paths(
        input_dir=root / "raw",
        warehouse=root / "warehouse.duckdb",
        results_dir=root / "results",
        reports_dir=root / "reports",
        protocols_dir=protocols_dir or PROJECT_ROOT / "protocols",
        dbt_dir=PROJECT_ROOT / "dbt",
    )


def build_world(root: Path, scenario: str, seed: int, protocols_dir: Path | None = None) -> Paths:
    """Generate a world and run ingest, dbt and every protocol on it (one Dagster run)."""
    paths = world_paths(root, protocols_dir)
    generate_world(scenario, seed, paths.input_dir)
    run_pipeline(paths)
    return paths


@dataclass(frozen=True)
class BuiltWorld:
    """A world generated, ingested and ``dbt build``-ed (no protocols run)."""

    warehouse: Path
    truth: dict[str, Any]
    build: subprocess.CompletedProcess[str]
    build_seconds: float
    run_results: dict[str, Any]


def dbt_build(paths: Paths, work: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``dbt build`` in a subprocess against ``paths.warehouse``, from an unrelated cwd.

    target/ and logs/ go under ``work`` so parallel runs never share dbt's state files.
    """
    env = {
        **os.environ,
        "SICP_WAREHOUSE": str(paths.warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "0",
    }
    cmd = [
        str(DBT),
        *dbt_args(
            paths, "build", "--target-path", str(work / "target"), "--log-path", str(work / "logs")
        ),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    return proc, time.perf_counter() - started


def build_dbt_world(root: Path, scenario: str, seed: int = 1) -> BuiltWorld:
    """Generate a world under ``root`` (layout of :func:`world_paths`), ingest it and
    ``dbt build`` it; unlike :func:`build_world`, no Dagster run and no protocols."""
    paths = world_paths(root)
    generate_world(scenario, seed, paths.input_dir)
    ingest_all(paths.input_dir, paths.warehouse)
    proc, seconds = dbt_build(paths, root)
    results = json.loads((root / "target" / "run_results.json").read_text())
    record_build(paths.warehouse, results, invoked_by="dbt build (tests)")  # as sicp build does
    truth = json.loads((paths.input_dir / "truth.json").read_text())
    return BuiltWorld(paths.warehouse, truth, proc, seconds, results)


def query(warehouse: Path, sql: str) -> pd.DataFrame:
    """Read-only query of a built warehouse."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).df()


def truth_checks(paths: Paths) -> Iterator[tuple[str, str, pd.Series, float]]:
    """(protocol id, analysis id, stored row, true value on the row's scale) for every truth a
    protocol declares."""
    truth = json.loads((paths.input_dir / "truth.json").read_text())["effects"]
    store = read_results(paths.results_dir)
    for protocol in load_protocols(paths.protocols_dir):
        for analysis_id, spec in protocol.truth.items():
            row = store[
                (store["protocol_id"] == protocol.id)
                & (store["analysis_id"] == analysis_id)
                & (store["term"] == spec["term"])
            ]
            assert len(row) == 1, (protocol.id, analysis_id, spec["term"])
            value = float(truth[spec["effect"]]["value"])
            if spec.get("transform") == "exp":
                value = math.log(value)
            yield protocol.id, analysis_id, row.iloc[0], value
