"""Holm-adjusted p-values over each declared family of primary hypotheses (issue 16, point 9),
computed from the results store and stored beside the raw p-values."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from analysis.multiplicity import adjusted_p_values
from analysis.protocol import ProtocolError, load_protocol, load_protocols
from analysis.runner import ProtocolOutcome, ProtocolRun, store_outcome
from analysis.store import STORE_COLUMNS, read_multiplicity
from sicp.settings import PROJECT_ROOT

BASE = {
    "title": "T",
    "question": "Q",
    "population": "P",
    "estimand": "E",
    "primary": True,
    "outcome": "emergency_admissions",
    "data": {"panel": "practice_month_panel"},
    "method": {
        "name": "sw_gee",
        "options": {"treatment": "in_mdg_scope", "period": "period", "cluster": "practice_code"},
    },
    "reporting": {"term": "treatment", "transform": "exp"},
}


def _protocols(folder: Path, families: dict[str, str | None]) -> dict:
    folder.mkdir(exist_ok=True)
    for pid, family in families.items():
        content = {"id": pid, **BASE, **({"multiplicity_family": family} if family else {})}
        (folder / f"{pid}.yml").write_text(yaml.safe_dump(content), encoding="utf-8")
    return {p.id: p for p in load_protocols(folder)}


def _estimates(protocols: dict, p_values: dict[str, float]) -> pd.DataFrame:
    rows = [
        {c: None for c in STORE_COLUMNS}
        | {
            "protocol_id": pid,
            "protocol_hash": protocols[pid].hash,
            "analysis_id": "primary",
            "term": term,
            "p_value": p,
        }
        for pid, p in p_values.items()
        for term in ("treatment", "period_2")
    ]
    return pd.DataFrame(rows)


def test_holm_by_hand_within_each_family(tmp_path):
    protocols = _protocols(
        tmp_path / "p", {"a": "fam", "b": "fam", "c": "fam", "d": "other", "e": None}
    )
    table = adjusted_p_values(
        _estimates(protocols, {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.2, "e": 0.001}), protocols
    )
    by = table.set_index("protocol_id")
    # Holm: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert by.loc[["a", "c", "b"], "p_adjusted"].tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert by.at["d", "p_adjusted"] == pytest.approx(0.2)  # a family of one is unadjusted
    assert "e" not in by.index  # not in a family
    assert set(by["n_declared"]) == {3, 1} and (by["method"] == "holm").all()


def test_a_member_without_an_estimate_is_listed_and_the_family_marked_incomplete(tmp_path):
    protocols = _protocols(tmp_path / "p", {"a": "fam", "b": "fam", "c": "fam"})
    table = adjusted_p_values(_estimates(protocols, {"a": 0.01, "b": 0.04}), protocols)
    by = table.set_index("protocol_id")
    assert math.isnan(by.at["c", "p_value"]) and math.isnan(by.at["c", "p_adjusted"])
    assert by.at["a", "p_adjusted"] == pytest.approx(0.02)
    assert (by["n_declared"] == 3).all() and (by["n_adjusted"] == 2).all()


def test_an_estimate_of_another_protocol_version_is_not_used(tmp_path):
    protocols = _protocols(tmp_path / "p", {"a": "fam", "b": "fam"})
    estimates = _estimates(protocols, {"a": 0.01, "b": 0.04})
    estimates.loc[estimates["protocol_id"] == "b", "protocol_hash"] = "an older hash"
    assert math.isnan(
        adjusted_p_values(estimates, protocols).set_index("protocol_id").at["b", "p_value"]
    )


def test_only_a_primary_protocol_with_a_reporting_term_joins_a_family(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text(
        yaml.safe_dump({"id": "x", **BASE, "primary": False, "multiplicity_family": "fam"})
    )
    with pytest.raises(ProtocolError, match="multiplicity_family must be a name"):
        load_protocol(path)


def test_storing_a_member_rewrites_its_familys_adjusted_p_values(tmp_path):
    protocols = _protocols(tmp_path / "p", {"a": "fam", "b": "fam"})
    warehouse, results = tmp_path / "wh.duckdb", tmp_path / "results"
    duckdb.connect(str(warehouse)).close()
    for pid, p in (("a", 0.01), ("b", 0.04)):
        rows = _estimates(protocols, {pid: p})
        run = ProtocolRun(protocols[pid], {}, rows, 0.0)
        store_outcome(
            ProtocolOutcome(protocols[pid], "ok", "", run, 0.0),
            warehouse,
            results,
            fingerprint="f",
            version="v",
            build_seq=1,
        )
    stored = read_multiplicity(results).set_index("protocol_id")
    assert stored.loc[["a", "b"], "p_adjusted"].tolist() == pytest.approx([0.02, 0.04])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from results.multiplicity").fetchone()[0] == 2


def test_the_shipped_families_are_the_components_primary_outcomes():
    families: dict[str, set[str]] = {}
    for p in load_protocols(PROJECT_ROOT / "protocols"):
        if p.multiplicity_family:
            families.setdefault(p.multiplicity_family, set()).add(p.id)
    assert families == {
        "mdg_primary_outcomes": {
            "sw_emergency_admissions",
            "sw_care_home_admissions",
            "sw_survey_eq5d",
        },
        "coaching_primary_outcomes": {"twic_eq5d", "twic_selfman"},
        "community_assets_primary_outcomes": {
            "assets_eq5d",
            "assets_loneliness",
            "assets_wellbeing",
        },
    }
