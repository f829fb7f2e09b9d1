"""Stepped-wedge estimators: Hussey–Hughes mixed model, GEE, exposure-time models, permutation.

Clusters (practices or neighbourhoods) cross from control to intervention at staggered periods
(months or survey waves) and never cross back. The functions take cluster-period rows, person
rows, or person-wave rows alike: ``cluster`` names the unit of randomisation and, for a cohort
panel, ``subject`` adds a person random intercept nested in the cluster.

Conventions of the tidy table:

* terms: ``treatment`` (immediate-treatment model), ``exposure_time=e`` for the effect ``e``
  periods after the cluster started (1 = its first treated period), ``exposure_time>=B`` for a
  binned tail, ``average_first_K`` for the mean of the effects at exposure times 1..K (a binned
  tail's coefficient stands for each exposure time it covers), SE by the delta method.
* scale: ``identity`` (mean difference, Gaussian LMM), ``log`` (Poisson / negative binomial
  GEE: log rate ratio) or ``logit`` (binomial GEE: log odds ratio). On ``log`` and ``logit``
  rows the estimate and CI stay on the link scale and ``exp_estimate``, ``exp_ci_low``,
  ``exp_ci_high`` hold the rate or odds ratio and its CI.
* ``dof`` holds the t reference degrees of freedom (NaN: normal reference).
* Nuisance coefficients (intercept, period effects, covariates) are in ``tables["nuisance"]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize
from statsmodels.genmod import families
from statsmodels.genmod.cov_struct import Exchangeable, Independence
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.columns import Column
from analysis.design import covariate_design
from analysis.results import EstimationResult, inference_row, tidy_frame

GeeFamily = Literal["binomial", "poisson", "negbin"]
GeeSE = Literal["mancl-derouen", "kauermann-carroll", "robust"]
DfMethod = Literal["clusters-minus-params", "clusters-minus-two", "normal"]
Statistic = Literal["cluster_period_ols", "lmm"]

_SE_LABELS: dict[str, str] = {
    "mancl-derouen": "GEE sandwich, Mancl-DeRouen bias-corrected",
    "kauermann-carroll": "GEE sandwich, Kauermann-Carroll bias-corrected",
    "robust": "GEE sandwich (Liang-Zeger, uncorrected)",
}
_LINK_SCALE: dict[str, str] = {"binomial": "logit", "poisson": "log", "negbin": "log"}


@dataclass(frozen=True)
class _Fit:
    """Coefficients and covariance of one fitted mean model, effect terms first."""

    params: pd.Series
    cov: pd.DataFrame
    effect_terms: list[str]
    df: float | None
    se_type: str
    scale: str
    diagnostics: dict[str, float | int | str]


# --------------------------------------------------------------------------------------------
# data preparation
# --------------------------------------------------------------------------------------------


def _select(data: pd.DataFrame, columns: Sequence[str], order: Sequence[str]) -> pd.DataFrame:
    """The needed columns, complete cases only, sorted by ``order`` for reproducible fits."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise KeyError(f"columns {missing} not in data; columns: {list(data.columns)}")
    frame = data.loc[:, list(dict.fromkeys(columns))].dropna()
    if frame.empty:
        raise ValueError("no complete rows to fit")
    return frame.sort_values(list(order), kind="mergesort").reset_index(drop=True)


def _period_rank(periods: pd.Series) -> pd.Series:
    """Period as 1, 2, ... in calendar order (works for ints, dates and ordered labels)."""
    levels = np.sort(periods.unique())
    return periods.map({v: i + 1 for i, v in enumerate(levels)}).astype(int)


def cluster_start_ranks(
    data: pd.DataFrame, *, treatment: str, cluster: str, period: str
) -> pd.Series:
    """Rank of each cluster's first treated period (NaN: never treated).

    Raises if a cluster is ever untreated after being treated, since every stepped-wedge
    estimator here relies on a one-way switch.
    """
    rank = _period_rank(data[period])
    treated = data[treatment].astype(float)
    if not treated.isin([0.0, 1.0]).all():
        raise ValueError(f"{treatment!r} must be 0/1")
    start = rank.where(treated == 1).groupby(data[cluster]).min()
    last_control = rank.where(treated == 0).groupby(data[cluster]).max()
    reverted = start.notna() & (last_control > start)
    if reverted.any():
        raise ValueError(f"clusters {list(start.index[reverted])} switch back to control; "
                         "a stepped wedge needs a one-way switch")
    return start


