"""The practice table: codes, neighbourhoods, MDGs, list sizes and MDG starts from the roll-out.

Each ``rollout`` entry of the scenario is one MDG: its name, start month (``null`` for an MDG
that never started), the practices of each neighbourhood it covers and how many of them take
part. Practices that do not take part keep the MDG of their entry (so ``practices.mdg`` names
the MDG a never-treated practice would have joined).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.synth.timeline import Timeline

#: Index used for "never exposed": later than any simulated month.
NEVER = 10_000


def build_practices(scn: dict[str, Any], tl: Timeline, rng: np.random.Generator) -> pd.DataFrame:
    """One row per practice; which practices of each MDG take part is drawn from ``rng``.

    Internal columns (``start_idx``, ``care_home``, ``size``, ``re``, ``imd_mean``,
    ``mdg_name``) feed the simulation; only the contract columns are written. The contract's
    ``mdg`` is the entry's MDG name where it differs from the practice's neighbourhood, and
    empty where it is the neighbourhood's own name.
    """
    scale = int(scn.get("scale", 1))
    pop = scn["population"]
    rows: list[dict[str, Any]] = []
    for entry in scn["rollout"]:
        chp = bool(entry.get("care_home_practice", False))
        members: list[str] = []
        for hood, n in entry["practices"].items():
            members += [hood] * (int(n) * scale)
        start = entry.get("start")
        taking_part = min(int(entry["taking_part"]) * scale, len(members))
        if start is None and taking_part:
            raise ValueError(
                f"scenario {scn.get('name')!r}: rollout entry {entry['mdg']!r} has "
                "practices taking part but no start date"
            )
        part = np.zeros(len(members), bool)
        part[rng.choice(len(members), taking_part, replace=False)] = True
        for hood, takes in zip(members, part, strict=True):
            rows.append(
                {
                    "neighbourhood": hood,
                    "mdg_name": str(entry["mdg"]),
                    "care_home": chp,
                    "mdg_start_date": pd.Timestamp(start).date() if takes else None,
                }
            )
    df = pd.DataFrame(rows).sort_values(["neighbourhood", "care_home"], kind="stable")
    df = df.reset_index(drop=True)
    n = len(df)
    # ODS-style codes: the scenario's letter + digits prefix, shortened when the number of
    # practices needs more digits (the contract's pattern is one letter and five digits)
    prefix = str(scn["practice_code_prefix"])
    while len(prefix) > 1 and n > 10 ** (6 - len(prefix)) - 1:
        prefix = prefix[:-1]
    width = 6 - len(prefix)
    df.insert(0, "practice_code", [f"{prefix}{i + 1:0{width}d}" for i in range(n)])
    counter = df.groupby("neighbourhood").cumcount() + 1
    df.insert(
        1,
        "practice_name",
        [
            "Care Homes Medical Practice" if chp else f"{hood} Health Centre {k}"
            for hood, k, chp in zip(df["neighbourhood"], counter, df["care_home"], strict=True)
        ],
    )
    df["start_idx"] = [tl.index(d) if d is not None else NEVER for d in df["mdg_start_date"]]
    sizes = pop["people_per_practice"] * rng.lognormal(
        -0.5 * pop["practice_size_sd"] ** 2, pop["practice_size_sd"], n
    )
    if df["care_home"].any():  # care_home_practice_size is needed only where there is one
        sizes = np.where(df["care_home"], pop["care_home_practice_size"], sizes)
    df["size"] = sizes.round().astype(int)
    df["re"] = rng.normal(0.0, scn["rates"]["practice_sd"], n)
    df["mdg"] = np.where(df["mdg_name"] == df["neighbourhood"], None, df["mdg_name"])
    missing = sorted(set(df["neighbourhood"]) - set(scn["deprivation"]))
    if missing:
        raise ValueError(
            f"scenario {scn.get('name')!r}: deprivation has no entry for {', '.join(missing)}"
        )
    df["imd_mean"] = df["neighbourhood"].map(scn["deprivation"]).astype(float)
    return df
