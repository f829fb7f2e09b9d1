"""Programme delivery files: community-asset investment, contact-centre calls, unit costs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.contract import NEIGHBOURHOODS, STUDY_END
from sicp.synth.timeline import Timeline

END_DAY = np.datetime64(STUDY_END.isoformat(), "D")

#: Unit costs (GBP) with their price year and source; two are deliberately not 2017/18.
UNIT_COSTS = (
    ("emergency_admission", "non-elective spell", 1609.0, 2018,
     "NHS Reference Costs 2017/18, non-elective short and long stay, weighted"),
    ("elective_admission", "elective spell", 3935.0, 2018, "NHS Reference Costs 2017/18"),
    ("ae_attendance", "attendance", 160.0, 2018, "NHS Reference Costs 2017/18, type 1 A&E"),
    ("gp_contact", "consultation", 37.4, 2018, "PSSRU Unit Costs 2018, GP per surgery "
     "consultation of 9.22 minutes"),
    ("care_home_week", "resident week", 694.0, 2018, "PSSRU Unit Costs 2018, private sector "
     "nursing home"),
    ("mdg_discussion", "patient discussed", 142.0, 2016, "Salford Together programme costing "
     "2015/16 (team time per case)"),
    ("coaching_session", "telephone session", 48.0, 2018, "PSSRU Unit Costs 2018, band 6 nurse "
     "time, 45 minutes"),
    ("contact_centre_call", "call", 9.5, 2015, "Salford contact centre business case 2014/15"),
)


def unit_costs() -> pd.DataFrame:
    return pd.DataFrame(UNIT_COSTS, columns=["item", "unit", "cost_gbp", "price_year", "source"])


def community_assets(scn: dict[str, Any], tl: Timeline, rng: np.random.Generator) -> pd.DataFrame:
    """Monthly funding by neighbourhood, starting on a neighbourhood-specific date."""
    ca = scn["community_assets"]
    scale = float(scn.get("scale", 1))
    first, last = tl.index(ca["start_from"]), tl.index(ca["start_to"])
    rows = []
    for hood in NEIGHBOURHOODS:
        start = int(rng.integers(first, last + 1))
        level = rng.gamma(4.0, 0.25)
        t = np.arange(tl.n)
        ramp = np.clip((t - start + 1) / 6, 0, 1)
        funding = ca["monthly_funding_gbp"] * scale * level * ramp * rng.lognormal(
            -0.08, 0.4, tl.n)
        funding = np.round(funding, 2)
        groups = rng.poisson(funding / 2500.0)
        rows.append(pd.DataFrame({
            "neighbourhood": hood, "month": tl.first_day, "groups_funded": groups,
            "funding_gbp": funding, "attendances": rng.poisson(groups * 35.0)}))
    return pd.concat(rows, ignore_index=True)


def asset_dose(assets: pd.DataFrame, pop65: pd.DataFrame, tl: Timeline,
               neighbourhood: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Cumulative funding to the end of the previous month, in GBP 10,000 per 1,000 aged 65+.

    ``pop65`` is registered 65+ by neighbourhood and month index (practice_population).
    """
    wide = assets.pivot(index="month", columns="neighbourhood", values="funding_gbp")
    cum = wide.cumsum().shift(1, fill_value=0.0)
    per = cum.to_numpy() / (pop65.reindex(columns=wide.columns).to_numpy() / 1000.0) / 10_000
    col = pd.Index(wide.columns).get_indexer(neighbourhood)
    return per[month, col]


def coaching_calls(arms: pd.DataFrame, linked: set[str], rng: np.random.Generator
                   ) -> pd.DataFrame:
    """Outbound calls of the coaching service: one offer call, then one per session."""
    offer = arms[(arms["arm"] == "offer") & arms["person_id"].isin(linked)]
    first = offer["randomised_on"].to_numpy().astype("datetime64[D]") + rng.integers(
        3, 15, len(offer)).astype("timedelta64[D]")
    sessions = offer["sessions_completed"].to_numpy()
    who = np.repeat(np.arange(len(offer)), sessions + 1)
    k = np.concatenate([np.arange(s + 1) for s in sessions]) if len(offer) else np.array([], int)
    day = first[who] + (k * 14 + rng.integers(0, 4, len(who))).astype("timedelta64[D]")
    died = offer["died_on"].to_numpy().astype("datetime64[D]")[who]
    ok = (day <= END_DAY) & (np.isnat(died) | (day < died))
    return pd.DataFrame({
        "person_id": offer["person_id"].to_numpy()[who][ok], "called_on": day[ok],
        "direction": "outbound", "reason": "coaching",
        "duration_min": np.round(np.where(k[ok] == 0, 8.0, 35.0) + rng.gamma(2.0, 3.0, ok.sum()),
                                 1)})
