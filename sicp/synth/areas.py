"""Comparator areas: monthly indicators sharing common latent factors.

The areas, their 65+ populations and which of them is the study area (where the programme ran)
come from the scenario's ``comparators`` block. The study area's loadings are a convex
combination of three other areas' loadings (plus small noise), so a synthetic control can
reproduce its pre-period. Only the study area changes after ``effect_start``; the change is
drawn on common random numbers so the realised ATT is known exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.synth.timeline import Timeline, to_month


def area_table(scn: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(code, name, population65)`` of every comparator area, in the scenario's order."""
    return [
        (str(a["code"]), str(a["name"]), float(a["population65"]))
        for a in scn["comparators"]["areas"]
    ]


def study_area(scn: dict[str, Any]) -> pd.DataFrame:
    """The contract's ``study_area`` file: the scenario's study area, named as in the areas."""
    code = str(scn["comparators"]["study_area"])
    names = {c: n for c, n, _ in area_table(scn)}
    if code not in names:
        raise ValueError(
            f"scenario {scn.get('name')!r}: comparators.study_area {code!r} is not "
            f"among comparators.areas ({', '.join(names)})"
        )
    return pd.DataFrame({"area_code": [code], "area_name": [names[code]]})


def milestones(scn: dict[str, Any]) -> pd.DataFrame:
    """The contract's ``milestones`` file: the dates the scenario's effects start from."""
    rows = [
        (
            "mdg_launch",
            scn["comparators"]["effect_start"],
            "First neighbourhood MDGs: the programme's start in the study area",
        ),
        ("contact_centre_launch", scn["contact_centre"]["launch"], "The centre of contact opened"),
    ]
    return pd.DataFrame(
        {
            "milestone": [r[0] for r in rows],
            "month": pd.to_datetime([str(r[1]) for r in rows]),
            "description": [r[2] for r in rows],
        }
    )


#: Monthly rate per person aged 65+ at the factor mean.
RATES = {
    "emergency_admissions_65plus": 0.021,
    "ae_attendances_65plus": 0.030,
    "care_home_admissions_65plus": 0.0013,
    "deaths_65plus": 0.0037,
    "flu_vaccinated_65plus": 0.0,
}


def simulate_areas(
    scn: dict[str, Any], rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, Any]]:
    cp = scn["comparators"]
    tl = Timeline(to_month(cp["start"]), to_month(cp["end"]))
    areas = area_table(scn)
    T, A, K = tl.n, len(areas), int(cp["n_factors"])
    effect_from = tl.index(cp["effect_start"])
    if not 0 <= effect_from < T:
        raise ValueError(
            f"scenario {scn.get('name')!r}: comparators.effect_start "
            f"{cp['effect_start']} is outside comparators.start..end"
        )
    treated = str(study_area(scn)["area_code"].iloc[0])
    ta = [k for k, (code, _, _) in enumerate(areas) if code == treated][0]
    donors = [k for k in range(A) if k != ta]
    if len(donors) < 3:
        raise ValueError(
            f"scenario {scn.get('name')!r}: comparators.areas needs the study area "
            f"and at least 3 others, got {A} areas"
        )
    eff = scn["effects"]
    factors = np.cumsum(rng.normal(0, 0.012, (K, T)), axis=1)
    factors -= factors.mean(axis=1, keepdims=True)
    season = 0.12 * np.cos(2 * np.pi * (tl.calendar_month - 1) / 12)
    pop = np.array([a[2] for a in areas], float)[:, None] * (1 + 0.012 * np.arange(T) / 12)
    rows, truth = [], {}
    for ind, rate in RATES.items():
        alpha = rng.normal(0, 0.12, A)
        load = rng.normal(1.0, 0.5, (A, K))
        w = np.zeros(A)
        w[rng.choice(donors, 3, replace=False)] = rng.dirichlet([2, 2, 2])
        alpha[ta] = w @ alpha + rng.normal(0, 0.01)
        load[ta] = w @ load
        log_rate = np.log(max(rate, 1e-12)) + alpha[:, None] + load @ factors + season[None, :]
        lam = np.exp(log_rate) * pop
        if ind == "flu_vaccinated_65plus":
            share = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.15, 0.45, 0.28, 0.07])
            uptake = np.clip(0.72 + 0.05 * alpha[:, None] + 0.004 * np.arange(T) / 12, 0, 0.95)
            lam = pop * uptake * share[tl.calendar_month - 1][None, :]
        ratio = np.ones((A, T))
        key = {
            "emergency_admissions_65plus": "comparator_emergency_rr",
            "care_home_admissions_65plus": "comparator_care_home_rr",
        }.get(ind)
        if key is not None:
            ratio[ta, effect_from:] = eff[key]
        cf = rng.poisson(lam)
        obs = rng.binomial(cf, np.minimum(ratio, 1.0)) + rng.poisson(
            lam * np.maximum(ratio - 1.0, 0.0)
        )
        if key is not None:
            post = slice(effect_from, T)
            den = pop[ta, post].sum()
            truth[ind] = {
                "per_1000": float((obs[ta, post] - cf[ta, post]).sum() / den * 1000),
                "ratio": float(obs[ta, post].sum() / cf[ta, post].sum()),
                "months": T - effect_from,
            }
        rows.append(_long(ind, obs, pop, tl, areas))
        if ind == "deaths_65plus":
            home = rng.binomial(obs, np.clip(0.21 + 0.02 * alpha[:, None], 0.05, 0.6))
            rows.append(_long("deaths_at_home_65plus", home, pop, tl, areas))
    return pd.concat(rows, ignore_index=True), truth


def _long(
    indicator: str,
    num: np.ndarray,
    pop: np.ndarray,
    tl: Timeline,
    areas: list[tuple[str, str, float]],
) -> pd.DataFrame:
    A, T = num.shape
    a, t = np.meshgrid(np.arange(A), np.arange(T), indexing="ij")
    return pd.DataFrame(
        {
            "area_code": np.asarray([b[0] for b in areas])[a.ravel()],
            "area_name": np.asarray([b[1] for b in areas])[a.ravel()],
            "month": tl.first_day[t.ravel()],
            "indicator": indicator,
            "numerator": num.ravel().astype(float),
            "denominator": np.round(pop.ravel()),
        }
    )