def _design(
    frame: pd.DataFrame, effects: pd.DataFrame, *, period: str, covariates: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Effect columns, then intercept, period dummies (first period omitted), covariates."""
    ranks = _period_rank(frame[period])
    levels = np.sort(frame[period].unique())
    period_dummies = pd.DataFrame(
        {f"period={levels[r - 1]}": (ranks == r).astype(float) for r in range(2, len(levels) + 1)},
        index=frame.index,
    )
    parts = [effects.astype(float), pd.DataFrame({"Intercept": 1.0}, index=frame.index),
             period_dummies, covariate_design(frame, covariates)]
    exog = pd.concat(parts, axis=1)
    rank = np.linalg.matrix_rank(exog.to_numpy())
    if rank < exog.shape[1]:
        raise ValueError(f"design is rank deficient ({rank} < {exog.shape[1]} columns); "
                         "check the covariates and that treatment varies within periods")
    return exog, list(effects.columns)


def _exposure_effects(
    frame: pd.DataFrame, *, treatment: str, cluster: str, period: str, max_exposure: int | None
) -> tuple[pd.DataFrame, list[tuple[int, int | None]], int]:
    """One indicator per exposure time; with ``max_exposure`` B, times >= B share one indicator.

    Returns the indicator frame, per column the (first, last) exposure time it covers (last
    None for an open tail), and the longest exposure time observed.
    """
    start = cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)
    exposure = _period_rank(frame[period]) - frame[cluster].map(start) + 1
    exposure = exposure.where(frame[treatment] == 1, 0).fillna(0).astype(int)
    observed = sorted(e for e in exposure.unique() if e > 0)
    if not observed:
        raise ValueError("no treated rows: exposure-time effects are not identified")
    top = observed[-1]
    if max_exposure is not None and max_exposure < 1:
        raise ValueError("max_exposure must be >= 1")
    columns: dict[str, pd.Series] = {}
    spans: list[tuple[int, int | None]] = []
    for e in range(1, top + 1):
        if max_exposure is not None and e >= max_exposure:
            columns[f"exposure_time>={max_exposure}"] = (exposure >= max_exposure).astype(float)
            spans.append((max_exposure, None))
            break
        columns[f"exposure_time={e}"] = (exposure == e).astype(float)
        spans.append((e, e))
    return pd.DataFrame(columns, index=frame.index), spans, top


def _reference_df(method: DfMethod, n_clusters: int, n_params: int) -> float | None:
    """Degrees of freedom of the t reference for few clusters (None: normal)."""
    if method == "normal":
        return None
    df = n_clusters - (n_params if method == "clusters-minus-params" else 2)
    if df < 1:
        raise ValueError(
            f"df_method={method!r} leaves {df} degrees of freedom ({n_clusters} clusters, "
            f"{n_params} parameters); use df_method='clusters-minus-two' or 'normal'")
    return float(df)


# --------------------------------------------------------------------------------------------
# model fitting
# --------------------------------------------------------------------------------------------


class _NestedIntercepts:
    """Profiled (RE)ML of y = X b + cluster intercept + subject-in-cluster intercept + e.

    Per cluster V = s2 (I + g_s Z Z' + g_c 1 1'), Z the subject indicators. Both intercepts
    enter through subject-level and cluster-level sums, so one likelihood evaluation costs
    O(n_subjects p^2) after a single pass over the rows (statsmodels' MixedLM with a nested
    variance component builds dense per-cluster matrices and took minutes on a 24,000-row
    cohort panel). The criterion is lme4's, so fits and log-likelihoods agree with lmer.
    Without a subject column each row is its own subject and g_s stays 0.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, cluster: np.ndarray,
                 subject: np.ndarray | None) -> None:
        z = np.column_stack([x, y])
        self.n, self.p = x.shape
        self.zz = z.T @ z
        keys = pd.DataFrame({"c": cluster, "s": subject if subject is not None
                             else np.arange(len(y))})
        codes = keys.groupby(["c", "s"], sort=True).ngroup().to_numpy()
        self.sums = np.zeros((codes.max() + 1, z.shape[1]))
        np.add.at(self.sums, codes, z)
        self.m = np.bincount(codes).astype(float)
        first = keys.groupby(["c", "s"], sort=True)["c"].first()
        self.cluster_of = pd.factorize(first.to_numpy())[0]
        self.n_clusters = int(self.cluster_of.max() + 1)
        # (cluster, column) cell of each entry of sums: one bincount then adds the entries in
        # row order, the same sums as np.add.at to the last bit at a fraction of its cost
        width = self.sums.shape[1]
        self.cells = (self.cluster_of[:, None] * width + np.arange(width)).ravel()
        self.nested = subject is not None

    def _cross(self, g_c: float, g_s: float) -> tuple[np.ndarray, float]:
        """Z' H^-1 Z for Z = [X, y], and log|H|."""
        d = 1.0 / (1.0 + self.m * g_s)
        cross = self.zz.copy()
        if g_s > 0:
            c = g_s * d
            cross -= (self.sums * c[:, None]).T @ self.sums
        width = self.sums.shape[1]
        u = np.bincount(self.cells, weights=(self.sums * d[:, None]).ravel(),
                        minlength=self.n_clusters * width).reshape(self.n_clusters, width)
        q = np.bincount(self.cluster_of, weights=self.m * d)
        cross -= (u * (g_c / (1.0 + g_c * q))[:, None]).T @ u
        logdet = float(np.sum(np.log1p(self.m * g_s)) + np.sum(np.log1p(g_c * q)))
        return cross, logdet

    def solve(self, theta: np.ndarray, reml: bool) -> dict[str, object]:
        """GLS fit and deviance at relative SDs theta = (cluster[, subject]) / residual SD."""
        g_c, g_s = float(theta[0]) ** 2, (float(theta[1]) ** 2 if self.nested else 0.0)
        cross, logdet = self._cross(g_c, g_s)
        xhx, xhy, yhy = cross[:-1, :-1], cross[:-1, -1], cross[-1, -1]
        beta = np.linalg.solve(xhx, xhy)
        rss = float(yhy - xhy @ beta)
        dof = self.n - self.p if reml else self.n
        s2 = rss / dof
        deviance = dof * (1.0 + math.log(2 * math.pi * s2)) + logdet
        if reml:
            deviance += float(np.linalg.slogdet(xhx)[1])
        return {"beta": beta, "s2": s2, "g_c": g_c, "g_s": g_s, "xhx": xhx,
                "deviance": deviance}

    def fit(self, reml: bool) -> tuple[dict[str, object], bool]:
        """Minimise the deviance over relative SDs (>= 0, as lme4's theta), from two starts."""
        k = 2 if self.nested else 1
        best, ok = None, False
        for start in (0.1, 1.0):
            opt = optimize.minimize(
                lambda t: self.solve(t, reml)["deviance"],
                np.full(k, start), method="L-BFGS-B", bounds=[(0.0, None)] * k,
                options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
            if best is None or opt.fun < best.fun:
                best, ok = opt, bool(opt.success)
        return self.solve(best.x, reml), ok


def _fit_lmm(
    frame: pd.DataFrame, exog: pd.DataFrame, effect_terms: list[str], *, outcome: str,
    cluster: str, subject: str | None, reml: bool, df_method: DfMethod,
) -> _Fit:
    """Linear mixed model: cluster random intercept, optional subject intercept within cluster.

    SEs are (X' V^-1 X)^-1 at the estimated variance components, as lme4, nlme and SAS report.
    """
    model = _NestedIntercepts(exog.to_numpy(), frame[outcome].to_numpy(dtype=float),
                              frame[cluster].to_numpy(),
                              frame[subject].to_numpy() if subject is not None else None)
    est, converged = model.fit(reml)
    s2 = float(est["s2"])
    cov = pd.DataFrame(s2 * np.linalg.inv(est["xhx"]), index=exog.columns, columns=exog.columns)
    label = "REML" if reml else "ML"
    diagnostics: dict[str, float | int | str] = {
        "converged": int(converged),
        "cluster_variance": float(est["g_c"]) * s2,
        "residual_variance": s2,
        "log_likelihood": -0.5 * float(est["deviance"]),
        "estimation": label,
    }
    if subject is not None:
        diagnostics["subject_variance"] = float(est["g_s"]) * s2
        diagnostics["n_subjects"] = len(model.m)
    total = s2 * (1.0 + float(est["g_c"]) + float(est["g_s"]))
    diagnostics["icc_cluster"] = float(est["g_c"]) * s2 / total
    return _Fit(
        params=pd.Series(est["beta"], index=exog.columns), cov=cov, effect_terms=effect_terms,
        df=_reference_df(df_method, model.n_clusters, 2), se_type=f"model-based ({label})",
        scale="identity", diagnostics=diagnostics,
    )


def _gee_family(family: GeeFamily, nb_alpha: float | None) -> families.Family:
    if family == "binomial":
        return families.Binomial()
    if family == "poisson":
        return families.Poisson()
    if family == "negbin":
        return families.NegativeBinomial(alpha=nb_alpha)
    raise ValueError(f"unknown GEE family {family!r}")


def _negbin_alpha(y: np.ndarray, exog: pd.DataFrame, offset: np.ndarray | None,
                  groups: np.ndarray) -> float:
    """NB2 dispersion by the Cameron–Trivedi auxiliary regression at a Poisson GEE fit.

    sum((y - mu)^2 - y) / sum(mu^2): a moment estimator that, unlike ML, stays defined when
    the counts are not overdispersed (then it is floored at a tiny positive value).
    """
    res = sm.GEE(y, exog, groups=groups, family=families.Poisson(), cov_struct=Exchangeable(),
                 offset=offset).fit(maxiter=200, ddof_scale=0)
    mu = np.asarray(res.fittedvalues)
    return max(float(np.sum((y - mu) ** 2 - y) / np.sum(mu**2)), 1e-8)


def small_sample_sandwich(
    exog: np.ndarray, y: np.ndarray, mu: np.ndarray, dmu_deta: np.ndarray,
    variance: np.ndarray, groups: np.ndarray, alpha: float,
) -> dict[str, np.ndarray]:
    """GEE sandwich covariances with exchangeable working correlation ``alpha``.

    Returns ``robust`` (Liang–Zeger), ``mancl-derouen`` (residuals scaled by (I - H_i)^-1,
    Mancl & DeRouen 2001) and ``kauermann-carroll`` (by (I - H_i)^-1/2, Kauermann & Carroll
    2001), H_i = D_i B^-1 D_i' V_i^-1 the cluster leverage. With C_i' C_i = V_i^-1, C_i H_i C_i^-1
    = G_i G_i' is symmetric, so the matrix powers come from a rank-p SVD per cluster instead of a
    dense n_i x n_i eigendecomposition (person-level clusters can hold thousands of rows).
    The dispersion cancels in the sandwich and is omitted.
    """
    order = np.argsort(groups, kind="mergesort")
    _, starts = np.unique(groups[order], return_index=True)
    blocks = np.split(order, starts[1:])
    whitened = []
    for idx in blocks:
        n = len(idx)
        # R^-1/2 of the exchangeable matrix: eigenvalue 1 + (n-1)a on 1, 1 - a elsewhere.
        a_all = (1.0 + (n - 1) * alpha) ** -0.5
        a_rest = (1.0 - alpha) ** -0.5

        def whiten(m: np.ndarray, a_all: float = a_all, a_rest: float = a_rest) -> np.ndarray:
            mean = m.mean(axis=0, keepdims=True)
            return a_rest * (m - mean) + a_all * mean

        scale = 1.0 / np.sqrt(variance[idx])
        d_t = whiten(exog[idx] * (dmu_deta[idx] * scale)[:, None])
        r_t = whiten(((y[idx] - mu[idx]) * scale)[:, None])[:, 0]
        whitened.append((d_t, r_t))
    bread = sum(d.T @ d for d, _ in whitened)
    bread_inv = np.linalg.inv(bread)
    chol = np.linalg.cholesky(bread_inv)
    powers = {"robust": 0.0, "mancl-derouen": 1.0, "kauermann-carroll": 0.5}
    meats = {name: np.zeros_like(bread) for name in powers}
    for d_t, r_t in whitened:
        # one SVD per cluster serves both corrections
        u, s, _ = np.linalg.svd(d_t @ chol, full_matrices=False)
        u_r = u.T @ r_t
        for name, power in powers.items():
            resid = r_t + u @ (((1.0 - s**2) ** -power - 1.0) * u_r) if power else r_t
            score = d_t.T @ resid
            meats[name] += np.outer(score, score)
    return {name: bread_inv @ meat @ bread_inv for name, meat in meats.items()}


def _check_finite_estimates(exog: pd.DataFrame, y: np.ndarray, family: GeeFamily) -> None:
    """Raise when an indicator term's estimate would be infinite, before GEE chases it.

    Under a log link, a 0/1 column whose rows all have a zero count has no finite estimate:
    lowering its coefficient always moves the fit closer (every such row wants a mean of 0).
    The same holds under the logit link for rows all 0 or all 1. With sparse counts and a
    period effect per month (a small world, a rare outcome) some periods or exposure times
    have no events; the iterations then diverge and numpy fails with "SVD did not converge".
    """
    x = exog.to_numpy()
    indicator = np.all((x == 0.0) | (x == 1.0), axis=0) & (exog.columns != "Intercept")
    on = x[:, indicator] == 1.0
    events = on.T @ y
    bad = events == 0.0
    if family == "binomial":
        bad |= events == on.sum(axis=0)
    terms = list(exog.columns[indicator][bad])
    if not terms:
        return
    what = "events" if family != "binomial" else "variation in the outcome"
    shown = ", ".join(terms[:8]) + (f" and {len(terms) - 8} more" if len(terms) > 8 else "")
    raise ValueError(
        f"the {family} GEE has no finite estimate: no {what} in the rows of {len(terms)} "
        f"term(s) ({shown}), so those effects diverge to infinity. The outcome is too sparse "
        f"for one effect per period/exposure time: use coarser periods (e.g. quarters), a "
        f"smaller max_exposure, a more common outcome or a larger population")


def _fit_gee(
    frame: pd.DataFrame, exog: pd.DataFrame, effect_terms: list[str], *, outcome: str,
    cluster: str, family: GeeFamily, exposure: str | None, nb_alpha: float | None,
    se_type: GeeSE, df_method: DfMethod,
) -> _Fit:
    """Marginal model by GEE, exchangeable within cluster, small-sample sandwich SEs."""
    y = frame[outcome].to_numpy(dtype=float)
    offset = None
    if exposure is not None:
        if family == "binomial":
            raise ValueError("an exposure offset applies to Poisson / negative binomial counts")
        denom = frame[exposure].to_numpy(dtype=float)
        if (denom <= 0).any():
            raise ValueError(f"{exposure!r} must be positive (log offset)")
        offset = np.log(denom)
    groups = frame[cluster].to_numpy()
    n_clusters = int(frame[cluster].nunique())
    df = _reference_df(df_method, n_clusters, exog.shape[1])
    _check_finite_estimates(exog, y, family)
    diagnostics: dict[str, float | int | str] = {}
    if family == "negbin" and nb_alpha is None:
        nb_alpha = _negbin_alpha(y, exog, offset, groups)
        diagnostics["nb_alpha_estimated"] = 1
    if family == "negbin":
        diagnostics["nb_alpha"] = float(nb_alpha)
    fam = _gee_family(family, nb_alpha)

    def fit(cov_struct: Exchangeable | Independence) -> tuple[object, bool]:
        model = sm.GEE(y, exog, groups=groups, family=fam, cov_struct=cov_struct, offset=offset)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            # ddof_scale=0: the moment estimators of dispersion and working correlation divide
            # by N, as geepack does, so fits match the R reference; X2 reports the dispersion.
            res = model.fit(maxiter=200, ctol=1e-8, scale="X2", ddof_scale=0)
        return res, not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    res, converged = fit(Exchangeable())
    alpha = float(res.model.cov_struct.dep_params)
    largest = int(pd.Series(groups).value_counts().max())
    structure = "exchangeable"
    if largest > 1 and alpha <= -1.0 / (largest - 1):
        # A negative exchangeable correlation this large is not a valid correlation matrix for
        # the biggest cluster; fall back to independence (still valid with the sandwich).
        structure = f"independence (exchangeable estimate {alpha:.4g} invalid)"
        alpha = 0.0
        res, converged = fit(Independence())
    x = exog.to_numpy()
    eta = x @ res.params.to_numpy() + (offset if offset is not None else 0.0)
    mu = fam.link.inverse(eta)
    covs = small_sample_sandwich(x, y, mu, fam.link.inverse_deriv(eta), fam.variance(mu),
                                 groups, alpha)
    diagnostics.update({
        "converged": int(converged),
        "working_correlation": alpha,
        "working_correlation_structure": structure,
        "dispersion": float(res.scale),
        "family": family,
    })
    cov = pd.DataFrame(covs[se_type], index=exog.columns, columns=exog.columns)
    return _Fit(
        params=res.params, cov=cov, effect_terms=effect_terms, df=df,
        se_type=_SE_LABELS[se_type], scale=_LINK_SCALE[family], diagnostics=diagnostics,
    )


# --------------------------------------------------------------------------------------------
# result assembly
# --------------------------------------------------------------------------------------------


def _row(term: str, estimate: float, se: float, fit: _Fit, level: float) -> dict[str, object]:
    row = inference_row(term, estimate, se, df=fit.df, level=level,
                        dof=fit.df if fit.df is not None else float("nan"))
    if fit.scale != "identity":
        row.update(exp_estimate=math.exp(row["estimate"]), exp_ci_low=math.exp(row["ci_low"]),
                   exp_ci_high=math.exp(row["ci_high"]))
    return row


def _result(
    method: str, fit: _Fit, frame: pd.DataFrame, *, cluster: str, level: float,
    extra_rows: Sequence[tuple[str, np.ndarray]] = (),
) -> EstimationResult:
    """Tidy rows for the effect terms and any linear combinations (name, weights over them)."""
    beta = fit.params[fit.effect_terms].to_numpy()
    vcov = fit.cov.loc[fit.effect_terms, fit.effect_terms].to_numpy()
    rows = [_row(t, float(beta[i]), float(math.sqrt(vcov[i, i])), fit, level)
            for i, t in enumerate(fit.effect_terms)]
    for name, w in extra_rows:
        rows.append(_row(name, float(w @ beta), float(math.sqrt(w @ vcov @ w)), fit, level))
    tidy = tidy_frame(rows, n_obs=len(frame), n_clusters=int(frame[cluster].nunique()),
                      method=method, se_type=fit.se_type, scale=fit.scale)
    nuisance = [t for t in fit.params.index if t not in fit.effect_terms]
    table = pd.DataFrame({
        "term": nuisance,
        "estimate": fit.params[nuisance].to_numpy(),
        "std_error": np.sqrt(np.diag(fit.cov.loc[nuisance, nuisance].to_numpy())),
    })
    return EstimationResult(method=method, tidy=tidy, tables={"nuisance": table},
                            diagnostics=fit.diagnostics)


def _average_weights(spans: list[tuple[int, int | None]], k: int, top: int) -> np.ndarray:
    """Weights over exposure-time coefficients that average the effects at times 1..k."""
    if not 1 <= k <= top:
        raise ValueError(f"average over the first {k} exposure times, but exposure times "
                         f"1..{top} are observed")
    w = np.zeros(len(spans))
    for e in range(1, k + 1):
        hit = next(i for i, (lo, hi) in enumerate(spans) if lo <= e and (hi is None or e <= hi))
        w[hit] += 1.0 / k
    return w


# --------------------------------------------------------------------------------------------
# public estimators
# --------------------------------------------------------------------------------------------


def hussey_hughes_lmm(
    data: pd.DataFrame, *, outcome: str, treatment: Column, cluster: Column, period: Column,
    covariates: Sequence[str] = (), subject: Column | None = None, reml: bool = True,
    df_method: DfMethod = "clusters-minus-two", level: float = 0.95,
) -> EstimationResult:
    """Hussey & Hughes (2007) model: outcome ~ treatment + period FE + covariates, random
    cluster intercept (plus a subject intercept nested in cluster for a person-wave panel).

    Term ``treatment`` on the identity scale; model-based SEs with a t(n_clusters - 2)
    reference by default, as Wald z intervals are anti-conservative with few clusters.
    Fitted by the profiled REML/ML of :class:`_NestedIntercepts` (lme4's criterion), which
    matches ``lme4::lmer`` and stays fast on a cohort panel with thousands of people.
    """
    cols = [cluster, period, outcome, treatment, *covariates] + ([subject] if subject else [])
    frame = _select(data, cols, order=(cluster, period))
    cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)
    exog, terms = _design(frame, frame[[treatment]].rename(columns={treatment: "treatment"}),
                          period=period, covariates=covariates)
    fit = _fit_lmm(frame, exog, terms, outcome=outcome, cluster=cluster, subject=subject,
                   reml=reml, df_method=df_method)
    return _result("stepped_wedge_hussey_hughes_lmm", fit, frame, cluster=cluster, level=level)


