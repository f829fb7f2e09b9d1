"""Interrupted time series: segmented regression with level and slope changes.

The model follows Lopez Bernal, Cummins & Gasparrini (2017, IJE): a linear pre-intervention
trend, a level change and a slope change at each intervention time, optional seasonality, and a
log-linear count model with the population as offset (Poisson, quasi-Poisson or negative
binomial) or a Gaussian model for rates. The residual autocorrelation is reported so the reader
can judge the serial-correlation model.

Coding of the intervention terms, for each intervention time ``t_k``:
``level_change`` = 1{time >= t_k} (the jump at ``t_k`` itself) and
``slope_change`` = (time - t_k) * 1{time >= t_k} (the change in slope per time unit).

Inference (``se_type``). Default ``"ar1"``: a sandwich covariance whose meat uses a latent
AR(1)-plus-noise working correlation of the Pearson residuals (Zeger 1988: Poisson counts
around a rate that follows an AR(1) on the log scale), with (rho, share, cross-series
correlation) fitted by matching residual autocorrelations to their expectation under the
fitted design, and a t reference with T - k df (T time points, k coefficients). ``"hac"`` is
Newey–West (Driscoll–Kraay for the controlled design) with ``hac_lags`` (default
floor(4*(n/100)^(2/9))) and a normal reference; with ``hac_lags=3`` it equals
sandwich::NeweyWest(lag=3, prewhite=FALSE, adjust=TRUE). ``"model"`` is the GLM's own SE.
``"random_walk"`` (one series) models the latent process as a random walk instead
(:func:`random_walk_cov`): for series that load on random-walk factors, such as the Greater
Manchester area series, where the AR(1) default covers 91% and piles its rho at the bound
(docs/validation/area_inference.md).

Why not HAC. 95% CI coverage of the level change (log RR 0.85) over 300 simulated 96-month
quasi-Poisson series with offset, 2 Fourier pairs, level and slope terms and AR(1) noise
(rho 0.4, innovation SD 0.03) on the log scale, break at month 49; "controlled" = two such
series, independent. Empirical SD of the estimate 0.0257 (controlled 0.0350); the SE from the
true covariance is 0.0247. HAC meat built from scores as statsmodels/sandwich do; "fixed-b" is
the Kiefer & Vogelsang (2005) Bartlett critical value 1.96 + 2.9694b + 0.4160b^2 - 0.5324b^3
(b = bandwidth/n; checked against a simulation of the fixed-b limit).

    option (n = 96)                                        segmented   controlled
    model-based quasi-Poisson, normal                        0.860       0.887
    Newey-West 3 lags (NW94 rule; 0.75 n^(1/3) also 3), z    0.847       0.870
      same, t(n - k)                                         0.850       0.873
      same, fixed-b                                          0.863       0.880
    Newey-West, Andrews (1991) AR(1) bandwidth, z            0.870       0.873
      same, fixed-b                                          0.880       0.883
    Newey-West, 1.3 n^(1/2) lags (Lazarus et al. 2018), z    0.767       0.790
      same, fixed-b                                          0.837       0.850
    AR(1)-prewhitened NW, 3 lags, fixed-b                    0.873       0.887
    AR(1)-prewhitened, Andrews bw (Andrews-Monahan), t       0.883       0.900
    GLSAR AR(1), Gaussian on log rate, t(n - k)              0.887         -
    AR(1) from raw residual lag-1 autocorrelation, t         0.860         -
    AR(1) with design-corrected lag-1 moment only, t         0.880         -
    latent AR(1)+noise, design-corrected (default), t        0.933       0.930

All HAC variants fail for one reason: with trend, step and slope regressors the residual
autocorrelation is shrunk towards zero (mean lag-1 0.07 against 0.18 in the errors), so an
estimator built from residual products is too small whatever the bandwidth or critical value.
Matching the moments to their design-given expectation removes that bias; a single AR(1) is
not enough because Poisson noise plus a latent AR(1) is ARMA(1,1). The Monte Carlo in
tests/test_its.py (its own DGP; the controlled series share part of their latent noise) gives,
for the default, coverage 0.943 / 0.943 / 0.933 (segmented, rho 0.3 / 0.4 / 0.5; HAC with
the NW94 rule 0.890 / 0.857 / 0.810), 0.963 with no autocorrelation, and 0.950 / 0.957 /
0.957 (controlled; Driscoll-Kraay HAC 0.913 at rho 0.4); the mean model SE is 1.02 to 1.11
times the empirical SE (slightly conservative).
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
from scipy.optimize import least_squares, minimize_scalar
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.stats.stattools import durbin_watson
from statsmodels.tsa.stattools import acf, pacf

from analysis.columns import Column
from analysis.results import EstimationResult, inference_row, tidy_frame

Family = Literal["poisson", "quasipoisson", "negbin", "gaussian"]
Seasonality = Literal["none", "fourier", "dummies"]
SeType = Literal["ar1", "random_walk", "hac", "model"]

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


def _seasonal_terms(
    season: pd.Series, seasonality: Seasonality, harmonics: int, period: int
) -> pd.DataFrame:
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
        return pd.DataFrame(
            {f"season_{lv}": (season == lv).astype(float) for lv in levels[1:]}, index=season.index
        )
    raise ValueError(f"unknown seasonality {seasonality!r}")


def _intervention_terms(
    time: pd.Series, interventions: Sequence[float], level_change: bool, slope_change: bool
) -> pd.DataFrame:
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


def _glm_family(
    family: Family, endog: np.ndarray, exog: pd.DataFrame, offset: np.ndarray | None
) -> tuple[sm.families.Family, float | None]:
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

        opt = minimize_scalar(
            neg_profile,
            bounds=(np.log(1e-8), np.log(1e2)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        alpha = float(np.exp(opt.x))
        return sm.families.NegativeBinomial(alpha=alpha), alpha
    raise ValueError(f"unknown family {family!r}")


@dataclass(frozen=True)
class _Fit:
    """A fitted GLM with the covariance used for inference and its reference distribution."""

    res: object
    cov: np.ndarray
    alpha: float | None
    label: str
    df: float | None  # t reference degrees of freedom; None = normal
    extra: dict[str, float]


def _latent_ar1_cov(
    res, series: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Sandwich covariance under a latent AR(1)-plus-noise working correlation.

    Why: the counts are Poisson around a rate that wanders as a latent AR(1) (Zeger 1988), so
    the Pearson residuals have correlation ``a * rho**|j|`` at lag ``j >= 1``; between series
    only the latent processes correlate, ``c * a * rho**|j|`` (Poisson noise is independent).
    Residual autocorrelations are biased towards zero by about k/n once trend, step, slope and
    seasonal terms are fitted, which is why HAC under-covers here; so (rho, a) and the cross-series
    correlation c are found by matching the lag-1, lag-2 (and same-time cross-series)
    residual autocorrelations to their expectations ``tr(M A M R) / tr(M R)`` given the design
    (M = I - weighted hat matrix). The dispersion is ``r'r / tr(M R)`` for the same reason.
    Rows must be sorted by series then time, with equally spaced time points.
    """
    exog = np.asarray(res.model.exog, dtype=float)
    r = np.asarray(res.resid_pearson, dtype=float)
    xw = exog * np.sqrt(res.model.family.weights(res.mu))[:, None]
    xtx_inv = np.linalg.inv(xw.T @ xw)
    resid_maker = np.eye(len(r)) - xw @ xtx_inv @ xw.T
    same = series[:, None] == series[None, :]
    lag = np.abs(position[:, None] - position[None, :])
    pair_sets = [same & (lag == 1), same & (lag == 2)]
    n_series = len(np.unique(series))
    if n_series > 1:
        pair_sets.append(~same & (lag == 0))
    projected = [resid_maker @ a.astype(float) @ resid_maker for a in pair_sets]
    observed = np.array([r @ a @ r for a in pair_sets]) / (r @ r)

    def working_corr(p: np.ndarray) -> np.ndarray:
        rho, share = p[0], p[1]
        cross = np.where(same, 1.0, p[2]) if n_series > 1 else 1.0
        return cross * share * rho**lag + (1 - share) * (same & (lag == 0))

    def moment_gap(p: np.ndarray) -> np.ndarray:
        corr = working_corr(p)
        denom = np.sum(resid_maker * corr)
        return np.array([np.sum(m * corr) for m in projected]) / denom - observed

    lower, upper = [-0.95, 0.0], [0.95, 1.0]
    if n_series > 1:
        lower.append(-0.95)
        upper.append(0.95)
    start = np.array([0.3, 0.5, 0.0][: len(lower)])
    p = least_squares(moment_gap, start, bounds=(lower, upper)).x
    corr = working_corr(p)
    dispersion = float(r @ r) / float(np.sum(resid_maker * corr))
    cov = xtx_inv @ xw.T @ corr @ xw @ xtx_inv * dispersion
    extra = {"ar1_rho": float(p[0]), "ar1_share": float(p[1]), "ar1_dispersion": dispersion}
    if n_series > 1:
        extra["cross_series_corr"] = float(p[2])
    return cov, extra


