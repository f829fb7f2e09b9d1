"""Continuous-treatment (dose-response) difference-in-differences with few clusters.

:func:`dose_response_did` fits ``outcome_it = a_i + l_t + b * dose_it / dose_scale (+ g'x_it)
+ e_it`` on a person x wave panel (person and wave fixed effects; ``b`` is the change in the
outcome per ``dose_scale`` units of dose, e.g. per GBP 10,000 of cumulative community-asset
funding per 1,000 people aged 65+). Under parallel trends in the untreated outcome and a
linear, homogeneous dose response this is the causal slope; with heterogeneous slopes it is a
variance-weighted average of them (Callaway, Goodman-Bacon & Sant'Anna 2024).

Dose varies at neighbourhood level and there are only about eight neighbourhoods, so
cluster-robust (CR1) t-tests over-reject badly (Cameron, Gelbach & Miller 2008). Inference is
the wild cluster *restricted* bootstrap (WCR, Cameron et al. 2008; MacKinnon & Webb 2017) of
the CR1 t-statistic: the p-value is the symmetric bootstrap p-value of H0: b = 0 and the
confidence interval is the set of b0 not rejected, found by test inversion (the bootstrap is
re-imposed at each b0, as in Stata ``boottest`` and R ``fwildclusterboot``). Webb's six-point
weights are the default when G < 12 (Rademacher then gives at most 2^G distinct draws),
Rademacher otherwise. CR1 results are kept in the diagnostics for comparison.

The bootstrap is the closed form of Roodman, MacKinnon, Nielsen & Webb (2019): person effects
are nested in clusters, so after the within-person transform every bootstrap quantity is a
G x G matrix times the G x B weight matrix, and each test of a b0 costs O(B).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np
import pandas as pd
from scipy import linalg

from analysis.columns import Column
from analysis.design import covariate_design
from analysis.results import EstimationResult, inference_row, tidy_frame

METHOD = "dose_response_did"
WEIGHTS = ("auto", "webb", "rademacher")
_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


def bootstrap_weights(n_clusters: int, n_boot: int, kind: str, seed: int) -> np.ndarray:
    """G x B cluster weights: ``webb`` (six-point, Webb 2023) or ``rademacher`` (+-1)."""
    rng = np.random.default_rng(seed)
    if kind == "webb":
        return rng.choice(_WEBB, size=(n_clusters, n_boot))
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(n_clusters, n_boot))
    raise ValueError(f"unknown bootstrap weights {kind!r}; use one of {WEIGHTS}")


def _group_sums(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` (n x k) within groups coded 0..n_groups-1."""
    out = np.zeros((n_groups, values.shape[1]))
    np.add.at(out, group, values)
    return out