def stepped_wedge_gee(
    data: pd.DataFrame, *, outcome: str, treatment: Column, cluster: Column, period: Column,
    family: GeeFamily = "poisson", exposure: Column | None = None, covariates: Sequence[str] = (),
    nb_alpha: float | None = None, se_type: GeeSE = "mancl-derouen",
    df_method: DfMethod = "clusters-minus-params", level: float = 0.95,
) -> EstimationResult:
    """Marginal stepped-wedge model for counts or binary outcomes by GEE.

    ``family``: ``poisson`` (log link; ``exposure`` names person-time or a denominator used as
    log offset), ``negbin`` (NB2 with dispersion ``nb_alpha``, estimated by ML ignoring
    clustering by a moment estimator if None) or ``binomial`` (logit, 0/1 outcome). Exchangeable working correlation
    within cluster, period fixed effects. Term ``treatment`` on the log / logit scale with the
    ratio in ``exp_*``. Bias-corrected sandwich (Mancl–DeRouen by default) and a
    t(n_clusters - p) reference, since the plain sandwich is too small with few clusters.
    """
    cols = [cluster, period, outcome, treatment, *covariates] + ([exposure] if exposure else [])
    frame = _select(data, cols, order=(cluster, period))
    cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)
    exog, terms = _design(frame, frame[[treatment]].rename(columns={treatment: "treatment"}),
                          period=period, covariates=covariates)
    fit = _fit_gee(frame, exog, terms, outcome=outcome, cluster=cluster, family=family,
                   exposure=exposure, nb_alpha=nb_alpha, se_type=se_type, df_method=df_method)
    return _result(f"stepped_wedge_gee_{family}", fit, frame, cluster=cluster, level=level)


