"""Greater Manchester comparator areas: monthly indicators sharing common latent factors.

Salford's loadings are a convex combination of three donors' loadings (plus small noise), so a
synthetic control can reproduce its pre-period. Only Salford changes after ``effect_start``;
the change is drawn on common random numbers so the realised ATT is known exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.synth.timeline import Timeline, to_month

BOROUGHS = (
    ("E08000001", "Bolton", 48_000), ("E08000002", "Bury", 33_000),
    ("E08000003", "Manchester", 50_000), ("E08000004", "Oldham", 37_000),
    ("E08000005", "Rochdale", 35_000), ("E08000006", "Salford", 35_000),
    ("E08000007", "Stockport", 56_000), ("E08000008", "Tameside", 38_000),
    ("E08000009", "Trafford", 40_000), ("E08000010", "Wigan", 57_000),
)
SALFORD = "E08000006"
#: Monthly rate per person aged 65+ at the factor mean.
RATES = {"emergency_admissions_65plus": 0.021, "ae_attendances_65plus": 0.030,
         "care_home_admissions_65plus": 0.0013, "deaths_65plus": 0.0037,
         "flu_vaccinated_65plus": 0.0}


def simulate_areas(scn: dict[str, Any], rng: np.random.Generator
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    cp = scn["comparators"]
    tl = Timeline(to_month(cp["start"]), to_month(cp["end"]))
    T, A, K = tl.n, len(BOROUGHS), int(cp["n_factors"])
    effect_from = tl.index(cp["effect_start"])
    eff = scn["effects"]
    factors = np.cumsum(rng.normal(0, 0.012, (K, T)), axis=1)
    factors -= factors.mean(axis=1, keepdims=True)
    sal = [k for k, (code, _, _) in enumerate(BOROUGHS) if code == SALFORD][0]
    donors = [k for k in range(A) if k != sal]
    season = 0.12 * np.cos(2 * np.pi * (tl.calendar_month - 1) / 12)
    pop = np.array([b[2] for b in BOROUGHS], float)[:, None] * (1 + 0.012 * np.arange(T) / 12)
    rows, truth = [], {}
    for ind, rate in RATES.items():
        alpha = rng.normal(0, 0.12, A)
        load = rng.normal(1.0, 0.5, (A, K))
        w = np.zeros(A)
        w[rng.choice(donors, 3, replace=False)] = rng.dirichlet([2, 2, 2])
        alpha[sal] = w @ alpha + rng.normal(0, 0.01)
        load[sal] = w @ load
        log_rate = np.log(max(rate, 1e-12)) + alpha[:, None] + load @ factors + season[None, :]
        lam = np.exp(log_rate) * pop
        if ind == "flu_vaccinated_65plus":
            share = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.15, 0.45, 0.28, 0.07])
            uptake = np.clip(0.72 + 0.05 * alpha[:, None] + 0.004 * np.arange(T) / 12, 0, 0.95)
            lam = pop * uptake * share[tl.calendar_month - 1][None, :]
        ratio = np.ones((A, T))
        key = {"emergency_admissions_65plus": "comparator_emergency_rr",
               "care_home_admissions_65plus": "comparator_care_home_rr"}.get(ind)
        if key is not None:
            ratio[sal, effect_from:] = eff[key]
        cf = rng.poisson(lam)
        obs = rng.binomial(cf, np.minimum(ratio, 1.0)) + rng.poisson(
            lam * np.maximum(ratio - 1.0, 0.0))
        if key is not None:
            post = slice(effect_from, T)
            den = pop[sal, post].sum()
            truth[ind] = {
                "per_1000": float((obs[sal, post] - cf[sal, post]).sum() / den * 1000),
                "ratio": float(obs[sal, post].sum() / cf[sal, post].sum()),
                "months": T - effect_from,
            }
        rows.append(_long(ind, obs, pop, tl))
        if ind == "deaths_65plus":
            home = rng.binomial(obs, np.clip(0.21 + 0.02 * alpha[:, None], 0.05, 0.6))
            rows.append(_long("deaths_at_home_65plus", home, pop, tl))
    return pd.concat(rows, ignore_index=True), truth


def _long(indicator: str, num: np.ndarray, pop: np.ndarray, tl: Timeline) -> pd.DataFrame:
    A, T = num.shape
    a, t = np.meshgrid(np.arange(A), np.arange(T), indexing="ij")
    return pd.DataFrame({
        "area_code": np.asarray([b[0] for b in BOROUGHS])[a.ravel()],
        "area_name": np.asarray([b[1] for b in BOROUGHS])[a.ravel()],
        "month": tl.first_day[t.ravel()], "indicator": indicator,
        "numerator": num.ravel().astype(float), "denominator": np.round(pop.ravel())})
