"""The dbt project builds on Apache Spark (dbt-spark, session mode) with marts equal to DuckDB's.

Opt-in (``make test-spark``): needs pyspark, dbt-spark and Java 17, and takes minutes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.spark_parity import run
from bench.stages import world_paths
from sicp.settings import PROJECT_ROOT

pytestmark = pytest.mark.spark


def test_marts_built_on_spark_equal_the_duckdb_marts(tmp_path) -> None:
    pytest.importorskip("pyspark")
    pytest.importorskip("dbt.adapters.spark")
    root = tmp_path / "small"
    # The DuckDB side in child processes: dbt-duckdb keeps its connection open for the life of
    # the process, and the parity check must then open the same file.
    for stage in ("generate", "ingest", "dbt_build"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.stages",
                stage,
                str(root),
                "--scenario",
                "small",
                "--result",
                str(tmp_path / f"{stage}.json"),
            ],
            cwd=PROJECT_ROOT,
            check=True,
        )
    result = run(world_paths(root).warehouse, tmp_path / "spark")
    assert result.build_ok, "dbt build (seeds, models, data tests) failed on Spark"
    assert result.unit_tests_ok, "dbt unit tests failed on Spark"
    diffs = result.marts
    assert {d.mart for d in diffs} >= {"practice_month_panel", "person_month_panel"}
    assert all(d.rows_duckdb > 0 for d in diffs)
    problems = [f"{d.mart}: {p}" for d in diffs for p in d.problems]
    assert not problems, "\n".join(problems)
