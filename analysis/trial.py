"""Trial within the cohort (cmRCT): intention-to-treat, complier-average and naive contrasts.

In a cohort multiple randomised controlled trial only people randomised to the offer are
approached, and some decline. The randomised contrast (ITT, term ``itt``) estimates the effect
of the offer; two-stage least squares with the offer instrumenting acceptance estimates the
effect of accepting among compliers (CACE, term ``cace``), which with one-sided non-compliance
is the ITT divided by the acceptance rate (Wald estimator). Per-protocol (accepters against
controls, term ``per_protocol``) and as-treated (accepters against everyone else, term
``as_treated``) contrasts are provided only to show how self-selection biases them. Missing follow-up is
handled by :func:`itt_ipw_delta`: inverse-probability-of-response weighting under MAR (term
``itt_ipw``) and a delta-adjusted MNAR tipping-point analysis (terms ``itt_delta_<delta>``).

All rows are mean differences on the outcome scale (``scale = identity``) with
heteroskedasticity-robust SEs and a t(n - k) reference; every model adjusts for the baseline
outcome (ANCOVA) and the randomisation stratum (fixed effects) when those are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from linearmodels.iv import IV2SLS
from scipy import optimize, stats

from analysis.columns import Column, Columns
from analysis.design import covariate_design, indicator
from analysis.results import EstimationResult, inference_row, tidy_frame


def _prepare(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: str,
    accepted: str | None,
    baseline: str | None,
    stratum: str | None,
    covariates: Sequence[str],
    offer_level: object | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Complete cases with 0/1 ``offer`` / ``accepted`` columns, and the adjustment design.

    The design holds the intercept, baseline outcome, stratum dummies (first omitted) and
    covariates, i.e. every regressor except the contrast of interest.
    """
    cols = [
        outcome,
        arm,
        *([accepted] if accepted else []),
        *([baseline] if baseline else []),
        *([stratum] if stratum else []),
        *covariates,
    ]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"columns {missing} not in data; columns: {list(data.columns)}")
    frame = data.loc[:, list(dict.fromkeys(cols))].dropna().reset_index(drop=True)
    frame["offer"] = indicator(frame[arm], offer_level, arm)
    if accepted:
        frame["accepted"] = indicator(frame[accepted], None, accepted)
    if frame["offer"].nunique() < 2:
        raise ValueError("both arms are needed")
    parts = [pd.DataFrame({"Intercept": 1.0}, index=frame.index)]
    if baseline:
        parts.append(frame[[baseline]].astype(float))
    if stratum:
        parts.append(
            pd.get_dummies(
                frame[stratum].astype(str),
                prefix=stratum,
                prefix_sep="=",
                drop_first=True,
                dtype=float,
            )
        )
    parts.append(covariate_design(frame, covariates))
    return frame, pd.concat(parts, axis=1)


def _ols_contrast(
    frame: pd.DataFrame,
    design: pd.DataFrame,
    *,
    outcome: str,
    regressor: str,
    term: str,
    method: str,
    cov_type: str,
    level: float,
    diagnostics: dict[str, float | int | str],
) -> EstimationResult:
    """OLS of the outcome on one 0/1 regressor plus the adjustment design, robust SEs."""
    exog = pd.concat([frame[[regressor]].rename(columns={regressor: term}), design], axis=1)
    res = sm.OLS(frame[outcome].astype(float), exog).fit(cov_type=cov_type)
    row = inference_row(
        term, float(res.params[term]), float(res.bse[term]), df=float(res.df_resid), level=level
    )
    tidy = tidy_frame(
        [row],
        n_obs=int(res.nobs),
        n_clusters=pd.NA,
        method=method,
        se_type=f"heteroskedasticity-robust ({cov_type})",
        scale="identity",
    )
    return EstimationResult(
        method=method, tidy=tidy, diagnostics={**diagnostics, "r_squared": float(res.rsquared)}
    )


