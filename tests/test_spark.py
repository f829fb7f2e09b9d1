"""The dbt project builds on Apache Spark (dbt-spark, session mode) with marts equal to DuckDB's.

Opt-in (``make test-spark``): needs pyspark, dbt-spark and Java 17, and takes minutes.
"""

from __future__ import annotations

import pytest

from bench.spark_parity import run
from bench.stages import world_paths
from sicp.ingest import ingest_all
from sicp.synth import generate_world
from sicp.warehouse import dbt_build

pytestmark = pytest.mark.spark


def test_marts_built_on_spark_equal_the_duckdb_marts(tmp_path) -> None:
    pytest.importorskip("pyspark")
    pytest.importorskip("dbt.adapters.spark")
    paths = world_paths(tmp_path / "small")
    generate_world("small", 42, paths.input_dir)
    ingest_all(paths.input_dir, paths.warehouse)
    assert dbt_build(paths) == 0
    diffs = run(paths.warehouse, tmp_path / "spark")
    assert {d.mart for d in diffs} >= {"practice_month_panel", "person_month_panel"}
    assert all(d.rows_duckdb > 0 for d in diffs)
    problems = [f"{d.mart}: {p}" for d in diffs for p in d.problems]
    assert not problems, "\n".join(problems)
