"""Synthetic control (Abadie, Diamond & Hainmueller 2010) with placebo-in-space inference.

The synthetic unit is a convex combination of donor units (weights >= 0 summing to 1). By
default the weights minimise the pre-period mean squared prediction error of the outcome path
(the "outcome-only" variant, as ``synthdid::sc_estimate`` with a negligible ridge). With
``predictors`` and/or ``special_periods`` the weights instead match a standardised predictor
vector X under a diagonal V, and V is chosen (nested optimisation, as R ``Synth``) to minimise the
pre-period outcome MSPE. Inference: every donor is treated in turn against the other donors and
the treated unit's post/pre RMSPE ratio is ranked among them. A plain difference-in-differences
against the equally weighted donor pool is reported as a foil.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize, nnls

from analysis.columns import Column, Columns
from analysis.results import EstimationResult, inference_row, tidy_frame


def simplex_weights(target: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """argmin_w ||target - donors @ w||^2 subject to w >= 0, sum(w) = 1.

    ``target`` has length T0 (or k predictors) and ``donors`` is T0 x J. Solved exactly by
    Lawson-Hanson NNLS (an active-set method) with the adding-up constraint appended as a row
    weighted by a large multiplier, after scaling by the target's spread; the tiny remaining
    violation of sum(w) = 1 (relative ~1e-12) is removed by renormalising.
    """
    j = donors.shape[1]
    if j == 1:
        return np.ones(1)
    scale = float(np.std(target)) or float(np.abs(target).max()) or 1.0
    a = donors / scale
    b = target / scale
    big = 1e6 * max(1.0, float(np.abs(a).max()))
    w, _ = nnls(np.vstack([a, np.full(j, big)]), np.append(b, big), maxiter=50 * j)
    if not np.isfinite(w).all() or w.sum() <= 0:
        raise RuntimeError("synthetic control weights: NNLS failed")
    return w / w.sum()


def _rmspe(gap: np.ndarray) -> float:
    return float(np.sqrt(np.mean(gap**2)))


def _predictor_matrix(
    data: pd.DataFrame,
    wide: pd.DataFrame,
    *,
    unit: str,
    time: str,
    predictors: Sequence[str],
    special_periods: Sequence[float],
    pre_periods: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Units x predictors: covariate means over the pre-period and outcomes in given periods,
    each standardised by its standard deviation across units (as Synth's default)."""
    cols, names = [], []
    pre_rows = data[data[time].isin(pre_periods)]
    for p in predictors:
        cols.append(pre_rows.groupby(unit)[p].mean().reindex(wide.index).to_numpy(dtype=float))
        names.append(f"{p} (pre-period mean)")
    for t in special_periods:
        if t not in set(pre_periods):
            raise ValueError(f"special period {t} is not a pre-treatment period")
        cols.append(wide[t].to_numpy(dtype=float))
        names.append(f"outcome in {t:g}")
    x = np.column_stack(cols)
    if np.isnan(x).any():
        raise ValueError("predictors are missing for some unit in the pre-period")
    sd = x.std(axis=0)
    return x / np.where(sd > 0, sd, 1.0), names


