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
* ``exposure_time_heterogeneity`` (on request): the Wald test that every exposure-time effect
  is equal; ``estimate`` is the statistic (``scale`` ``F`` or ``chi2``), ``df_numerator`` and
  ``dof`` its degrees of freedom, ``p_value`` its p-value.
* Nuisance coefficients (intercept, period effects, unit fixed effects, covariates) are in
  ``tables["nuisance"]``.

Design-based options, for a roll-out whose start dates were set for groups of clusters (MDGs
of practices): ``inference_cluster`` clusters the GEE sandwich, its small-sample correction and
the t reference at the coarser unit while the working correlation stays within ``cluster``;
``unit_effects="fixed"`` adds cluster fixed effects so the effect rests on within-cluster
contrasts only; ``assignment_unit`` makes the permutation test permute start times across the
units that were assigned them.
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
from scipy import optimize, stats
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
UnitEffects = Literal["none", "fixed"]

#: A cluster leverage eigenvalue this close to 1 belongs to a parameter only that cluster
#: informs (its own fixed effect): the residual has no component there, so the small-sample
#: corrections use the Moore-Penrose inverse of I - H_i instead of dividing by ~0.
_LEVERAGE_ONE = 1.0 - 1e-9

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
    #: ``cov`` is a sandwich estimated from the clusters' scores (GEE), not model-based.
    sandwich: bool = False


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
        raise ValueError(
            f"clusters {list(start.index[reverted])} switch back to control; "
            "a stepped wedge needs a one-way switch"
        )
    return start


def _design(
    frame: pd.DataFrame,
    effects: pd.DataFrame,
    *,
    period: str,
    covariates: Sequence[str],
    unit: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Effect columns, then intercept, period dummies (first period omitted), the dummies of
    column ``unit`` when it is given (first unit omitted: unit fixed effects), covariates."""
    ranks = _period_rank(frame[period])
    levels = np.sort(frame[period].unique())
    period_dummies = pd.DataFrame(
        {f"period={levels[r - 1]}": (ranks == r).astype(float) for r in range(2, len(levels) + 1)},
        index=frame.index,
    )
    parts = [
        effects.astype(float),
        pd.DataFrame({"Intercept": 1.0}, index=frame.index),
        period_dummies,
    ]
    if unit is not None:
        units = np.sort(frame[unit].unique())
        parts.append(
            pd.DataFrame(
                {f"{unit}={u}": (frame[unit] == u).astype(float) for u in units[1:]},
                index=frame.index,
            )
        )
    parts.append(covariate_design(frame, covariates))
    exog = pd.concat(parts, axis=1)
    rank = np.linalg.matrix_rank(exog.to_numpy())
    if rank < exog.shape[1]:
        raise ValueError(
            f"design is rank deficient ({rank} < {exog.shape[1]} columns); "
            "check the covariates and that treatment varies within periods"
        )
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
            f"{n_params} parameters); use df_method='clusters-minus-two' or 'normal'"
        )
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

    def __init__(
        self, x: np.ndarray, y: np.ndarray, cluster: np.ndarray, subject: np.ndarray | None
    ) -> None:
        z = np.column_stack([x, y])
        self.n, self.p = x.shape
        self.zz = z.T @ z
        keys = pd.DataFrame(
            {"c": cluster, "s": subject if subject is not None else np.arange(len(y))}
        )
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
        u = np.bincount(
            self.cells, weights=(self.sums * d[:, None]).ravel(), minlength=self.n_clusters * width
        ).reshape(self.n_clusters, width)
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
        return {"beta": beta, "s2": s2, "g_c": g_c, "g_s": g_s, "xhx": xhx, "deviance": deviance}

    def fit(self, reml: bool) -> tuple[dict[str, object], bool]:
        """Minimise the deviance over relative SDs (>= 0, as lme4's theta), from two starts."""
        k = 2 if self.nested else 1
        best, ok = None, False
        for start in (0.1, 1.0):
            opt = optimize.minimize(
                lambda t: self.solve(t, reml)["deviance"],
                np.full(k, start),
                method="L-BFGS-B",
                bounds=[(0.0, None)] * k,
                options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500},
            )
            if best is None or opt.fun < best.fun:
                best, ok = opt, bool(opt.success)
        return self.solve(best.x, reml), ok


def _fit_lmm(
    frame: pd.DataFrame,
    exog: pd.DataFrame,
    effect_terms: list[str],
    *,
    outcome: str,
    cluster: str,
    subject: str | None,
    reml: bool,
    df_method: DfMethod,
    unit_fixed: bool = False,
) -> _Fit:
    """Linear mixed model: cluster random intercept, optional subject intercept within cluster.

    SEs are (X' V^-1 X)^-1 at the estimated variance components, as lme4, nlme and SAS report.
    With ``unit_fixed`` the cluster dummies are in ``exog``: a cluster intercept is then not
    identified (the REML criterion is flat in it), so the subject-in-cluster intercept is the
    only random effect (``lmer(y ~ ... + factor(cluster) + (1 | cluster:subject))``).
    """
    x, y = exog.to_numpy(), frame[outcome].to_numpy(dtype=float)
    if unit_fixed:
        if subject is None:
            raise ValueError(
                "cluster fixed effects leave the mixed model without a random "
                "effect; give `subject` (a cohort panel) or use the GEE"
            )
        pairs = frame.groupby([cluster, subject], sort=True).ngroup().to_numpy()
        est, converged = _NestedIntercepts(x, y, pairs, None).fit(reml)
        return _lmm_fixed_units(
            exog,
            effect_terms,
            est,
            converged,
            reml=reml,
            cluster=cluster,
            n_clusters=int(frame[cluster].nunique()),
            n_subjects=int(pairs.max() + 1),
            df_method=df_method,
        )
    model = _NestedIntercepts(
        x, y, frame[cluster].to_numpy(), frame[subject].to_numpy() if subject is not None else None
    )
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
        params=pd.Series(est["beta"], index=exog.columns),
        cov=cov,
        effect_terms=effect_terms,
        df=_reference_df(df_method, model.n_clusters, 2),
        se_type=f"model-based ({label})",
        scale="identity",
        diagnostics=diagnostics,
    )