def itt_ancova(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: Column,
    baseline: Column | None = None,
    stratum: Column | None = None,
    covariates: Sequence[str] = (),
    offer_level: object | None = None,
    cov_type: str = "HC1",
    level: float = 0.95,
) -> EstimationResult:
    """Intention-to-treat effect of the offer by ANCOVA (term ``itt``).

    Follow-up outcome on arm, the baseline outcome and stratum fixed effects; adjusting for
    baseline gains precision without bias because the arm is randomised.
    ``offer_level`` marks the offer arm in a labelled column (e.g. ``"offer"``).
    """
    frame, design = _prepare(
        data,
        outcome=outcome,
        arm=arm,
        accepted=None,
        baseline=baseline,
        stratum=stratum,
        covariates=covariates,
        offer_level=offer_level,
    )
    diagnostics = {
        "n_offer": int(frame["offer"].sum()),
        "n_control": int((1 - frame["offer"]).sum()),
    }
    return _ols_contrast(
        frame,
        design,
        outcome=outcome,
        regressor="offer",
        term="itt",
        method="trial_itt_ancova",
        cov_type=cov_type,
        level=level,
        diagnostics=diagnostics,
    )


def cace_2sls(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: Column,
    accepted: Column,
    baseline: Column | None = None,
    stratum: Column | None = None,
    covariates: Sequence[str] = (),
    offer_level: object | None = None,
    level: float = 0.95,
) -> EstimationResult:
    """Complier-average causal effect of accepting, by 2SLS (term ``cace``).

    Acceptance is instrumented by the randomised offer with the same adjustment as the ITT;
    heteroskedasticity-robust SEs (linearmodels ``robust``, debiased: t(n - k)). Diagnostics
    carry the first-stage F and partial R2 of the instrument and the acceptance rates by arm.
    """
    frame, design = _prepare(
        data,
        outcome=outcome,
        arm=arm,
        accepted=accepted,
        baseline=baseline,
        stratum=stratum,
        covariates=covariates,
        offer_level=offer_level,
    )
    res = IV2SLS(frame[outcome].astype(float), design, frame[["accepted"]], frame[["offer"]]).fit(
        cov_type="robust", debiased=True
    )
    first = res.first_stage.diagnostics.loc["accepted"]
    row = inference_row(
        "cace",
        float(res.params["accepted"]),
        float(res.std_errors["accepted"]),
        df=float(res.df_resid),
        level=level,
    )
    tidy = tidy_frame(
        [row],
        n_obs=int(res.nobs),
        n_clusters=pd.NA,
        method="trial_cace_2sls",
        se_type="heteroskedasticity-robust (2SLS, debiased)",
        scale="identity",
    )
    by_arm = frame.groupby("offer")["accepted"].mean()
    diagnostics: dict[str, float | int | str] = {
        "first_stage_f": float(first["f.stat"]),
        "first_stage_partial_r2": float(first["partial.rsquared"]),
        "acceptance_offer": float(by_arm.get(1.0, np.nan)),
        "acceptance_control": float(by_arm.get(0.0, np.nan)),
        "n_offer": int(frame["offer"].sum()),
        "n_control": int((1 - frame["offer"]).sum()),
    }
    return EstimationResult(method="trial_cace_2sls", tidy=tidy, diagnostics=diagnostics)


def per_protocol(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: Column,
    accepted: Column,
    baseline: Column | None = None,
    stratum: Column | None = None,
    covariates: Sequence[str] = (),
    offer_level: object | None = None,
    cov_type: str = "HC1",
    level: float = 0.95,
) -> EstimationResult:
    """Naive per-protocol contrast: accepters in the offer arm against the control arm
    (decliners dropped), term ``per_protocol``. Biased when acceptance is selective."""
    frame, design = _prepare(
        data,
        outcome=outcome,
        arm=arm,
        accepted=accepted,
        baseline=baseline,
        stratum=stratum,
        covariates=covariates,
        offer_level=offer_level,
    )
    keep = (frame["offer"] == 0) | (frame["accepted"] == 1)
    diagnostics = {
        "n_accepters": int((keep & (frame["offer"] == 1)).sum()),
        "n_decliners_dropped": int((~keep).sum()),
    }
    return _ols_contrast(
        frame[keep],
        design[keep],
        outcome=outcome,
        regressor="offer",
        term="per_protocol",
        method="trial_per_protocol",
        cov_type=cov_type,
        level=level,
        diagnostics=diagnostics,
    )


