"""Missing follow-up in the trial within the cohort: IPW under MAR and the delta-adjusted
tipping point (analysis.trial.itt_ipw_delta), on simulated trials where the missingness
mechanism, and so the right answer, is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis.protocol import load_protocols
from analysis.trial import itt_ancova, itt_ipw_delta

EFFECT = 0.3
ARGS = {"outcome": "follow_up", "arm": "arm", "baseline": "baseline", "stratum": "stratum"}
GRID = [round(d, 2) for d in np.arange(-1.0, 1.01, 0.1)]


def simulate_mar(
    n: int, *, seed: int, shift_offer: float = 0.0, baseline_gaps: float = 0.1
) -> pd.DataFrame:
    """A randomised trial whose follow-up is missing at random given an auxiliary baseline
    covariate ``aux`` that the ANCOVA does not adjust for, in opposite directions by arm:
    offered people with a high ``aux`` (and so a high outcome) respond more, controls less, so
    the complete-case ANCOVA is biased upwards. ``shift_offer`` makes it MNAR: the offered
    people who did not respond have outcomes ``shift_offer`` above their MAR expectation
    (column ``follow_up_full`` holds every outcome). A share ``baseline_gaps`` of baselines
    is missing completely at random."""
    rng = np.random.default_rng(seed)
    stratum = rng.choice(["a", "b"], size=n)
    offer = (rng.random(n) < 0.5).astype(int)
    aux = rng.normal(size=n)
    baseline = rng.normal(size=n)
    y = (
        1.0
        + EFFECT * offer
        + 0.5 * baseline
        + 0.8 * aux
        + 0.4 * (stratum == "b")
        + rng.normal(scale=0.7, size=n)
    )
    responded = rng.random(n) < 1 / (1 + np.exp(-(0.6 + 1.2 * aux * (2 * offer - 1))))
    full = y + shift_offer * (~responded) * offer
    return pd.DataFrame(
        {
            "stratum": stratum,
            "arm": offer,
            "aux": aux,
            "baseline": np.where(rng.random(n) < baseline_gaps, np.nan, baseline),
            "follow_up": np.where(responded, y, np.nan),
            "follow_up_full": full,
        }
    )


def test_weights_and_estimate_match_statsmodels_by_hand() -> None:
    """Point estimate = statsmodels WLS with weights 1 / p from a statsmodels logit fitted in
    each arm; the weights-known SE is that fit's HC1; the stacked SE is the M-estimation
    sandwich built here with a numerical Jacobian."""
    df = simulate_mar(500, seed=3, baseline_gaps=0.0)
    res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[-0.5, 0.5])
    r = df["follow_up"].notna().to_numpy()
    strat = (df["stratum"] == "b").astype(float)
    design = pd.DataFrame(
        {"itt": df["arm"], "Intercept": 1.0, "baseline": df["baseline"], "stratum": strat}
    )
    v = design.assign(aux=df["aux"])
    p = np.empty(len(df))
    for arm in (0, 1):
        rows = (df["arm"] == arm).to_numpy()
        fit = sm.Logit(r[rows].astype(float), v.loc[rows].drop(columns="itt")).fit(disp=0)
        p[rows] = fit.predict(v.loc[rows].drop(columns="itt"))
    wls = sm.WLS(df.loc[r, "follow_up"], design[r], weights=1 / p[r]).fit(cov_type="HC1")
    assert res.estimate("itt_ipw") == pytest.approx(wls.params["itt"], rel=1e-8)
    assert res.diagnostics["se_weights_known_hc1"] == pytest.approx(wls.bse["itt"], rel=1e-8)
    assert res.diagnostics["max_weight"] == pytest.approx((1 / p[r]).max(), rel=1e-6)
    assert res.diagnostics["n_randomised"] == 500
    assert res.row("itt_ipw")["n_obs"] == r.sum()

    # The stacked sandwich, with the response model written as one logit with arm interactions.
    vv = pd.concat([v, v.drop(columns=["itt", "Intercept"]).mul(df["arm"], axis=0)], axis=1)
    big_v, d_mat = vv.to_numpy(), design.to_numpy()
    y = df["follow_up"].fillna(0).to_numpy()
    arms = np.column_stack([df["arm"], 1 - df["arm"]]).astype(float)
    q, k = big_v.shape[1], d_mat.shape[1]

    def psi(theta: np.ndarray) -> np.ndarray:
        alpha, beta, share = theta[:q], theta[q : q + k], theta[q + k :]
        pr = 1 / (1 + np.exp(-big_v @ alpha))
        return np.hstack(
            [
                big_v * (r - pr)[:, None],
                d_mat * (r / pr * (y - d_mat @ beta))[:, None],
                arms * ((1 - r)[:, None] - share),
            ]
        )

    alpha = sm.Logit(r.astype(float), big_v).fit(disp=0).params
    shares = ((1 - r)[:, None] * arms).sum(0) / arms.sum(0)
    theta = np.r_[alpha, wls.params.to_numpy(), shares]
    assert np.abs(psi(theta).sum(0)).max() < 1e-6
    eps = 1e-6
    jac = np.column_stack(
        [
            (psi(theta + eps * e).sum(0) - psi(theta - eps * e).sum(0)) / (2 * eps)
            for e in np.eye(len(theta))
        ]
    )
    bread = np.linalg.inv(jac)
    n = len(df)
    cov = bread @ (psi(theta).T @ psi(theta)) @ bread.T * n / (n - q - k)
    assert res.std_error("itt_ipw") == pytest.approx(np.sqrt(cov[q, q]), rel=1e-5)
    g = np.eye(len(theta))[q] + 0.5 * np.r_[np.zeros(q + k), 1.0, 0.0]
    assert res.std_error("itt_delta_0.5") == pytest.approx(np.sqrt(g @ cov @ g), rel=1e-5)


def _monte_carlo(reps: int, n: int) -> pd.DataFrame:
    out = []
    for seed in range(reps):
        df = simulate_mar(n, seed=1000 + seed)
        res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[0.0])
        out.append(res.tidy.set_index("term").loc[["itt_complete_case", "itt_ipw"]])
    return pd.concat(out)


def _check_monte_carlo(draws: pd.DataFrame, *, bias_tol: float, coverage_tol: float) -> None:
    cc, ipw = draws.loc["itt_complete_case"], draws.loc["itt_ipw"]
    bias_cc, bias_ipw = cc["estimate"].mean() - EFFECT, ipw["estimate"].mean() - EFFECT
    # The complete-case ANCOVA is biased upwards by construction; IPW removes the bias.
    assert bias_cc > 0.2
    assert abs(bias_ipw) < bias_tol
    assert abs(bias_ipw) < abs(bias_cc) / 10
    covered = ((ipw["ci_low"] <= EFFECT) & (ipw["ci_high"] >= EFFECT)).mean()
    assert abs(covered - 0.95) < coverage_tol
    # The stacked SE tracks the spread of the estimates across datasets.
    assert ipw["std_error"].mean() == pytest.approx(ipw["estimate"].std(), rel=0.15)


def test_ipw_removes_mar_bias_and_covers() -> None:
    """200 datasets of n = 400: the MC SE of a 95% coverage is 0.015, so +-0.045 is 3 MC SEs;
    the MC SE of the mean IPW estimate is 0.011 (empirical SE 0.16), so 0.045 is 4 (seeded:
    mean bias 0.024, complete-case 0.59, coverage 0.94)."""
    _check_monte_carlo(_monte_carlo(200, 400), bias_tol=0.045, coverage_tol=0.045)


@pytest.mark.slow
def test_ipw_removes_mar_bias_and_covers_large() -> None:
    """1,000 datasets of n = 1,000: MC SE of coverage 0.007 and of the mean estimate 0.003
    (tolerances 3 MC SEs; seeded: bias 0.003, coverage 0.949; about 15 s)."""
    _check_monte_carlo(_monte_carlo(1000, 1000), bias_tol=0.01, coverage_tol=0.021)


def test_delta_zero_is_mar_and_estimate_moves_by_share_missing() -> None:
    df = simulate_mar(600, seed=5)
    kw = {**ARGS, "response_covariates": ["aux"], "deltas": GRID}
    for delta_arm, slope in (
        ("offer", lambda d: d["share_missing_offer"]),
        ("control", lambda d: -d["share_missing_control"]),
        ("both", lambda d: d["share_missing_offer"] - d["share_missing_control"]),
    ):
        res = itt_ipw_delta(df, **kw, delta_arm=delta_arm)
        mar = res.row("itt_ipw")
        zero = res.row("itt_delta_0")
        for col in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
            assert zero[col] == pytest.approx(mar[col], rel=1e-12)
        rows = res.tidy[res.tidy["term"].str.startswith("itt_delta_")]
        assert list(rows["delta"]) == GRID
        moved = rows["estimate"].to_numpy() - mar["estimate"]
        np.testing.assert_allclose(moved, slope(res.diagnostics) * rows["delta"], atol=1e-12)
    offered = df["arm"] == 1
    share = df.loc[offered, "follow_up"].isna().mean()
    assert res.diagnostics["share_missing_offer"] == pytest.approx(share, rel=1e-12)


def test_delta_shift_agrees_with_imputing_mar_prediction_plus_delta() -> None:
    """Imputing each missing outcome as its MAR prediction (a regression on the responders of
    each arm, with the auxiliary covariate) plus delta in the offer arm, then fitting the
    ANCOVA to the completed data, moves the estimate by nearly the same amount as the shift
    (exactly so in the population; here 0.18700 against 0.18699)."""
    df = simulate_mar(4000, seed=8, baseline_gaps=0.0)
    delta = 0.5
    res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[delta])
    prediction = df["follow_up"].copy()
    for arm in (0, 1):
        rows = df["arm"] == arm
        x = sm.add_constant(
            pd.get_dummies(df.loc[rows, ["baseline", "aux", "stratum"]], dtype=float)
        ).drop(columns="stratum_a")
        seen = df.loc[rows, "follow_up"].notna()
        fit = sm.OLS(df.loc[rows, "follow_up"][seen], x[seen]).fit()
        prediction[rows & df["follow_up"].isna()] = fit.predict(x[~seen])
    gap = df["follow_up"].isna() & (df["arm"] == 1)
    mar = itt_ancova(df.assign(follow_up=prediction), **ARGS).estimate("itt")
    shifted = itt_ancova(df.assign(follow_up=prediction + delta * gap), **ARGS).estimate("itt")
    assert shifted - mar == pytest.approx(
        res.estimate(f"itt_delta_{delta:g}") - res.estimate("itt_ipw"), abs=1e-3
    )


def test_delta_recovers_the_truth_under_that_mnar_mechanism() -> None:
    """Where the offered non-responders really are 0.5 above their MAR expectation, the MAR
    estimate misses the full-data ITT and the delta = 0.5 row recovers it."""
    df = simulate_mar(20000, seed=9, shift_offer=0.5, baseline_gaps=0.0)
    res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[0.5])
    truth = itt_ancova(df.assign(follow_up=df["follow_up_full"]), **ARGS).estimate("itt")
    row = res.row("itt_delta_0.5")
    assert row["ci_low"] <= truth <= row["ci_high"]
    assert not res.row("itt_ipw")["ci_low"] <= truth <= res.row("itt_ipw")["ci_high"]


def _scan(tidy: pd.DataFrame, mar: int) -> float:
    """Direct scan: of the deltas whose CI conclusion differs from the MAR one, the one of
    smallest |delta| (the negative one on a tie)."""
    rows = tidy[tidy["term"].str.startswith("itt_delta_")]
    conclusion = np.where(rows["ci_low"] > 0, 1, np.where(rows["ci_high"] < 0, -1, 0))
    changed = rows.loc[conclusion != mar, "delta"]
    return float(sorted(changed, key=lambda d: (abs(d), d))[0]) if len(changed) else np.nan


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_tipping_point_matches_direct_scan(seed: int) -> None:
    df = simulate_mar(400, seed=seed)
    res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=GRID)
    mar_row = res.row("itt_ipw")
    mar = 1 if mar_row["ci_low"] > 0 else -1 if mar_row["ci_high"] < 0 else 0
    tipping = res.diagnostics["tipping_point"]
    assert tipping == _scan(res.tidy, mar)
    # The exact tipping point lies between 0 and the grid's, where the CI bound is 0.
    exact = res.diagnostics["tipping_point_exact"]
    assert 0 < exact / tipping <= 1
    at_exact = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[exact])
    bounds = at_exact.tidy.iloc[-1][["ci_low", "ci_high"]].astype(float)
    assert min(abs(bounds)) == pytest.approx(0, abs=1e-8)


def test_no_tipping_point_within_the_grid_is_nan() -> None:
    df = simulate_mar(400, seed=11)
    res = itt_ipw_delta(df, **ARGS, response_covariates=["aux"], deltas=[0.0, 0.001])
    assert np.isnan(res.diagnostics["tipping_point"])
    assert np.isnan(res.diagnostics["tipping_point_exact"])


def test_validation() -> None:
    df = simulate_mar(200, seed=1)
    with pytest.raises(ValueError, match="distinct"):
        itt_ipw_delta(df, **ARGS, deltas=[0.1, 0.1])
    with pytest.raises(ValueError, match="delta_arm"):
        itt_ipw_delta(df, **ARGS, deltas=[0.1], delta_arm="neither")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be complete"):
        itt_ipw_delta(df.assign(stratum=df["stratum"].where(df.index > 0)), **ARGS, deltas=[0])
    with pytest.raises(KeyError):
        itt_ipw_delta(df, **ARGS, deltas=[0.1], response_covariates=["nope"])


def test_shipped_twic_protocols_carry_the_missing_data_sensitivity() -> None:
    protocols = {p.id: p for p in load_protocols(Path("protocols"))}
    for pid in ("twic_eq5d", "twic_selfman"):
        analyses = {a.analysis_id: a for a in protocols[pid].analyses()}
        primary, mar = analyses["primary"], analyses["missing_data_mar"]
        assert primary.method.name == "trial_itt"
        assert mar.method.name == "trial_itt_ipw"
        for option in ("arm", "offer_level", "baseline", "stratum"):
            assert mar.method.options[option] == primary.method.options[option]
        assert 0.0 in mar.method.options["deltas"]
        assert mar.method.options["response_covariates"]
    for pid in ("twic_eq5d", "twic_selfman", "twic_emergency_admissions"):
        notes = protocols[pid].notes
        assert "exclusion restriction" in notes.lower() and "monotonicity" in notes.lower()