#: Grid of the random-walk-to-noise variance ratio, relative to the mean latent variance:
#: 0 plus 1e-6 .. 1e6, ten points a decade (the reference posterior is negligible outside it).
_RW_RATIO_GRID = np.r_[0.0, np.logspace(-6, 6, 121)]


@dataclass(frozen=True)
class RandomWalkCov:
    """Covariance of weighted least-squares coefficients under random-walk-plus-noise errors.

    ``cov`` is the k x k covariance at the chosen ratio, ``df`` = n - k for the t reference,
    ``ratio`` the random walk's mean variance over the series relative to the noise variance
    (posterior median, used) and ``ratio_mode`` (the REML estimate, for the diagnostics).
    """

    cov: np.ndarray
    df: int
    ratio: float
    ratio_mode: float


def random_walk_cov(
    exog: np.ndarray, response: np.ndarray, weights: np.ndarray, position: np.ndarray
) -> RandomWalkCov:
    """Covariance of b = (X'WX)^-1 X'W y when y = Xb + u, u ~ N(0, s2 (W^-1 + q K)).

    Why: monthly area series load on random-walk common factors, so the errors of a treated-
    minus-controls contrast (and of one area's log rate) are a random walk plus noise, with
    K[s, t] = min(s, t) over the equally spaced ``position``. The walk is weak over a few years
    yet dominates a contrast of post- against pre-period means, and its variance is hard to
    estimate: the REML estimate of q is 0 in about one area world in ten and the interval then
    misses (87% coverage of the area DiD in exploratory runs on 1,000 worlds of the
    bench/area_inference.py design; AR(p) fits of the pre-period, p by AIC, about 45%). So q
    is estimated by its posterior median under the reference prior of Berger, De
    Oliveira & Sanso (2001, JASA) for this model, pi(q) ~ sqrt(tr(G^2) - tr(G)^2 / (n - k)),
    G = K P (P the REML projection), with s2 integrated out (prior 1/s2): an estimate that
    never sits on the boundary and is larger where the data cannot rule a walk out (cf. Chung
    et al. 2013, Psychometrika, on boundary-avoiding variance estimates). s2 is then the REML
    value at that q and the reference distribution is t with n - k df. Carrying the whole
    posterior of q into a mixture-of-t interval instead was valid but conservative (98.2% on
    the effect world, 0.4% rejection on the null, 500 worlds each, same exploratory runs);
    the median gives 96.6% / 5.2% (docs/validation/area_inference.md). The price: on errors
    with no walk at all the SE of a pre/post contrast is about twice the OLS one (a walk too
    small to see in the series would still move the contrast), so use it where the design
    says the series wander (common random-walk factors), not as a default.
    """
    x = np.asarray(exog, dtype=float)
    n, k = x.shape
    if n - k < 3:
        raise ValueError("random_walk inference needs at least k + 3 observations")
    order = np.asarray(position, dtype=float)
    walk = np.minimum.outer(order, order) - order.min() + 1.0
    root_w = np.sqrt(np.asarray(weights, dtype=float))
    lam, vec = np.linalg.eigh(root_w[:, None] * walk * root_w[None, :])
    lam = np.clip(lam, 0.0, None)
    xt = vec.T @ (root_w[:, None] * x)
    yt = vec.T @ (root_w * np.asarray(response, dtype=float))
    dfree = n - k
    ratios = _RW_RATIO_GRID / float(np.mean(lam))
    # Every grid point at once: d = diagonal of (I + qK~)^-1, U = d X~, P = diag(d) - U A^-1 U'.
    d = 1.0 / (1.0 + ratios[:, None] * lam[None, :])
    u = d[:, :, None] * xt[None, :, :]
    info = np.einsum("qij,il->qjl", u, xt)
    info_inv = np.linalg.inv(info)
    gls = np.einsum("qjl,ql->qj", info_inv, np.einsum("qij,i->qj", u, yt))
    rss = np.sum(d * (yt[None, :] - gls @ xt.T) ** 2, axis=1)
    hat_diag = np.einsum("qij,qjl,qil->qi", u, info_inv, u)  # diagonal of U A^-1 U'
    tr_g = np.sum((d - hat_diag) * lam, axis=1)
    m = info_inv @ np.einsum("qij,i,qil->qjl", u, lam, u)
    tr_g2 = np.sum((d**2 - 2 * d * hat_diag) * lam**2, axis=1) + np.einsum("qjl,qlj->q", m, m)
    prior = np.sqrt(np.maximum(tr_g2 - tr_g**2 / dfree, 1e-300))
    log_post = (
        np.log(prior)
        - 0.5 * np.sum(np.log1p(ratios[:, None] * lam[None, :]), axis=1)
        - 0.5 * np.linalg.slogdet(info)[1]
        - 0.5 * dfree * np.log(rss)
    )
    dens = np.exp(log_post - log_post.max()) * np.gradient(ratios)  # the prior is a density in q
    i = int(np.searchsorted(np.cumsum(dens) / dens.sum(), 0.5))
    xtx_inv_xt = np.linalg.solve(xt.T @ xt, xt.T)  # the estimator in rotated coordinates
    cov = rss[i] / dfree * (xtx_inv_xt * (1.0 + ratios[i] * lam)) @ xtx_inv_xt.T
    return RandomWalkCov(
        cov=cov,
        df=dfree,
        ratio=float(_RW_RATIO_GRID[i]),
        ratio_mode=float(_RW_RATIO_GRID[np.argmax(log_post)]),
    )