def exposure_time_model(
    data: pd.DataFrame, *, outcome: str, treatment: Column, cluster: Column, period: Column,
    model: Literal["lmm", "gee"] = "lmm", average_over: int | None = 12,
    max_exposure: int | None = None, covariates: Sequence[str] = (), subject: Column | None = None,
    reml: bool = True, family: GeeFamily = "poisson", exposure: Column | None = None,
    nb_alpha: float | None = None, se_type: GeeSE = "mancl-derouen",
    df_method: DfMethod | None = None, level: float = 0.95,
) -> EstimationResult:
    """Stepped-wedge model with a separate effect per exposure time (Kenny et al. 2022).

    An immediate-treatment model is biased when the effect builds up over time, as an MDG's
    is expected to. Terms ``exposure_time=1``, ..., ``exposure_time>=B`` (tail binned at
    ``max_exposure`` B) and ``average_first_K`` for ``average_over`` = K (None: no average).
    ``model`` picks the LMM (``reml``, ``subject``) or GEE (``family``, ``exposure``,
    ``nb_alpha``, ``se_type``) flavour; ``df_method`` defaults to that flavour's default.
    """
    cols = [cluster, period, outcome, treatment, *covariates]
    cols += [subject] if (model == "lmm" and subject) else []
    cols += [exposure] if (model == "gee" and exposure) else []
    frame = _select(data, cols, order=(cluster, period))
    effects, spans, top = _exposure_effects(frame, treatment=treatment, cluster=cluster,
                                       period=period, max_exposure=max_exposure)
    exog, terms = _design(frame, effects, period=period, covariates=covariates)
    if model == "lmm":
        fit = _fit_lmm(frame, exog, terms, outcome=outcome, cluster=cluster, subject=subject,
                       reml=reml, df_method=df_method or "clusters-minus-two")
        method = "stepped_wedge_exposure_time_lmm"
    elif model == "gee":
        fit = _fit_gee(frame, exog, terms, outcome=outcome, cluster=cluster, family=family,
                       exposure=exposure, nb_alpha=nb_alpha, se_type=se_type,
                       df_method=df_method or "clusters-minus-params")
        method = f"stepped_wedge_exposure_time_gee_{family}"
    else:
        raise ValueError(f"unknown model {model!r}")
    extra = []
    if average_over is not None:
        extra.append((f"average_first_{average_over}", _average_weights(spans, average_over, top)))
    result = _result(method, fit, frame, cluster=cluster, level=level, extra_rows=extra)
    result.diagnostics["max_exposure_observed"] = top
    return result