def _v_weights(
    x: np.ndarray, y: np.ndarray, treated: int, donors: np.ndarray, pre: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal V (sum 1) minimising pre-period outcome MSPE of the V-matched weights; returns
    (v, w). Nelder-Mead over a softmax parametrisation from equal V, as Synth's outer loop."""
    x1, x0 = x[treated], x[donors].T
    y1, y0 = y[treated, pre], y[donors][:, pre]

    def inner(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.exp(theta - theta.max())
        v /= v.sum()
        sv = np.sqrt(v)
        return v, simplex_weights(sv * x1, sv[:, None] * x0)

    def loss(theta: np.ndarray) -> float:
        _, w = inner(theta)
        return float(np.mean((y1 - w @ y0) ** 2))

    k = x.shape[1]
    if k == 1:
        return inner(np.zeros(1))
    res = minimize(
        loss,
        np.zeros(k),
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-10, "maxiter": 200 * k},
    )
    return inner(res.x)


def _fit_one(
    y: np.ndarray, treated: int, donors: Sequence[int], pre: np.ndarray, x: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weights over ``donors``, the gap series (treated minus synthetic) and V (or None)."""
    idx = np.asarray(donors)
    if x is None:
        w, v = simplex_weights(y[treated, pre], y[idx][:, pre].T), None
    else:
        v, w = _v_weights(x, y, treated, idx, pre)
    return w, y[treated] - w @ y[idx], v


def _treated_unit(
    data: pd.DataFrame, unit: str, treated_unit: object | None, treated: str | None
) -> object:
    if (treated_unit is None) == (treated is None):
        raise ValueError(
            "give exactly one of treated_unit (a unit) or treated (an indicator column)"
        )
    if treated is None:
        return treated_unit
    if treated not in data.columns:
        raise KeyError(f"treated indicator column {treated!r} not in data")
    units = sorted(data.loc[data[treated] == 1, unit].unique())
    if len(units) != 1:
        raise ValueError(
            f"synthetic control needs exactly one unit with {treated} = 1; the "
            f"data have {len(units)}: {units}"
        )
    return units[0]


def synthetic_control(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: Column,
    time: Column,
    treatment_start: float,
    treated_unit: object | None = None,
    treated: Column | None = None,
    donors: Sequence[object] | None = None,
    predictors: Columns = (),
    special_periods: Sequence[float] = (),
    placebo: bool = True,
) -> EstimationResult:
    """Synthetic control for one treated unit; ``treatment_start`` is its first treated period.

    The treated unit is ``treated_unit`` (a value of ``unit``) or the one unit whose indicator
    column ``treated`` is 1 (e.g. ``is_study_area``, so the study area comes from the data).

    ``predictors`` (columns averaged over the pre-period) and ``special_periods`` (pre-period
    times whose outcome is a predictor) switch to predictor matching with data-driven V; each
    placebo unit then gets its own V, so placebos cost one nested optimisation each.

    Tidy rows: ``att_post_mean`` (mean post-period gap; ``p_value`` is the placebo ratio-rank
    p-value, no SE) and ``did_foil`` (treated minus equally weighted donors, post-minus-pre).
    Tables: ``weights``, ``gaps`` (observed, synthetic, gap per period), and with ``placebo``
    ``placebo_gaps`` (long: unit, time, gap) and ``placebo_rmspe`` (per unit pre/post RMSPE and
    their ratio, the treated unit included). The p-value is
    #{units with ratio >= treated ratio} / (number of donors + 1).
    """
    missing = [c for c in (outcome, unit, time, *predictors) if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    treated_unit = _treated_unit(data, unit, treated_unit, treated)
    wide = data.pivot(index=unit, columns=time, values=outcome).sort_index(axis=1)
    if treated_unit not in wide.index:
        raise KeyError(f"treated unit {treated_unit!r} not in data")
    pool = [u for u in (wide.index if donors is None else donors) if u != treated_unit]
    wide = wide.loc[[treated_unit, *pool]]
    if wide.isna().any().any():
        raise ValueError("synthetic control needs every unit observed in every period")
    periods = wide.columns.to_numpy(dtype=float)
    pre = periods < treatment_start
    post = ~pre
    if pre.sum() < 2 or post.sum() < 1:
        raise ValueError("need at least two pre-periods and one post-period")
    y = wide.to_numpy(dtype=float)
    x, x_names = (
        (None, [])
        if not (predictors or special_periods)
        else _predictor_matrix(
            data,
            wide,
            unit=unit,
            time=time,
            predictors=predictors,
            special_periods=special_periods,
            pre_periods=periods[pre],
        )
    )
    donor_idx = list(range(1, y.shape[0]))
    w, gap, v = _fit_one(y, 0, donor_idx, pre, x)
    pre_rmspe, post_rmspe = _rmspe(gap[pre]), _rmspe(gap[post])
    ratio = post_rmspe / pre_rmspe
    att = float(gap[post].mean())
    pool_mean = y[1:].mean(axis=0)
    did = float(
        (y[0, post].mean() - y[0, pre].mean()) - (pool_mean[post].mean() - pool_mean[pre].mean())
    )

    tables = {
        "weights": pd.DataFrame({"unit": pool, "weight": w}).sort_values(
            "weight", ascending=False, ignore_index=True
        ),
        "gaps": pd.DataFrame(
            {"time": periods, "post": post, "observed": y[0], "synthetic": y[0] - gap, "gap": gap}
        ),
    }
    if x is not None:
        synth_x = w @ x[1:]
        tables["predictor_balance"] = pd.DataFrame(
            {
                "predictor": x_names,
                "v_weight": v,
                "treated": x[0],
                "synthetic": synth_x,
                "donor_mean": x[1:].mean(axis=0),
            }
        )
    diagnostics: dict[str, float | int | str] = {
        "treated_unit": str(treated_unit),
        "treatment_start": float(treatment_start),
        "n_donors": len(pool),
        "n_pre": int(pre.sum()),
        "n_post": int(post.sum()),
        "pre_rmspe": pre_rmspe,
        "post_rmspe": post_rmspe,
        "post_pre_rmspe_ratio": ratio,
        "matching": (
            "outcome path, all pre-periods, equal weights"
            if x is None
            else "predictors with data-driven diagonal V (min pre-period outcome MSPE)"
        ),
    }
    p_value = float("nan")
    if placebo:
        gaps = {treated_unit: gap}
        for k in donor_idx:
            others = [i for i in donor_idx if i != k]  # the treated unit is never a donor
            _, gaps[pool[k - 1]], _ = _fit_one(y, k, others, pre, x)
        summary = pd.DataFrame(
            [
                {
                    "unit": u,
                    "pre_rmspe": _rmspe(g[pre]),
                    "post_rmspe": _rmspe(g[post]),
                    "treated": u == treated_unit,
                }
                for u, g in gaps.items()
            ]
        )
        summary["ratio"] = summary["post_rmspe"] / summary["pre_rmspe"]
        summary["rank"] = summary["ratio"].rank(ascending=False, method="min").astype(int)
        p_value = float((summary["ratio"] >= ratio).sum() / len(summary))
        tables["placebo_rmspe"] = summary.sort_values("rank", ignore_index=True)
        tables["placebo_gaps"] = pd.DataFrame(
            [(u, t, v) for u, g in gaps.items() for t, v in zip(periods, g, strict=True)],
            columns=["unit", "time", "gap"],
        )
        diagnostics.update(
            placebo_p_value=p_value,
            placebo_rank=int(summary.loc[summary["treated"], "rank"].iloc[0]),
            placebo_n=len(summary),
        )
    row = inference_row("att_post_mean", att, float("nan"))
    row["p_value"] = p_value
    foil = inference_row("did_foil", did, float("nan"))
    n_obs = int(y.size)
    tidy = tidy_frame(
        [row, foil],
        n_obs=n_obs,
        n_clusters=pd.NA,
        method="synthetic_control",
        se_type="none; p-value from placebo-in-space RMSPE-ratio rank",
        scale="difference",
    )
    return EstimationResult("synthetic_control", tidy, tables, diagnostics)
