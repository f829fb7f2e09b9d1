"""Interrupted time series: segmented regression with level and slope changes.

The model follows Lopez Bernal, Cummins & Gasparrini (2017, IJE): a linear pre-intervention
trend, a level change and a slope change at each intervention time, optional seasonality, and a
log-linear count model with the population as offset (Poisson, quasi-Poisson or negative
binomial) or a Gaussian model for rates. Standard errors are Newey–West (HAC) by default because
monthly series are autocorrelated; the residual autocorrelation is reported so the reader can
judge the lag choice.

Coding of the intervention terms, for each intervention time ``t_k``:
``level_change`` = 1{time >= t_k} (the jump at ``t_k`` itself) and
``slope_change`` = (time - t_k) * 1{time >= t_k} (the change in slope per time unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.optimize import minimize_scalar
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.stats.stattools import durbin_watson
from statsmodels.tsa.stattools import acf, pacf

from analysis.results import EstimationResult, inference_row, tidy_frame

Family = Literal["poisson", "quasipoisson", "negbin", "gaussian"]
Seasonality = Literal["none", "fourier", "dummies"]
SeType = Literal["hac", "model"]

#: Lags at which the Ljung–Box test is reported in the diagnostics (monthly data: 6 and 12).
LJUNG_BOX_LAGS: tuple[int, ...] = (6, 12)


def newey_west_lags(n: int) -> int:
    """Default HAC truncation lag, floor(4 * (n / 100) ** (2 / 9)) (Newey & West 1994)."""
    return int(math.floor(4 * (n / 100) ** (2 / 9)))


@dataclass(frozen=True)
class _Design:
    """The regression matrix and which columns carry the intervention effects."""

    exog: pd.DataFrame
    intervention_cols: list[str]


def _seasonal_terms(season: pd.Series, seasonality: Seasonality, harmonics: int,
                    period: int) -> pd.DataFrame:
    """Fourier pairs sin/cos(2*pi*k*season/period), or period-1 dummies (first level dropped)."""
    if seasonality == "none":
        return pd.DataFrame(index=season.index)
    if seasonality == "fourier":
        cols = {}
        for k in range(1, harmonics + 1):
            angle = 2 * np.pi * k * season.to_numpy(dtype=float) / period
            cols[f"sin{k}"] = np.sin(angle)
            cols[f"cos{k}"] = np.cos(angle)
        return pd.DataFrame(cols, index=season.index)
    if seasonality == "dummies":
        levels = sorted(season.unique())
        return pd.DataFrame({f"season_{lv}": (season == lv).astype(float) for lv in levels[1:]},
                            index=season.index)
    raise ValueError(f"unknown seasonality {seasonality!r}")


def _intervention_terms(time: pd.Series, interventions: Sequence[float], level_change: bool,
                        slope_change: bool) -> pd.DataFrame:
    """Step and post-slope columns for every intervention time (suffix _k when several)."""
    cols: dict[str, np.ndarray] = {}
    for k, t0 in enumerate(interventions, start=1):
        suffix = "" if len(interventions) == 1 else f"_{k}"
        post = (time >= t0).to_numpy(dtype=float)
        if level_change:
            cols[f"level_change{suffix}"] = post
        if slope_change:
            cols[f"slope_change{suffix}"] = post * (time.to_numpy(dtype=float) - t0)
    if not cols:
        raise ValueError("at least one of level_change / slope_change must be True")
    return pd.DataFrame(cols, index=time.index)


def _glm_family(family: Family, endog: np.ndarray, exog: pd.DataFrame,
                offset: np.ndarray | None) -> tuple[sm.families.Family, float | None]:
    """The statsmodels family; for the negative binomial, alpha is estimated by ML first."""
    if family in ("poisson", "quasipoisson"):
        return sm.families.Poisson(), None
    if family == "gaussian":
        return sm.families.Gaussian(), None
    if family == "negbin":
        # NB2 alpha by maximising the profile likelihood (IRLS fit at each alpha), as MASS::glm.nb
        # alternates; more robust than joint Newton/BFGS when alpha is near 0.
        def neg_profile(log_alpha: float) -> float:
            fam = sm.families.NegativeBinomial(alpha=float(np.exp(log_alpha)))
            return -float(sm.GLM(endog, exog, family=fam, offset=offset).fit().llf)

        opt = minimize_scalar(neg_profile, bounds=(np.log(1e-8), np.log(1e2)), method="bounded",
                              options={"xatol": 1e-10})
        alpha = float(np.exp(opt.x))
        return sm.families.NegativeBinomial(alpha=alpha), alpha
    raise ValueError(f"unknown family {family!r}")


def _fit(endog: np.ndarray, design: _Design, *, family: Family, offset: np.ndarray | None,
         se_type: SeType, hac_lags: int, hac_time: np.ndarray | None):
    """Fit the GLM and return (results, alpha, se label)."""
    fam, alpha = _glm_family(family, endog, design.exog, offset)
    model = sm.GLM(endog, design.exog, family=fam, offset=offset)
    scale = "X2" if family in ("quasipoisson", "gaussian") else None
    if se_type == "model":
        res = model.fit(scale=scale)
        label = {"quasipoisson": "model-based, quasi-Poisson scale = Pearson chi2/df",
                 "gaussian": "model-based (OLS)"}.get(family, "model-based (ML)")
    elif se_type == "hac":
        if hac_time is None:
            res = model.fit(scale=scale, cov_type="HAC",
                            cov_kwds={"maxlags": hac_lags, "use_correction": True})
            label = f"Newey-West HAC, Bartlett kernel, {hac_lags} lags, n/(n-k) factor"
        else:
            res = model.fit(scale=scale, cov_type="hac-groupsum",
                            cov_kwds={"time": hac_time, "maxlags": hac_lags,
                                      "use_correction": "hac"})
            label = (f"Driscoll-Kraay HAC over series, Bartlett kernel, {hac_lags} lags, "
                     "n/(n-k) factor")
    else:
        raise ValueError(f"unknown se_type {se_type!r}")
    return res, alpha, label


def _autocorrelation(resid: np.ndarray, max_lag: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """ACF/PACF of residuals with Ljung–Box tests, plus Durbin–Watson."""
    n = len(resid)
    nlags = max(1, min(max_lag, n // 2 - 1))
    r_acf = acf(resid, nlags=nlags, fft=False)
    r_pacf = pacf(resid, nlags=nlags, method="ywm")
    lb = acorr_ljungbox(resid, lags=list(range(1, nlags + 1)), return_df=True)
    table = pd.DataFrame({
        "lag": np.arange(1, nlags + 1),
        "acf": r_acf[1:],
        "pacf": r_pacf[1:],
        "ljung_box_stat": lb["lb_stat"].to_numpy(),
        "ljung_box_p": lb["lb_pvalue"].to_numpy(),
    })
    diag: dict[str, float] = {"durbin_watson": float(durbin_watson(resid))}
    for lag in LJUNG_BOX_LAGS:
        if lag <= nlags:
            diag[f"ljung_box_p_lag{lag}"] = float(table.loc[table["lag"] == lag,
                                                            "ljung_box_p"].iloc[0])
    return table, diag


def _counterfactual(res, design: _Design, observed: np.ndarray, offset: np.ndarray | None,
                    time: np.ndarray, post: np.ndarray, level: float,
                    dist: stats.rv_continuous) -> pd.DataFrame:
    """Observed, fitted and predicted-without-intervention (Wald interval on the link scale)."""
    x_fit = design.exog.to_numpy(dtype=float)
    x_cf = design.exog.copy()
    x_cf[design.intervention_cols] = 0.0
    x_cf_arr = x_cf.to_numpy(dtype=float)
    params = res.params.to_numpy()
    cov = np.asarray(res.cov_params())
    off = np.zeros(len(observed)) if offset is None else offset
    eta_cf = x_cf_arr @ params + off
    se_cf = np.sqrt(np.einsum("ij,jk,ik->i", x_cf_arr, cov, x_cf_arr))
    crit = float(dist.ppf(0.5 + level / 2))
    inv = res.model.family.link.inverse
    fitted = inv(x_fit @ params + off)
    counterfactual = inv(eta_cf)
    return pd.DataFrame({
        "time": time,
        "post": post,
        "observed": observed,
        "fitted": fitted,
        "counterfactual": counterfactual,
        "counterfactual_low": inv(eta_cf - crit * se_cf),
        "counterfactual_high": inv(eta_cf + crit * se_cf),
        "effect": fitted - counterfactual,
    })


def _result(method: str, res, design: _Design, *, family: Family, se_label: str, alpha: float | None,
            endog: np.ndarray, offset: np.ndarray | None, time: np.ndarray, post: np.ndarray,
            level: float, acf_lags: int, extra_diag: dict[str, object],
            acf_rows: np.ndarray | None = None) -> EstimationResult:
    """Assemble the tidy table, the counterfactual and residual tables and diagnostics."""
    n = len(endog)
    df_resid = float(res.df_resid)
    # t reference only for the model-based Gaussian fit; Wald-normal otherwise, as R's
    # confint.default / Epi::ci.exp print for GLMs (including quasi-Poisson).
    use_t = family == "gaussian" and se_label.startswith("model")
    dist = stats.t(df_resid) if use_t else stats.norm()
    scale_name = "identity" if family == "gaussian" else "log"
    rows = []
    for name in design.exog.columns:
        row = inference_row(name, float(res.params[name]), float(res.bse[name]),
                            df=df_resid if use_t else None, level=level)
        if scale_name == "log":
            row.update(exp_estimate=math.exp(row["estimate"]), exp_ci_low=math.exp(row["ci_low"]),
                       exp_ci_high=math.exp(row["ci_high"]))
        rows.append(row)
    tidy = tidy_frame(rows, n_obs=n, n_clusters=pd.NA, method=method, se_type=se_label,
                      scale=scale_name)
    cf = _counterfactual(res, design, endog, offset, time, post, level, dist)
    resid = np.asarray(res.resid_pearson)
    acf_table, ac_diag = _autocorrelation(resid if acf_rows is None else resid[acf_rows],
                                          acf_lags)
    pearson_chi2 = float(np.sum(resid**2))
    diagnostics: dict[str, float | int | str] = {
        "family": family,
        "n_obs": n,
        "dispersion_pearson": pearson_chi2 / df_resid,
        "deviance": float(res.deviance),
        "df_resid": df_resid,
        "residuals": "Pearson" if acf_rows is None else "Pearson, treated series",
        **ac_diag,
        **{k: v for k, v in extra_diag.items() if isinstance(v, int | float | str)},
    }
    if alpha is not None:
        diagnostics["negbin_alpha"] = alpha
    return EstimationResult(method=method, tidy=tidy,
                            tables={"counterfactual": cf, "residual_acf": acf_table},
                            diagnostics=diagnostics)


def _validate(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    if frame[list(columns)].isna().any().any():
        raise ValueError("ITS input has missing values in the model columns")


def _offset(frame: pd.DataFrame, family: Family, population: str | None) -> np.ndarray | None:
    if population is None:
        return None
    if family == "gaussian":
        raise ValueError("a population offset applies to count families; model rates directly "
                         "with family='gaussian'")
    return np.log(frame[population].to_numpy(dtype=float))


def segmented_its(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: str,
    interventions: float | Sequence[float],
    family: Family = "quasipoisson",
    population: str | None = None,
    season: str | None = None,
    seasonality: Seasonality = "none",
    harmonics: int = 2,
    period: int = 12,
    level_change: bool = True,
    slope_change: bool = True,
    se_type: SeType = "hac",
    hac_lags: int | None = None,
    acf_lags: int = 24,
    level: float = 0.95,
) -> EstimationResult:
    """Single-series segmented regression ITS.

    ``interventions`` are the first post-intervention values of ``time`` (one or several
    breakpoints). ``population`` adds log(population) as an offset for count families, so
    ``exp(level_change)`` is a rate ratio. ``season`` names the column with the seasonal index
    (month 1..12) used by ``seasonality``. ``hac_lags`` defaults to :func:`newey_west_lags`.
    """
    t_list = [float(interventions)] if np.isscalar(interventions) else [float(t) for t in
                                                                         interventions]
    cols = [outcome, time] + ([population] if population else []) + ([season] if season else [])
    _validate(data, cols)
    if seasonality != "none" and season is None:
        raise ValueError("seasonality needs the season column (e.g. month)")
    frame = data.sort_values(time).reset_index(drop=True)
    t = frame[time].astype(float)
    interv = _intervention_terms(t, t_list, level_change, slope_change)
    seas = (_seasonal_terms(frame[season], seasonality, harmonics, period)
            if season else pd.DataFrame(index=frame.index))
    exog = pd.concat([pd.DataFrame({"intercept": 1.0, "trend": t}, index=frame.index), interv,
                      seas], axis=1)
    design = _Design(exog=exog, intervention_cols=list(interv.columns))
    endog = frame[outcome].to_numpy(dtype=float)
    offset = _offset(frame, family, population)
    lags = newey_west_lags(len(frame)) if hac_lags is None else int(hac_lags)
    res, alpha, label = _fit(endog, design, family=family, offset=offset, se_type=se_type,
                                hac_lags=lags, hac_time=None)
    if se_type == "hac" and hac_lags is None:
        label += " (rule floor(4*(n/100)^(2/9)))"
    return _result("its_segmented", res, design, family=family, se_label=label, alpha=alpha,
                   endog=endog, offset=offset, time=t.to_numpy(),
                   post=(t >= min(t_list)).to_numpy(), level=level, acf_lags=acf_lags,
                   extra_diag={"hac_lags": lags if se_type == "hac" else 0,
                               "interventions": ",".join(map(str, t_list)),
                               "seasonality": seasonality})


def controlled_its(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: str,
    group: str,
    intervention: float,
    family: Family = "quasipoisson",
    population: str | None = None,
    season: str | None = None,
    seasonality: Seasonality = "none",
    harmonics: int = 2,
    period: int = 12,
    se_type: SeType = "hac",
    hac_lags: int | None = None,
    acf_lags: int = 24,
    level: float = 0.95,
) -> EstimationResult:
    """Controlled ITS: the treated series against a comparator series, stacked.

    ``group`` is 1 for the treated series and 0 for the comparator. The model has a separate
    intercept and trend per series, common level and slope changes at ``intervention`` (what
    happened to the comparator too), and the difference-in-change terms ``group_x_level_change``
    and ``group_x_slope_change``, which are the effect estimates. Seasonality is shared. HAC
    standard errors are Driscoll–Kraay (scores summed across the two series at each time point,
    then Newey–West over time), so correlation between the series at a time point is allowed.
    The counterfactual for the treated series removes only the difference-in-change terms.
    """
    cols = [outcome, time, group] + ([population] if population else []) + (
        [season] if season else [])
    _validate(data, cols)
    if seasonality != "none" and season is None:
        raise ValueError("seasonality needs the season column (e.g. month)")
    groups = set(data[group].unique())
    if groups != {0, 1}:
        raise ValueError(f"group column must hold 0 (comparator) and 1 (treated), got {groups}")
    frame = data.sort_values([group, time]).reset_index(drop=True)
    t = frame[time].astype(float)
    g = frame[group].astype(float)
    interv = _intervention_terms(t, [float(intervention)], True, True)
    exog = pd.concat([
        pd.DataFrame({"intercept": 1.0, "trend": t, "group": g, "group_x_trend": g * t},
                     index=frame.index),
        interv,
        interv.mul(g, axis=0).add_prefix("group_x_"),
        _seasonal_terms(frame[season], seasonality, harmonics, period) if season
        else pd.DataFrame(index=frame.index),
    ], axis=1)
    design = _Design(exog=exog, intervention_cols=["group_x_level_change",
                                                   "group_x_slope_change"])
    endog = frame[outcome].to_numpy(dtype=float)
    offset = _offset(frame, family, population)
    n_times = frame[time].nunique()
    lags = newey_west_lags(n_times) if hac_lags is None else int(hac_lags)
    time_index = pd.factorize(frame[time], sort=True)[0]
    res, alpha, label = _fit(endog, design, family=family, offset=offset, se_type=se_type,
                                hac_lags=lags, hac_time=time_index)
    if se_type == "hac" and hac_lags is None:
        label += " (rule floor(4*(T/100)^(2/9)), T time points)"
    result = _result("its_controlled", res, design, family=family, se_label=label, alpha=alpha,
                     endog=endog, offset=offset, time=t.to_numpy(),
                     post=(t >= intervention).to_numpy(), level=level, acf_lags=acf_lags,
                     extra_diag={"hac_lags": lags if se_type == "hac" else 0,
                                 "interventions": str(float(intervention)),
                                 "seasonality": seasonality},
                     acf_rows=(g == 1).to_numpy())
    result.tables["counterfactual"].insert(1, "group", frame[group].to_numpy())
    return result
