"""Centre-of-contact process measures on a small world built through ingest and dbt.

``marts.contact_centre_calls_monthly`` must account for every consented call of the raw calls
file, attribute calls to the neighbourhood of the caller's registered 65+ person-month, and
divide by those person-months; the report's readers must hide small counts.
"""

from __future__ import annotations

import math

import pandas as pd

from sicp.report_data import (
    ReportInputs,
    calls_by_neighbourhood,
    calls_by_reason,
    calls_by_twic_arm,
)
from tests.worlds import BuiltWorld, query, world_paths

MART = "marts.contact_centre_calls_monthly"


def _consented_calls(world: BuiltWorld) -> pd.DataFrame:
    """The raw calls file without the calls of people excluded from linked records (withdrawn,
    or no record-linkage consent), read straight from the input folder."""
    raw = world_paths(world.warehouse.parent).input_dir
    calls = pd.read_csv(raw / "programme" / "contact_centre_calls.csv", parse_dates=["called_on"])
    excluded = query(
        world.warehouse,
        "select person_id from raw.consent_exclusions where scope in ('all', 'records')",
    )["person_id"]
    assert calls["person_id"].isin(excluded).any()  # the small world has calls to exclude
    return calls[~calls["person_id"].isin(excluded)].reset_index(drop=True)


def _inputs(world: BuiltWorld) -> ReportInputs:
    """Report readers on the world's warehouse (they read neither results nor dbt artefacts)."""
    paths = world_paths(world.warehouse.parent)
    return ReportInputs(
        paths.results_dir, paths.warehouse, paths.protocols_dir, world.warehouse.parent / "target"
    )


def test_mart_calls_add_up_to_every_consented_call(small_dbt_world: BuiltWorld) -> None:
    calls = _consented_calls(small_dbt_world)
    mart = query(
        small_dbt_world.warehouse, f"select reason, sum(calls) as calls from {MART} group by 1"
    )
    by_reason = calls.groupby("reason").size()
    assert len(calls) > 0
    assert int(mart["calls"].sum()) == len(calls)
    assert dict(zip(mart["reason"], mart["calls"].astype(int), strict=True)) == {
        reason: int(by_reason.get(reason, 0)) for reason in mart["reason"]
    }


def test_calls_and_rates_follow_the_callers_65plus_person_month(
    small_dbt_world: BuiltWorld,
) -> None:
    """Recomputed in pandas from the person-month panel: the neighbourhood is that of the
    caller's 65+ person-month, the denominator counts those person-months."""
    months = query(
        small_dbt_world.warehouse,
        "select person_id, month, neighbourhood from marts.person_month_panel",
    )
    calls = _consented_calls(small_dbt_world)
    calls["month"] = calls["called_on"].dt.to_period("M").dt.to_timestamp()
    placed = calls.merge(months, on=["person_id", "month"], how="left")
    expected = (
        placed.dropna(subset=["neighbourhood"])
        .groupby(["neighbourhood", "month", "reason"])
        .size()
        .rename("expected")
    )
    denominators = months.groupby(["neighbourhood", "month"]).size().rename("pm")
    mart = query(small_dbt_world.warehouse, f"select * from {MART} where neighbourhood is not null")
    mart["month"] = pd.to_datetime(mart["month"])
    both = (
        mart.set_index(["neighbourhood", "month", "reason"]).join(expected).fillna({"expected": 0})
    )
    assert (both["calls"] == both["expected"]).all()
    assert int(both["calls"].sum()) == int(expected.sum())
    pm = both.join(denominators, on=["neighbourhood", "month"])
    assert (pm["person_months_65plus"] == pm["pm"]).all()
    assert (pm["calls_per_1000_65plus"] - 1000 * pm["calls"] / pm["pm"]).abs().max() < 1e-9
    unattributed = query(
        small_dbt_world.warehouse, f"select sum(calls) as n from {MART} where neighbourhood is null"
    )["n"].iloc[0]
    assert int(0 if pd.isna(unattributed) else unattributed) == int(
        placed["neighbourhood"].isna().sum()
    )


def test_report_readers_hide_small_counts_and_split_trial_arms(small_dbt_world: BuiltWorld) -> None:
    inputs = _inputs(small_dbt_world)
    threshold = 10
    hood = calls_by_neighbourhood(inputs, threshold)
    small_months = hood[(hood["calls"] > 0) & (hood["calls"] < threshold)]
    assert len(small_months) > 0, "the small world should have small monthly call counts"
    assert small_months["calls_per_1000_65plus"].isna().all()
    shown = hood[(hood["calls"] == 0) | (hood["calls"] >= threshold)]
    assert shown["calls_per_1000_65plus"].notna().all()
    reasons = calls_by_reason(inputs)
    total = query(small_dbt_world.warehouse, f"select sum(calls) as n from {MART}")["n"].iloc[0]
    assert reasons["calls"].sum() + reasons["unattributed_calls"].sum() == total
    arms = calls_by_twic_arm(inputs).set_index("arm")
    assert arms.loc["control", "coaching_calls"] == 0  # the control arm is never contacted
    assert arms.loc["offer", "coaching_calls"] > 0
    assert math.isclose(
        arms.loc["offer", "coaching_per_1000"],
        1000 * arms.loc["offer", "coaching_calls"] / arms.loc["offer", "person_months"],
    )
