"""Programme delivery files: community-asset investment, contact-centre calls, unit costs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.contract import UNIT_COST_ITEMS
from sicp.synth.timeline import Timeline

UNIT_COST_COLUMNS = ("item", "unit", "cost_gbp", "price_year", "source")


def unit_costs(scn: dict[str, Any]) -> pd.DataFrame:
    """The scenario's ``unit_costs`` table (item, unit, cost_gbp, price_year, source); it must
    price every item of the contract's UNIT_COST_ITEMS."""
    rows = [{k: entry[k] for k in UNIT_COST_COLUMNS} for entry in scn["unit_costs"]]
    df = pd.DataFrame(rows, columns=list(UNIT_COST_COLUMNS))
    missing = [item for item in UNIT_COST_ITEMS if item not in set(df["item"])]
    if missing:
        raise ValueError(
            f"scenario {scn.get('name')!r}: unit_costs has no row for {', '.join(missing)}"
        )
    return df


def community_assets(
    scn: dict[str, Any], tl: Timeline, neighbourhoods: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """Monthly funding of each neighbourhood (in sorted order), starting on a
    neighbourhood-specific date drawn between ``start_from`` and ``start_to``."""
    ca = scn["community_assets"]
    scale = float(scn.get("scale", 1))
    first, last = tl.index(ca["start_from"]), tl.index(ca["start_to"])
    rows = []
    for hood in sorted(neighbourhoods):
        start = int(rng.integers(first, last + 1))
        level = rng.gamma(4.0, 0.25)
        t = np.arange(tl.n)
        ramp = np.clip((t - start + 1) / 6, 0, 1)
        funding = ca["monthly_funding_gbp"] * scale * level * ramp * rng.lognormal(-0.08, 0.4, tl.n)
        funding = np.round(funding, 2)
        groups = rng.poisson(funding / 2500.0)
        rows.append(
            pd.DataFrame(
                {
                    "neighbourhood": hood,
                    "month": tl.first_day,
                    "groups_funded": groups,
                    "funding_gbp": funding,
                    "attendances": rng.poisson(groups * 35.0),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def asset_dose(
    assets: pd.DataFrame,
    pop65: pd.DataFrame,
    tl: Timeline,
    neighbourhood: np.ndarray,
    month: np.ndarray,
) -> np.ndarray:
    """Cumulative funding to the end of the previous month, in GBP 10,000 per 1,000 aged 65+.

    ``pop65`` is registered 65+ by neighbourhood and month index (practice_population).
    """
    wide = assets.pivot(index="month", columns="neighbourhood", values="funding_gbp")
    cum = wide.cumsum().shift(1, fill_value=0.0)
    per = cum.to_numpy() / (pop65.reindex(columns=wide.columns).to_numpy() / 1000.0) / 10_000
    col = pd.Index(wide.columns).get_indexer(neighbourhood)
    return per[month, col]


def coaching_calls(
    arms: pd.DataFrame, linked: set[str], tl: Timeline, rng: np.random.Generator
) -> pd.DataFrame:
    """Outbound calls of the coaching service: one offer call, then one per session."""
    offer = arms[(arms["arm"] == "offer") & arms["person_id"].isin(linked)]
    first = offer["randomised_on"].to_numpy().astype("datetime64[D]") + rng.integers(
        3, 15, len(offer)
    ).astype("timedelta64[D]")
    sessions = offer["sessions_completed"].to_numpy()
    who = np.repeat(np.arange(len(offer)), sessions + 1)
    k = np.concatenate([np.arange(s + 1) for s in sessions]) if len(offer) else np.array([], int)
    day = first[who] + (k * 14 + rng.integers(0, 4, len(who))).astype("timedelta64[D]")
    died = offer["died_on"].to_numpy().astype("datetime64[D]")[who]
    ok = (day <= tl.last_day) & (np.isnat(died) | (day < died))
    return pd.DataFrame(
        {
            "person_id": offer["person_id"].to_numpy()[who][ok],
            "called_on": day[ok],
            "direction": "outbound",
            "reason": "coaching",
            "duration_min": np.round(
                np.where(k[ok] == 0, 8.0, 35.0) + rng.gamma(2.0, 3.0, ok.sum()), 1
            ),
        }
    )
