"""The dbt manifest is where the marts, the analysis panels and their columns are listed
(sicp.dbt_schema); these tests keep that list true to what dbt builds and to what protocols,
exports and the audit may name."""

from __future__ import annotations

import os

import duckdb

from analysis.protocol import load_protocols
from sicp.dbt_schema import ANALYSIS_PANEL_TAG, analysis_panels, manifest_stale, marts
from sicp.settings import PROJECT_ROOT
from tests.worlds import BuiltWorld


def test_every_mart_documents_exactly_the_columns_dbt_builds(small_dbt_world: BuiltWorld):
    with duckdb.connect(str(small_dbt_world.warehouse), read_only=True) as con:
        built = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE "
            "table_schema = 'marts' ORDER BY table_name, ordinal_position"
        ).fetchall():
            built.setdefault(table, []).append(column)
    documented = {name: list(m.columns) for name, m in marts().items()}
    assert documented == built


def test_every_panel_a_shipped_protocol_reads_is_a_tagged_panel():
    panels = analysis_panels()
    assert {p.panel for p in load_protocols(PROJECT_ROOT / "protocols")} <= set(panels)
    assert all(ANALYSIS_PANEL_TAG in m.tags for m in panels.values())
    # Reference marts (the calendar, the roll-out) are not panels a protocol fits on.
    assert {"study_calendar", "practice_rollout", "trial_design"}.isdisjoint(panels)


def test_a_model_file_newer_than_the_manifest_makes_it_stale(tmp_path):
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    model = project / "models" / "m.sql"
    model.write_text("select 1")
    manifest = project / "target" / "manifest.json"
    assert manifest_stale(manifest, project)  # missing
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(model, (1, 1))
    assert not manifest_stale(manifest, project)
    model.touch()
    assert manifest_stale(manifest, project)
