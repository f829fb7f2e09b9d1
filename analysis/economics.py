"""Costs and cost-effectiveness: priced utilisation, cost-consequence rows, QALYs and the
bootstrap cost-effectiveness analysis of the health-coaching trial.

* :func:`price_utilisation` — counts x unit costs uplifted to one price year, one row per
  priced item so every cost traces to the unit cost, its source year and the uplift used.
* :func:`cost_consequence` — re-expresses an effect estimated on a cost outcome (any estimator
  of the platform, applied to priced utilisation) as GBP per person per year.
* :func:`qaly_auc` — QALYs per person as the area under the EQ-5D index curve (trapezoid rule).
* :func:`cost_effectiveness` — regression-adjusted incremental cost and QALYs (Manca, Hawkins &
  Sculpher 2005: QALYs adjusted for baseline utility, costs for baseline cost), ICER, net
  monetary benefit, and a non-parametric bootstrap stratified by arm for intervals, the
  cost-effectiveness plane and the acceptability curve (Briggs, Wonderling & Mooney 1997;
  Fenwick, Claxton & Sculpher 2001).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.columns import Column
from analysis.design import covariate_design, indicator
from analysis.results import EstimationResult, inference_row, tidy_frame

#: Willingness-to-pay thresholds (GBP per QALY) reported as net-monetary-benefit terms (NICE).
NMB_THRESHOLDS = (20_000, 30_000)
#: Columns of a tidy table that are on the estimate's scale (rescaled by cost_consequence).
_SCALED = (
    "estimate",
    "std_error",
    "ci_low",
    "ci_high",
    "boot_se",
    "boot_ci_low",
    "boot_ci_high",
    "uniform_ci_low",
    "uniform_ci_high",
)
DAYS_PER_YEAR = 365.25


# --------------------------------------------------------------------------------- pricing


def price_utilisation(
    counts: pd.DataFrame,
    unit_costs: pd.DataFrame,
    inflators: pd.DataFrame,
    price_year: int,
    mapping: dict[str, str],
) -> pd.DataFrame:
    """Price utilisation counts in ``price_year`` prices, long format (one row per count x item).

    ``mapping`` maps count columns to ``unit_costs.item`` (the programme/unit_costs.csv layout:
    item, unit, cost_gbp, price_year, source); other columns of ``counts`` are kept as
    identifiers. Each unit cost is uplifted by index[price_year] / index[its price year] from
    ``inflators`` (columns year, index). Output columns: the identifiers, ``measure`` (count
    column), ``item``, ``quantity``, ``unit_cost_gbp`` (as quoted), ``unit_cost_price_year``,
    ``uplift``, ``unit_cost_uplifted_gbp``, ``price_year`` and ``cost_gbp``.
    """
    missing = [c for c in mapping if c not in counts.columns]
    if missing:
        raise KeyError(f"count columns not in counts: {missing}")
    costs = unit_costs.set_index("item")
    if not costs.index.is_unique:
        raise ValueError("unit_costs has duplicate items")
    unknown = sorted(set(mapping.values()) - set(costs.index))
    if unknown:
        raise KeyError(f"items without a unit cost: {unknown}")
    index = inflators.set_index("year")["index"]
    needed = {int(price_year), *costs.loc[list(mapping.values()), "price_year"].astype(int)}
    gaps = sorted(needed - set(index.index.astype(int)))
    if gaps:
        raise KeyError(f"inflation index lacks years {gaps}")
    ids = [c for c in counts.columns if c not in mapping]
    long = counts.melt(
        id_vars=ids, value_vars=list(mapping), var_name="measure", value_name="quantity"
    )
    long["item"] = long["measure"].map(mapping)
    unit = costs.loc[long["item"]]
    long["unit_cost_gbp"] = unit["cost_gbp"].to_numpy(float)
    long["unit_cost_price_year"] = unit["price_year"].to_numpy(int)
    long["uplift"] = float(index.loc[price_year]) / index.loc[
        long["unit_cost_price_year"]
    ].to_numpy(float)
    long["unit_cost_uplifted_gbp"] = long["unit_cost_gbp"] * long["uplift"]
    long["price_year"] = int(price_year)
    long["cost_gbp"] = long["quantity"] * long["unit_cost_uplifted_gbp"]
    return long[
        [
            *ids,
            "measure",
            "item",
            "quantity",
            "unit_cost_gbp",
            "unit_cost_price_year",
            "uplift",
            "unit_cost_uplifted_gbp",
            "price_year",
            "cost_gbp",
        ]
    ]


# ------------------------------------------------------------------------ cost consequence


def cost_consequence(
    result: EstimationResult, *, periods_per_year: float, price_year: int, terms: Sequence[str] = ()
) -> EstimationResult:
    """An effect on cost per person per period, restated as GBP per person per year.

    ``result`` is any estimator's fit on a priced-utilisation outcome (cost per person-month:
    ``periods_per_year=12``; per 6-monthly wave: 2; a trial's cost over 18 months of follow-up:
    1/1.5). Estimates, SEs and interval ends are multiplied by ``periods_per_year``; p-values
    are unchanged, since the rescaling is linear and the interval comes from the same
    estimator. ``terms`` keeps only those rows (default all). Auxiliary tables stay with the
    original result, on its own scale. ``price_year`` names the financial year ending in it,
    as dbt's var ``cost_price_year`` does (2018 = 2017/18 prices).
    """
    if periods_per_year <= 0:
        raise ValueError("periods_per_year must be positive")
    tidy = result.tidy.copy()
    if terms:
        unknown = sorted(set(terms) - set(tidy["term"]))
        if unknown:
            raise KeyError(f"{result.method} has no terms {unknown}")
        tidy = tidy[tidy["term"].isin(terms)].reset_index(drop=True)
    for col in _SCALED:
        if col in tidy.columns:
            tidy[col] = pd.to_numeric(tidy[col]) * periods_per_year
    tidy["scale"] = f"GBP per person per year ({price_year - 1}/{price_year % 100:02d} prices)"
    diagnostics = {
        **result.diagnostics,
        "source_method": result.method,
        "periods_per_year": float(periods_per_year),
        "price_year": int(price_year),
    }
    return EstimationResult("cost_consequence", tidy, diagnostics=diagnostics)


# ------------------------------------------------------------------------------- QALYs


def qaly_auc(
    data: pd.DataFrame,
    *,
    unit: str,
    time: str,
    utility: str,
    time_scale: float = 1.0,
    horizon: float | None = None,
) -> pd.DataFrame:
    """QALYs per person: trapezoidal area under the utility curve from the first measurement.

    ``time`` is a date (converted to years since the person's first measurement) or a number
    multiplied by ``time_scale`` to give years (e.g. 0.5 for 6-monthly wave numbers). Missing
    utilities are skipped, so the curve is interpolated linearly across a missed wave; deaths
    should enter as utility 0 at the date of death. With ``horizon`` (years) the curve is cut
    at the horizon (interpolated) and people followed for less get NaN; without it each
    person's area runs to their last measurement (see ``follow_up_years``). The baseline
    utility is returned for the Manca et al. (2005) adjustment in :func:`cost_effectiveness`.
    """
    frame = data[[unit, time, utility]].dropna().copy()
    if pd.api.types.is_datetime64_any_dtype(frame[time]):
        first = frame.groupby(unit)[time].transform("min")
        frame["_t"] = (frame[time] - first).dt.days / DAYS_PER_YEAR
    else:
        frame["_t"] = frame[time].astype(float) * time_scale
        frame["_t"] -= frame.groupby(unit)["_t"].transform("min")
    frame = frame.sort_values([unit, "_t"]).reset_index(drop=True)
    if frame.duplicated([unit, "_t"]).any():
        raise ValueError(f"({unit}, {time}) does not identify measurements")
    t, u = frame["_t"].to_numpy(float), frame[utility].to_numpy(float)
    same = np.r_[False, frame[unit].to_numpy()[1:] == frame[unit].to_numpy()[:-1]]
    t0, u0 = np.r_[np.nan, t[:-1]], np.r_[np.nan, u[:-1]]
    if horizon is not None:
        # Segments crossing the horizon end at the interpolated utility; later ones have width 0.
        cross = t > horizon
        u = np.where(cross, u0 + (u - u0) * (horizon - t0) / np.where(t > t0, t - t0, 1.0), u)
        t, t0 = np.minimum(t, horizon), np.minimum(t0, horizon)
    segment = np.where(same, (t - t0) * (u + u0) / 2, 0.0)
    frame["_area"] = np.nan_to_num(segment)
    out = (
        frame.groupby(unit, sort=True)
        .agg(
            baseline_utility=(utility, "first"),
            qaly=("_area", "sum"),
            follow_up_years=("_t", "max"),
            n_measurements=("_t", "size"),
        )
        .reset_index()
    )
    short = out["n_measurements"] < 2
    if horizon is not None:
        short |= out["follow_up_years"] < horizon
        out["follow_up_years"] = out["follow_up_years"].clip(upper=horizon)
    out.loc[short, "qaly"] = np.nan
    return out


# ----------------------------------------------------------------------- cost-effectiveness


def _batched_arm_coefficient(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Coefficient of column 1 (the arm) of weighted OLS, for each row of weights ``w`` (B x n).

    Frequency weights equal to resampling counts reproduce OLS on the resampled rows."""
    k = x.shape[1]
    xtwx = (w @ (x[:, :, None] * x[:, None, :]).reshape(len(x), k * k)).reshape(-1, k, k)
    xtwy = w @ (x * y[:, None])
    return np.linalg.solve(xtwx, xtwy[..., None])[:, 1, 0]


def _icer_interval(
    d_cost: np.ndarray, d_qaly: np.ndarray, estimate: tuple[float, float], level: float
) -> tuple[float, float, str]:
    """Percentile interval of the ICER on the cost-effectiveness plane.

    Replicates are ordered by their angle relative to the point estimate, which keeps the
    ordering of ratios when some replicates fall in another quadrant; if the central ``level``
    share of angles reaches a vertical (incremental QALYs = 0) the ICER is unbounded there and
    the interval is undefined (NaN; read the CEAC instead)."""
    angle0 = np.arctan2(estimate[0], estimate[1])
    rel = np.angle(np.exp(1j * (np.arctan2(d_cost, d_qaly) - angle0)))
    lo, hi = np.quantile(rel, [(1 - level) / 2, (1 + level) / 2])
    a_lo, a_hi = angle0 + lo, angle0 + hi
    verticals = np.pi / 2 + np.pi * np.arange(-3, 3)
    if np.any((verticals > a_lo) & (verticals < a_hi)):
        return (
            float("nan"),
            float("nan"),
            "undefined: the bootstrap interval of incremental QALYs includes 0",
        )
    return (
        float(np.tan(a_lo)),
        float(np.tan(a_hi)),
        "bootstrap percentile, replicates ordered by angle on the CE plane",
    )


def cost_effectiveness(
    data: pd.DataFrame,
    *,
    outcome: str,
    cost: Column,
    arm: Column,
    offer_level: str | None = None,
    baseline_utility: Column | None = None,
    baseline_cost: Column | None = None,
    covariates: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 20151001,
    wtp_max: float = 50_000.0,
    wtp_step: float = 500.0,
    level: float = 0.95,
) -> EstimationResult:
    """Trial cost-effectiveness: one row per person with QALYs (``outcome``) and ``cost``.

    Incremental QALYs: OLS of QALYs on arm (+ ``baseline_utility`` + covariates); incremental
    cost: OLS of cost on arm (+ ``baseline_cost`` + covariates) (Manca et al. 2005). Intervals
    from a non-parametric bootstrap resampling people within arm (seeded): SE = bootstrap SD,
    CI = percentile, p = normal with the bootstrap SE. Terms ``incremental_cost``,
    ``incremental_qaly``, ``icer`` (SE NaN, CI by :func:`_icer_interval`), ``inmb_20000`` and
    ``inmb_30000`` (net monetary benefit). ``tables["ceac"]`` holds the probability of cost-
    effectiveness over WTP 0..``wtp_max``; ``tables["ce_plane"]`` the bootstrap replicates.
    """
    cols = list(
        dict.fromkeys(
            [
                outcome,
                cost,
                arm,
                *([baseline_utility] if baseline_utility else []),
                *([baseline_cost] if baseline_cost else []),
                *covariates,
            ]
        )
    )
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    frame = data[cols].dropna().reset_index(drop=True)
    treat = indicator(frame[arm], offer_level, arm).to_numpy()
    if len(np.unique(treat)) < 2:
        raise ValueError("both arms are needed")
    common = covariate_design(frame, covariates).to_numpy(float)
    ones = np.ones(len(frame))

    def design(baseline: str | None) -> np.ndarray:
        extra = [frame[baseline].to_numpy(float)] if baseline else []
        return np.column_stack([ones, treat, *extra, common])

    x_qaly, x_cost = design(baseline_utility), design(baseline_cost)
    y_qaly, y_cost = frame[outcome].to_numpy(float), frame[cost].to_numpy(float)
    d_qaly = float(np.linalg.lstsq(x_qaly, y_qaly, rcond=None)[0][1])
    d_cost = float(np.linalg.lstsq(x_cost, y_cost, rcond=None)[0][1])

    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(frame)))
    for value in (0.0, 1.0):
        members = np.flatnonzero(treat == value)
        draws = rng.integers(0, members.size, size=(n_boot, members.size))
        for b in range(n_boot):
            weights[b] += np.bincount(members[draws[b]], minlength=len(frame))
    boot_qaly = _batched_arm_coefficient(x_qaly, y_qaly, weights)
    boot_cost = _batched_arm_coefficient(x_cost, y_cost, weights)

    tail = [(1 - level) / 2, (1 + level) / 2]

    def boot_row(term: str, est: float, draws: np.ndarray, scale: str) -> dict[str, object]:
        se = float(np.std(draws, ddof=1))
        lo, hi = np.quantile(draws, tail)
        return {
            **inference_row(term, est, se, level=level),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "scale": scale,
        }

    rows = [
        boot_row("incremental_cost", d_cost, boot_cost, "GBP per person"),
        boot_row("incremental_qaly", d_qaly, boot_qaly, "QALYs per person"),
    ]
    icer = d_cost / d_qaly if d_qaly != 0 else float("nan")
    icer_lo, icer_hi, icer_note = _icer_interval(boot_cost, boot_qaly, (d_cost, d_qaly), level)
    rows.append(
        {
            **inference_row("icer", icer, float("nan"), level=level),
            "ci_low": icer_lo,
            "ci_high": icer_hi,
            "scale": "GBP per QALY",
        }
    )
    for wtp in NMB_THRESHOLDS:
        rows.append(
            boot_row(
                f"inmb_{wtp}",
                wtp * d_qaly - d_cost,
                wtp * boot_qaly - boot_cost,
                f"GBP per person at GBP {wtp} per QALY",
            )
        )
    tidy = tidy_frame(
        rows,
        n_obs=len(frame),
        n_clusters=pd.NA,
        method="cost_effectiveness",
        se_type=(
            f"bootstrap SD (B={n_boot}, resampled within arm); percentile "
            "CI; p normal with bootstrap SE"
        ),
    )

    wtp_grid = np.arange(0.0, wtp_max + wtp_step / 2, wtp_step)
    ceac = pd.DataFrame(
        {
            "wtp": wtp_grid,
            "prob_cost_effective": (
                (wtp_grid[:, None] * boot_qaly[None, :] - boot_cost[None, :]) > 0
            ).mean(axis=1),
            "inmb": wtp_grid * d_qaly - d_cost,
        }
    )
    plane = pd.DataFrame(
        {
            "replicate": np.arange(1, n_boot + 1),
            "incremental_cost": boot_cost,
            "incremental_qaly": boot_qaly,
        }
    )
    by_arm = pd.DataFrame({"treat": treat, "qaly": y_qaly, "cost": y_cost}).groupby("treat")
    means = by_arm.mean()
    diagnostics: dict[str, float | int | str] = {
        "n_treated": int(treat.sum()),
        "n_control": int((1 - treat).sum()),
        "mean_qaly_treated": float(means.loc[1.0, "qaly"]),
        "mean_qaly_control": float(means.loc[0.0, "qaly"]),
        "mean_cost_treated": float(means.loc[1.0, "cost"]),
        "mean_cost_control": float(means.loc[0.0, "cost"]),
        "adjustment": (
            f"QALYs for {baseline_utility or 'nothing'}, costs for "
            f"{baseline_cost or 'nothing'} (Manca et al. 2005)"
            + (f"; covariates {', '.join(covariates)}" if covariates else "")
        ),
        "icer_ci": icer_note,
        "n_boot": n_boot,
        "seed": seed,
        "share_ne": float(np.mean((boot_qaly > 0) & (boot_cost > 0))),
        "share_se": float(np.mean((boot_qaly > 0) & (boot_cost <= 0))),
        "share_nw": float(np.mean((boot_qaly <= 0) & (boot_cost > 0))),
        "share_sw": float(np.mean((boot_qaly <= 0) & (boot_cost <= 0))),
    }
    for wtp in NMB_THRESHOLDS:
        diagnostics[f"prob_cost_effective_{wtp}"] = float(np.mean(wtp * boot_qaly - boot_cost > 0))
    return EstimationResult(
        "cost_effectiveness",
        tidy,
        tables={"ceac": ceac, "ce_plane": plane},
        diagnostics=diagnostics,
    )