def _lmm_fixed_units(
    exog: pd.DataFrame,
    effect_terms: list[str],
    est: dict[str, object],
    converged: bool,
    *,
    reml: bool,
    cluster: str,
    n_clusters: int,
    n_subjects: int,
    df_method: DfMethod,
) -> _Fit:
    """The fit of :func:`_fit_lmm` with cluster fixed effects, whose only random intercept (the
    'cluster' level of :class:`_NestedIntercepts`) is the subject's."""
    s2 = float(est["s2"])
    label = "REML" if reml else "ML"
    return _Fit(
        params=pd.Series(est["beta"], index=exog.columns),
        cov=pd.DataFrame(s2 * np.linalg.inv(est["xhx"]), index=exog.columns, columns=exog.columns),
        effect_terms=effect_terms,
        df=_reference_df(df_method, n_clusters, 2),
        se_type=f"model-based ({label}), cluster fixed effects",
        scale="identity",
        diagnostics={
            "converged": int(converged),
            "subject_variance": float(est["g_c"]) * s2,
            "residual_variance": s2,
            "log_likelihood": -0.5 * float(est["deviance"]),
            "estimation": label,
            "n_subjects": n_subjects,
            "unit_effects": f"fixed ({cluster})",
        },
    )


def _gee_family(family: GeeFamily, nb_alpha: float | None) -> families.Family:
    if family == "binomial":
        return families.Binomial()
    if family == "poisson":
        return families.Poisson()
    if family == "negbin":
        return families.NegativeBinomial(alpha=nb_alpha)
    raise ValueError(f"unknown GEE family {family!r}")


def _negbin_alpha(
    y: np.ndarray,
    exog: pd.DataFrame,
    offset: np.ndarray | None,
    groups: np.ndarray,
    cov_struct: Exchangeable | Independence,
) -> float:
    """NB2 dispersion by the Cameron–Trivedi auxiliary regression at a Poisson GEE fit.

    sum((y - mu)^2 - y) / sum(mu^2): a moment estimator that, unlike ML, stays defined when
    the counts are not overdispersed (then it is floored at a tiny positive value).
    """
    res = sm.GEE(
        y, exog, groups=groups, family=families.Poisson(), cov_struct=cov_struct, offset=offset
    ).fit(maxiter=200, ddof_scale=0)
    mu = np.asarray(res.fittedvalues)
    return max(float(np.sum((y - mu) ** 2 - y) / np.sum(mu**2)), 1e-8)