def _fit(
    endog: np.ndarray,
    design: _Design,
    *,
    family: Family,
    offset: np.ndarray | None,
    se_type: SeType,
    hac_lags: int,
    lag_rule: str,
    series: np.ndarray,
    position: np.ndarray,
) -> _Fit:
    """Fit the GLM and compute the covariance named by ``se_type``."""
    fam, alpha = _glm_family(family, endog, design.exog, offset)
    model = sm.GLM(endog, design.exog, family=fam, offset=offset)
    scale = "X2" if family in ("quasipoisson", "gaussian") else None
    n_times = len(np.unique(position))
    k = design.exog.shape[1]
    extra: dict[str, float] = {}
    if se_type == "model":
        res = model.fit(scale=scale)
        cov = np.asarray(res.cov_params())
        label = {
            "quasipoisson": "model-based, quasi-Poisson scale = Pearson chi2/df",
            "gaussian": "model-based (OLS)",
        }.get(family, "model-based (ML)")
        # t reference only for the Gaussian fit; Wald-normal otherwise, as R's
        # confint.default / Epi::ci.exp print for GLMs (including quasi-Poisson).
        df = float(res.df_resid) if family == "gaussian" else None
    elif se_type == "ar1":
        res = model.fit(scale=scale)
        cov, extra = _latent_ar1_cov(res, series, position)
        df = float(n_times - k)
        label = (
            "latent AR(1)+noise working correlation, design-corrected moments at lags 1-2"
            + (" and cross-series lag 0" if len(np.unique(series)) > 1 else "")
            + f", sandwich; t reference, df = T - k = {n_times - k}"
        )
    elif se_type == "random_walk":
        if len(np.unique(series)) > 1:
            raise ValueError(
                "se_type='random_walk' models one series; use 'ar1' or 'hac' for "
                "a controlled design"
            )
        res = model.fit(scale=scale)
        exog = design.exog.to_numpy(dtype=float)
        working = exog @ res.params.to_numpy() + np.asarray(res.resid_working, dtype=float)
        rw = random_walk_cov(exog, working, res.model.family.weights(res.mu), position)
        cov, df = rw.cov, float(rw.df)
        extra = {"rw_ratio": rw.ratio, "rw_ratio_mode": rw.ratio_mode}
        label = (
            "latent random walk plus noise on the IRLS working scale, variance ratio at its "
            f"reference-posterior median; t reference, df = T - k = {rw.df}"
        )
    elif se_type == "hac":
        df = None
        if len(np.unique(series)) == 1:
            res = model.fit(
                scale=scale, cov_type="HAC", cov_kwds={"maxlags": hac_lags, "use_correction": True}
            )
            label = f"Newey-West HAC, Bartlett kernel, {hac_lags} lags, n/(n-k) factor"
        else:
            res = model.fit(
                scale=scale,
                cov_type="hac-groupsum",
                cov_kwds={"time": position, "maxlags": hac_lags, "use_correction": "hac"},
            )
            label = (
                f"Driscoll-Kraay HAC over series, Bartlett kernel, {hac_lags} lags, n/(n-k) factor"
            )
        label += f"{lag_rule}; normal reference"
        cov = np.asarray(res.cov_params())
    else:
        raise ValueError(f"unknown se_type {se_type!r}")
    return _Fit(res=res, cov=cov, alpha=alpha, label=label, df=df, extra=extra)


