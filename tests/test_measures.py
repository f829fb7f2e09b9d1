"""The outcome_measures seed documents every measure a protocol uses, and the audit links each
estimate to its measure by the exact panel columns (issue 18: the comparator analyses were
listed under the hospital-spell measure because their column names share its prefix)."""

from __future__ import annotations

import pandas as pd

from analysis.protocol import load_protocols
from sicp.audit import KINDS, measure_uses, panel_columns, protocol_columns
from sicp.dbt_schema import marts
from sicp.settings import DBT_DIR, PROJECT_ROOT

MEASURES = pd.read_csv(DBT_DIR / "seeds" / "outcome_measures.csv", keep_default_na=False)
PROTOCOLS = {p.id: p for p in load_protocols(PROJECT_ROOT / "protocols")}


def test_every_panel_column_a_measure_names_is_a_column_of_that_mart():
    documented = marts()
    for _, m in MEASURES.iterrows():
        assert m["kind"] in KINDS, m["measure"]
        pairs = panel_columns(m)
        assert pairs, m["measure"]
        for panel, column in pairs:
            assert column in documented[panel].columns, (m["measure"], panel, column)


def test_every_protocol_outcome_and_cost_is_a_documented_measure():
    carried = {pair for _, m in MEASURES.iterrows() for pair in panel_columns(m)}
    for pid, protocol in PROTOCOLS.items():
        roles = protocol_columns(protocol)
        for role in ("outcome", "cost consequence"):
            columns = {c for c, r in roles.items() if r == role}
            if columns:
                assert columns & carried, (pid, role, columns)


def test_estimates_are_matched_to_measures_on_exact_columns():
    uses = measure_uses(MEASURES, PROTOCOLS)
    emergency = {pid for pid, _ in uses["emergency_admissions"]}
    area = {pid for pid, _ in uses["area_emergency_admissions_65plus"]}
    assert {
        "sw_emergency_admissions",
        "did_practice_emergency_admissions",
        "twic_emergency_admissions",
    } <= emergency
    assert area == {
        "cits_salford_vs_gm",
        "did_area_emergency_admissions",
        "its_salford_emergency_admissions",
    }
    assert not emergency & area
    assert ("twic_eq5d", "outcome") in uses["eq5d_index"]
    assert ("sw_emergency_admissions", "cost consequence") in uses["cost_gbp"]
    assert ("twic_cost_effectiveness", "cost option") in uses["cost_12m"]
    used = {pid for rows in uses.values() for pid, _ in rows}
    assert used == set(PROTOCOLS)  # every protocol's estimates have a measure


def test_the_lineage_graph_runs_from_raw_files_to_protocols():
    from sicp.audit import lineage_graph
    from sicp.dbt_schema import load_manifest

    nodes, edges = lineage_graph(load_manifest(), PROTOCOLS)
    columns = {label: col for label, col in nodes.values()}
    panels = {p.panel for p in PROTOCOLS.values()}
    assert len({columns[p] for p in panels}) == 1  # the panels in one column
    assert {columns[pid] for pid in PROTOCOLS} == {columns[next(iter(panels))] + 1}
    assert columns["raw.hospital_spells"] == 0 and columns["acsc_icd10"] == 0
    for parent, child in edges:  # drawn left to right
        assert nodes[parent][1] < nodes[child][1], (parent, child)
    assert ("model.sicp.person_wave_panel", "protocol.twic_eq5d") not in edges
    assert ("model.sicp.twic_analysis_set", "protocol.twic_eq5d") in edges