def _cell_residualiser(
    frame: pd.DataFrame, *, outcome: str, cluster: str, period: str, covariates: Sequence[str]
) -> tuple[pd.DataFrame, Callable[[np.ndarray], np.ndarray]]:
    """Cluster-period means (outcome, numeric covariates) and the map v -> residuals of v on
    cluster and period fixed effects plus the covariate means.

    The cluster effects are absorbed by demeaning within cluster (Frisch-Waugh-Lovell), and the
    rest applied as w - Z (Z^+ w) with w and Z demeaned: the same residuals as projecting on
    every dummy, at a cost linear in the cells. With the cluster dummies in Z, the
    pseudo-inverse grew with cells x clusters^2 and each draw with cells x clusters (67 times
    the time for 10 times the practices)."""
    non_numeric = [c for c in covariates if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValueError(f"the cluster-period statistic takes numeric covariates; got "
                         f"{non_numeric} (encode them, or use statistic='lmm')")
    cells = frame.groupby([cluster, period], sort=True)[[outcome, *covariates]].mean()
    cells = cells.reset_index()
    groups = pd.factorize(cells[cluster])[0]
    sizes = np.bincount(groups).astype(float)

    def within(v: np.ndarray) -> np.ndarray:
        return v - (np.bincount(groups, weights=v) / sizes)[groups]

    others = pd.concat([pd.get_dummies(cells[period].astype(str), drop_first=True, dtype=float),
                        cells[list(covariates)].astype(float)], axis=1).to_numpy()
    others = np.column_stack([within(col) for col in others.T]) if others.size else others
    projector = np.linalg.pinv(others)

    def residuals(v: np.ndarray) -> np.ndarray:
        w = within(v)
        return w - others @ (projector @ w)

    return cells, residuals


def permutation_test(
    data: pd.DataFrame, *, outcome: str, treatment: Column, cluster: Column, period: Column,
    n_permutations: int = 1000, seed: int = 20240601,
    statistic: Statistic = "cluster_period_ols", covariates: Sequence[str] = (),
    subject: Column | None = None,
) -> EstimationResult:
    """Randomisation inference over the roll-out order.

    Each draw gives the clusters a random permutation of the observed start times (never-treated
    clusters keep "never" in the pool) and recomputes the statistic: ``cluster_period_ols`` is
    the treatment coefficient of a regression of cluster-period mean outcomes on cluster and
    period fixed effects and the cell means of numeric ``covariates`` (fast); ``lmm`` refits
    :func:`hussey_hughes_lmm` (slower; uses ``covariates`` and ``subject``). Two-sided
    p = (1 + #{|draw| >= |observed|}) / (1 + n_permutations), which counts the observed
    assignment as one draw so the test is exact; the plain share is in diagnostics. Draws are
    in ``tables["permutation"]``.
    """
    frame = _select(data, [cluster, period, outcome, treatment, *covariates]
                    + ([subject] if subject else []), order=(cluster, period))
    start = cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)

    if statistic == "cluster_period_ols":
        cells, residuals = _cell_residualiser(frame, outcome=outcome, cluster=cluster,
                                              period=period, covariates=covariates)
        y_resid = residuals(cells[outcome].to_numpy(dtype=float))
        cell_rank = _period_rank(cells[period]).to_numpy()
        cell_cluster = pd.Index(start.index).get_indexer(cells[cluster])

        def stat(starts: np.ndarray) -> float:
            d_resid = residuals((cell_rank >= starts[cell_cluster]).astype(float))
            return float(d_resid @ y_resid / (d_resid @ d_resid))

        se_label = "permutation (cluster-period fixed-effects OLS statistic)"
    elif statistic == "lmm":
        row_rank = _period_rank(frame[period]).to_numpy()
        row_cluster = pd.Index(start.index).get_indexer(frame[cluster])

        def stat(starts: np.ndarray) -> float:
            permuted = frame.assign(**{treatment: (row_rank >= starts[row_cluster]).astype(float)})
            return hussey_hughes_lmm(permuted, outcome=outcome, treatment=treatment,
                                     cluster=cluster, period=period, covariates=covariates,
                                     subject=subject).estimate("treatment")

        se_label = "permutation (Hussey-Hughes LMM statistic)"
    else:
        raise ValueError(f"unknown statistic {statistic!r}")

    starts = start.to_numpy(dtype=float)  # NaN (never treated) compares False: stays control
    observed = stat(starts)
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.permutation(starts)) for _ in range(n_permutations)])
    extreme = int(np.sum(np.abs(draws) >= np.abs(observed) - 1e-12))
    p_value = (1 + extreme) / (1 + n_permutations)
    row = {"term": "treatment", "estimate": observed, "std_error": float("nan"),
           "ci_low": float("nan"), "ci_high": float("nan"), "p_value": p_value}
    tidy = tidy_frame([row], n_obs=len(frame), n_clusters=len(starts),
                      method=f"stepped_wedge_permutation_{statistic}", se_type=se_label,
                      scale="identity")
    return EstimationResult(
        method=f"stepped_wedge_permutation_{statistic}", tidy=tidy,
        tables={"permutation": pd.DataFrame({"draw": np.arange(1, n_permutations + 1),
                                             "estimate": draws})},
        diagnostics={"n_permutations": n_permutations, "seed": seed,
                     "share_as_extreme": extreme / n_permutations,
                     "permutation_sd": float(draws.std(ddof=1)) if n_permutations > 1 else 0.0},
    )
