"""The dbt project end to end: synthetic world -> ingest -> ``dbt build`` -> marts.

The small world runs in the default test path; the default world (the < 60 s build-time
target) is marked slow. Counts are compared with the generator's truth.json exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from sicp.dbt_schema import analysis_panels
from sicp.export import export_marts
from tests.worlds import BuiltWorld, build_dbt_world, query

DBT = Path(sys.executable).with_name("dbt")

#: Columns the lead's protocols rely on, per mart (the issue's contract for the marts).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "practice_month_panel": (
        "practice_code",
        "practice_name",
        "neighbourhood",
        "mdg",
        "rollout_wave",
        "month",
        "period",
        "mdg_start_month",
        "in_mdg_scope",
        "months_since_start",
        "never_treated",
        "person_months_65plus",
        "registered_65plus",
        "emergency_admissions",
        "emergency_readmissions_30d",
        "ae_attendances",
        "acsc_emergency_admissions",
        "permanent_care_home_admissions",
        "deaths",
        "deaths_at_home",
        "flu_vaccinated",
        "emergency_admissions_per_1000",
    ),
    "person_month_panel": (
        "person_id",
        "month",
        "period",
        "practice_code",
        "neighbourhood",
        "mdg",
        "age",
        "sex",
        "imd_decile",
        "risk_tier",
        "in_mdg_scope",
        "months_since_start",
        "taken_on",
        "months_since_taken_on",
        "emergency_admissions",
        "emergency_readmissions_30d",
        "ae_attendances",
        "acsc_emergency_admissions",
        "permanent_care_home_admissions",
        "deaths",
        "deaths_at_home",
        "flu_vaccinated",
    ),
    "person_wave_panel": (
        "person_id",
        "wave",
        "returned_on",
        "practice_code",
        "neighbourhood",
        "mdg",
        "rollout_wave",
        "in_mdg_scope",
        "months_since_start",
        "taken_on",
        "eq5d_index",
        "eq_vas",
        "pacic_score",
        "selfman_score",
        "wellbeing_score",
        "loneliness_score",
        "satisfied_care",
        "supported_selfcare",
        "has_care_plan",
        "gp_visits_6m",
        "ae_visits_6m",
        "nights_in_hospital_6m",
        "age_at_recruitment",
        "sex",
        "imd_decile",
        "n_ltc",
        "social_care_need",
        "mode",
    ),
    "area_month_panel": (
        "area_code",
        "area_name",
        "month",
        "period",
        "is_study_area",
        "population_65plus",
        "emergency_admissions_65plus",
        "emergency_admissions_per_1000",
    ),
    "twic_analysis_set": (
        "person_id",
        "stratum",
        "arm",
        "offered",
        "accepted",
        "sessions_completed",
        "neighbourhood",
        "selfman_score_baseline",
        "selfman_score_followup",
        "eq5d_index_baseline",
        "eq5d_index_followup",
        "pacic_score_baseline",
        "pacic_score_followup",
        "wellbeing_score_baseline",
        "wellbeing_score_followup",
        "emergency_admissions_12m",
        "age_at_recruitment",
        "sex",
        "imd_decile",
        "n_ltc",
    ),
}


def assert_counts_match_truth(world: BuiltWorld) -> None:
    counts = world.truth["counts"]
    got = query(
        world.warehouse,
        """
        select
            sum(emergency_admissions) as emergency_admissions,
            sum(in_mdg_scope) as exposed_practice_months,
            sum(person_months_65plus * in_mdg_scope) as exposed_person_months
        from marts.practice_month_panel
    """,
    ).iloc[0]
    assert (
        int(got["emergency_admissions"]) == counts["emergency_admissions_total_excluding_withdrawn"]
    )
    assert int(got["exposed_practice_months"]) == counts["exposed_practice_months"]
    assert (
        int(got["exposed_person_months"])
        == counts["exposed_person_months_65plus_excluding_withdrawn"]
    )
    by_year = query(
        world.warehouse,
        """
        select cast(extract(year from month) as varchar) as year, sum(emergency_admissions) as n
        from marts.practice_month_panel group by 1
    """,
    )
    assert (
        dict(zip(by_year["year"], by_year["n"].astype(int), strict=True))
        == counts["emergency_admissions_by_year_excluding_withdrawn"]
    )


def test_dbt_build_passes_on_the_small_world(small_dbt_world: BuiltWorld) -> None:
    assert small_dbt_world.build.returncode == 0, small_dbt_world.build.stdout[-5000:]
    statuses = {r["unique_id"]: r["status"] for r in small_dbt_world.run_results["results"]}
    failed = {k: v for k, v in statuses.items() if v not in ("success", "pass")}
    assert not failed
    kinds = {k.split(".")[0] for k in statuses}
    assert {"model", "seed", "test", "unit_test"} <= kinds
    # Every instrument, the exposure and the re-admission logic have unit tests that ran.
    unit_tests = {k.split(".")[-1] for k in statuses if k.startswith("unit_test.")}
    for fragment in (
        "eq5d",
        "pacic",
        "selfman",
        "wellbeing",
        "loneliness",
        "readmission",
        "practice_exposure",
        "person_month_exposure",
        "person_wave_exposure",
    ):
        assert any(fragment in name for name in unit_tests), fragment


def test_marts_reproduce_the_generators_counts(small_dbt_world: BuiltWorld) -> None:
    assert_counts_match_truth(small_dbt_world)


def test_marts_have_the_agreed_columns_within_stata_limits(small_dbt_world: BuiltWorld) -> None:
    cols = query(
        small_dbt_world.warehouse,
        """
        select table_name, column_name from information_schema.columns
        where table_schema = 'marts'
    """,
    )
    by_mart = cols.groupby("table_name")["column_name"].apply(set).to_dict()
    for mart, required in REQUIRED_COLUMNS.items():
        assert set(required) <= by_mart[mart], (mart, set(required) - by_mart[mart])
    assert cols["column_name"].str.len().max() <= 32


def test_no_excluded_person_reaches_a_mart(small_dbt_world: BuiltWorld) -> None:
    excluded = query(
        small_dbt_world.warehouse, "select person_id, scope from raw.consent_exclusions"
    )
    withdrawn = set(excluded.loc[excluded["scope"] == "all", "person_id"])
    no_linkage = set(excluded.loc[excluded["scope"] == "records", "person_id"])
    assert withdrawn and no_linkage  # the small world has both kinds of exclusion
    for mart in ("person_month_panel", "person_wave_panel", "twic_analysis_set"):
        people = set(
            query(small_dbt_world.warehouse, f"select distinct person_id from marts.{mart}")[
                "person_id"
            ]
        )
        assert not people & withdrawn, mart
    records = set(
        query(small_dbt_world.warehouse, "select distinct person_id from marts.person_month_panel")[
            "person_id"
        ]
    )
    assert not records & no_linkage


def test_practice_panel_is_complete_and_exposure_matches_practices(
    small_dbt_world: BuiltWorld,
) -> None:
    panel = query(small_dbt_world.warehouse, "select * from marts.practice_month_panel")
    practices = query(small_dbt_world.warehouse, "select * from raw.practices")
    months = int(
        query(small_dbt_world.warehouse, "select max(study_months) as n from marts.study_calendar")[
            "n"
        ].iloc[0]
    )
    assert len(panel) == len(practices) * months
    assert panel["period"].min() == 1 and panel["period"].max() == months
    starts = practices.set_index("practice_code")["mdg_start_date"]
    for code, rows in panel.groupby("practice_code"):
        start = starts[code]
        expected = (rows["month"] >= pd.Timestamp(start)).astype(int) if pd.notna(start) else 0
        assert (rows["in_mdg_scope"] == expected).all(), code
        assert rows["never_treated"].eq(int(pd.isna(start))).all(), code


def test_twic_set_has_one_row_per_randomised_person(small_dbt_world: BuiltWorld) -> None:
    twic = query(small_dbt_world.warehouse, "select * from marts.twic_analysis_set")
    randomised = query(
        small_dbt_world.warehouse,
        """
        select count(*) as n from raw.coaching_randomisation
        where person_id not in (select person_id from raw.consent_exclusions where scope = 'all')
    """,
    )["n"].iloc[0]
    assert len(twic) == randomised
    assert (twic.loc[twic["arm"] == "control", "accepted"] == 0).all()
    assert twic["offered"].eq((twic["arm"] == "offer").astype(int)).all()


def test_export_marts_to_parquet_and_stata(small_dbt_world: BuiltWorld, tmp_path: Path) -> None:
    import pyreadstat

    written = export_marts(small_dbt_world.warehouse, tmp_path)
    assert set(written) == set(analysis_panels())
    for mart in ("practice_month_panel", "person_wave_panel", "twic_analysis_set"):
        n = len(query(small_dbt_world.warehouse, f"select * from marts.{mart}"))
        assert len(pd.read_parquet(tmp_path / f"{mart}.parquet")) == n
        df, meta = pyreadstat.read_dta(str(tmp_path / f"{mart}.dta"))
        assert len(df) == n
    _, meta = pyreadstat.read_dta(str(tmp_path / "practice_month_panel.dta"), metadataonly=True)
    assert meta.original_variable_types["month"] == "%td"
    with pytest.raises(ValueError, match="unknown export format"):
        export_marts(small_dbt_world.warehouse, tmp_path, formats=("xlsx",))


@pytest.mark.slow
def test_dbt_build_on_the_default_world_is_exact_and_under_a_minute(tmp_path: Path) -> None:
    world = build_dbt_world(tmp_path, "default")
    assert world.build.returncode == 0, world.build.stdout[-5000:]
    assert_counts_match_truth(world)
    print(f"dbt build on the default world: {world.build_seconds:.1f} s")
    assert world.build_seconds < 60