def _independent_columns(z: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop columns of the within-transformed design that are collinear (e.g. absorbed by the
    person effects, like sex or age at recruitment), keeping the first of each collinear set."""
    if z.shape[1] == 0:
        return z, []
    _, r, piv = linalg.qr(z, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    tol = diag.max() * max(z.shape) * np.finfo(float).eps if diag.size else 0.0
    keep = np.sort(piv[diag > max(tol, 1e-10)])
    return z[:, keep], [names[j] for j in keep]


@dataclass(frozen=True)
class _WildCluster:
    """Everything the WCR bootstrap needs, as functions of the null value b0 (all linear).

    With q = x~ / x~'x~ (x~ the dose after partialling out person effects, wave effects and
    covariates Z), restricted residuals u(b0) = u0 - b0 x~ and weights v (G x B):
    b* - b0 = a(b0)'v and the CR1 scores of b* are K(b0) v, with a(b0) = a0 - b0 d and
    K(b0) = K0 - b0 K1 (Roodman et al. 2019, section 3).
    """

    n0: np.ndarray  # a0'V            (B)
    n1: np.ndarray  # d'V             (B)
    ss00: np.ndarray  # |K0 V|^2 columnwise (B)
    ss01: np.ndarray  # <K0 V, K1 V>  (B)
    ss11: np.ndarray  # |K1 V|^2      (B)

    def t_stats(self, b0: float) -> np.ndarray:
        """Bootstrap t-statistics under H0: b = b0 (without the CR1 constant, which cancels)."""
        num = self.n0 - b0 * self.n1
        ss = self.ss00 - 2 * b0 * self.ss01 + b0 * b0 * self.ss11
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / np.sqrt(np.maximum(ss, 0.0))


def _wild_cluster(
    zt: np.ndarray, xt: np.ndarray, u0: np.ndarray, cl: np.ndarray, n_cl: int, weights: np.ndarray
) -> _WildCluster:
    """Precompute the closed-form WCR bootstrap (see :class:`_WildCluster`)."""
    q = xt / (xt @ xt)
    a0 = np.bincount(cl, q * u0, minlength=n_cl)
    d = np.bincount(cl, q * xt, minlength=n_cl)
    k0 = np.diag(a0) - np.outer(d, a0)
    k1 = np.diag(d) - np.outer(d, d)
    if zt.shape[1]:
        zz_inv = np.linalg.inv(zt.T @ zt)
        qz = _group_sums(zt * q[:, None], cl, n_cl)  # G x kz, row g = Z_g' q_g
        c0 = _group_sums(zt * u0[:, None], cl, n_cl)  # Z_g' u0_g
        c1 = _group_sums(zt * xt[:, None], cl, n_cl)  # Z_g' x~_g
        k0 -= qz @ zz_inv @ c0.T
        k1 -= qz @ zz_inv @ c1.T
    s0, s1 = k0 @ weights, k1 @ weights
    return _WildCluster(
        n0=a0 @ weights,
        n1=d @ weights,
        ss00=(s0 * s0).sum(axis=0),
        ss01=(s0 * s1).sum(axis=0),
        ss11=(s1 * s1).sum(axis=0),
    )


def _invert(pvalue, estimate: float, se: float, alpha: float, side: int) -> float:
    """The b0 on one side of the estimate where the bootstrap p-value falls below ``alpha``."""
    inside, step = estimate, max(se, abs(estimate) * 1e-8, 1e-12)
    outside = estimate + side * step
    for _ in range(60):
        if pvalue(outside) < alpha:
            break
        inside, step = outside, step * 2
        outside = estimate + side * step
    else:
        return side * float("inf")
    for _ in range(200):
        if abs(outside - inside) <= 1e-9 * max(se, 1e-12):
            break
        mid = 0.5 * (inside + outside)
        if pvalue(mid) < alpha:
            outside = mid
        else:
            inside = mid
    return 0.5 * (inside + outside)


def dose_response_did(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: Column,
    time: Column,
    dose: Column,
    cluster: Column,
    dose_scale: float = 1.0,
    covariates: Sequence[str] = (),
    n_boot: int = 999,
    boot_weights: str = "auto",
    seed: int = 20151001,
    level: float = 0.95,
) -> EstimationResult:
    """Dose-response DiD with unit and time effects; WCR bootstrap inference (term ``dose``).

    ``dose`` is divided by ``dose_scale`` so the estimate is the outcome change per
    ``dose_scale`` units. Units whose ``cluster`` changes over the panel (people who moved
    neighbourhood) are clustered at their first observed cluster, so units stay nested in
    clusters; how many were is in the diagnostics. Units observed once carry no within
    information and are dropped. ``boot_weights``: ``auto`` (Webb if G < 12, else Rademacher),
    ``webb`` or ``rademacher``. CR1 uses G/(G-1) * (N-1)/(N-K), K = slopes incl. time dummies.
    """
    if boot_weights not in WEIGHTS:
        raise ValueError(f"boot_weights must be one of {WEIGHTS}, not {boot_weights!r}")
    if dose_scale <= 0:
        raise ValueError("dose_scale must be positive")
    cols = list(dict.fromkeys([unit, time, outcome, dose, cluster, *covariates]))
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    frame = data[cols].dropna().sort_values([unit, time]).reset_index(drop=True)
    if frame.duplicated([unit, time]).any():
        raise ValueError(f"({unit}, {time}) does not identify rows")
    n_input = len(frame)
    size = frame.groupby(unit)[unit].transform("size")
    n_singletons = int((size == 1).sum())
    frame = frame[size > 1].reset_index(drop=True)
    first_cluster = frame.groupby(unit)[cluster].transform("first")
    n_moved = int(frame.loc[frame[cluster] != first_cluster, unit].nunique())
    uid = pd.factorize(frame[unit])[0]
    cl_codes, cl_labels = pd.factorize(first_cluster)
    n_cl, n_units, n = len(cl_labels), int(uid.max()) + 1, len(frame)
    if n_cl < 2:
        raise ValueError("need at least two clusters")

    cov_design = covariate_design(frame, covariates)
    waves = pd.get_dummies(
        frame[time].astype(str), prefix=time, prefix_sep="=", drop_first=True, dtype=float
    )
    raw = np.column_stack(
        [
            frame[outcome].to_numpy(float),
            frame[dose].to_numpy(float) / dose_scale,
            cov_design.to_numpy(float),
            waves.to_numpy(float),
        ]
    )
    counts = np.bincount(uid, minlength=n_units).astype(float)
    within = raw - (_group_sums(raw, uid, n_units) / counts[:, None])[uid]
    yt, xt_raw = within[:, 0], within[:, 1]
    z_names = [*cov_design.columns, *waves.columns]
    zt, kept = _independent_columns(within[:, 2:], z_names)
    dropped = [c for c in cov_design.columns if c not in kept]
    if zt.shape[1]:
        coef_y, coef_x = np.linalg.lstsq(zt, np.column_stack([yt, xt_raw]), rcond=None)[0].T
        u0, xt = yt - zt @ coef_y, xt_raw - zt @ coef_x
    else:
        u0, xt = yt, xt_raw
    if xt @ xt <= 1e-12 * max(xt_raw @ xt_raw, 1e-300):
        raise ValueError("dose has no variation left after unit and time effects")

    estimate = float(xt @ u0 / (xt @ xt))
    resid = u0 - estimate * xt
    k = 1 + zt.shape[1]
    small = n_cl / (n_cl - 1) * (n - 1) / (n - k)
    q = xt / (xt @ xt)
    score = np.bincount(cl_codes, q * resid, minlength=n_cl)
    se = float(np.sqrt(small * score @ score))
    cr1 = inference_row("dose", estimate, se, df=n_cl - 1, level=level)

    kind = boot_weights if boot_weights != "auto" else ("webb" if n_cl < 12 else "rademacher")
    started = perf_counter()
    wcb = _wild_cluster(zt, xt, u0, cl_codes, n_cl, bootstrap_weights(n_cl, n_boot, kind, seed))
    se_raw = se / np.sqrt(small)

    def pvalue(b0: float) -> float:
        t_obs = abs(estimate - b0) / se_raw
        return float(np.mean(np.abs(wcb.t_stats(b0)) >= t_obs * (1 - 1e-12)))

    alpha = 1 - level
    p_boot = pvalue(0.0)
    ci_low = _invert(pvalue, estimate, se, alpha, -1)
    ci_high = _invert(pvalue, estimate, se, alpha, +1)
    boot_seconds = perf_counter() - started

    row = {
        **inference_row("dose", estimate, se, level=level),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p_boot,
    }
    tidy = tidy_frame(
        [row],
        n_obs=n,
        n_clusters=n_cl,
        method=METHOD,
        se_type=(
            f"CR1 by {cluster}; CI and p from wild cluster restricted bootstrap "
            f"({kind} weights, B={n_boot}, symmetric, CI by test inversion)"
        ),
        scale=f"difference per {dose_scale:g} units of {dose}",
    )
    per_cluster = pd.DataFrame(
        {cluster: np.asarray(cl_labels)[cl_codes], "unit": uid, "dose": frame[dose].to_numpy(float)}
    )
    clusters = (
        per_cluster.groupby(cluster)
        .agg(
            n_obs=("unit", "size"),
            n_units=("unit", "nunique"),
            mean_dose=("dose", "mean"),
            max_dose=("dose", "max"),
        )
        .reset_index()
    )
    diagnostics: dict[str, float | int | str] = {
        "n_obs": n,
        "n_units": n_units,
        "n_clusters": n_cl,
        "n_periods": int(frame[time].nunique()),
        "n_rows_complete": n_input,
        "n_singletons_dropped": n_singletons,
        "n_units_cluster_reassigned": n_moved,
        "dropped_covariates": ", ".join(dropped),
        "dose_scale": dose_scale,
        "cr1_se": se,
        "cr1_df": n_cl - 1,
        "cr1_p_value": cr1["p_value"],
        "cr1_ci_low": cr1["ci_low"],
        "cr1_ci_high": cr1["ci_high"],
        "boot": "wild cluster restricted (WCR), symmetric p, CI by test inversion",
        "boot_weights": kind,
        "n_boot": n_boot,
        "seed": seed,
        "distinct_weight_draws": float(6.0**n_cl if kind == "webb" else 2.0**n_cl),
        "boot_seconds": boot_seconds,
    }
    return EstimationResult(METHOD, tidy, tables={"clusters": clusters}, diagnostics=diagnostics)