def small_sample_sandwich(
    exog: np.ndarray,
    y: np.ndarray,
    mu: np.ndarray,
    dmu_deta: np.ndarray,
    variance: np.ndarray,
    groups: np.ndarray,
    alpha: float,
    inference_groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """GEE sandwich covariances with exchangeable working correlation ``alpha``.

    Returns ``robust`` (Liang–Zeger), ``mancl-derouen`` (residuals scaled by (I - H_i)^-1,
    Mancl & DeRouen 2001) and ``kauermann-carroll`` (by (I - H_i)^-1/2, Kauermann & Carroll
    2001), H_i = D_i B^-1 D_i' V_i^-1 the cluster leverage. With C_i' C_i = V_i^-1, C_i H_i C_i^-1
    = G_i G_i' is symmetric, so the matrix powers come from a rank-p SVD per cluster instead of a
    dense n_i x n_i eigendecomposition (person-level clusters can hold thousands of rows).
    The dispersion cancels in the sandwich and is omitted.

    ``inference_groups`` (one label per row, constant within each of ``groups``) sums the meat
    and takes the leverage over those coarser units, V_i block-diagonal over the working
    clusters inside one: the sandwich of a design whose units of assignment hold several
    working clusters. A leverage eigenvalue of 1 (a parameter only one unit informs, such as
    its fixed effect) gets the Moore-Penrose inverse, as in Pustejovsky & Tipton (2018).
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
    if inference_groups is not None:
        members: dict[object, list[int]] = {}
        for b, idx in enumerate(blocks):
            units = pd.unique(inference_groups[idx])
            if len(units) != 1:
                raise ValueError(
                    f"working cluster {groups[idx[0]]!r} lies in inference "
                    f"clusters {list(units)}: they must nest the working clusters"
                )
            members.setdefault(units[0], []).append(b)
        whitened = [
            (np.vstack([whitened[b][0] for b in bs]), np.concatenate([whitened[b][1] for b in bs]))
            for bs in members.values()
        ]
    bread = sum(d.T @ d for d, _ in whitened)
    bread_inv = np.linalg.inv(bread)
    chol = np.linalg.cholesky(bread_inv)
    powers = {"robust": 0.0, "mancl-derouen": 1.0, "kauermann-carroll": 0.5}
    meats = {name: np.zeros_like(bread) for name in powers}
    for d_t, r_t in whitened:
        # one SVD per cluster serves both corrections
        u, s, _ = np.linalg.svd(d_t @ chol, full_matrices=False)
        u_r = u.T @ r_t
        inner = s**2 < _LEVERAGE_ONE
        for name, power in powers.items():
            factor = np.zeros_like(s)
            factor[inner] = (1.0 - s[inner] ** 2) ** -power
            resid = r_t + u @ ((factor - 1.0) * u_r) if power else r_t
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
        f"smaller max_exposure, a more common outcome or a larger population"
    )


def _fit_gee(
    frame: pd.DataFrame,
    exog: pd.DataFrame,
    effect_terms: list[str],
    *,
    outcome: str,
    cluster: str,
    family: GeeFamily,
    exposure: str | None,
    nb_alpha: float | None,
    se_type: GeeSE,
    df_method: DfMethod,
    inference_cluster: str | None = None,
    unit_fixed: bool = False,
) -> _Fit:
    """Marginal model by GEE, exchangeable within cluster, small-sample sandwich SEs; with
    ``inference_cluster`` the sandwich and the t reference count those coarser units.

    With ``unit_fixed`` (cluster dummies in ``exog``) the working correlation is independence:
    a cluster's fixed effect absorbs the level its rows share, so the exchangeable moment
    estimate falls to the boundary -1/(n_i - 1) and the iterations divide by zero. The fit is
    then the fixed-effects Poisson (binomial) likelihood's, the sandwich carrying any
    correlation left (as fixest::fepois with clustered SEs)."""
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
    inference = frame[inference_cluster].to_numpy() if inference_cluster is not None else None
    n_clusters = int(frame[inference_cluster or cluster].nunique())
    df = _reference_df(df_method, n_clusters, exog.shape[1])
    _check_finite_estimates(exog, y, family)
    diagnostics: dict[str, float | int | str] = {}
    label = _SE_LABELS[se_type]
    if inference_cluster is not None:
        diagnostics.update(
            inference_cluster=inference_cluster,
            n_inference_clusters=n_clusters,
            n_working_clusters=int(frame[cluster].nunique()),
        )
        label += f", clustered by {inference_cluster}"
    if family == "negbin" and nb_alpha is None:
        nb_alpha = _negbin_alpha(
            y, exog, offset, groups, Independence() if unit_fixed else Exchangeable()
        )
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

    if unit_fixed:
        res, converged = fit(Independence())
        alpha, structure = 0.0, "independence (cluster fixed effects)"
    else:
        res, converged = fit(Exchangeable())
        alpha = float(res.model.cov_struct.dep_params)
        structure = "exchangeable"
    largest = int(pd.Series(groups).value_counts().max())
    if not unit_fixed and largest > 1 and alpha <= -1.0 / (largest - 1):
        # A negative exchangeable correlation this large is not a valid correlation matrix for
        # the biggest cluster; fall back to independence (still valid with the sandwich).
        structure = f"independence (exchangeable estimate {alpha:.4g} invalid)"
        alpha = 0.0
        res, converged = fit(Independence())
    x = exog.to_numpy()
    eta = x @ res.params.to_numpy() + (offset if offset is not None else 0.0)
    mu = fam.link.inverse(eta)
    covs = small_sample_sandwich(
        x, y, mu, fam.link.inverse_deriv(eta), fam.variance(mu), groups, alpha, inference
    )
    diagnostics.update(
        {
            "converged": int(converged),
            "working_correlation": alpha,
            "working_correlation_structure": structure,
            "dispersion": float(res.scale),
            "family": family,
        }
    )
    cov = pd.DataFrame(covs[se_type], index=exog.columns, columns=exog.columns)
    return _Fit(
        params=res.params,
        cov=cov,
        effect_terms=effect_terms,
        df=df,
        se_type=label,
        scale=_LINK_SCALE[family],
        diagnostics=diagnostics,
        sandwich=True,
    )


# --------------------------------------------------------------------------------------------
# result assembly
# --------------------------------------------------------------------------------------------


def _row(term: str, estimate: float, se: float, fit: _Fit, level: float) -> dict[str, object]:
    row = inference_row(
        term,
        estimate,
        se,
        df=fit.df,
        level=level,
        dof=fit.df if fit.df is not None else float("nan"),
    )
    if fit.scale != "identity":
        row.update(
            exp_estimate=math.exp(row["estimate"]),
            exp_ci_low=math.exp(row["ci_low"]),
            exp_ci_high=math.exp(row["ci_high"]),
        )
    return row


def _result(
    method: str,
    fit: _Fit,
    frame: pd.DataFrame,
    *,
    cluster: str,
    level: float,
    extra_rows: Sequence[tuple[str, np.ndarray]] = (),
    test_rows: Sequence[dict[str, object]] = (),
) -> EstimationResult:
    """Tidy rows for the effect terms, any linear combinations (name, weights over them) and
    any test rows; ``cluster`` is the unit the inference counts (``n_clusters``)."""
    beta = fit.params[fit.effect_terms].to_numpy()
    vcov = fit.cov.loc[fit.effect_terms, fit.effect_terms].to_numpy()
    rows = [
        _row(t, float(beta[i]), float(math.sqrt(vcov[i, i])), fit, level)
        for i, t in enumerate(fit.effect_terms)
    ]
    for name, w in extra_rows:
        rows.append(_row(name, float(w @ beta), float(math.sqrt(w @ vcov @ w)), fit, level))
    rows.extend(test_rows)
    tidy = tidy_frame(
        rows,
        n_obs=len(frame),
        n_clusters=int(frame[cluster].nunique()),
        method=method,
        se_type=fit.se_type,
        scale=fit.scale,
    )
    nuisance = [t for t in fit.params.index if t not in fit.effect_terms]
    table = pd.DataFrame(
        {
            "term": nuisance,
            "estimate": fit.params[nuisance].to_numpy(),
            "std_error": np.sqrt(np.diag(fit.cov.loc[nuisance, nuisance].to_numpy())),
        }
    )
    return EstimationResult(
        method=method, tidy=tidy, tables={"nuisance": table}, diagnostics=fit.diagnostics
    )


def _heterogeneity_test(fit: _Fit) -> tuple[dict[str, object], dict[str, float | int | str]]:
    """Wald test that every exposure-time effect is equal (H0: b_1 = ... = b_K).

    W = (R b)' (R V R')^-1 (R b), R the q = K - 1 differences from the first effect (W does not
    depend on which basis of the contrasts is used). Reference distribution:

    * model-based V with a t reference of nu df: W / q against F(q, nu);
    * a sandwich V with a t reference of nu df: the Hotelling T^2 form
      W (nu - q + 1) / (nu q) against F(q, nu - q + 1) (Pan & Wall 2002). A sandwich from G
      clusters is a sum of G outer products, so W / q against F(q, nu) treats a noisy
      q x q covariance as known: on 200 null worlds with 40 clusters and q = 14 it rejected
      32% at the 5% level, the Hotelling form 9% (test_stepped_wedge_design);
    * normal reference: W against chi2(q).

    Not computable (NaN row, the reason in diagnostics) when R V R' is singular (fewer
    inference clusters than contrasts) or, for a sandwich, when nu < q.
    """
    k = len(fit.effect_terms)
    if k < 2:
        raise ValueError("one exposure-time effect: there is no heterogeneity to test")
    b = fit.params[fit.effect_terms].to_numpy()
    v = fit.cov.loc[fit.effect_terms, fit.effect_terms].to_numpy()
    q = k - 1
    r = np.hstack([-np.ones((q, 1)), np.eye(q)])
    rb, rvr = r @ b, r @ v @ r.T
    rank = int(np.linalg.matrix_rank(rvr))
    nu = fit.df
    if nu is None:
        reference, scale, den = f"chi2({q})", "chi2", float("nan")
    elif fit.sandwich:
        den = nu - q + 1
        reference, scale = f"Hotelling F({q}, {den:g}) with nu = {nu:g}", "F"
    else:
        den = nu
        reference, scale = f"F({q}, {nu:g})", "F"
    problem = ""
    if rank < q:
        problem = (
            f"the covariance of the {q} contrasts has rank {rank}: fewer inference "
            f"clusters than contrasts"
        )
    elif nu is not None and fit.sandwich and den < 1:
        problem = f"the t reference's {nu:g} df are fewer than the {q} contrasts"
    statistic = p_value = float("nan")
    if not problem:
        wald = float(rb @ np.linalg.solve(rvr, rb))
        if nu is None:
            statistic, p_value = wald, float(stats.chi2.sf(wald, q))
        else:
            statistic = wald * den / (nu * q) if fit.sandwich else wald / q
            p_value = float(stats.f.sf(statistic, q, den))
    row: dict[str, object] = {
        "term": "exposure_time_heterogeneity",
        "estimate": statistic,
        "std_error": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "p_value": p_value,
        "dof": den,
        "df_numerator": q,
        "scale": scale,
        "se_type": f"Wald test of equal exposure-time effects, {reference}; {fit.se_type}",
    }
    diagnostics: dict[str, float | int | str] = {
        "heterogeneity_reference": reference,
        "heterogeneity_statistic": statistic,
        "heterogeneity_p": p_value,
        "heterogeneity_contrast_rank": rank,
    }
    if problem:
        diagnostics["heterogeneity_not_computable"] = (
            f"{problem} (bin the tail with a smaller max_exposure)"
        )
    return row, diagnostics


def _fixed_unit_frame(
    frame: pd.DataFrame, *, outcome: str, cluster: str, family: GeeFamily
) -> tuple[pd.DataFrame, dict[str, float | int | str]]:
    """The rows that inform a model with cluster fixed effects, and what was dropped.

    Under a log (logit) link a cluster whose counts are all 0 (outcomes all 0 or all 1) has an
    infinite fixed effect and no within-cluster contrast: its rows add nothing to the other
    estimating equations in the limit, so they are dropped, as fixest and Stata's ppmlhdfe do.
    """
    y = frame[outcome].astype(float).groupby(frame[cluster])
    flat = (y.min() == y.max()) if family == "binomial" else (y.sum() == 0)
    dropped = list(flat.index[flat])
    diagnostics: dict[str, float | int | str] = {
        "unit_effects": f"fixed ({cluster})",
        "n_clusters_dropped": len(dropped),
    }
    if dropped:
        diagnostics["clusters_dropped"] = ", ".join(map(str, dropped))
    kept = frame[~frame[cluster].isin(dropped)].reset_index(drop=True)
    if kept[cluster].nunique() < 2:
        raise ValueError("cluster fixed effects need two or more clusters with events")
    return kept, diagnostics


def _fixed_units(unit_effects: UnitEffects) -> bool:
    """Whether ``unit_effects`` asks for cluster fixed effects (a typo must not mean "none")."""
    if unit_effects not in ("none", "fixed"):
        raise ValueError(f"unit_effects must be 'none' or 'fixed', not {unit_effects!r}")
    return unit_effects == "fixed"


def _average_weights(spans: list[tuple[int, int | None]], k: int, top: int) -> np.ndarray:
    """Weights over exposure-time coefficients that average the effects at times 1..k."""
    if not 1 <= k <= top:
        raise ValueError(
            f"average over the first {k} exposure times, but exposure times 1..{top} are observed"
        )
    w = np.zeros(len(spans))
    for e in range(1, k + 1):
        hit = next(i for i, (lo, hi) in enumerate(spans) if lo <= e and (hi is None or e <= hi))
        w[hit] += 1.0 / k
    return w


# --------------------------------------------------------------------------------------------
# public estimators
# --------------------------------------------------------------------------------------------


def hussey_hughes_lmm(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: Column,
    cluster: Column,
    period: Column,
    covariates: Sequence[str] = (),
    subject: Column | None = None,
    reml: bool = True,
    df_method: DfMethod = "clusters-minus-two",
    unit_effects: UnitEffects = "none",
    level: float = 0.95,
) -> EstimationResult:
    """Hussey & Hughes (2007) model: outcome ~ treatment + period FE + covariates, random
    cluster intercept (plus a subject intercept nested in cluster for a person-wave panel).

    Term ``treatment`` on the identity scale; model-based SEs with a t(n_clusters - 2)
    reference by default, as Wald z intervals are anti-conservative with few clusters.
    Fitted by the profiled REML/ML of :class:`_NestedIntercepts` (lme4's criterion), which
    matches ``lme4::lmer`` and stays fast on a cohort panel with thousands of people.
    ``unit_effects="fixed"`` puts cluster fixed effects in place of the cluster random
    intercept (needs ``subject``), so the effect rests on within-cluster contrasts only: the
    random intercept also uses between-cluster contrasts, which a non-randomised roll-out
    may confound.
    """
    cols = [cluster, period, outcome, treatment, *covariates] + ([subject] if subject else [])
    frame = _select(data, cols, order=(cluster, period))
    cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)
    fixed = _fixed_units(unit_effects)
    exog, terms = _design(
        frame,
        frame[[treatment]].rename(columns={treatment: "treatment"}),
        period=period,
        covariates=covariates,
        unit=cluster if fixed else None,
    )
    fit = _fit_lmm(
        frame,
        exog,
        terms,
        outcome=outcome,
        cluster=cluster,
        subject=subject,
        reml=reml,
        df_method=df_method,
        unit_fixed=fixed,
    )
    return _result("stepped_wedge_hussey_hughes_lmm", fit, frame, cluster=cluster, level=level)


def stepped_wedge_gee(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: Column,
    cluster: Column,
    period: Column,
    family: GeeFamily = "poisson",
    exposure: Column | None = None,
    covariates: Sequence[str] = (),
    nb_alpha: float | None = None,
    se_type: GeeSE = "mancl-derouen",
    df_method: DfMethod = "clusters-minus-params",
    unit_effects: UnitEffects = "none",
    inference_cluster: Column | None = None,
    level: float = 0.95,
) -> EstimationResult:
    """Marginal stepped-wedge model for counts or binary outcomes by GEE.

    ``family``: ``poisson`` (log link; ``exposure`` names person-time or a denominator used as
    log offset), ``negbin`` (NB2 with dispersion ``nb_alpha``, estimated by ML ignoring
    clustering by a moment estimator if None) or ``binomial`` (logit, 0/1 outcome). Exchangeable working correlation
    within cluster, period fixed effects. Term ``treatment`` on the log / logit scale with the
    ratio in ``exp_*``. Bias-corrected sandwich (Mancl–DeRouen by default) and a
    t(n_clusters - p) reference, since the plain sandwich is too small with few clusters.

    ``unit_effects="fixed"`` adds cluster fixed effects (the within-cluster contrast, with an
    independence working correlation; clusters without events are dropped, see
    :func:`_fixed_unit_frame` and :func:`_fit_gee`). ``inference_cluster`` names
    the unit of assignment when it holds several clusters (practices in an MDG): the sandwich,
    its small-sample correction and the df count those units, G of them (``n_clusters`` = G;
    ``clusters-minus-two`` gives t(G - 2)), while the working correlation stays within
    ``cluster``.
    """
    cols = [cluster, period, outcome, treatment, *covariates] + ([exposure] if exposure else [])
    frame = _select(
        data, cols + ([inference_cluster] if inference_cluster else []), order=(cluster, period)
    )
    cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)
    fixed = _fixed_units(unit_effects)
    unit_diagnostics: dict[str, float | int | str] = {}
    if fixed:
        frame, unit_diagnostics = _fixed_unit_frame(
            frame, outcome=outcome, cluster=cluster, family=family
        )
    exog, terms = _design(
        frame,
        frame[[treatment]].rename(columns={treatment: "treatment"}),
        period=period,
        covariates=covariates,
        unit=cluster if fixed else None,
    )
    fit = _fit_gee(
        frame,
        exog,
        terms,
        outcome=outcome,
        cluster=cluster,
        family=family,
        exposure=exposure,
        nb_alpha=nb_alpha,
        se_type=se_type,
        df_method=df_method,
        inference_cluster=inference_cluster,
        unit_fixed=fixed,
    )
    result = _result(
        f"stepped_wedge_gee_{family}", fit, frame, cluster=inference_cluster or cluster, level=level
    )
    result.diagnostics.update(unit_diagnostics)
    return result


def exposure_time_model(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: Column,
    cluster: Column,
    period: Column,
    model: Literal["lmm", "gee"] = "lmm",
    average_over: int | None = 12,
    max_exposure: int | None = None,
    covariates: Sequence[str] = (),
    subject: Column | None = None,
    reml: bool = True,
    family: GeeFamily = "poisson",
    exposure: Column | None = None,
    nb_alpha: float | None = None,
    se_type: GeeSE = "mancl-derouen",
    df_method: DfMethod | None = None,
    unit_effects: UnitEffects = "none",
    inference_cluster: Column | None = None,
    heterogeneity_test: bool = False,
    level: float = 0.95,
) -> EstimationResult:
    """Stepped-wedge model with a separate effect per exposure time (Kenny et al. 2022).

    An immediate-treatment model is biased when the effect builds up over time, as an MDG's
    is expected to. Terms ``exposure_time=1``, ..., ``exposure_time>=B`` (tail binned at
    ``max_exposure`` B: the long-run effect) and ``average_first_K`` for ``average_over`` = K
    (None: no average; on the log scale its ``exp_estimate`` is the geometric mean of the K
    rate ratios). ``model`` picks the LMM (``reml``, ``subject``) or GEE (``family``,
    ``exposure``, ``nb_alpha``, ``se_type``, ``inference_cluster``) flavour; ``df_method``
    defaults to that flavour's default; ``unit_effects`` as in :func:`stepped_wedge_gee` and
    :func:`hussey_hughes_lmm`. ``heterogeneity_test`` adds the row
    ``exposure_time_heterogeneity``: the Wald test that the effect does not change with
    exposure time (:func:`_heterogeneity_test`), i.e. that the immediate-effect model holds.
    """
    if model == "lmm" and inference_cluster is not None:
        raise ValueError(
            "inference_cluster clusters the GEE sandwich; the mixed model's SEs "
            "are model-based (use model: gee)"
        )
    cols = [cluster, period, outcome, treatment, *covariates]
    cols += [subject] if (model == "lmm" and subject) else []
    cols += [exposure] if (model == "gee" and exposure) else []
    cols += [inference_cluster] if inference_cluster else []
    frame = _select(data, cols, order=(cluster, period))
    fixed = _fixed_units(unit_effects)
    unit_diagnostics: dict[str, float | int | str] = {}
    if fixed and model == "gee":
        frame, unit_diagnostics = _fixed_unit_frame(
            frame, outcome=outcome, cluster=cluster, family=family
        )
    effects, spans, top = _exposure_effects(
        frame, treatment=treatment, cluster=cluster, period=period, max_exposure=max_exposure
    )
    exog, terms = _design(
        frame, effects, period=period, covariates=covariates, unit=cluster if fixed else None
    )
    if model == "lmm":
        fit = _fit_lmm(
            frame,
            exog,
            terms,
            outcome=outcome,
            cluster=cluster,
            subject=subject,
            reml=reml,
            df_method=df_method or "clusters-minus-two",
            unit_fixed=fixed,
        )
        method = "stepped_wedge_exposure_time_lmm"
    elif model == "gee":
        fit = _fit_gee(
            frame,
            exog,
            terms,
            outcome=outcome,
            cluster=cluster,
            family=family,
            exposure=exposure,
            nb_alpha=nb_alpha,
            se_type=se_type,
            df_method=df_method or "clusters-minus-params",
            inference_cluster=inference_cluster,
            unit_fixed=fixed,
        )
        method = f"stepped_wedge_exposure_time_gee_{family}"
    else:
        raise ValueError(f"unknown model {model!r}")
    extra = []
    if average_over is not None:
        extra.append((f"average_first_{average_over}", _average_weights(spans, average_over, top)))
    tests, test_diagnostics = [], {}
    if heterogeneity_test:
        row, test_diagnostics = _heterogeneity_test(fit)
        tests.append(row)
    result = _result(
        method,
        fit,
        frame,
        cluster=inference_cluster or cluster,
        level=level,
        extra_rows=extra,
        test_rows=tests,
    )
    result.diagnostics["max_exposure_observed"] = top
    result.diagnostics.update({**unit_diagnostics, **test_diagnostics})
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
        raise ValueError(
            f"the cluster-period statistic takes numeric covariates; got "
            f"{non_numeric} (encode them, or use statistic='lmm')"
        )
    cells = frame.groupby([cluster, period], sort=True)[[outcome, *covariates]].mean()
    cells = cells.reset_index()
    groups = pd.factorize(cells[cluster])[0]
    sizes = np.bincount(groups).astype(float)

    def within(v: np.ndarray) -> np.ndarray:
        return v - (np.bincount(groups, weights=v) / sizes)[groups]

    others = pd.concat(
        [
            pd.get_dummies(cells[period].astype(str), drop_first=True, dtype=float),
            cells[list(covariates)].astype(float),
        ],
        axis=1,
    ).to_numpy()
    others = np.column_stack([within(col) for col in others.T]) if others.size else others
    projector = np.linalg.pinv(others)

    def residuals(v: np.ndarray) -> np.ndarray:
        w = within(v)
        return w - others @ (projector @ w)

    return cells, residuals


def _distinct_permutations(values: np.ndarray) -> np.ndarray:
    """Every distinct ordering of the multiset ``values``, one per row, in lexicographic order
    (Narayana Pandita's next-permutation step skips repeated orderings of tied values)."""
    a = np.sort(values)
    out = [a.copy()]
    while True:
        i = len(a) - 2
        while i >= 0 and a[i] >= a[i + 1]:
            i -= 1
        if i < 0:
            return np.array(out)
        j = len(a) - 1
        while a[j] <= a[i]:
            j -= 1
        a[i], a[j] = a[j], a[i]
        a[i + 1 :] = a[i + 1 :][::-1]
        out.append(a.copy())


def _n_distinct(values: Sequence[object]) -> int:
    """Number of distinct orderings of a multiset: n! / prod(count!)."""
    counts = pd.Series(list(values)).value_counts(dropna=False)
    return math.factorial(len(values)) // math.prod(math.factorial(int(c)) for c in counts)


def _assigned_units(
    frame: pd.DataFrame, start: pd.Series, *, cluster: str, unit: str
) -> tuple[np.ndarray, pd.Series]:
    """Per cluster (``start``'s order) the position of its assigned unit, -1 if never treated;
    and each assigned unit's start rank. Raises unless every treated cluster of a unit starts
    when the unit does (else the unit was not what the start dates were assigned to)."""
    units = frame.groupby(cluster, sort=True)[unit].unique()
    split = units[units.map(len) > 1]
    if len(split):
        raise ValueError(
            f"clusters {list(split.index)} lie in more than one {unit!r}: the "
            "assignment unit must nest the clusters"
        )
    unit_of = units.map(lambda v: v[0]).reindex(start.index)
    treated = start.notna()
    spans = start[treated].groupby(unit_of[treated], sort=True).agg(["min", "max"])
    mixed = spans[spans["min"] != spans["max"]]
    if len(mixed):
        raise ValueError(
            f"the treated clusters of {unit} {list(mixed.index)} start in "
            f"different periods, so start times were not assigned per {unit}"
        )
    position = pd.Index(spans.index).get_indexer(unit_of.where(treated))
    return np.where(treated, position, -1), spans["min"]


def permutation_test(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: Column,
    cluster: Column,
    period: Column,
    n_permutations: int = 1000,
    seed: int = 20240601,
    statistic: Statistic = "cluster_period_ols",
    covariates: Sequence[str] = (),
    subject: Column | None = None,
    assignment_unit: Column | None = None,
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

    ``assignment_unit`` names what the start times were assigned to (the MDG of a practice):
    the start times of the treated units are permuted across those units only, every treated
    cluster taking its unit's start, and never-treated clusters stay controls and are never
    given a start. When the distinct assignments number no more than ``n_permutations``
    every one is evaluated (the observed among them) and p = #{|draw| >= |observed|} / N,
    exact with smallest value 1/N; else ``n_permutations`` random ones as above. The table
    then holds each draw's start period per unit (``<unit>=<value>`` columns). The smallest
    attainable p and the number of distinct assignments are in diagnostics either way.
    """
    frame = _select(
        data,
        [cluster, period, outcome, treatment, *covariates]
        + ([subject] if subject else [])
        + ([assignment_unit] if assignment_unit else []),
        order=(cluster, period),
    )
    start = cluster_start_ranks(frame, treatment=treatment, cluster=cluster, period=period)

    if statistic == "cluster_period_ols":
        cells, residuals = _cell_residualiser(
            frame, outcome=outcome, cluster=cluster, period=period, covariates=covariates
        )
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
            return hussey_hughes_lmm(
                permuted,
                outcome=outcome,
                treatment=treatment,
                cluster=cluster,
                period=period,
                covariates=covariates,
                subject=subject,
            ).estimate("treatment")

        se_label = "permutation (Hussey-Hughes LMM statistic)"
    else:
        raise ValueError(f"unknown statistic {statistic!r}")

    starts = start.to_numpy(dtype=float)  # NaN (never treated) compares False: stays control
    observed = stat(starts)
    rng = np.random.default_rng(seed)
    if assignment_unit is None:
        draws = np.array([stat(rng.permutation(starts)) for _ in range(n_permutations)])
        table = pd.DataFrame({"draw": np.arange(1, n_permutations + 1), "estimate": draws})
        n_distinct = _n_distinct(starts.tolist())
        scheme = (
            f"Monte Carlo: {n_permutations} random permutations of the start times "
            f"(never treated included) across the {len(starts)} clusters"
        )
        exact = False
    else:
        unit_index, unit_starts = _assigned_units(
            frame, start, cluster=cluster, unit=assignment_unit
        )
        pool = unit_starts.to_numpy(dtype=float)
        treated = unit_index >= 0
        n_distinct = _n_distinct(pool.tolist())
        exact = n_distinct <= n_permutations
        orders = (
            _distinct_permutations(pool)
            if exact
            else np.array([rng.permutation(pool) for _ in range(n_permutations)])
        )

        def expand(order: np.ndarray) -> np.ndarray:
            assigned = np.full(len(starts), np.nan)
            assigned[treated] = order[unit_index[treated]]
            return assigned

        draws = np.array([stat(expand(order)) for order in orders])
        levels = np.sort(frame[period].unique())
        table = pd.DataFrame({"draw": np.arange(1, len(orders) + 1), "estimate": draws})
        for i, name in enumerate(unit_starts.index):
            table[f"{assignment_unit}={name}"] = levels[orders[:, i].astype(int) - 1]
        if exact:
            table["observed"] = (orders == pool).all(axis=1)
        how = "exact: all" if exact else f"Monte Carlo: {n_permutations} random draws of the"
        scheme = (
            f"{how} {n_distinct} distinct assignments of the {len(pool)} start times to "
            f"the {len(pool)} treated {assignment_unit} units; "
            f"{int((~treated).sum())} never-treated clusters kept as controls"
        )
    extreme = int(np.sum(np.abs(draws) >= np.abs(observed) - 1e-12))
    n_draws = len(draws)
    p_value = extreme / n_draws if exact else (1 + extreme) / (1 + n_draws)
    row = {
        "term": "treatment",
        "estimate": observed,
        "std_error": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "p_value": p_value,
    }
    n_units = len(starts) if assignment_unit is None else len(unit_starts)
    tidy = tidy_frame(
        [row],
        n_obs=len(frame),
        n_clusters=n_units,
        method=f"stepped_wedge_permutation_{statistic}",
        se_type=se_label,
        scale="identity",
    )
    diagnostics: dict[str, float | int | str] = {
        "n_permutations": n_draws,
        "seed": seed,
        "share_as_extreme": extreme / n_draws,
        "permutation_sd": float(draws.std(ddof=1)) if n_draws > 1 else 0.0,
        "permutation_scheme": scheme,
        "n_distinct_assignments": n_distinct,
        "smallest_attainable_p": 1 / n_draws if exact else 1 / (1 + n_draws),
    }
    if assignment_unit is not None:
        diagnostics.update(assignment_unit=assignment_unit, n_assigned_units=len(unit_starts))
    return EstimationResult(
        method=f"stepped_wedge_permutation_{statistic}",
        tidy=tidy,
        tables={"permutation": table},
        diagnostics=diagnostics,
    )