def _autocorrelation(resid: np.ndarray, max_lag: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """ACF/PACF of residuals with Ljung–Box tests, plus Durbin–Watson."""
    n = len(resid)
    nlags = max(1, min(max_lag, n // 2 - 1))
    r_acf = acf(resid, nlags=nlags, fft=False)
    r_pacf = pacf(resid, nlags=nlags, method="ywm")
    lb = acorr_ljungbox(resid, lags=list(range(1, nlags + 1)), return_df=True)
    table = pd.DataFrame(
        {
            "lag": np.arange(1, nlags + 1),
            "acf": r_acf[1:],
            "pacf": r_pacf[1:],
            "ljung_box_stat": lb["lb_stat"].to_numpy(),
            "ljung_box_p": lb["lb_pvalue"].to_numpy(),
        }
    )
    diag: dict[str, float] = {"durbin_watson": float(durbin_watson(resid))}
    for lag in LJUNG_BOX_LAGS:
        if lag <= nlags:
            diag[f"ljung_box_p_lag{lag}"] = float(
                table.loc[table["lag"] == lag, "ljung_box_p"].iloc[0]
            )
    return table, diag


def _counterfactual(
    fit: _Fit,
    design: _Design,
    observed: np.ndarray,
    offset: np.ndarray | None,
    time: np.ndarray,
    post: np.ndarray,
    level: float,
    dist: stats.rv_continuous,
) -> pd.DataFrame:
    """Observed, fitted and predicted-without-intervention (Wald interval on the link scale)."""
    x_fit = design.exog.to_numpy(dtype=float)
    x_cf = design.exog.copy()
    x_cf[design.intervention_cols] = 0.0
    x_cf_arr = x_cf.to_numpy(dtype=float)
    params = fit.res.params.to_numpy()
    cov = fit.cov
    off = np.zeros(len(observed)) if offset is None else offset
    eta_cf = x_cf_arr @ params + off
    se_cf = np.sqrt(np.einsum("ij,jk,ik->i", x_cf_arr, cov, x_cf_arr))
    crit = float(dist.ppf(0.5 + level / 2))
    inv = fit.res.model.family.link.inverse
    fitted = inv(x_fit @ params + off)
    counterfactual = inv(eta_cf)
    return pd.DataFrame(
        {
            "time": time,
            "post": post,
            "observed": observed,
            "fitted": fitted,
            "counterfactual": counterfactual,
            "counterfactual_low": inv(eta_cf - crit * se_cf),
            "counterfactual_high": inv(eta_cf + crit * se_cf),
            "effect": fitted - counterfactual,
        }
    )


def _result(
    method: str,
    fit: _Fit,
    design: _Design,
    *,
    family: Family,
    endog: np.ndarray,
    offset: np.ndarray | None,
    time: np.ndarray,
    post: np.ndarray,
    level: float,
    acf_lags: int,
    extra_diag: dict[str, object],
    acf_rows: np.ndarray | None = None,
) -> EstimationResult:
    """Assemble the tidy table, the counterfactual and residual tables and diagnostics."""
    n = len(endog)
    res = fit.res
    df_resid = float(res.df_resid)
    dist = stats.t(fit.df) if fit.df is not None else stats.norm()
    scale_name = "identity" if family == "gaussian" else "log"
    bse = np.sqrt(np.diag(fit.cov))
    rows = []
    for j, name in enumerate(design.exog.columns):
        row = inference_row(name, float(res.params[name]), float(bse[j]), df=fit.df, level=level)
        if scale_name == "log":
            row.update(
                exp_estimate=math.exp(row["estimate"]),
                exp_ci_low=math.exp(row["ci_low"]),
                exp_ci_high=math.exp(row["ci_high"]),
            )
        rows.append(row)
    tidy = tidy_frame(
        rows, n_obs=n, n_clusters=pd.NA, method=method, se_type=fit.label, scale=scale_name
    )
    cf = _counterfactual(fit, design, endog, offset, time, post, level, dist)
    resid = np.asarray(res.resid_pearson)
    acf_table, ac_diag = _autocorrelation(resid if acf_rows is None else resid[acf_rows], acf_lags)
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
        **fit.extra,
    }
    if fit.alpha is not None:
        diagnostics["negbin_alpha"] = fit.alpha
    return EstimationResult(
        method=method,
        tidy=tidy,
        tables={"counterfactual": cf, "residual_acf": acf_table},
        diagnostics=diagnostics,
    )


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
        raise ValueError(
            "a population offset applies to count families; model rates directly "
            "with family='gaussian'"
        )
    return np.log(frame[population].to_numpy(dtype=float))


def segmented_its(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: Column,
    interventions: float | Sequence[float],
    family: Family = "quasipoisson",
    population: Column | None = None,
    season: Column | None = None,
    seasonality: Seasonality = "none",
    harmonics: int = 2,
    period: int = 12,
    level_change: bool = True,
    slope_change: bool = True,
    se_type: SeType = "ar1",
    hac_lags: int | None = None,
    acf_lags: int = 24,
    level: float = 0.95,
) -> EstimationResult:
    """Single-series segmented regression ITS.

    ``interventions`` are the first post-intervention values of ``time`` (one or several
    breakpoints). ``population`` adds log(population) as an offset for count families, so
    ``exp(level_change)`` is a rate ratio. ``season`` names the column with the seasonal index
    (month 1..12) used by ``seasonality``. ``hac_lags`` (for ``se_type="hac"``) defaults to
    :func:`newey_west_lags`. The default ``se_type="ar1"`` takes the time points as equally
    spaced (see the module docstring).
    """
    t_list = (
        [float(interventions)] if np.isscalar(interventions) else [float(t) for t in interventions]
    )
    cols = [outcome, time] + ([population] if population else []) + ([season] if season else [])
    _validate(data, cols)
    if seasonality != "none" and season is None:
        raise ValueError("seasonality needs the season column (e.g. month)")
    frame = data.sort_values(time).reset_index(drop=True)
    t = frame[time].astype(float)
    interv = _intervention_terms(t, t_list, level_change, slope_change)
    seas = (
        _seasonal_terms(frame[season], seasonality, harmonics, period)
        if season
        else pd.DataFrame(index=frame.index)
    )
    exog = pd.concat(
        [pd.DataFrame({"intercept": 1.0, "trend": t}, index=frame.index), interv, seas], axis=1
    )
    design = _Design(exog=exog, intervention_cols=list(interv.columns))
    endog = frame[outcome].to_numpy(dtype=float)
    offset = _offset(frame, family, population)
    lags = newey_west_lags(len(frame)) if hac_lags is None else int(hac_lags)
    fit = _fit(
        endog,
        design,
        family=family,
        offset=offset,
        se_type=se_type,
        hac_lags=lags,
        lag_rule=" (rule floor(4*(n/100)^(2/9)))" if hac_lags is None else "",
        series=np.zeros(len(frame)),
        position=np.arange(len(frame)),
    )
    return _result(
        "its_segmented",
        fit,
        design,
        family=family,
        endog=endog,
        offset=offset,
        time=t.to_numpy(),
        post=(t >= min(t_list)).to_numpy(),
        level=level,
        acf_lags=acf_lags,
        extra_diag={
            "hac_lags": lags if se_type == "hac" else 0,
            "interventions": ",".join(map(str, t_list)),
            "seasonality": seasonality,
        },
    )


def controlled_its(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: Column,
    group: Column,
    intervention: float,
    family: Family = "quasipoisson",
    population: Column | None = None,
    season: Column | None = None,
    seasonality: Seasonality = "none",
    harmonics: int = 2,
    period: int = 12,
    se_type: SeType = "ar1",
    hac_lags: int | None = None,
    acf_lags: int = 24,
    level: float = 0.95,
) -> EstimationResult:
    """Controlled ITS: the treated series against a comparator series, stacked.

    ``group`` is 1 for the treated series and 0 for the comparator. The model has a separate
    intercept and trend per series, common level and slope changes at ``intervention`` (what
    happened to the comparator too), and the difference-in-change terms ``group_x_level_change``
    and ``group_x_slope_change``, which are the effect estimates. Seasonality is shared. Both
    inference options allow the two series to be correlated: the default ``"ar1"`` fits a
    cross-series correlation of the latent processes; ``"hac"`` is Driscoll–Kraay (scores summed
    across the two series at each time point, then Newey–West over time).
    The counterfactual for the treated series removes only the difference-in-change terms.
    """
    cols = (
        [outcome, time, group] + ([population] if population else []) + ([season] if season else [])
    )
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
    exog = pd.concat(
        [
            pd.DataFrame(
                {"intercept": 1.0, "trend": t, "group": g, "group_x_trend": g * t},
                index=frame.index,
            ),
            interv,
            interv.mul(g, axis=0).add_prefix("group_x_"),
            _seasonal_terms(frame[season], seasonality, harmonics, period)
            if season
            else pd.DataFrame(index=frame.index),
        ],
        axis=1,
    )
    design = _Design(exog=exog, intervention_cols=["group_x_level_change", "group_x_slope_change"])
    endog = frame[outcome].to_numpy(dtype=float)
    offset = _offset(frame, family, population)
    n_times = frame[time].nunique()
    lags = newey_west_lags(n_times) if hac_lags is None else int(hac_lags)
    time_index = pd.factorize(frame[time], sort=True)[0]
    fit = _fit(
        endog,
        design,
        family=family,
        offset=offset,
        se_type=se_type,
        hac_lags=lags,
        lag_rule=" (rule floor(4*(T/100)^(2/9)), T time points)" if hac_lags is None else "",
        series=g.to_numpy(),
        position=time_index,
    )
    result = _result(
        "its_controlled",
        fit,
        design,
        family=family,
        endog=endog,
        offset=offset,
        time=t.to_numpy(),
        post=(t >= intervention).to_numpy(),
        level=level,
        acf_lags=acf_lags,
        extra_diag={
            "hac_lags": lags if se_type == "hac" else 0,
            "interventions": str(float(intervention)),
            "seasonality": seasonality,
        },
        acf_rows=(g == 1).to_numpy(),
    )
    result.tables["counterfactual"].insert(1, "group", frame[group].to_numpy())
    return result
