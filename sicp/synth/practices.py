"""The practice table: codes, neighbourhoods, list sizes and MDG start dates from the roll-out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.synth.timeline import Timeline

#: Index used for "never exposed": later than any simulated month.
NEVER = 10_000


def build_practices(scn: dict[str, Any], tl: Timeline, rng: np.random.Generator) -> pd.DataFrame:
    """One row per practice; which practices of each MDG take part is drawn from ``rng``.

    Internal columns (``start_idx``, ``care_home``, ``size``, ``re``, ``imd_mean``, ``mdg``)
    feed the simulation; only the contract columns are written.
    """
    scale = int(scn.get("scale", 1))
    pop = scn["population"]
    rows: list[dict[str, Any]] = []
    for entry in scn["rollout"]:
        chp = bool(entry.get("care_home_practice", False))
        members: list[str] = []
        for hood, n in entry["practices"].items():
            members += [hood] * (int(n) * scale)
        taking_part = min(int(entry["taking_part"]) * scale, len(members))
        part = np.zeros(len(members), bool)
        part[rng.choice(len(members), taking_part, replace=False)] = True
        for hood, takes in zip(members, part, strict=True):
            rows.append({
                "neighbourhood": hood, "mdg": entry["mdg"], "care_home": chp,
                "mdg_start_date": pd.Timestamp(entry["start"]).date() if takes else None,
            })
    df = pd.DataFrame(rows).sort_values(["neighbourhood", "care_home"], kind="stable")
    df = df.reset_index(drop=True)
    n = len(df)
    prefix = "P87" if n <= 999 else "P8"
    width = 6 - len(prefix)
    df.insert(0, "practice_code", [f"{prefix}{i + 1:0{width}d}" for i in range(n)])
    counter = df.groupby("neighbourhood").cumcount() + 1
    df.insert(1, "practice_name", [
        "Care Homes Medical Practice" if chp else f"{hood} Health Centre {k}"
        for hood, k, chp in zip(df["neighbourhood"], counter, df["care_home"], strict=True)
    ])
    df["start_idx"] = [
        tl.index(d) if d is not None else NEVER for d in df["mdg_start_date"]
    ]
    sizes = pop["people_per_practice"] * rng.lognormal(
        -0.5 * pop["practice_size_sd"] ** 2, pop["practice_size_sd"], n)
    sizes = np.where(df["care_home"], pop["care_home_practice_size"], sizes)
    df["size"] = sizes.round().astype(int)
    df["re"] = rng.normal(0.0, scn["rates"]["practice_sd"], n)
    df["imd_mean"] = df["neighbourhood"].map(scn["deprivation"]).astype(float)
    return df
