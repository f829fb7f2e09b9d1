"""DiD: TWFE against R plm, Callaway & Sant'Anna against the R did package's published output,
event study, and simulations where TWFE is biased and the group-time estimator is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.did import callaway_santanna, event_path, event_study, twfe
from tests.reference_data import assert_r_fixture_regenerates, reference_csv

MPDTA = reference_csv("did_mpdta.csv")
FIXTURES = Path(__file__).parent / "fixtures" / "r_did"
PLM = FIXTURES / "twfe_mpdta_plm.csv"


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    d = pd.read_csv(MPDTA)
    d["treated_post"] = ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])).astype(float)
    d["lpop_trend"] = d["lpop"] * (d["year"] - 2003)
    return d


@pytest.fixture(scope="module")
def cs_mpdta(mpdta: pd.DataFrame):
    return callaway_santanna(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        n_boot=999,
        seed=7,
    )


# ----------------------------------------------------------------------------- TWFE vs R plm


@pytest.mark.parametrize("spec,covariates", [("no_covariates", []), ("lpop_trend", ["lpop_trend"])])
def test_twfe_matches_plm_fixture(mpdta: pd.DataFrame, spec: str, covariates: list[str]) -> None:
    """tests/fixtures/r_did/make_twfe_fixture.R (plm within twoways, vcovHC arellano).

    Point estimates to 1e-6 relative. SEs: our ``small_sample=False`` is plm's HC0 exactly
    (1e-6); ``small_sample=True`` is plm's "sss", G/(G-1) * (n-1)/(n-k) (Stata's CR1), also
    to 1e-6 (issue 16, point 10: the docstring had said n/(n-k)).
    """
    ref = pd.read_csv(PLM)
    ref = ref[ref["spec"] == spec].set_index("term")
    raw = twfe(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        treatment="treated_post",
        covariates=covariates,
        small_sample=False,
    )
    sss = twfe(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        treatment="treated_post",
        covariates=covariates,
    )
    for term in ref.index:
        assert raw.estimate(term) == pytest.approx(ref.loc[term, "estimate"], rel=1e-6)
        assert raw.std_error(term) == pytest.approx(ref.loc[term, "se_hc0"], rel=1e-6)
        assert sss.std_error(term) == pytest.approx(ref.loc[term, "se_sss"], rel=1e-6)
    assert int(raw.tidy["n_clusters"].iloc[0]) == 500
    assert int(raw.tidy["n_obs"].iloc[0]) == 2500


@pytest.mark.needs_r
def test_plm_fixture_regenerates(tmp_path: Path) -> None:
    assert_r_fixture_regenerates(
        FIXTURES / "make_twfe_fixture.R", [MPDTA], PLM, ["estimate", "se_hc0"], tmp_path / "plm.csv"
    )


def test_twfe_cluster_column(mpdta: pd.DataFrame) -> None:
    d = mpdta.assign(state=mpdta["countyreal"] // 1000)
    res = twfe(
        d, outcome="lemp", unit="countyreal", time="year", treatment="treated_post", cluster="state"
    )
    assert int(res.tidy["n_clusters"].iloc[0]) == d["state"].nunique()
    assert "state" in res.tidy["se_type"].iloc[0]


# -------------------------------------------------------- Callaway & Sant'Anna vs R did output

# R package did (Callaway & Sant'Anna 2021, J Econometrics 225:200-230), README.md of
# github.com/bcallaway11/did: att_gt(yname="lemp", gname="first.treat", idname="countyreal",
# tname="year", xformla=~1, data=mpdta, est_method="reg"), never-treated controls, varying base
# period. Printed to 4 decimals; the printed SEs are multiplier-bootstrap SEs (random, 1000 draws).
README_ATT_GT = {  # (g, t): (ATT, bootstrap SE)
    (2004, 2004): (-0.0105, 0.0241),
    (2004, 2005): (-0.0704, 0.0313),
    (2004, 2006): (-0.1373, 0.0380),
    (2004, 2007): (-0.1008, 0.0337),
    (2006, 2004): (0.0065, 0.0223),
    (2006, 2005): (-0.0028, 0.0196),
    (2006, 2006): (-0.0046, 0.0188),
    (2006, 2007): (-0.0412, 0.0202),
    (2007, 2004): (0.0305, 0.0154),
    (2007, 2005): (-0.0027, 0.0168),
    (2007, 2006): (-0.0311, 0.0190),
    (2007, 2007): (-0.0261, 0.0182),
}
# Same README: aggte(out, type="dynamic") and aggte(out, type="group").
README_DYNAMIC = {
    -3: 0.0305,
    -2: -0.0006,
    -1: -0.0245,
    0: -0.0199,
    1: -0.0510,
    2: -0.1373,
    3: -0.1008,
}
README_DYNAMIC_OVERALL = (-0.0772, 0.0196)
README_GROUP = {2004: -0.0797, 2006: -0.0229, 2007: -0.0261}
README_GROUP_OVERALL = (-0.031, 0.0123)  # printed to 3 decimals
# "P-value for pre-test of parallel trends assumption: 0.16812" (analytic Wald, deterministic).
README_PRETEST_P = 0.16812
# Simple aggregation (did-basics vignette, aggte(type="simple")): -0.0400. It is also implied by
# the README cells: cohort-size-weighted mean of post cells (20, 40, 131 counties) = -0.03997.
VIGNETTE_SIMPLE = -0.0400


def test_cs_att_gt_match_r_did(cs_mpdta) -> None:
    res = cs_mpdta
    for (g, t), (att, boot_se) in README_ATT_GT.items():
        row = res.row(f"att_gt[g={g},t={t}]")
        assert row["estimate"] == pytest.approx(att, abs=5e-5 + 1e-12)
        # Analytic SE against R's printed bootstrap SE: Monte Carlo noise of 1000 draws plus the
        # IQR-based bootstrap SE; agree within 15%.
        assert row["std_error"] == pytest.approx(boot_se, rel=0.15)
    assert res.diagnostics["pretest_p"] == pytest.approx(README_PRETEST_P, abs=5e-6)
    assert res.diagnostics["pretest_df"] == 5


def test_cs_aggregations_match_r_did(cs_mpdta) -> None:
    res = cs_mpdta
    for e, att in README_DYNAMIC.items():
        assert res.estimate(f"event[e={e}]") == pytest.approx(att, abs=5e-5)
    assert res.estimate("dynamic_overall") == pytest.approx(README_DYNAMIC_OVERALL[0], abs=5e-5)
    assert res.std_error("dynamic_overall") == pytest.approx(README_DYNAMIC_OVERALL[1], rel=0.15)
    for g, att in README_GROUP.items():
        assert res.estimate(f"group[g={g}]") == pytest.approx(att, abs=5e-5)
    assert res.estimate("group_overall") == pytest.approx(README_GROUP_OVERALL[0], abs=5e-4)
    assert res.std_error("group_overall") == pytest.approx(README_GROUP_OVERALL[1], rel=0.15)
    assert res.estimate("simple") == pytest.approx(VIGNETTE_SIMPLE, abs=5e-5)
    # calendar: mean over t of the cohort-share-weighted cells of that calendar year
    cal = [res.estimate(f"calendar[t={t}]") for t in (2004, 2005, 2006, 2007)]
    assert res.estimate("calendar_overall") == pytest.approx(np.mean(cal))


def test_cs_bootstrap(cs_mpdta, mpdta: pd.DataFrame) -> None:
    tidy = cs_mpdta.tidy
    est = tidy[tidy["aggregation"].isin(["att_gt", "dynamic", "simple", "group_overall"])]
    ratio = est["boot_se"] / est["std_error"]
    assert ratio.between(0.85, 1.2).all()  # bootstrap and analytic SEs agree
    crit = cs_mpdta.diagnostics["uniform_crit_dynamic"]
    assert 1.96 < crit < 3.5
    dyn = tidy[tidy["aggregation"] == "dynamic"]
    width = dyn["uniform_ci_high"] - dyn["uniform_ci_low"]
    assert np.allclose(width, 2 * crit * dyn["boot_se"])
    again = callaway_santanna(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        n_boot=999,
        seed=7,
    )
    pd.testing.assert_series_equal(again.tidy["boot_se"], tidy["boot_se"])  # fixed seed
    rad = callaway_santanna(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        n_boot=999,
        boot_weights="rademacher",
        seed=7,
    )
    assert rad.std_error("simple") == pytest.approx(cs_mpdta.std_error("simple"))
    assert rad.row("simple")["boot_se"] == pytest.approx(cs_mpdta.std_error("simple"), rel=0.15)


def test_cs_not_yet_treated_cell_by_hand(mpdta: pd.DataFrame) -> None:
    res = callaway_santanna(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        control_group="notyet",
        bootstrap=False,
    )
    w = mpdta.pivot(index="countyreal", columns="year", values="lemp")
    g = mpdta.groupby("countyreal")["first.treat"].first()
    dy = w[2005] - w[2003]
    # ATT(2004, 2005): controls are never treated plus cohorts 2006 and 2007 (not yet treated).
    by_hand = dy[g == 2004].mean() - dy[(g == 0) | (g > 2005)].mean()
    assert res.estimate("att_gt[g=2004,t=2005]") == pytest.approx(by_hand, rel=1e-12)
    # ATT(2006, 2006) with base 2005: only never-treated and 2007 are not yet treated.
    dy = w[2006] - w[2005]
    by_hand = dy[g == 2006].mean() - dy[(g == 0) | (g == 2007)].mean()
    assert res.estimate("att_gt[g=2006,t=2006]") == pytest.approx(by_hand, rel=1e-12)


def test_cs_universal_base_period(mpdta: pd.DataFrame) -> None:
    res = callaway_santanna(
        mpdta,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        base_period="universal",
        bootstrap=False,
    )
    assert "att_gt[g=2006,t=2005]" not in set(res.tidy["term"])  # the base cell, normalised
    w = mpdta.pivot(index="countyreal", columns="year", values="lemp")
    g = mpdta.groupby("countyreal")["first.treat"].first()
    dy = w[2003] - w[2005]
    by_hand = dy[g == 2006].mean() - dy[g == 0].mean()
    assert res.estimate("att_gt[g=2006,t=2003]") == pytest.approx(by_hand, rel=1e-12)
    path = event_path(res)
    assert path.loc[path["event_time"] == -1, "estimate"].item() == 0.0
    # Post-treatment cells do not depend on the base-period choice.
    varying = callaway_santanna(
        mpdta, outcome="lemp", unit="countyreal", time="year", cohort="first.treat", bootstrap=False
    )
    assert res.estimate("simple") == pytest.approx(varying.estimate("simple"))


def test_cs_cluster_and_anticipation(mpdta: pd.DataFrame) -> None:
    d = mpdta.assign(state=mpdta["countyreal"] // 1000)
    unit = callaway_santanna(
        d, outcome="lemp", unit="countyreal", time="year", cohort="first.treat", bootstrap=False
    )
    state = callaway_santanna(
        d,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        cluster="state",
        n_boot=499,
    )
    assert state.estimate("simple") == unit.estimate("simple")
    assert int(state.tidy["n_clusters"].iloc[0]) == d["state"].nunique()
    assert state.std_error("simple") > unit.std_error("simple")  # counties within states
    assert state.row("simple")["boot_se"] == pytest.approx(state.std_error("simple"), rel=0.2)
    ant = callaway_santanna(
        d,
        outcome="lemp",
        unit="countyreal",
        time="year",
        cohort="first.treat",
        anticipation=1,
        bootstrap=False,
    )
    # With one anticipation period the 2004 cohort has no clean pre-period and is dropped, and
    # post cells of cohort 2006 use 2004 as base.
    assert ant.diagnostics["n_dropped_treated_in_first_period"] == 20
    w = d.pivot(index="countyreal", columns="year", values="lemp")
    g = d.groupby("countyreal")["first.treat"].first()
    dy = w[2006] - w[2004]
    by_hand = dy[g == 2006].mean() - dy[g == 0].mean()
    assert ant.estimate("att_gt[g=2006,t=2006]") == pytest.approx(by_hand, rel=1e-12)


def test_cs_rejects_unbalanced(mpdta: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="balanced"):
        callaway_santanna(
            mpdta.iloc[1:], outcome="lemp", unit="countyreal", time="year", cohort="first.treat"
        )


# ------------------------------------------------------------------------------ event study


def _staggered(
    rng: np.random.Generator,
    n_units: int = 300,
    n_periods: int = 10,
    pretrend: float = 0.0,
    effect_slope: float = 0.5,
) -> tuple[pd.DataFrame, float]:
    """Staggered adoption with effects growing with exposure: effect = slope * (e + 1), e >= 0.

    Cohorts 4, 6 and 8 and never-treated units in equal shares; unit and period effects, with
    a cohort-specific pre-trend ``pretrend * (t - g)`` before adoption if asked. Returns the
    panel and the true simple ATT (mean effect over treated post-adoption observations).
    """
    cohorts = rng.choice([0, 4, 6, 8], size=n_units)
    alpha = rng.normal(0, 1, n_units) + 0.3 * (cohorts > 0)
    lam = np.linspace(0, 1.5, n_periods)
    unit, t = np.divmod(np.arange(n_units * n_periods), n_periods)
    t = t + 1
    g = cohorts[unit]
    e = t - g
    treated = (g > 0) & (e >= 0)
    eff = np.where(treated, effect_slope * (e + 1), 0.0)
    trend = np.where((g > 0) & (e < 0), pretrend * e, 0.0)
    y = alpha[unit] + lam[t - 1] + eff + trend + rng.normal(0, 0.5, unit.size)
    frame = pd.DataFrame({"unit": unit, "time": t, "cohort": g, "y": y, "d": treated.astype(float)})
    return frame, float(eff[treated].mean())


def test_event_study_binning_and_pretrend_test() -> None:
    rng = np.random.default_rng(11)
    clean, _ = _staggered(rng, effect_slope=0.0)
    res = event_study(
        clean, outcome="y", unit="unit", time="time", cohort="cohort", leads=3, lags=3
    )
    path = event_path(res)
    assert list(path["event_time"]) == list(range(-3, 4))
    assert path.loc[path["event_time"] == -1, "estimate"].item() == 0.0
    assert res.diagnostics["pretrend_df"] == 2
    assert res.diagnostics["pretrend_p"] > 0.01
    assert res.row("pretrend_wald")["p_value"] == res.diagnostics["pretrend_p"]
    trending, _ = _staggered(np.random.default_rng(12), pretrend=0.3, effect_slope=0.0)
    res = event_study(
        trending, outcome="y", unit="unit", time="time", cohort="cohort", leads=3, lags=3
    )
    assert res.diagnostics["pretrend_p"] < 1e-6
    unbinned = event_study(
        clean,
        outcome="y",
        unit="unit",
        time="time",
        cohort="cohort",
        leads=3,
        lags=3,
        bin_endpoints=False,
    )
    assert int(unbinned.tidy["n_obs"].iloc[0]) < len(clean)


# ------------------------------------------------------- demonstration and Monte Carlo studies


def test_twfe_biased_cs_recovers_truth_under_growing_effects() -> None:
    """Goodman-Bacon: with effects growing in exposure, TWFE uses already-treated units as
    controls and is biased downwards; the group-time estimator recovers the true ATT."""
    data, truth = _staggered(np.random.default_rng(5), n_units=600)
    tw = twfe(data, outcome="y", unit="unit", time="time", treatment="d")
    cs = callaway_santanna(
        data, outcome="y", unit="unit", time="time", cohort="cohort", bootstrap=False
    )
    assert abs(tw.estimate("d") - truth) > 5 * tw.std_error("d")
    assert abs(cs.estimate("simple") - truth) < 3 * cs.std_error("simple")
    dyn = event_path(cs)
    for e in range(0, 3):
        est = dyn.loc[dyn["event_time"] == e, "estimate"].item()
        assert est == pytest.approx(0.5 * (e + 1), abs=0.15)


def _did_monte_carlo(reps: int) -> dict[str, float]:
    rng = np.random.default_rng(2021)
    tw_err, cs_err, cs_cover = [], [], []
    for _ in range(reps):
        data, truth = _staggered(rng, n_units=200, n_periods=8)
        tw_err.append(
            twfe(data, outcome="y", unit="unit", time="time", treatment="d").estimate("d") - truth
        )
        row = callaway_santanna(
            data, outcome="y", unit="unit", time="time", cohort="cohort", bootstrap=False
        ).row("simple")
        cs_err.append(row["estimate"] - truth)
        cs_cover.append(row["ci_low"] <= truth <= row["ci_high"])
    return {
        "twfe_bias": float(np.mean(tw_err)),
        "cs_bias": float(np.mean(cs_err)),
        "cs_sd": float(np.std(cs_err)),
        "cs_coverage": float(np.mean(cs_cover)),
    }


def test_did_monte_carlo_fast() -> None:
    mc = _did_monte_carlo(30)
    assert mc["twfe_bias"] < -0.3
    assert abs(mc["cs_bias"]) < 0.5 * mc["cs_sd"]
    assert mc["cs_coverage"] >= 0.8


@pytest.mark.slow
def test_did_monte_carlo_slow() -> None:
    mc = _did_monte_carlo(250)
    assert mc["twfe_bias"] < -0.3
    assert abs(mc["cs_bias"]) < 0.2 * mc["cs_sd"]
    assert 0.91 <= mc["cs_coverage"] <= 0.98


def test_cs_is_fast_on_a_larger_panel() -> None:
    import time as _time

    data, _ = _staggered(np.random.default_rng(8), n_units=5000, n_periods=10)
    start = _time.perf_counter()
    callaway_santanna(data, outcome="y", unit="unit", time="time", cohort="cohort", n_boot=499)
    assert _time.perf_counter() - start < 20


# ------------------------------------------------------------- one treated unit (issue 6)


def _factor_panel(
    rng: np.random.Generator,
    n_units: int = 10,
    n_periods: int = 60,
    start: int = 25,
    effect: float = -1.0,
) -> pd.DataFrame:
    """Areas loading on two random-walk common factors (as sicp/synth/areas.py), plus noise;
    unit 0 alone is treated from ``start`` with a constant ``effect``."""
    factors = np.cumsum(rng.normal(0, 0.3, (2, n_periods)), axis=1)
    loadings = rng.normal(1.0, 0.5, (n_units, 2))
    y = 20 + loadings @ factors + rng.normal(0, 0.8, (n_units, n_periods))
    unit, t = np.divmod(np.arange(n_units * n_periods), n_periods)
    d = ((unit == 0) & (t >= start)).astype(float)
    return pd.DataFrame({"unit": unit, "time": t + 1, "y": y[unit, t] + effect * d, "d": d})


def _rw_by_hand(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """random_walk_cov written out with dense matrices: Sigma_q = I + q K, the REML marginal
    posterior of q under the reference prior, its median, and the OLS covariance there."""
    from analysis.its import _RW_RATIO_GRID

    n, k = x.shape
    pos = np.arange(n)
    kmat = np.minimum.outer(pos, pos) + 1.0
    ratios = _RW_RATIO_GRID / np.mean(np.linalg.eigvalsh(kmat))
    logpost, rss = [], []
    for q in ratios:
        sigma = np.eye(n) + q * kmat
        si = np.linalg.inv(sigma)
        info = x.T @ si @ x
        proj = si - si @ x @ np.linalg.solve(info, x.T @ si)
        g = kmat @ proj
        prior = np.sqrt(max(np.trace(g @ g) - np.trace(g) ** 2 / (n - k), 1e-300))
        r = y - x @ np.linalg.solve(info, x.T @ si @ y)
        rss.append(r @ si @ r)
        logpost.append(
            np.log(prior)
            - 0.5 * np.linalg.slogdet(sigma)[1]
            - 0.5 * np.linalg.slogdet(info)[1]
            - 0.5 * (n - k) * np.log(rss[-1])
        )
    dens = np.exp(np.array(logpost) - max(logpost)) * np.gradient(ratios)
    i = int(np.argmax(np.cumsum(dens) / dens.sum() >= 0.5))
    ols = np.linalg.solve(x.T @ x, x.T)
    cov = rss[i] / (n - k) * ols @ (np.eye(n) + ratios[i] * kmat) @ ols.T
    return float(_RW_RATIO_GRID[i]), cov


def test_random_walk_cov_matches_dense_hand_computation() -> None:
    from analysis.its import random_walk_cov

    rng = np.random.default_rng(11)
    n = 40
    post = (np.arange(n) >= 15).astype(float)
    y = np.cumsum(rng.normal(0, 0.3, n)) + rng.normal(0, 1, n) + 0.5 * post
    x = np.column_stack([np.ones(n), post])
    rw = random_walk_cov(x, y, np.ones(n), np.arange(n))
    ratio, cov = _rw_by_hand(x, y)
    assert rw.ratio == pytest.approx(ratio)
    np.testing.assert_allclose(rw.cov, cov, rtol=1e-8)
    assert rw.df == n - 2
    # A pure random walk is read as one, white noise hardly: the ratios lie far apart. Even on
    # white noise the SE exceeds the OLS one (about 2x, the documented price of not ruling out a
    # walk too small to see), but by less than on the walk relative to its own OLS SE.
    walk = np.cumsum(rng.normal(0, 1, n))
    noise = rng.normal(0, 1, n)
    rw_walk = random_walk_cov(x, walk, np.ones(n), np.arange(n))
    rw_noise = random_walk_cov(x, noise, np.ones(n), np.arange(n))
    assert rw_walk.ratio > 10 * rw_noise.ratio

    def ols_var(series: np.ndarray) -> float:
        resid = series - x @ np.linalg.lstsq(x, series, rcond=None)[0]
        return resid @ resid / (n - 2) * np.linalg.inv(x.T @ x)[1, 1]

    assert 1.0 < rw_noise.cov[1, 1] / ols_var(noise) < rw_walk.cov[1, 1] / ols_var(walk)


def test_twfe_random_walk_single_treated_unit() -> None:
    from scipy import stats

    from analysis.its import random_walk_cov

    data = _factor_panel(np.random.default_rng(5))
    clustered = twfe(data, outcome="y", unit="unit", time="time", treatment="d")
    res = twfe(data, outcome="y", unit="unit", time="time", treatment="d", se_type="random_walk")
    row = res.row("d")
    assert row["estimate"] == pytest.approx(clustered.estimate("d"), rel=1e-12)
    wide = data.pivot(index="unit", columns="time", values="y")
    gap = (wide.loc[0] - wide.drop(index=0).mean()).to_numpy()
    path = data.loc[data["unit"] == 0, "d"].to_numpy()
    x = np.column_stack([np.ones(len(gap)), path])
    rw = random_walk_cov(x, gap, np.ones(len(gap)), np.arange(len(gap)))
    assert row["std_error"] == pytest.approx(np.sqrt(rw.cov[1, 1]), rel=1e-12)
    assert row["ci_high"] - row["estimate"] == pytest.approx(
        stats.t.ppf(0.975, 58) * row["std_error"]
    )
    assert "random walk" in row["se_type"] and "df = T - 2 = 58" in row["se_type"]
    assert res.diagnostics["rw_ratio"] > 0
    two_treated = data.assign(d=np.where(data["unit"] <= 1, data["time"] >= 25, 0).astype(float))
    with pytest.raises(ValueError, match="exactly one treated unit"):
        twfe(
            two_treated, outcome="y", unit="unit", time="time", treatment="d", se_type="random_walk"
        )
    with pytest.raises(ValueError, match="no covariates"):
        twfe(
            data.assign(z=1.0),
            outcome="y",
            unit="unit",
            time="time",
            treatment="d",
            covariates=["z"],
            se_type="random_walk",
        )


def _single_treated_coverage(reps: int, seed: int = 2026) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    cover = {"cluster": [], "random_walk": []}
    for _ in range(reps):
        data = _factor_panel(rng)
        for se_type, hits in cover.items():
            row = twfe(
                data, outcome="y", unit="unit", time="time", treatment="d", se_type=se_type
            ).row("d")
            hits.append(row["ci_low"] <= -1.0 <= row["ci_high"])
    return {k: float(np.mean(v)) for k, v in cover.items()}


def test_single_treated_coverage_fast() -> None:
    cov = _single_treated_coverage(25)
    assert cov["random_walk"] >= 0.84
    assert cov["random_walk"] > cov["cluster"]


@pytest.mark.slow
def test_single_treated_coverage_slow() -> None:
    cov = _single_treated_coverage(400)
    assert 0.92 <= cov["random_walk"] <= 0.98
    assert cov["cluster"] < 0.9
