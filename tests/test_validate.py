"""Monte Carlo validation (sicp.validate): the study, on marts replayed from the compiled dbt
project (sicp.dbt_replay, tested against a real build in tests/test_dbt_replay.py).

The study runs small by default (4 replications of the small world); the full
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
from sicp.dbt_replay import CompiledProject, build_marts
from sicp.settings import PROJECT_ROOT
from sicp.synth import simulate_world
from sicp.validate import (
    area_world,
    merge_replications,
    read_replications,
    replication_seeds,
    run_monte_carlo,
    run_replication,
    summarise,
    truth_protocols,
    update_monte_carlo,
    write_replications,
    write_tables,
)

#: The comparator-area protocols: they read area_month_panel only (the fast path).
AREA = ("did_area_emergency_admissions", "its_salford_emergency_admissions")
COMMITTED = PROJECT_ROOT / "docs" / "validation"

#: The estimators whose coverage the issues require within 92-98% at 200+ replications.
MAIN = (
    "sw_emergency_admissions",
    "sw_survey_eq5d",
    "twic_eq5d",
    "twic_selfman",
    "twic_emergency_admissions",
    "its_salford_emergency_admissions",
    "did_area_emergency_admissions",
    "did_practice_emergency_admissions",
)


def test_area_fast_path_gives_the_whole_worlds_area_panel_and_truth(
    compiled_project: CompiledProject,
) -> None:
    whole = simulate_world("small", 5)
    areas = area_world("small", 5)
    assert set(areas.frames) == {"area_month_indicators", "study_area", "milestones"}
    for name in ("study_area", "milestones"):
        pd.testing.assert_frame_equal(areas.frames[name], whole.frames[name])
    marts = ["area_month_panel", "programme_milestones"]
    assert compiled_project.sources(marts) <= set(areas.frames)
    from_areas = build_marts(compiled_project, areas.frames, marts)
    from_whole = build_marts(compiled_project, whole.frames, marts)
    for name in marts:
        pd.testing.assert_frame_equal(from_areas[name], from_whole[name], check_exact=True)
    comparator = {k: v for k, v in whole.truth["effects"].items() if k.startswith("comparator_")}
    assert comparator and areas.truth["effects"] == comparator


def _replications(protocol_ids: list[str], value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "rep": rep,
                "world_seed": 100 + rep,
                "protocol_id": pid,
                "analysis_id": a,
                "term": "t",
                "truth_key": "k",
                "truth": 0.1,
                "estimate": value + rep / 3,
                "std_error": 1 / 3,
                "ci_low": -1.0,
                "ci_high": 1.0,
                "p_value": 0.5,
                "error": "",
            }
            for rep in (1, 2)
            for pid in protocol_ids
            for a in ("cace", "primary")
        ]
    )


def test_merge_replaces_only_the_rerun_protocols_rows(tmp_path: Path) -> None:
    path = tmp_path / "replications.csv"
    write_replications(_replications(["a", "b", "c"], 1.0), path)
    before = path.read_text().splitlines()
    rerun = _replications(["b"], 7.0)
    merged = merge_replications(read_replications(path), rerun, ["b"])
    write_replications(merged, tmp_path / "merged.csv")
    after = (tmp_path / "merged.csv").read_text().splitlines()
    # Same header and row order (replication, then protocol, then analysis as written) ...
    assert after[0] == before[0] and len(after) == len(before)
    assert [line.split(",")[:4] for line in after] == [line.split(",")[:4] for line in before]
    # ... the other protocols' lines unchanged to the byte, the rerun protocol's replaced.
    for old, new in zip(before[1:], after[1:], strict=True):
        assert (new == old) == (old.split(",")[2] != "b"), (old, new)
    assert merged.loc[merged["protocol_id"] == "b", "estimate"].tolist() == pytest.approx(
        rerun["estimate"].tolist()
    )
    with pytest.raises(ValueError, match="cover"):
        merge_replications(read_replications(path), rerun[rerun["rep"] == 1], ["b"])
    with pytest.raises(ValueError, match="not asked"):
        merge_replications(read_replications(path), rerun, ["c"])


def test_update_reruns_the_named_protocols_on_the_same_seeds(
    tmp_path: Path, compiled_project: CompiledProject
) -> None:
    run_monte_carlo(
        2, 5, tmp_path, scenario="small", protocols=list(AREA), workers=1, project=compiled_project
    )
    fresh = read_replications(tmp_path / "replications.csv")
    # Tamper with every row: the update must restore the rerun protocol's rows (same seeds,
    # same fits) and leave the other protocol's rows as they were.
    tampered = fresh.assign(estimate=fresh["estimate"] + 1.0)
    write_replications(tampered, tmp_path / "replications.csv")
    kept = [
        line
        for line in (tmp_path / "replications.csv").read_text().splitlines()
        if f",{AREA[0]}," in line
    ]
    update_monte_carlo(
        5, tmp_path, [AREA[1]], scenario="small", workers=1, project=compiled_project
    )
    updated = read_replications(tmp_path / "replications.csv")
    rerun = updated["protocol_id"] == AREA[1]
    pd.testing.assert_frame_equal(updated[rerun], fresh[rerun], check_exact=True)
    assert kept == [
        line
        for line in (tmp_path / "replications.csv").read_text().splitlines()
        if f",{AREA[0]}," in line
    ]
    assert not (tmp_path / "replications.update.csv").exists()
    summary = pd.read_csv(tmp_path / "monte_carlo.csv").set_index("protocol_id")
    assert summary.loc[AREA[0], "mean_estimate"] == pytest.approx(
        tampered.loc[~rerun, "estimate"].mean()
    )
    with pytest.raises(ValueError, match="master seed 6"):
        update_monte_carlo(
            6, tmp_path, [AREA[1]], scenario="small", workers=1, project=compiled_project
        )


def test_resume_keeps_the_replications_written_and_runs_the_rest(
    tmp_path: Path, compiled_project: CompiledProject
) -> None:
    run_monte_carlo(
        3, 5, tmp_path, scenario="small", protocols=list(AREA), workers=1, project=compiled_project
    )
    path = tmp_path / "replications.csv"
    fresh = read_replications(path)
    # A run stopped after replication 2, with replication 1's rows marked to see them kept.
    stopped = fresh[fresh["rep"] <= 2].assign(
        estimate=lambda f: f["estimate"].where(f["rep"] > 1, 99.0)
    )
    write_replications(stopped, path)
    run_monte_carlo(
        3,
        5,
        tmp_path,
        scenario="small",
        protocols=list(AREA),
        workers=1,
        resume=True,
        project=compiled_project,
    )
    resumed = read_replications(path)
    pd.testing.assert_frame_equal(
        resumed[resumed["rep"] > 1], fresh[fresh["rep"] > 1], check_exact=True
    )
    assert (resumed.loc[resumed["rep"] == 1, "estimate"] == 99.0).all()
    with pytest.raises(ValueError, match="cannot resume"):
        run_monte_carlo(
            3,
            5,
            tmp_path,
            scenario="small",
            protocols=[AREA[0]],
            workers=1,
            resume=True,
            project=compiled_project,
        )


def test_replication_seeds_depend_on_the_master_seed_only() -> None:
    seeds = replication_seeds(7, 50)
    assert seeds[:10] == replication_seeds(7, 10)
    assert len(set(seeds)) == 50
    assert seeds != replication_seeds(8, 50)


def test_summary_statistics_by_hand() -> None:
    reps = pd.DataFrame(
        {
            "protocol_id": "p",
            "analysis_id": "primary",
            "term": "t",
            "truth_key": "k",
            "rep": [1, 2, 3, 4],
            "truth": [1.0, 1.0, 2.0, 2.0],
            "estimate": [1.5, 0.5, 2.0, 5.0],
            "std_error": [1.0, 1.0, 2.0, 0.5],
            "ci_low": [0.0, 0.0, 1.0, 4.0],
            "ci_high": [2.0, 2.0, 3.0, 6.0],
            "p_value": [0.01, 0.5, 0.2, 0.001],
            "error": ["", "", "", ""],
        }
    )
    reps.loc[4] = reps.loc[3].to_dict() | {"rep": 5, "estimate": math.nan, "error": "boom"}
    row = summarise(reps).iloc[0]
    assert (row["reps"], row["failed"]) == (4, 1)
    assert row["bias"] == pytest.approx((0.5 - 0.5 + 0 + 3) / 4)
    assert row["coverage"] == pytest.approx(0.75)
    assert row["rejection"] == pytest.approx(0.5)
    assert row["model_se"] == pytest.approx(1.125)
    assert row["empirical_se"] == pytest.approx(pd.Series([1.5, 0.5, 2.0, 5.0]).std())


def test_small_study_structure_and_reproducibility(
    tmp_path: Path, compiled_project: CompiledProject
) -> None:
    summary = run_monte_carlo(
        4, 11, tmp_path, scenario="small", protocols=list(MAIN), workers=2, project=compiled_project
    )
    targets = {
        (p.id, a)
        for p in load_protocols(PROJECT_ROOT / "protocols")
        if p.id in MAIN
        for a in p.truth
    }
    assert set(zip(summary["protocol_id"], summary["analysis_id"], strict=True)) == targets
    assert (summary["failed"] == 0).all(), summary[["protocol_id", "failed"]]
    assert (summary["reps"] == 4).all()
    for column in ("mean_estimate", "bias", "empirical_se", "model_se", "coverage", "rejection"):
        assert summary[column].map(math.isfinite).all(), column
    assert (summary["model_se"] > 0).all() and (summary["empirical_se"] > 0).all()
    assert summary["coverage"].between(0, 1).all()
    assert summary["rejection"].between(0, 1).all()
    # Sane: no estimator is off its truth by more than a few of its own SEs on average.
    assert (summary["bias"].abs() < 4 * summary["model_se"]).all(), summary[["protocol_id", "bias"]]
    text = (tmp_path / "monte_carlo.md").read_text()
    assert "Scenario `small`, 4 replications, master seed 11" in text
    assert re.search(r"\d{4}-\d{2}-\d{2}", text) is None, "the table must be date-free"
    # A replication depends on its seed only, not on the worker that ran it.
    written = pd.read_csv(tmp_path / "replications.csv", keep_default_na=False, na_values=[""])
    again = pd.DataFrame(
        run_replication(
            2, replication_seeds(11, 4)[1], "small", truth_protocols(MAIN), compiled_project
        )
    )
    first = written[written["rep"] == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        first[["protocol_id", "analysis_id", "truth", "estimate", "std_error"]],
        again[["protocol_id", "analysis_id", "truth", "estimate", "std_error"]],
        rtol=1e-9,
        atol=0,
    )
    before = (tmp_path / "monte_carlo.md").read_bytes()
    write_tables(tmp_path, seed=11, scenario="small")
    assert (tmp_path / "monte_carlo.md").read_bytes() == before


@pytest.mark.slow
def test_rerun_reproduces_the_committed_replications(
    tmp_path: Path, compiled_project: CompiledProject
) -> None:
    """The premise of ``--update``, which keeps the rows of the protocols it does not rerun:
    today's code gives the committed rows. Three replications of every committed protocol
    are rerun and written; their lines must equal the committed lines to the byte."""
    committed = read_replications(COMMITTED / "replications.csv")
    protocols = truth_protocols(sorted(set(committed["protocol_id"])))
    rows = [
        row
        for rep, seed in enumerate(replication_seeds(20260101, 3), start=1)
        for row in run_replication(rep, seed, "mc", protocols, compiled_project)
    ]
    write_replications(pd.DataFrame(rows), tmp_path / "rerun.csv")
    rerun = (tmp_path / "rerun.csv").read_text().splitlines()
    lines = (COMMITTED / "replications.csv").read_text().splitlines()
    assert rerun == lines[: len(rerun)]
    assert len(rerun) == 1 + (committed["rep"] <= 3).sum()


@pytest.mark.slow
def test_full_study_coverage_of_the_main_estimators(tmp_path: Path) -> None:
    ids = sorted(set(read_replications(COMMITTED / "replications.csv")["protocol_id"]))
    assert set(MAIN) <= set(ids)
    summary = run_monte_carlo(200, 20260101, tmp_path, scenario="mc", protocols=ids)
    assert (tmp_path / "monte_carlo.md").read_bytes() == (COMMITTED / "monte_carlo.md").read_bytes()
    summary = summary[summary["protocol_id"].isin(MAIN)]
    assert (summary["failed"] == 0).all()
    off = summary[~summary["coverage"].between(0.92, 0.98)]
    assert off.empty, off[
        ["protocol_id", "analysis_id", "coverage", "bias", "model_se", "sd_error"]
    ].to_string()
