"""Trial within the cohort (cmRCT): intention-to-treat, complier-average and naive contrasts.

In a cohort multiple randomised controlled trial only people randomised to the offer are
approached, and some decline. The randomised contrast (ITT, term ``itt``) estimates the effect
of the offer; two-stage least squares with the offer instrumenting acceptance estimates the
effect of accepting among compliers (CACE, term ``cace``), which with one-sided non-compliance
is the ITT divided by the acceptance rate (Wald estimator). Per-protocol (accepters against
controls, term ``per_protocol``) and as-treated (accepters against everyone else, term
``as_treated``) contrasts are provided only to show how self-selection biases them.

All rows are mean differences on the outcome scale (``scale = identity``) with
heteroskedasticity-robust SEs and a t(n - k) reference; every model adjusts for the baseline
outcome (ANCOVA) and the randomisation stratum (fixed effects) when those are given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from linearmodels.iv import IV2SLS

from analysis.columns import Column
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