def as_treated(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: Column,
    accepted: Column,
    baseline: Column | None = None,
    stratum: Column | None = None,
    covariates: Sequence[str] = (),
    offer_level: object | None = None,
    cov_type: str = "HC1",
    level: float = 0.95,
) -> EstimationResult:
    """Naive as-treated contrast: accepters against everyone else (controls and decliners),
    term ``as_treated``. Ignores the randomisation, so biased under selective uptake."""
    frame, design = _prepare(
        data,
        outcome=outcome,
        arm=arm,
        accepted=accepted,
        baseline=baseline,
        stratum=stratum,
        covariates=covariates,
        offer_level=offer_level,
    )
    diagnostics = {
        "n_accepters": int(frame["accepted"].sum()),
        "n_not_treated": int((1 - frame["accepted"]).sum()),
    }
    return _ols_contrast(
        frame,
        design,
        outcome=outcome,
        regressor="accepted",
        term="as_treated",
        method="trial_as_treated",
        cov_type=cov_type,
        level=level,
        diagnostics=diagnostics,
    )


def _filled(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Baseline columns with each gap filled by the column mean plus a ``<col>_missing`` 0/1
    column, so people with a missing baseline stay in the randomised set.

    In a randomised trial this missing-indicator adjustment is unbiased for the treatment
    effect because baseline values are independent of arm (White & Thompson 2005, Stat Med
    24:993-1007); it is used here for baselines, never for the outcome.
    """
    design = covariate_design(frame, columns)
    parts = [design]
    for col in [c for c in design.columns if design[c].isna().any()]:
        gap = design[col].isna()
        design[col] = design[col].fillna(design[col].mean())
        parts.append(gap.astype(float).to_frame(f"{col}_missing"))
    return pd.concat(parts, axis=1)


def _conclusion(row: Mapping[str, Any]) -> int:
    """+1 / -1 when the CI lies above / below 0, 0 when it includes 0."""
    return 1 if row["ci_low"] > 0 else -1 if row["ci_high"] < 0 else 0


def itt_ipw_delta(
    data: pd.DataFrame,
    *,
    outcome: str,
    arm: Column,
    deltas: Sequence[float],
    baseline: Column | None = None,
    stratum: Column | None = None,
    covariates: Sequence[str] = (),
    response_covariates: Columns = (),
    response_by_arm: bool = True,
    delta_arm: Literal["offer", "control", "both"] = "offer",
    offer_level: object | None = None,
    level: float = 0.95,
) -> EstimationResult:
    """ITT ANCOVA with missing follow-up handled by inverse-probability-of-response weighting
    under MAR, and a delta-adjusted (MNAR) tipping-point analysis.

    Why: the complete-case ANCOVA (term ``itt_complete_case``, the primary's fit) is unbiased
    only when follow-up is missing completely at random given baseline and stratum. Under MAR
    given the arm, the baselines and ``response_covariates``, a logistic model for "follow-up
    observed" fitted on every randomised person gives weights 1 / p(observed), and the weighted
    ANCOVA of the responders (term ``itt_ipw``) estimates the ITT of everyone randomised
    (Seaman & White 2013, Stat Methods Med Res 22:278-295). With ``response_by_arm`` every
    predictor also enters interacted with the arm (one response model per arm), since the
    reasons for missing follow-up can differ between people offered coaching and controls.
    Missing baselines are filled with a missing indicator (:func:`_filled`), so nobody
    randomised is dropped for them.

    The SE is the stacked M-estimation sandwich of the response model's score equations with
    the weighted least-squares equations (HC1-type n / (n - p) factor), so the weights'
    estimation is reflected (Lunceford & Davidian 2004, Stat Med 23:2937-2960); the HC1 SE of
    the weighted fit taking the weights as known is the diagnostic ``se_weights_known_hc1``.

    MNAR: the missing outcomes in ``delta_arm`` are taken to be their MAR-expected value plus
    delta (a pattern-mixture model; Cro et al. 2020, Stat Med 39:2815-2842; White, Horton,
    Carpenter & Pocock 2011, BMJ 342:d40; Carpenter & Kenward 2013, Multiple Imputation and its
    Application). With the arm randomised, the ANCOVA's arm coefficient then moves, in the
    population, by delta times the share missing in the offer arm, minus delta times the share
    missing in the control arm when that arm is shifted: what delta-based imputation gives on
    average. The shift is applied to the stacked estimate, so its SE carries the shares'
    sampling error. One row per delta
    (term ``itt_delta_<delta>``); the diagnostics ``tipping_point`` (the grid delta of
    smallest |delta| whose CI conclusion differs from the MAR one: excluding 0 above, below,
    or including it) and ``tipping_point_exact`` (the root of the CI bound between 0 and it).
    """
    grid = [float(d) + 0.0 for d in deltas]  # + 0.0 turns -0.0 into 0.0, so one term itt_delta_0
    if not grid or len(set(grid)) != len(grid):
        raise ValueError("deltas must be a non-empty list of distinct numbers")
    if delta_arm not in ("offer", "control", "both"):
        raise ValueError(f"delta_arm must be offer, control or both, not {delta_arm!r}")
    keys = [arm, *([stratum] if stratum else [])]
    baselines = [*([baseline] if baseline else []), *covariates]
    cols = list(dict.fromkeys([outcome, *keys, *baselines, *response_covariates]))
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"columns {missing} not in data; columns: {list(data.columns)}")
    frame = data.loc[:, cols].reset_index(drop=True)
    if frame[keys].isna().any().any():
        raise ValueError(f"{keys} must be complete: they define who was randomised to what")
    offer = indicator(frame[arm], offer_level, arm).to_numpy()
    if len(np.unique(offer)) < 2:
        raise ValueError("both arms are needed")
    observed = frame[outcome].notna().to_numpy()
    strata = (
        [
            pd.get_dummies(
                frame[stratum].astype(str),
                prefix=stratum,
                prefix_sep="=",
                drop_first=True,
                dtype=float,
            )
        ]
        if stratum
        else []
    )
    adjust = pd.concat(
        [
            pd.DataFrame({"itt": offer, "Intercept": 1.0}, index=frame.index),
            _filled(frame, baselines),
            *strata,
        ],
        axis=1,
    )
    extra = _filled(frame, [c for c in response_covariates if c not in baselines])
    response_design = pd.concat([adjust, extra], axis=1)
    if response_by_arm:
        by_arm = response_design.drop(columns=["itt", "Intercept"]).mul(offer, axis=0)
        response_design = pd.concat([response_design, by_arm.add_suffix(":itt")], axis=1)
    # A missing indicator is kept only where it is estimable: in the response model when the
    # people with that gap include responders and non-responders (else it separates), in the
    # outcome model when some responders have the gap.
    gaps = [c for c in response_design.columns if "_missing" in c]
    response_design = response_design.drop(
        columns=[c for c in gaps if observed[response_design[c] == 1].all()]
        + [c for c in gaps if not observed[response_design[c] == 1].any()]
    )
    adjust = adjust.drop(
        columns=[c for c in gaps if c in adjust and not observed[adjust[c] == 1].any()]
    )
    response = sm.GLM(observed.astype(float), response_design, family=sm.families.Binomial()).fit()
    p = response.fittedvalues.to_numpy()
    w = np.where(observed, 1 / p, 0.0)
    y = np.where(observed, frame[outcome].to_numpy(dtype=float, na_value=np.nan), 0.0)
    wls = sm.WLS(y[observed], adjust[observed], weights=w[observed]).fit(cov_type="HC1")

    # Stacked estimating equations, per person: logistic score (q), weighted LS (k) and the
    # share missing in each arm (2), all solved at the estimates above.
    V, D = response_design.to_numpy(), adjust.to_numpy()
    n, q, k = len(frame), V.shape[1], D.shape[1]
    resid = np.where(observed, y - D @ wls.params.to_numpy(), 0.0)
    arms = np.column_stack([offer, 1 - offer])
    shares = ((1 - observed)[:, None] * arms).sum(0) / arms.sum(0)
    psi = np.hstack(
        [
            V * (observed - p)[:, None],
            D * (w * resid)[:, None],
            arms * ((1 - observed)[:, None] - shares),
        ]
    )
    jac = np.zeros((q + k + 2, q + k + 2))
    jac[:q, :q] = -(V * (p * (1 - p))[:, None]).T @ V
    jac[q : q + k, :q] = -(D * (w * resid * (1 - p))[:, None]).T @ V
    jac[q : q + k, q : q + k] = -(D * w[:, None]).T @ D
    jac[q + k :, q + k :] = -np.diag(arms.sum(0))
    bread = np.linalg.inv(jac)
    cov = bread @ (psi.T @ psi) @ bread.T * n / (n - q - k)
    dof = float(observed.sum() - k)

    cc_frame, cc_design = _prepare(
        data,
        outcome=outcome,
        arm=arm,
        accepted=None,
        baseline=baseline,
        stratum=stratum,
        covariates=covariates,
        offer_level=offer_level,
    )
    cc = _ols_contrast(
        cc_frame,
        cc_design,
        outcome=outcome,
        regressor="offer",
        term="itt_complete_case",
        method="trial_itt_ipw",
        cov_type="HC1",
        level=level,
        diagnostics={},
    ).tidy
    shift = {"offer": (1.0, 0.0), "control": (0.0, -1.0), "both": (1.0, -1.0)}[delta_arm]
    gradients = {"itt_ipw": np.eye(q + k + 2)[q]}
    for d in grid:
        gradients[f"itt_delta_{d:g}"] = np.eye(q + k + 2)[q] + d * np.r_[np.zeros(q + k), shift]
    theta = np.r_[response.params.to_numpy(), wls.params.to_numpy(), shares]
    rows = [
        inference_row(term, float(g @ theta), float(np.sqrt(g @ cov @ g)), df=dof, level=level)
        for term, g in gradients.items()
    ]
    common = {"n_clusters": pd.NA, "method": "trial_itt_ipw", "scale": "identity"}
    tidy = pd.concat(
        [
            cc,
            tidy_frame(
                rows,
                n_obs=int(observed.sum()),
                se_type="stacked M-estimation sandwich (IPW, response model estimated)",
                **common,
            ),
        ],
        ignore_index=True,
    )
    tidy["delta"] = [np.nan, np.nan, *grid]

    mar = _conclusion(rows[0])
    changed = [(abs(d), d) for d, r in zip(grid, rows[1:], strict=True) if _conclusion(r) != mar]
    tipping = min(changed)[1] if changed else float("nan")
    exact = float("nan")
    if changed:
        sign = 1 if mar == 1 or _conclusion(rows[grid.index(tipping) + 1]) == 1 else -1
        g0, g1 = gradients["itt_ipw"], np.r_[np.zeros(q + k), shift]
        crit = float(stats.t.ppf(0.5 + level / 2, dof))

        def bound(d: float) -> float:
            g = g0 + d * g1
            return float(g @ theta - sign * crit * np.sqrt(g @ cov @ g))

        exact = float(optimize.brentq(bound, 0.0, tipping))
    weights = w[observed]
    diagnostics: dict[str, float | int | str] = {
        "n_randomised": n,
        "n_observed": int(observed.sum()),
        "n_complete_case": int(cc.loc[0, "n_obs"]),
        "share_missing_offer": float(shares[0]),
        "share_missing_control": float(shares[1]),
        "delta_arm": delta_arm,
        "tipping_point": tipping,
        "tipping_point_exact": exact,
        "mar_conclusion": {1: "above 0", -1: "below 0", 0: "includes 0"}[mar],
        "response_model_converged": int(response.converged),
        "min_p_observed": float(p.min()),
        "max_weight": float(weights.max()),
        "effective_sample_size": float(weights.sum() ** 2 / (weights**2).sum()),
        "se_weights_known_hc1": float(wls.bse["itt"]),
    }
    table = pd.DataFrame(
        {"term": response.params.index, "estimate": response.params, "std_error": response.bse}
    ).reset_index(drop=True)
    return EstimationResult(
        method="trial_itt_ipw",
        tidy=tidy,
        tables={"response_model": table},
        diagnostics=diagnostics,
    )
