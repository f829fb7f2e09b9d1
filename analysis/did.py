"""Difference-in-differences: two-way fixed effects, event study, and Callaway & Sant'Anna.

* :func:`twfe` — the static TWFE regression (linearmodels ``PanelOLS`` with entity and time
  effects) with cluster-robust standard errors. Under staggered adoption with effects that change
  with exposure it is a badly weighted average (Goodman-Bacon 2021); it stays as the familiar
  benchmark.
* :func:`event_study` — TWFE with leads and lags of adoption, binned end points, reference
  period -1 and a joint pre-trend Wald test.
* :func:`callaway_santanna` — group-time ATT(g,t) by unconditional 2x2 comparisons against
  never-treated or not-yet-treated units, aggregated to simple / dynamic / group / calendar
  effects, with analytic influence-function SEs and a clustered multiplier bootstrap with
  uniform bands, following the R package ``did`` (Callaway & Sant'Anna 2021).

All estimates live in the tidy table; its extra columns ``aggregation``, ``group``, ``time`` and
``event_time`` locate each row, and :func:`event_path` derives the plotting path from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from linearmodels import PanelOLS
from scipy import stats
from scipy.optimize import nnls

from analysis.columns import Column
from analysis.its import random_walk_cov
from analysis.results import EstimationResult, inference_row, tidy_frame

ControlGroup = Literal["never", "notyet"]
BasePeriod = Literal["varying", "universal"]
BootWeights = Literal["mammen", "rademacher"]
SeType = Literal["cluster", "random_walk", "placebo", "ferman_pinto"]
#: The inferences that need exactly one treated unit in a balanced panel.
_SINGLE_TREATED: tuple[str, ...] = ("random_walk", "placebo", "ferman_pinto")


# --------------------------------------------------------------------------------------------
# Two-way fixed effects
# --------------------------------------------------------------------------------------------


def _panel(data: pd.DataFrame, unit: str, time: str, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in [unit, time, *columns] if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    frame = data[[unit, time, *dict.fromkeys(columns)]].dropna()
    if frame.duplicated([unit, time]).any():
        raise ValueError(f"({unit}, {time}) does not identify rows")
    return frame.set_index([unit, time]).sort_index()


def _fit_panel_ols(
    panel: pd.DataFrame,
    outcome: str,
    regressors: Sequence[str],
    cluster: str | None,
    small_sample: bool,
):
    """PanelOLS with entity+time effects and clustered SEs; returns (fit, se label, n_clusters).

    The effects nested in the clusters are not counted in the degrees of freedom (as R plm,
    Stata ``xtreg, fe`` and fixest do). ``small_sample=True`` applies
    G/(G-1) * (n-1)/(n-k) (k = slope coefficients; Stata's CR1 and plm's "sss": linearmodels'
    ``group_debias`` is G/(G-1) * (n-1)/n and ``debiased`` n/(n-k)); False gives the plain
    (HC0-type) clustered sandwich.
    """
    model = PanelOLS(
        panel[outcome],
        panel[list(regressors)],
        entity_effects=True,
        time_effects=True,
        drop_absorbed=False,
    )
    if cluster is None:
        clusters = {"cluster_entity": True}
        cluster_ids = panel.index.get_level_values(0)
        cname = "unit"
    else:
        clusters = {"clusters": panel[[cluster]]}
        cluster_ids = panel[cluster]
        cname = cluster
    fit = model.fit(
        cov_type="clustered",
        auto_df=False,
        count_effects=False,
        debiased=small_sample,
        group_debias=small_sample,
        **clusters,
    )
    factor = "G/(G-1) * (n-1)/(n-k)" if small_sample else "no small-sample factor"
    label = f"cluster-robust by {cname} ({factor})"
    return fit, label, int(pd.Series(cluster_ids).nunique())


def _single_treated_contrast(
    panel: pd.DataFrame, outcome: str, treatment: str, se_type: str
) -> tuple[pd.DataFrame, object, np.ndarray, np.ndarray]:
    """(outcomes as units x periods, the treated unit, treated minus mean-of-controls outcome
    per period, the treated unit's treatment path).

    With one treated unit in a balanced panel the TWFE coefficient is the regression of this
    contrast on an intercept and the treatment path, which is what makes time-series inference
    on it, and refits with each comparator as the treated unit, possible.
    """
    wide_y = panel[outcome].unstack()
    wide_d = panel[treatment].unstack()
    if wide_y.isna().any().any():
        raise ValueError(f"se_type={se_type!r} needs a balanced panel")
    treated = wide_d.index[(wide_d != 0).any(axis=1)]
    if len(treated) != 1:
        raise ValueError(f"se_type={se_type!r} needs exactly one treated unit, got {len(treated)}")
    gap = wide_y.loc[treated[0]] - wide_y.drop(index=treated).mean(axis=0)
    path = wide_d.loc[treated[0]].to_numpy(dtype=float)
    return wide_y, treated[0], gap.to_numpy(dtype=float), path


def _placebo_statistics(y: np.ndarray, treated: int, path: np.ndarray) -> np.ndarray:
    """Every unit's single-treated-unit DiD with the treated unit's ``path``: the coefficient
    on the path of the unit's outcome minus the mean of the comparators other than itself.

    The treated unit is never a comparator (as in the placebos of Abadie, Diamond & Hainmueller
    2010), so the comparators' statistics carry no effect and stay fixed when a test of some
    effect is inverted; the treated unit's statistic is the TWFE estimate.
    """
    weights = np.linalg.pinv(np.column_stack([np.ones(path.size), path]))[1]
    controls = np.delete(np.arange(y.shape[0]), treated)
    total = y[controls].sum(axis=0)
    others = np.empty_like(y)
    others[treated] = total / controls.size
    others[controls] = (total - y[controls]) / (controls.size - 1)
    return (y - others) @ weights


def _ferman_pinto_variance(
    stat: np.ndarray, population: np.ndarray, controls: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Each unit's fitted variance under Var(W_j | N_j) = A + B / N_j; returns (variance per
    unit, A, B).

    W_j is the unit's own post-minus-pre shock: A the variance of area-level shocks, which does
    not shrink with size, and B / N_j that of a rate averaged over N_j people (Ferman & Pinto
    2019, section 3). A statistic also carries minus the mean of its comparators' shocks, whose
    variance (A + B mean(1 / N_k)) / n0 over the n0 comparators is written out, the same for
    every unit, because with nine comparators it is not negligible beside a large unit's own.
    A, B >= 0 are fitted by non-negative least squares of the comparators' squared statistics,
    which keeps every fitted variance positive where unconstrained least squares on a handful of
    comparators need not.
    """
    if not (np.isfinite(population).all() and (population > 0).all()):
        raise ValueError("se_type='ferman_pinto' needs a positive population for every unit")
    n0 = controls.size
    inverse = population[controls].mean() / population  # 1 / N_j, scaled near 1 for nnls
    design = np.column_stack(
        [np.full(population.size, 1 + 1 / n0), inverse + inverse[controls].mean() / n0]
    )
    (const, slope), _ = nnls(design[controls], stat[controls] ** 2)
    variance = design @ np.array([const, slope])
    if not (variance > 0).all():
        raise ValueError("se_type='ferman_pinto': the comparators' statistics are all zero")
    return variance, float(const), float(slope * population[controls].mean())


def _placebo_inference(
    wide_y: pd.DataFrame,
    treated: object,
    path: np.ndarray,
    population: pd.Series | None,
    level: float,
) -> tuple[dict[str, float], dict[str, float | int | str], pd.DataFrame]:
    """Rank, permutation p-value and test-inversion interval of the treated unit's statistic
    among all J units' (:func:`_placebo_statistics`), each divided by its standard deviation
    under the Ferman-Pinto model when ``population`` (per unit) is given, by 1 otherwise.

    Returns the tidy row's p_value and interval, diagnostics and the per-unit table.
    p = #{units with |t_j| >= |t_treated|} / J counts the treated unit, so it is never below
    ``p_min`` = 1/J. Under H0: effect = a only the treated statistic moves, to
    (estimate - a) / sd_treated, so the accepted effects are estimate +- sd_treated * c_k, with
    c_k the k-th largest comparator |t_j| and k = floor((1 - level) J); for k = 0 (1/J above
    1 - level) no effect is rejected and the interval is unbounded: NaN, with ``ci_note`` and
    the interval at the highest level that is bounded, 1 - 1/J.
    """
    units = wide_y.index
    n_units = len(units)
    pos = int(units.get_loc(treated))
    controls = np.delete(np.arange(n_units), pos)
    if controls.size < 2:
        raise ValueError("placebo inference needs at least two comparator units")
    stat = _placebo_statistics(wide_y.to_numpy(dtype=float), pos, path)
    diagnostics: dict[str, float | int | str] = {}
    if population is None:
        variance = np.ones(n_units)
    else:
        pop = population.reindex(units).to_numpy(dtype=float)
        variance, const, slope = _ferman_pinto_variance(stat, pop, controls)
        diagnostics.update(
            fp_var_constant=const,
            fp_var_inverse_population=slope,
            fp_sd_ratio_treated=math.sqrt(variance[pos] / variance[controls].mean()),
        )
    sd = np.sqrt(variance)
    size = np.abs(stat / sd)
    rank = 1 + int(np.sum(size[controls] >= size[pos]))
    critical = np.sort(size[controls])[::-1]
    k = math.floor((1 - level) * n_units + 1e-9)  # at most J - 1 for any level > 0
    if k == 0:
        ci_low = ci_high = float("nan")
        diagnostics["ci_note"] = (
            f"no bounded {level:.0%} interval: p cannot fall below 1/{n_units} = "
            f"{1 / n_units:.3g}, so no effect is rejected at {1 - level:.3g}"
        )
    else:
        ci_low, ci_high = (
            stat[pos] - critical[k - 1] * sd[pos],
            stat[pos] + critical[k - 1] * sd[pos],
        )
    diagnostics.update(
        placebo_rank=rank,
        placebo_n=n_units,
        p_min=1 / n_units,
        placebo_sd=float(np.std(stat[controls], ddof=1)),
        ci_max_level=1 - 1 / n_units,
        ci_low_at_max_level=float(stat[pos] - critical[0] * sd[pos]),
        ci_high_at_max_level=float(stat[pos] + critical[0] * sd[pos]),
    )
    table = pd.DataFrame(
        {
            "unit": units.to_numpy(),
            "treated": np.arange(n_units) == pos,
            "statistic": stat,
            "sd": sd,
            "scaled_statistic": stat / sd,
            "rank": pd.Series(size).rank(ascending=False, method="max").astype(int).to_numpy(),
        }
    )
    if population is not None:
        table.insert(2, "population", pop)
    row = {"p_value": rank / n_units, "ci_low": float(ci_low), "ci_high": float(ci_high)}
    return row, diagnostics, table.sort_values("rank", kind="stable", ignore_index=True)


def twfe(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: Column,
    time: Column,
    treatment: Column,
    covariates: Sequence[str] = (),
    cluster: Column | None = None,
    small_sample: bool = True,
    se_type: SeType = "cluster",
    population: Column | None = None,
    level: float = 0.95,
) -> EstimationResult:
    """Static TWFE: outcome on a 0/1 ``treatment`` with unit and time effects.

    ``se_type="cluster"``: cluster-robust by ``cluster`` (default: the unit), t with G-1 df when
    ``small_sample`` is True, the normal otherwise. It needs many treated clusters: with one
    treated unit among ten areas it covers 82.5% (docs/validation/monte_carlo.md), since no
    cluster-robust variance can learn the treated unit's variance from that unit alone.

    ``se_type="random_walk"`` is for one treated unit (balanced, no covariates): the same TWFE
    estimate, which equals the regression of the treated-minus-mean-of-controls series on an
    intercept and the treatment path, with inference from that series' own dependence, modelled
    as a random walk plus noise (areas that load on common random-walk factors with different
    loadings differ by one), its variance ratio estimated so that it never sits at zero
    (:func:`analysis.its.random_walk_cov`), and a t reference with T - 2 df. Time points are
    taken as equally spaced. Coverage on the Greater Manchester area world:
    docs/validation/area_inference.md.

    ``se_type="placebo"`` and ``"ferman_pinto"`` are for one treated unit too, and rest on no
    time-series model: the same estimate is ranked among the J units' statistics, each
    comparator refitted as the treated unit against the other comparators (Conley & Taber 2011,
    ReStat 93:113-125; Abadie, Diamond & Hainmueller 2010). The p-value is rank / J, so it is
    never below 1/J (``p_min`` in the diagnostics; 0.1 with ten areas), and the interval is the
    set of effects the test does not reject (unbounded, NaN, when 1/J > 1 - ``level``). The
    standard error is NaN. ``placebo`` needs the units' statistics to be exchangeable: a treated
    unit noisier than its comparators is declared extreme too often, a quieter one too rarely.
    ``ferman_pinto`` (Ferman & Pinto 2019, ReStat 101:452-467) lets the variance depend on size:
    statistic_j = effect * [j treated] + W_j - (mean W of j's comparators), with
    Var(W_j | N_j) = A + B / N_j, where N_j is the unit's mean of the ``population`` column
    over the periods, A the variance of area-level shocks and B / N_j that of a rate over N_j
    people; A, B >= 0 are fitted on the comparators' squared statistics
    (:func:`_ferman_pinto_variance`), and each statistic is divided by its fitted SD before
    ranking, which leaves the ranks of equally sized units unchanged. Valid when, given N_j,
    the statistics are exchangeable; in null simulations with a treated area noisier than every
    comparator the plain placebo test rejected 37% at 10%, this one 17%
    (tests/test_area_inference.py). Both store the per-unit ``placebo`` table.
    """
    if (population is not None) != (se_type == "ferman_pinto"):
        raise ValueError("se_type='ferman_pinto' needs population, and only it reads population")
    panel = _panel(
        data,
        unit,
        time,
        [
            outcome,
            treatment,
            *covariates,
            *([cluster] if cluster else []),
            *([population] if population else []),
        ],
    )
    fit, label, n_cl = _fit_panel_ols(
        panel, outcome, [treatment, *covariates], cluster, small_sample
    )
    df = n_cl - 1 if small_sample else None
    rows = [
        inference_row(
            name, float(fit.params[name]), float(fit.std_errors[name]), df=df, level=level
        )
        for name in [treatment, *covariates]
    ]
    diagnostics: dict[str, float | int | str] = {
        "n_obs": int(fit.nobs),
        "n_clusters": n_cl,
        "n_units": int(panel.index.levels[0].size),
        "n_periods": int(panel.index.get_level_values(1).nunique()),
        "r2_within": float(fit.rsquared_within),
    }
    tables: dict[str, pd.DataFrame] = {}
    if se_type in _SINGLE_TREATED:
        if covariates or cluster:
            raise ValueError(f"se_type={se_type!r} takes no covariates and no cluster")
        wide_y, treated, gap, path = _single_treated_contrast(panel, outcome, treatment, se_type)
        exog = np.column_stack([np.ones(len(gap)), path])
        estimate = float(fit.params[treatment])
        if not np.isclose(
            estimate, float(np.linalg.lstsq(exog, gap, rcond=None)[0][1]), rtol=1e-8, atol=1e-10
        ):
            raise RuntimeError("TWFE estimate differs from the single-treated-unit contrast")
        if se_type == "random_walk":
            rw = random_walk_cov(exog, gap, np.ones(len(gap)), np.arange(len(gap)))
            se = math.sqrt(rw.cov[1, 1])
            rows = [inference_row(treatment, estimate, se, df=rw.df, level=level)]
            label = (
                "treated-minus-controls series as random walk plus noise, variance ratio at "
                f"its reference-posterior median; t reference, df = T - 2 = {rw.df}"
            )
            diagnostics.update(rw_ratio=rw.ratio, rw_ratio_mode=rw.ratio_mode)
        else:
            sizes = None if population is None else panel[population].groupby(level=0).mean()
            fields, placebo_diagnostics, tables["placebo"] = _placebo_inference(
                wide_y, treated, path, sizes, level
            )
            rows = [{**inference_row(treatment, estimate, float("nan"), level=level), **fields}]
            n_units = len(wide_y)
            scaling = (
                "statistics as they are"
                if population is None
                else f"each statistic over its SD sqrt(A + B / mean {population}), A, B >= 0 "
                "fitted on the comparators (Ferman-Pinto)"
            )
            label = (
                f"placebo-in-space: each of the {n_units - 1} comparators refitted as the "
                f"treated unit, {scaling}; p = rank / {n_units} (smallest {1 / n_units:.3g}); "
                "interval by test inversion"
            )
            diagnostics.update(placebo_diagnostics)
    elif se_type != "cluster":
        raise ValueError(f"unknown se_type {se_type!r}")
    tidy = tidy_frame(
        rows,
        n_obs=int(fit.nobs),
        n_clusters=n_cl,
        method="did_twfe",
        se_type=label,
        scale="difference",
    )
    return EstimationResult("did_twfe", tidy, tables, diagnostics)


def _cohort(series: pd.Series) -> pd.Series:
    """First-treatment period with never-treated coded 0 (NaN or 0 in the input)."""
    return series.fillna(0).astype(float)


def event_study(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: Column,
    time: Column,
    cohort: Column,
    leads: int = 4,
    lags: int = 4,
    bin_endpoints: bool = True,
    reference: int = -1,
    covariates: Sequence[str] = (),
    cluster: Column | None = None,
    small_sample: bool = True,
    level: float = 0.95,
) -> EstimationResult:
    """TWFE event study with relative-time dummies for e = -leads..lags, omitting ``reference``.

    ``cohort`` holds the first treated period (0 or NaN for never treated). With
    ``bin_endpoints`` the end dummies absorb all earlier / later event times; without it,
    treated observations outside the window are dropped (so they do not silently join the
    reference). The joint pre-trend test is the cluster-robust Wald chi-square of all lead
    coefficients, reported as diagnostics and as the tidy row ``pretrend_wald``.
    """
    if not -leads <= reference < 0:
        raise ValueError("reference must be a lead inside the window (e.g. -1)")
    frame = data.copy()
    frame["_g"] = _cohort(frame[cohort])
    treated = frame["_g"] > 0
    e = (frame[time] - frame["_g"]).where(treated)
    if bin_endpoints:
        e = e.clip(lower=-leads, upper=lags)
    else:
        frame = frame[~treated | e.between(-leads, lags)]
        e = e.loc[frame.index]
    names = {}
    for k in range(-leads, lags + 1):
        if k == reference:
            continue
        name = f"event_{k}"
        frame[name] = (e == k).astype(float)
        names[name] = k
    panel = _panel(
        frame, unit, time, [outcome, *names, *covariates, *([cluster] if cluster else [])]
    )
    panel = panel[[c for c in panel.columns if panel[c].ne(0).any() or c not in names]]
    kept = [n for n in names if n in panel.columns]
    fit, label, n_cl = _fit_panel_ols(panel, outcome, [*kept, *covariates], cluster, small_sample)
    df = n_cl - 1 if small_sample else None
    rows = [
        inference_row(
            n,
            float(fit.params[n]),
            float(fit.std_errors[n]),
            df=df,
            level=level,
            aggregation="event_study",
            event_time=names[n],
        )
        for n in kept
    ]
    rows += [
        inference_row(
            c,
            float(fit.params[c]),
            float(fit.std_errors[c]),
            df=df,
            level=level,
            aggregation="covariate",
        )
        for c in covariates
    ]
    pre = [n for n in kept if names[n] < 0]
    diagnostics: dict[str, float | int | str] = {
        "reference_period": reference,
        "leads": leads,
        "lags": lags,
        "bin_endpoints": str(bin_endpoints),
        "n_clusters": n_cl,
    }
    if pre:
        b = fit.params[pre].to_numpy()
        v = fit.cov.loc[pre, pre].to_numpy()
        wald = float(b @ np.linalg.solve(v, b))
        p = float(stats.chi2.sf(wald, len(pre)))
        diagnostics.update(pretrend_wald=wald, pretrend_df=len(pre), pretrend_p=p)
        row = inference_row("pretrend_wald", wald, float("nan"), aggregation="pretrend_test")
        row["p_value"] = p
        rows.append(row)
    tidy = tidy_frame(
        rows,
        n_obs=int(fit.nobs),
        n_clusters=n_cl,
        method="did_event_study",
        se_type=label,
        scale="difference",
    )
    return EstimationResult("did_event_study", tidy, diagnostics=diagnostics)


def event_path(result: EstimationResult) -> pd.DataFrame:
    """The event-study path for plotting, derived from ``tidy`` (adds the zero reference row).

    Works for :func:`event_study` (reference from diagnostics) and for the ``dynamic``
    aggregation of :func:`callaway_santanna` (whose -1 cell is estimated, not normalised).
    """
    agg = "event_study" if result.method == "did_event_study" else "dynamic"
    path = result.tidy[
        (result.tidy["aggregation"] == agg) & result.tidy["event_time"].notna()
    ].copy()
    cols = ["event_time", "estimate", "std_error", "ci_low", "ci_high"] + [
        c for c in ("uniform_ci_low", "uniform_ci_high") if c in path.columns
    ]
    path = path[cols]
    if "reference_period" in result.diagnostics:
        ref = {"event_time": result.diagnostics["reference_period"], "estimate": 0.0}
        path = pd.concat([path, pd.DataFrame([ref])], ignore_index=True)
    path["event_time"] = path["event_time"].astype(int)
    return path.sort_values("event_time").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Callaway & Sant'Anna (2021)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cells:
    """Group-time cells: identifiers, estimates and the n x K influence-function matrix."""

    group: np.ndarray
    time: np.ndarray
    base: np.ndarray
    att: np.ndarray
    inf: np.ndarray  # n_units x K, ATT_hat - ATT ~ mean of rows


def _wide(
    data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str, cluster: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Balanced wide panel: (Y n x T, periods, cohort per unit, cluster id per unit)."""
    cols = [outcome, unit, time, cohort] + ([cluster] if cluster else [])
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in data: {missing}")
    frame = data[cols].copy()
    frame[cohort] = _cohort(frame[cohort])
    if frame[[outcome, unit, time]].isna().any().any():
        raise ValueError("outcome, unit and time must not be missing")
    wide = frame.pivot(index=unit, columns=time, values=outcome).sort_index(axis=1)
    if wide.isna().any().any():
        raise ValueError("callaway_santanna needs a balanced panel (every unit in every period)")
    per_unit = frame.groupby(unit)
    g = per_unit[cohort].first()
    if (per_unit[cohort].nunique() > 1).any():
        raise ValueError("cohort must be constant within unit")
    cl = per_unit[cluster].first() if cluster else pd.Series(wide.index, index=wide.index)
    if cluster and (per_unit[cluster].nunique() > 1).any():
        raise ValueError("cluster must be constant within unit")
    return (
        wide.to_numpy(dtype=float),
        wide.columns.to_numpy(dtype=float),
        g.loc[wide.index].to_numpy(dtype=float),
        pd.factorize(cl.loc[wide.index])[0],
    )


def _start_period(periods: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The period in which treatment starts: ``g`` itself when it is one of the periods, else
    the period holding it (a cohort between two periods is partly treated in the earlier one).

    Never-treated (0) and cohorts before the first period are returned unchanged.
    """
    idx = np.searchsorted(periods, g, side="right") - 1
    return np.where((g > 0) & (idx >= 0), periods[np.maximum(idx, 0)], g)


def _cell_plan(
    periods: np.ndarray, cohorts: np.ndarray, base_period: BasePeriod, anticipation: int
) -> list[tuple[float, float, float]]:
    """(g, t, base) for every estimable cell, as in R did's compute.att_gt; base periods lie
    before the period holding the start, so a partly treated period is never a base."""
    plan = []
    for g, start in zip(cohorts, _start_period(periods, cohorts), strict=True):
        pre = periods[periods + anticipation < start]
        if pre.size == 0:
            continue
        last_pre = pre.max()
        if base_period == "varying":
            for j in range(1, len(periods)):
                t = periods[j]
                base = last_pre if t + anticipation >= start else periods[j - 1]
                plan.append((g, t, base))
        else:
            plan.extend((g, t, last_pre) for t in periods)
    return plan


def _group_time_cells(
    y: np.ndarray,
    periods: np.ndarray,
    g_unit: np.ndarray,
    control_group: ControlGroup,
    base_period: BasePeriod,
    anticipation: int,
) -> _Cells:
    """All ATT(g,t) with their influence functions, vectorised over cells."""
    cohorts = np.unique(g_unit[g_unit > 0])
    plan = _cell_plan(periods, cohorts, base_period, anticipation)
    if not plan:
        raise ValueError("no estimable group-time cell (no cohort with a pre-period)")
    gs, ts, bs = (np.array(v, dtype=float) for v in zip(*plan, strict=True))
    col = {p: i for i, p in enumerate(periods)}
    ti = np.array([col[t] for t in ts])
    bi = np.array([col[b] for b in bs])
    dy = y[:, ti] - y[:, bi]  # n x K
    treat = g_unit[:, None] == gs[None, :]
    if control_group == "never":
        ctrl = np.repeat((g_unit == 0)[:, None], len(gs), axis=1)
    elif control_group == "notyet":
        horizon = np.maximum(ts, bs) + anticipation
        start = _start_period(periods, g_unit)[:, None]
        ctrl = (g_unit[:, None] == 0) | (
            (start > horizon[None, :]) & (g_unit[:, None] != gs[None, :])
        )
    else:
        raise ValueError(f"unknown control_group {control_group!r}")
    n_t = treat.sum(axis=0)
    n_c = ctrl.sum(axis=0)
    ok = (n_t > 0) & (n_c > 0)
    if not ok.all():
        gs, ts, bs, dy, treat, ctrl, n_t, n_c = (
            a[..., ok] if a.ndim > 1 else a[ok] for a in (gs, ts, bs, dy, treat, ctrl, n_t, n_c)
        )
    n = y.shape[0]
    mu_t = (dy * treat).sum(axis=0) / n_t
    mu_c = (dy * ctrl).sum(axis=0) / n_c
    att = mu_t - mu_c
    att[bs == ts] = 0.0  # universal base period: the normalised cell
    inf = treat * (dy - mu_t) * (n / n_t) - ctrl * (dy - mu_c) * (n / n_c)
    inf[:, bs == ts] = 0.0
    return _Cells(gs, ts, bs, att, inf)


def _cluster_inf(inf: np.ndarray, cluster_id: np.ndarray) -> np.ndarray:
    """Sum influence functions within clusters (identity when clusters are units)."""
    n_cl = cluster_id.max() + 1
    if n_cl == inf.shape[0]:
        return inf[np.argsort(cluster_id)]
    out = np.zeros((n_cl, inf.shape[1]))
    np.add.at(out, cluster_id, inf)
    return out


def _analytic_se(inf: np.ndarray, cluster_id: np.ndarray) -> np.ndarray:
    """SE = sqrt(sum_c (sum_{i in c} psi_i)^2) / n, the sample analogue of Var(psi)/n."""
    n = inf.shape[0]
    summed = _cluster_inf(inf, cluster_id)
    return np.sqrt((summed**2).sum(axis=0)) / n


def _multiplier_bootstrap(
    inf: np.ndarray, cluster_id: np.ndarray, n_boot: int, weights: BootWeights, seed: int
) -> np.ndarray:
    """Draws of (estimate* - estimate), B x K, from cluster-level multiplier weights."""
    n = inf.shape[0]
    summed = _cluster_inf(inf, cluster_id)
    rng = np.random.default_rng(seed)
    n_cl = summed.shape[0]
    draws = np.empty((n_boot, inf.shape[1]))
    chunk = max(1, min(n_boot, 2_000_000 // max(n_cl, 1)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        if weights == "mammen":
            s5 = np.sqrt(5.0)
            v = np.where(rng.random((b, n_cl)) < (s5 + 1) / (2 * s5), (1 - s5) / 2, (1 + s5) / 2)
        elif weights == "rademacher":
            v = rng.choice(np.array([-1.0, 1.0]), size=(b, n_cl))
        else:
            raise ValueError(f"unknown bootstrap weights {weights!r}")
        draws[start : start + b] = v @ summed / n
    return draws


def _boot_summary(
    draws: np.ndarray, est: np.ndarray, level: float, uniform: bool
) -> dict[str, np.ndarray | float]:
    """Bootstrap SE (IQR / 1.349, as R did) and pointwise / uniform (sup-t) bands."""
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    z = float(stats.norm.ppf(0.5 + level / 2))
    out: dict[str, np.ndarray | float] = {"se": se, "crit": z}
    if uniform:
        safe = np.where(se > 0, se, np.nan)
        sup_t = np.nanmax(np.abs(draws / safe), axis=1)
        out["crit"] = float(np.quantile(sup_t, level))
    out["low"] = est - out["crit"] * se
    out["high"] = est + out["crit"] * se
    return out


def _share_weights(groups: np.ndarray, g_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cohort-share weights w_k = P(G=g_k) / sum_j P(G=g_j) and their influence (R's ``wif``).

    Returns (w, wif) with wif n x K: the influence of estimating the shares, which enters the
    aggregated influence function as ``wif @ att``.
    """
    pg = np.array([np.mean(g_unit == g) for g in groups])
    total = pg.sum()
    ind = (g_unit[:, None] == groups[None, :]).astype(float) - pg[None, :]
    wif = ind / total - ind.sum(axis=1, keepdims=True) * (pg / total**2)[None, :]
    return pg / total, wif


def _weighted_mean(
    att: np.ndarray, inf: np.ndarray, groups: np.ndarray | None, g_unit: np.ndarray
) -> tuple[float, np.ndarray]:
    """Average of estimates with their influence functions (n x K).

    ``groups`` given: cohort-share weights, with the weight-estimation term; None: equal weights.
    """
    if groups is None:
        w = np.full(att.size, 1.0 / att.size)
        return float(att @ w), inf @ w
    w, wif = _share_weights(groups, g_unit)
    return float(att @ w), inf @ w + wif @ att


def callaway_santanna(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: Column,
    time: Column,
    cohort: Column,
    control_group: ControlGroup = "never",
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    min_cohort_units: int = 2,
    cluster: Column | None = None,
    bootstrap: bool = True,
    n_boot: int = 999,
    boot_weights: BootWeights = "mammen",
    seed: int = 20210101,
    level: float = 0.95,
) -> EstimationResult:
    """Group-time ATT(g,t) (Callaway & Sant'Anna 2021), no covariates, balanced panel.

    Each ATT(g,t) is the 2x2 DiD of cohort g against the control group between period t and
    its base period (``varying``: the previous period for pre-treatment cells, g-1-anticipation
    for post cells; ``universal``: always g-1-anticipation). Units treated in the first period
    have no pre-period and are excluded from the cohorts; cohorts first treated after the last
    period count as never treated. Rows of the tidy table (column ``aggregation``):
    ``att_gt``, ``simple`` (cohort-size-weighted post cells), ``dynamic`` (by event time, plus
    ``dynamic_overall`` = mean over e >= 0), ``group`` (plus ``group_overall``, CS 2021's
    recommended summary), ``calendar`` (plus ``calendar_overall``) and two ``pretest`` rows:
    ``pretest_wald``, R did's Wald test of all pooled pre-treatment cells, and
    ``pretest_cohort_means``, one restriction per pooled cohort (its mean pre-treatment cell),
    which keeps near its level where cohorts of a few units make the first over-reject
    (tests/test_did_aggregation.py).
    ``std_error`` is analytic (influence function, clustered by ``cluster`` or the unit);
    ``boot_se`` and the ``uniform_ci_*`` sup-t bands (for att_gt and dynamic rows) come from the
    multiplier bootstrap.

    A ``cohort`` between two periods (13.667 = two thirds into period 13, for a practice that
    starts in the third month of a quarter) is partly treated in the period holding its start:
    that cell is the ``att_gt_partial`` row and enters neither a base period, the pre-test nor
    an aggregation, and event time counts from the first fully treated period.

    The pre-test pools only cohorts of at least ``min_cohort_units`` units (clusters, when
    ``cluster`` is given): a cohort of one has no treated-side variance in its influence
    function, so its pre-period cells look precise and can dominate the Wald statistic. The
    diagnostics name the pooled and the excluded cohorts with their sizes; an excluded cohort's
    own cells stay in the ``att_gt`` rows. When the pre-period cells outnumber what the clusters
    can identify (a singular covariance), no Wald test is reported, as in R did.
    """
    if min_cohort_units < 1:
        raise ValueError("min_cohort_units must be at least 1")
    y, periods, g_unit, cluster_id = _wide(data, outcome, unit, time, cohort, cluster)
    last = periods.max()
    g_unit = np.where(g_unit > last, 0.0, g_unit)
    keep_units = ~((g_unit > 0) & (_start_period(periods, g_unit) - anticipation <= periods.min()))
    y, g_unit, cluster_id = (
        y[keep_units],
        g_unit[keep_units],
        pd.factorize(cluster_id[keep_units])[0],
    )
    cells = _group_time_cells(y, periods, g_unit, control_group, base_period, anticipation)
    n = y.shape[0]
    n_cl = int(cluster_id.max() + 1)

    specs: list[dict[str, object]] = []  # one per output row: estimate + influence function

    def add(term: str, est: float, inf: np.ndarray, agg: str, **loc: float) -> None:
        specs.append({"term": term, "est": est, "inf": inf, "aggregation": agg, **loc})

    # As R did: aggregations use t >= g; anticipation only moves base periods and controls.
    post = cells.time >= cells.group
    partial = (cells.time >= _start_period(periods, cells.group)) & ~post
    e_all = cells.time - periods[np.searchsorted(periods, cells.group)]
    for k in range(cells.att.size):
        if cells.base[k] == cells.time[k]:
            continue
        term = f"att_gt[g={cells.group[k]:g},t={cells.time[k]:g}]"
        if partial[k]:
            add(
                term,
                float(cells.att[k]),
                cells.inf[:, k],
                "att_gt_partial",
                group=cells.group[k],
                time=cells.time[k],
            )
        else:
            add(
                term,
                float(cells.att[k]),
                cells.inf[:, k],
                "att_gt",
                group=cells.group[k],
                time=cells.time[k],
                event_time=e_all[k],
            )

    def cells_mean(keep: np.ndarray, weighted: bool) -> tuple[float, np.ndarray]:
        return _weighted_mean(
            cells.att[keep], cells.inf[:, keep], cells.group[keep] if weighted else None, g_unit
        )

    add("simple", *cells_mean(np.flatnonzero(post), True), "simple")
    dyn = []
    for e in np.unique(e_all):
        keep = np.flatnonzero((e_all == e) & (cells.base != cells.time) & ~partial)
        if keep.size:
            est, inf = cells_mean(keep, True)
            add(f"event[e={e:g}]", est, inf, "dynamic", event_time=e)
            dyn.append((e, est, inf))
    post_dyn = [(est, inf) for e, est, inf in dyn if e >= 0]
    add(
        "dynamic_overall",
        float(np.mean([d[0] for d in post_dyn])),
        np.mean([d[1] for d in post_dyn], axis=0),
        "dynamic_overall",
    )
    grp = []
    for g in np.unique(cells.group):
        keep = np.flatnonzero((cells.group == g) & post)
        if keep.size:
            est, inf = cells_mean(keep, False)
            add(f"group[g={g:g}]", est, inf, "group", group=g)
            grp.append((g, est, inf))
    add(
        "group_overall",
        *_weighted_mean(
            np.array([e for _, e, _ in grp]),
            np.column_stack([i for _, _, i in grp]),
            np.array([g for g, _, _ in grp]),
            g_unit,
        ),
        "group_overall",
    )
    cal = []
    for t in np.unique(cells.time[post]):
        keep = np.flatnonzero(post & (cells.time == t))
        est, inf = cells_mean(keep, True)
        add(f"calendar[t={t:g}]", est, inf, "calendar", time=t)
        cal.append((est, inf))
    add(
        "calendar_overall",
        float(np.mean([c[0] for c in cal])),
        np.mean([c[1] for c in cal], axis=0),
        "calendar_overall",
    )

    est = np.array([s["est"] for s in specs], dtype=float)
    inf_all = np.column_stack([s["inf"] for s in specs])
    se = _analytic_se(inf_all, cluster_id)
    rows = []
    for s, se_k in zip(specs, se, strict=True):
        extra = {k: s[k] for k in ("aggregation", "group", "time", "event_time") if k in s}
        rows.append(
            inference_row(str(s["term"]), float(s["est"]), float(se_k), level=level, **extra)
        )
    tidy = tidy_frame(
        rows,
        n_obs=int(n * len(periods)),
        n_clusters=n_cl,
        method="did_callaway_santanna",
        se_type=f"influence function (analytic), clustered by {cluster or 'unit'}",
        scale="difference",
    )
    diagnostics: dict[str, float | int | str] = {
        "control_group": control_group,
        "base_period": base_period,
        "anticipation": anticipation,
        "n_units": n,
        "n_periods": len(periods),
        "n_clusters": n_cl,
        "n_cohorts": int(np.unique(cells.group).size),
        "n_never_treated": int(np.sum(g_unit == 0)),
        "n_dropped_treated_in_first_period": int(np.sum(~keep_units)),
    }
    if base_period == "universal":
        diagnostics["reference_period"] = -1 - anticipation
    is_pre = ~post & ~partial & (cells.base != cells.time)
    size = {g: int(np.unique(cluster_id[g_unit == g]).size) for g in np.unique(cells.group)}
    small = np.array([size[g] < min_cohort_units for g in cells.group], dtype=bool)
    noun = "unit" if cluster is None else "cluster"

    def listed(keep: np.ndarray) -> str:
        return (
            ", ".join(
                f"g={g:g} ({size[g]} {noun}{'' if size[g] == 1 else 's'})"
                for g in np.unique(cells.group[keep])
            )
            or "none"
        )

    diagnostics.update(
        pretest_min_cohort_units=min_cohort_units,
        pretest_cohorts=listed(is_pre & ~small),
        pretest_excluded_cohorts=listed(is_pre & small),
    )
    tests: list[dict[str, object]] = []

    def wald_test(term: str, key: str, b: np.ndarray, inf: np.ndarray, what: str) -> None:
        """The chi2 Wald test that ``b`` is zero as a tidy row and ``key_*`` diagnostics, or a
        note when its covariance is singular (more restrictions than the clusters identify)."""
        v = _cluster_inf(inf, cluster_id)
        vcov = v.T @ v / n**2
        rank = int(np.linalg.matrix_rank(vcov))
        if rank < b.size:
            diagnostics[f"{key}_note"] = (
                f"no Wald test: the covariance of the {b.size} {what} "
                f"has rank {rank} (from {n_cl} clusters)"
            )
            return
        wald = float(b @ np.linalg.pinv(vcov) @ b)
        p = float(stats.chi2.sf(wald, b.size))
        diagnostics.update({f"{key}_wald": wald, f"{key}_df": int(b.size), f"{key}_p": p})
        row = inference_row(term, wald, float("nan"), aggregation="pretest")
        tests.append(
            {
                **row,
                "p_value": p,
                "n_obs": int(n * len(periods)),
                "n_clusters": n_cl,
                "method": "did_callaway_santanna",
                "se_type": "Wald chi2, analytic vcov",
                "scale": "chi2",
            }
        )

    pre = np.flatnonzero(is_pre & ~small)
    if pre.size:
        wald_test(
            "pretest_wald",
            "pretest",
            cells.att[pre],
            cells.inf[:, pre],
            "pooled pre-treatment cells",
        )
        means = [
            cells_mean(np.flatnonzero(is_pre & (cells.group == g)), False)
            for g in np.unique(cells.group[pre])
        ]
        wald_test(
            "pretest_cohort_means",
            "pretest_means",
            np.array([m[0] for m in means]),
            np.column_stack([m[1] for m in means]),
            "pooled cohorts' pre-period means",
        )
    if tests:
        tidy = tidy_frame([*tidy.to_dict("records"), *tests])
    if bootstrap:
        draws = _multiplier_bootstrap(inf_all, cluster_id, n_boot, boot_weights, seed)
        pointwise = _boot_summary(draws, est, level, uniform=False)
        n_spec = len(specs)
        tidy.loc[: n_spec - 1, "boot_se"] = pointwise["se"]
        tidy.loc[: n_spec - 1, "boot_ci_low"] = pointwise["low"]
        tidy.loc[: n_spec - 1, "boot_ci_high"] = pointwise["high"]
        for agg in ("att_gt", "dynamic"):
            idx = np.flatnonzero([s["aggregation"] == agg for s in specs])
            band = _boot_summary(draws[:, idx], est[idx], level, uniform=True)
            tidy.loc[idx, "uniform_ci_low"] = band["low"]
            tidy.loc[idx, "uniform_ci_high"] = band["high"]
            diagnostics[f"uniform_crit_{agg}"] = float(band["crit"])
        diagnostics.update(
            n_boot=n_boot,
            boot_weights=boot_weights,
            seed=seed,
            boot_se_rule="IQR/(z75-z25) of multiplier draws",
        )
    return EstimationResult("did_callaway_santanna", tidy, diagnostics=diagnostics)
