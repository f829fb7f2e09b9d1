"""Monte Carlo validation (sicp.validate): the in-memory twin of the marts and the study.

The twin is proved against the real thing: the small world goes through ingest and
``dbt build`` and every protocol column of every twin panel must equal the mart exactly,
dtypes included. The study runs small by default (4 replications of the small world); the full
200-replication study on the ``mc`` world, whose table is committed in docs/validation/, is
marked slow.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.protocol import load_protocols
from sicp.settings import PROJECT_ROOT
from sicp.synth import simulate_world
from sicp.validate import (
    PANEL_COLUMNS,
    PANEL_KEYS,
    PROTOCOLS_DIR,
    build_panels,
    replication_seeds,
    run_monte_carlo,
    run_replication,
    summarise,
    write_tables,
)
from tests.test_dbt import BuiltWorld, build_world, query

#: The estimators whose coverage the issues require within 92-98% at 200+ replications.
MAIN = ("sw_emergency_admissions", "sw_survey_eq5d", "twic_eq5d", "twic_selfman",
        "twic_emergency_admissions",
        "its_salford_emergency_admissions", "did_area_emergency_admissions",
        "did_practice_emergency_admissions")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> BuiltWorld:
    return build_world("small", tmp_path_factory.mktemp("validate_small"))


def test_twin_panels_equal_the_dbt_marts(small: BuiltWorld) -> None:
    assert small.build.returncode == 0, small.build.stdout[-3000:]
    world = simulate_world("small", int(small.truth["seed"]))
    twins = build_panels(world.frames)
    recruitment = world.frames["recruitment"]
    # The world exercises what the twin mirrors: consent exclusions of both scopes and moves.
    assert recruitment["withdrawn_on"].notna().any()
    assert (recruitment["consent_linkage"] == 0).any()
    assert len(world.frames["practice_moves"]) > 0
    for name, columns in PANEL_COLUMNS.items():
        mart = query(small.warehouse, f"select * from marts.{name}")[list(columns)]
        mart = mart.sort_values(list(PANEL_KEYS[name])).reset_index(drop=True)
        pd.testing.assert_frame_equal(twins[name], mart, check_exact=True, obj=name)
        assert len(mart) > 0
    assert twins["practice_month_panel"]["in_mdg_scope"].sum() > 0
    assert twins["twic_analysis_set"]["emergency_admissions_12m"].isna().any()


def test_the_twin_covers_every_panel_a_protocol_with_a_truth_reads() -> None:
    panels = {p.panel for p in load_protocols(PROTOCOLS_DIR) if p.truth}
    assert panels <= set(PANEL_COLUMNS)


def test_replication_seeds_depend_on_the_master_seed_only() -> None:
    seeds = replication_seeds(7, 50)
    assert seeds[:10] == replication_seeds(7, 10)
    assert len(set(seeds)) == 50
    assert seeds != replication_seeds(8, 50)


def test_summary_statistics_by_hand() -> None:
    reps = pd.DataFrame({
        "protocol_id": "p", "analysis_id": "primary", "term": "t", "truth_key": "k",
        "rep": [1, 2, 3, 4], "truth": [1.0, 1.0, 2.0, 2.0],
        "estimate": [1.5, 0.5, 2.0, 5.0], "std_error": [1.0, 1.0, 2.0, 0.5],
        "ci_low": [0.0, 0.0, 1.0, 4.0], "ci_high": [2.0, 2.0, 3.0, 6.0],
        "p_value": [0.01, 0.5, 0.2, 0.001], "error": ["", "", "", ""],
    })
    reps.loc[4] = reps.loc[3].to_dict() | {"rep": 5, "estimate": math.nan, "error": "boom"}
    row = summarise(reps).iloc[0]
    assert (row["reps"], row["failed"]) == (4, 1)
    assert row["bias"] == pytest.approx((0.5 - 0.5 + 0 + 3) / 4)
    assert row["coverage"] == pytest.approx(0.75)
    assert row["rejection"] == pytest.approx(0.5)
    assert row["model_se"] == pytest.approx(1.125)
    assert row["empirical_se"] == pytest.approx(pd.Series([1.5, 0.5, 2.0, 5.0]).std())


def test_small_study_structure_and_reproducibility(tmp_path: Path) -> None:
    summary = run_monte_carlo(4, 11, tmp_path, scenario="small", protocols=list(MAIN),
                              workers=2)
    targets = {(p.id, a) for p in load_protocols(PROTOCOLS_DIR) if p.id in MAIN
               for a in p.truth}
    assert set(zip(summary["protocol_id"], summary["analysis_id"], strict=True)) == targets
    assert (summary["failed"] == 0).all(), summary[["protocol_id", "failed"]]
    assert (summary["reps"] == 4).all()
    for column in ("mean_estimate", "bias", "empirical_se", "model_se", "coverage",
                   "rejection"):
        assert summary[column].map(math.isfinite).all(), column
    assert (summary["model_se"] > 0).all() and (summary["empirical_se"] > 0).all()
    assert summary["coverage"].between(0, 1).all()
    assert summary["rejection"].between(0, 1).all()
    # Sane: no estimator is off its truth by more than a few of its own SEs on average.
    assert (summary["bias"].abs() < 4 * summary["model_se"]).all(), summary[["protocol_id",
                                                                           "bias"]]
    text = (tmp_path / "monte_carlo.md").read_text()
    assert "Scenario `small`, 4 replications, master seed 11" in text
    assert re.search(r"\d{4}-\d{2}-\d{2}", text) is None, "the table must be date-free"
    # A replication depends on its seed only, not on the worker that ran it.
    written = pd.read_csv(tmp_path / "replications.csv", keep_default_na=False,
                          na_values=[""])
    again = pd.DataFrame(run_replication(2, replication_seeds(11, 4)[1], "small",
                                         list(MAIN)))
    first = written[written["rep"] == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(first[["protocol_id", "analysis_id", "truth", "estimate",
                                         "std_error"]],
                                  again[["protocol_id", "analysis_id", "truth", "estimate",
                                         "std_error"]], rtol=1e-9, atol=0)
    before = (tmp_path / "monte_carlo.md").read_bytes()
    write_tables(tmp_path, seed=11, scenario="small")
    assert (tmp_path / "monte_carlo.md").read_bytes() == before


@pytest.mark.slow
def test_full_study_coverage_of_the_main_estimators(tmp_path: Path) -> None:
    summary = run_monte_carlo(200, 20260101, tmp_path, scenario="mc", protocols=list(MAIN))
    committed = PROJECT_ROOT / "docs" / "validation" / "monte_carlo.md"
    assert (tmp_path / "monte_carlo.md").read_bytes() == committed.read_bytes()
    assert (summary["failed"] == 0).all()
    off = summary[~summary["coverage"].between(0.92, 0.98)]
    assert off.empty, off[["protocol_id", "analysis_id", "coverage", "bias", "model_se",
                           "sd_error"]].to_string()
