"""Checks on one small world, built once: community assets, centre of contact and costs in
the warehouse against the raw files, and small-number suppression in a rendered report.

The small scenario goes through ingest, dbt and two protocols; each programme mart column is
recomputed in pandas straight from the generator's files, so the SQL and an independent reading
of the definitions must agree. Its monthly counts are small, which is what suppression needs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from analysis.economics import price_utilisation, qaly_auc
from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import build_world

PRICE_YEAR = 2018
#: Count columns of int_person_month_costs and the unit cost each is priced at.
PRICED = {
    f"n_{item}": item
    for item in (
        "emergency_admission",
        "elective_admission",
        "ae_attendance",
        "gp_contact",
        "mdg_discussion",
        "coaching_session",
        "contact_centre_call",
    )
}


#: Protocols that fit on the tiny world (stepped-wedge GEEs need more practices and events).
SMALL_WORLD_PROTOCOLS = ("its_salford_emergency_admissions", "twic_selfman")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Paths:
    """The small scenario through ingest, dbt and the protocols that fit on it."""
    root = tmp_path_factory.mktemp("small")
    protocols = root / "protocols"
    protocols.mkdir()
    for pid in SMALL_WORLD_PROTOCOLS:
        shutil.copy(PROJECT_ROOT / "protocols" / f"{pid}.yml", protocols)
    return build_world(root, "small", 11, protocols_dir=protocols)


def _query(paths: Paths, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(sql).df()


def _raw(paths: Paths, rel: str) -> pd.DataFrame:
    return pd.read_csv(Path(paths.input_dir) / rel)


def test_asset_dose_follows_the_truth_definition(world):
    """Cumulative funding to the end of the previous month / (registered 65+ in the month of
    return / 1,000) / 10,000, for the neighbourhood and month of every returned questionnaire."""
    assets = _raw(world, "programme/community_assets.csv").sort_values(["neighbourhood", "month"])
    assets["prior"] = (
        assets.groupby("neighbourhood")["funding_gbp"].cumsum() - assets["funding_gbp"]
    )
    pop = _raw(world, "reference/practice_population.csv").merge(
        _raw(world, "reference/practices.csv")[["practice_code", "neighbourhood"]]
    )
    pop65 = (
        pop[pop["age_band"] != "0-64"]
        .groupby(["neighbourhood", "month"])["registered"]
        .sum()
        .rename("pop65")
        .reset_index()
    )
    expected = assets.merge(pop65, on=["neighbourhood", "month"])
    expected["dose"] = expected["prior"] / (expected["pop65"] / 1000) / 10_000
    expected["month"] = pd.to_datetime(expected["month"])

    panel = _query(
        world,
        "select person_id, wave, neighbourhood, returned_on, asset_dose "
        "from marts.person_wave_panel",
    )
    panel["month"] = pd.to_datetime(panel["returned_on"]).dt.to_period("M").dt.to_timestamp()
    both = panel.merge(
        expected[["neighbourhood", "month", "dose"]],
        how="left",
        on=["neighbourhood", "month"],
        validate="many_to_one",
    )
    assert len(both) > 0 and both["dose"].notna().all()
    assert (both["asset_dose"] > 0).mean() > 0.3, "the small world should carry real doses"
    np.testing.assert_allclose(both["asset_dose"], both["dose"], rtol=1e-9, atol=1e-12)


def test_every_priced_contact_traces_to_its_unit_cost(world):
    """Each event's quoted cost and price year are the unit_costs.csv row of its item, and its
    cost is that cost times the inflation_index uplift to 2017/18 prices."""
    units = _raw(world, "programme/unit_costs.csv").set_index("item")
    index = pd.read_csv(PROJECT_ROOT / "dbt" / "seeds" / "inflation_index.csv").set_index("year")[
        "index"
    ]
    events = _query(world, "select * from intermediate.int_utilisation_events")
    assert set(events["item"]) <= set(units.index)
    assert {
        "emergency_admission",
        "ae_attendance",
        "gp_contact",
        "contact_centre_call",
        "coaching_session",
    } <= set(events["item"])
    quoted = units.loc[events["item"]]
    np.testing.assert_allclose(events["unit_cost_gbp"], quoted["cost_gbp"])
    np.testing.assert_array_equal(events["unit_cost_price_year"], quoted["price_year"])
    uplift = index.loc[PRICE_YEAR] / index.loc[quoted["price_year"]].to_numpy()
    np.testing.assert_allclose(events["uplift"], uplift)
    np.testing.assert_allclose(events["cost_gbp"], quoted["cost_gbp"].to_numpy() * uplift)
    assert (events["price_year"] == PRICE_YEAR).all()
    assert (events.loc[events["unit_cost_price_year"] != PRICE_YEAR, "uplift"] > 1).all()


def test_calls_are_priced_once_each(world):
    """Every call in the file is one priced contact: a person's first coaching call is the
    offer (a contact-centre call), later ones are sessions."""
    calls = _raw(world, "programme/contact_centre_calls.csv")
    priced = _query(
        world,
        "select item, event_key from intermediate.int_utilisation_events "
        "where source_table = 'contact_centre_calls'",
    )
    consented = _query(world, "select call_id from staging.stg_contact_centre_calls__calls")
    assert sorted(priced["event_key"]) == sorted(consented["call_id"])
    coaching = calls[calls["reason"] == "coaching"].sort_values(
        ["person_id", "called_on", "call_id"]
    )
    sessions = coaching[coaching.groupby("person_id").cumcount() > 0]
    kept = set(consented["call_id"])
    assert (
        set(priced.loc[priced["item"] == "coaching_session", "event_key"])
        == set(sessions["call_id"]) & kept
    )


def test_person_month_costs_agree_with_python_pricing(world):
    """The SQL pricing equals analysis.economics.price_utilisation on the same counts."""
    counts = _query(
        world,
        "select person_id, month, " + ", ".join(PRICED) + ", cost_gbp "
        "from intermediate.int_person_month_costs where cost_gbp > 0",
    )
    index = pd.read_csv(PROJECT_ROOT / "dbt" / "seeds" / "inflation_index.csv")
    long = price_utilisation(
        counts.drop(columns="cost_gbp"),
        _raw(world, "programme/unit_costs.csv"),
        index,
        PRICE_YEAR,
        PRICED,
    )
    total = long.groupby(["person_id", "month"])["cost_gbp"].sum().rename("python")
    both = counts.set_index(["person_id", "month"]).join(total)
    np.testing.assert_allclose(both["cost_gbp"], both["python"], rtol=1e-9)


def test_person_month_costs_equal_the_sum_of_their_events(world):
    """Counts x unit cost (the model) equals the exact sum of each event's own cost (the
    definition), to the bit, per item and in total, for every 65+ person-month."""
    items = sorted(PRICED.values())
    got = _query(
        world,
        "select person_id, month, cost_gbp, "
        + ", ".join(f"cost_{i}_gbp" for i in items)
        + " from intermediate.int_person_month_costs",
    )
    per_item = ", ".join(
        f"cast(sum(cast(case when item = '{i}' then cost_gbp else 0 end as decimal(38, 10)))"
        f" as double) as cost_{i}_gbp"
        for i in items
    )
    summed = _query(
        world,
        f"""
        select person_id, event_month as month,
               cast(sum(cast(cost_gbp as decimal(38, 10))) as double) as cost_gbp, {per_item}
        from intermediate.int_utilisation_events group by person_id, event_month""",
    )
    both = got.merge(summed, on=["person_id", "month"], how="left", suffixes=("", "_events"))
    assert (got["cost_gbp"] > 0).sum() > 100
    for col in ["cost_gbp"] + [f"cost_{i}_gbp" for i in items]:
        expected = both[f"{col}_events"].fillna(0.0).to_numpy()
        assert np.array_equal(both[col].to_numpy(), expected), col


def test_practice_months_count_ae_not_admitted_and_calls(world):
    """A&E attendances not followed by admission are those whose disposal is not 'admitted';
    the practice panel sums them (and calls) over its 65+ person-months."""
    panel = _query(
        world,
        "select sum(ae_attendances) as ae, sum(ae_attendances_not_admitted) "
        "as walk, sum(contact_centre_calls) as calls "
        "from marts.practice_month_panel",
    )
    person = _query(
        world,
        """
        select sum(ae_attendances_not_admitted) as walk, sum(contact_centre_calls) as calls,
               sum(n_ae_attendance) as ae
        from intermediate.int_person_month_costs""",
    )
    assert panel["walk"].item() == person["walk"].item()
    assert panel["calls"].item() == person["calls"].item() > 0
    assert panel["ae"].item() == person["ae"].item()
    assert 0 < panel["walk"].item() < panel["ae"].item()


def test_trial_costs_and_qalys_recomputed(world):
    """cost_12m / cost_baseline_12m sum the trial items in the 12 months after / before
    randomisation; qaly_12m is the wave-2 to wave-4 EQ-5D trapezoid (analysis.economics)."""
    trial = _query(
        world,
        "select person_id, randomised_on, consent_linkage, cost_12m, "
        "cost_baseline_12m, qaly_12m from marts.twic_analysis_set",
    )
    events = _query(
        world,
        """
        select person_id, event_date, cost_gbp from intermediate.int_utilisation_events
        where item in ('emergency_admission', 'elective_admission', 'ae_attendance',
                       'gp_contact', 'coaching_session')""",
    )
    ev = events.merge(trial[["person_id", "randomised_on"]], on="person_id")
    start = pd.to_datetime(ev["randomised_on"])
    day = pd.to_datetime(ev["event_date"])
    after = (day >= start) & (day < start + pd.DateOffset(months=12))
    before = (day < start) & (day >= start - pd.DateOffset(months=12))
    linked = trial[trial["consent_linkage"] == 1].set_index("person_id")
    for col, mask in (("cost_12m", after), ("cost_baseline_12m", before)):
        sums = ev[mask].groupby("person_id")["cost_gbp"].sum()
        expected = sums.reindex(linked.index, fill_value=0.0)
        np.testing.assert_allclose(linked[col], expected, rtol=1e-9, atol=1e-9)
    assert trial.loc[trial["consent_linkage"] != 1, "cost_12m"].isna().all()
    assert (linked["cost_12m"] > 0).mean() > 0.5

    scores = _query(
        world,
        "select person_id, wave, eq5d_index "
        "from intermediate.int_survey_wave__scores where wave between 2 and 4",
    )
    has_base = scores.loc[(scores["wave"] == 2) & scores["eq5d_index"].notna(), "person_id"]
    auc = qaly_auc(
        scores[scores["person_id"].isin(has_base)],
        unit="person_id",
        time="wave",
        utility="eq5d_index",
        time_scale=0.5,
        horizon=1.0,
    ).set_index("person_id")
    got = trial.set_index("person_id")["qaly_12m"]
    expected = auc["qaly"].reindex(got.index)
    assert got.notna().sum() > 0
    np.testing.assert_allclose(
        got.to_numpy(float), expected.to_numpy(float), rtol=1e-9, equal_nan=True
    )


def test_small_cells_are_suppressed_in_the_rendered_audit(world):
    """On a small world many monthly counts fall below the threshold: none may be printed."""
    from sicp.reports import render_all

    threshold = 10
    paths = world
    html_path = render_all(paths, formats=("html",), threshold=threshold, names=("outcome_audit",))[
        0
    ]
    html = html_path.read_text(encoding="utf-8")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        monthly = con.execute("""
            select strftime(month, '%Y-%m') as month, sum(deaths) as deaths,
                   sum(permanent_care_home_admissions) as care_home
            from marts.practice_month_panel group by 1 order by 1""").df()
    small = monthly[(monthly["deaths"] > 0) & (monthly["deaths"] < threshold)]
    assert len(small) > 0, "the small world should have small monthly death counts"
    table = html.split("Monthly counts", 1)[1]
    checked = 0
    for month in small["month"]:
        row = re.search(rf"<tr[^>]*>\s*<t[hd][^>]*>{month}</t[hd]>(.*?)</tr>", table, re.S)
        assert row is not None, month
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        numbers = [int(c.replace(",", "")) for c in cells if c.replace(",", "").isdigit()]
        assert all(n == 0 or n >= threshold for n in numbers), (month, cells)
        assert "[c]" in cells
        checked += 1
    assert checked == len(small)
