"""Every dbt build is recorded in the warehouse with each node's status (meta.dbt_node_results),
so the audit shows the tests of the build that made the marts, however dbt was run."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sicp.report_data import ReportInputs
from sicp.warehouse import BuildError, build_node_results, record_build


def _results(*statuses: tuple[str, str]) -> dict:
    return {
        "metadata": {"generated_at": "2026-12-04T00:00:00Z"},
        "results": [
            {
                "unique_id": uid,
                "status": status,
                "failures": 0 if status == "pass" else 3,
                "message": "Got 3 results, configured to fail if != 0\nmore",
            }
            for uid, status in statuses
        ],
    }


def test_the_last_builds_node_results_are_read_back(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    record_build(
        warehouse,
        _results(("model.sicp.a", "success"), ("test.sicp.t1", "fail")),
        invoked_by="first",
    )
    record_build(
        warehouse,
        _results(("model.sicp.a", "success"), ("test.sicp.t1", "pass")),
        invoked_by="second",
    )
    build, nodes = build_node_results(warehouse)
    assert build["build_seq"] == 2 and build["invoked_by"] == "second"
    assert nodes["test.sicp.t1"] == {
        "status": "pass",
        "failures": 0,
        "message": "Got 3 results, configured to fail if != 0",
    }
    inputs = ReportInputs(tmp_path, warehouse, tmp_path)
    assert inputs.node_results() == nodes


def test_a_report_cannot_read_results_no_build_recorded(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    with pytest.raises(BuildError, match="has no recorded dbt build; run `sicp build` first"):
        ReportInputs(tmp_path, warehouse, tmp_path).node_results()
