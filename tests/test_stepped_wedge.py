"""Stepped-wedge estimators against R (lme4, geepack), published values and simulation.

Reference data: ``sw_data_example`` of the R package steppedwedge (Kenny et al. 2022, Stat Med,
doi 10.1002/sim.9511), 15 clusters in 5 sequences of 3, 6 periods, immediate treatment effect.
Its generating script (data-raw/sw_data_example.R in github.com/Avi-Kenny/steppedwedge) sets
the true effects ``b_cont <- 0.5`` (continuous outcome, mean difference) and
``b_bin <- log(2)`` (binary outcome, conditional log odds ratio), with cluster and
cluster-period random effects of SD 0.1.

R fixtures in tests/fixtures/r come from tests/fixtures/r/make_sw_fixtures.R (see
test_r_fixtures_regenerate, marked needs_r).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis.stepped_wedge import (
    cluster_start_ranks,
    exposure_time_model,
    hussey_hughes_lmm,
    permutation_test,
    small_sample_sandwich,
    stepped_wedge_gee,
)
from tests.reference_data import reference_csv

ROOT = Path(__file__).resolve().parents[1]
R_DIR = ROOT / "tests" / "fixtures" / "r"
SW_CSV = reference_csv("sw_data_example.csv")
KW = {"treatment": "trt", "cluster": "cluster", "period": "period"}

# Tolerances against R. Point estimates: 1e-4 relative (effect terms); nuisance period
# coefficients near zero are compared absolutely at 1e-4. SEs: 1e-3 relative. Achieved:
# about 1e-5 for the LMM (optimiser tolerance of the variance components) and 1e-6 for GEE.
EST_REL, NUISANCE_ABS, SE_REL = 1e-4, 1e-4, 1e-3


@pytest.fixture(scope="module")
def sw() -> pd.DataFrame:
    return pd.read_csv(SW_CSV)


@pytest.fixture(scope="module")
def r_ref() -> pd.DataFrame:
    return pd.read_csv(R_DIR / "sw_reference.csv")


@pytest.fixture(scope="module")
def cells(sw: pd.DataFrame) -> pd.DataFrame:
    """Cluster-period event counts of outcome_bin with person denominators (as in the R script)."""
    return (
        sw.groupby(["cluster", "period", "trt"])
        .agg(events=("outcome_bin", "sum"), persons=("outcome_bin", "size"))
        .reset_index()
    )


def r_name(term: str) -> str:
    """Our term names in R's coefficient naming."""
    if term == "treatment":
        return "trt"
    if term == "Intercept":
        return "(Intercept)"
    if term.startswith("exposure_time="):
        return "et" + term.split("=")[1]
    if term.startswith("period="):
        return "factor(period)" + term.split("=")[1]
    return term


def compare(
    result,
    r_ref: pd.DataFrame,
    model: str,
    *,
    se_model: str | None = None,
    period_name: str = "period",
) -> None:
    """Every effect and nuisance coefficient of ``result`` against R model ``model``."""
    est = r_ref[r_ref["model"] == model].set_index("term")
    se = r_ref[r_ref["model"] == (se_model or model)].set_index("term")
    ours = pd.concat(
        [result.tidy[["term", "estimate", "std_error"]], result.tables["nuisance"]],
        ignore_index=True,
    )
    assert len(ours) == len(est), (list(ours["term"]), list(est.index))
    for _, row in ours.iterrows():
        name = r_name(row["term"]).replace("factor(period)", f"factor({period_name})")
        nuisance = name == "(Intercept)" or name.startswith("factor(")
        if nuisance:
            assert row["estimate"] == pytest.approx(est.loc[name, "estimate"], abs=NUISANCE_ABS)
        else:
            assert row["estimate"] == pytest.approx(est.loc[name, "estimate"], rel=EST_REL), name
        assert row["std_error"] == pytest.approx(se.loc[name, "std_error"], rel=SE_REL), name


# ---------------------------------------------------------------------------- against R


@pytest.mark.parametrize("reml, model", [(True, "lmm_reml"), (False, "lmm_ml")])
def test_hussey_hughes_matches_lme4(sw, r_ref, reml, model) -> None:
    res = hussey_hughes_lmm(sw, outcome="outcome_cont", reml=reml, **KW)
    compare(res, r_ref, model)
    meta = json.loads((R_DIR / "sw_reference.json").read_text())["models"][model]
    assert res.diagnostics["cluster_variance"] == pytest.approx(meta["cluster_var"], rel=1e-2)
    assert res.diagnostics["residual_variance"] == pytest.approx(meta["residual_var"], rel=1e-4)
    assert res.diagnostics["log_likelihood"] == pytest.approx(meta["loglik"], rel=1e-7)
    assert res.diagnostics["converged"] == 1


def test_hussey_hughes_covers_documented_true_effect(sw) -> None:
    """b_cont = 0.5 in the steppedwedge data-generating script."""
    row = hussey_hughes_lmm(sw, outcome="outcome_cont", **KW).row("treatment")
    assert row["ci_low"] < 0.5 < row["ci_high"]
    assert row["dof"] == 13  # t(n_clusters - 2)
    assert row["scale"] == "identity" and int(row["n_clusters"]) == 15
    assert int(row["n_obs"]) == len(sw)


def test_person_level_nested_subject_matches_lme4(r_ref) -> None:
    """lmer(outcome ~ trt + factor(wave) + (1|cluster) + (1|cluster:person)) on the panel."""
    panel = pd.read_csv(R_DIR / "sw_panel_example.csv")
    res = hussey_hughes_lmm(
        panel,
        outcome="outcome",
        treatment="trt",
        cluster="cluster",
        period="wave",
        subject="person",
    )
    compare(res, r_ref, "lmm_panel_nested", period_name="wave")
    meta = json.loads((R_DIR / "sw_reference.json").read_text())["models"]["lmm_panel_nested"]
    assert res.diagnostics["subject_variance"] == pytest.approx(meta["person_var"], rel=1e-3)
    assert res.diagnostics["n_subjects"] == 128


def test_cohort_scale_nested_panel_recovers_components() -> None:
    """A cohort-sized person-wave panel (40 practices x 60 people x 5 waves) fits in seconds
    and recovers the effect and the three variance components."""
    rng = np.random.default_rng(31)
    n_cl, n_pp, waves = 40, 60, 5
    cl = np.repeat(np.arange(n_cl), n_pp * waves)
    person = np.repeat(np.arange(n_cl * n_pp), waves)
    wave = np.tile(np.arange(1, waves + 1), n_cl * n_pp)
    start = rng.permutation(np.resize(np.arange(2, waves + 1), n_cl))
    trt = (wave >= start[cl]).astype(int)
    y = (
        0.3 * trt
        + 0.05 * wave
        + rng.normal(scale=0.4, size=n_cl)[cl]
        + rng.normal(scale=0.8, size=n_cl * n_pp)[person]
        + rng.normal(size=len(cl))
    )
    panel = pd.DataFrame({"cluster": cl, "person": person, "wave": wave, "trt": trt, "y": y})
    res = hussey_hughes_lmm(
        panel, outcome="y", treatment="trt", cluster="cluster", period="wave", subject="person"
    )
    # One draw: the estimate (0.4025, lmer gives the same to 1e-7) is 3.1 SEs from the truth;
    # an 80-draw check of this design gave mean z -0.12, SD 1.00, coverage 0.95.
    row = res.row("treatment")
    assert abs(row["estimate"] - 0.3) < 3.5 * row["std_error"]
    d = res.diagnostics
    assert d["subject_variance"] == pytest.approx(0.64, rel=0.1)
    assert d["residual_variance"] == pytest.approx(1.0, rel=0.05)
    assert d["cluster_variance"] == pytest.approx(0.16, rel=0.5)
    assert d["n_subjects"] == n_cl * n_pp


@pytest.mark.parametrize(
    "se_type, suffix", [("robust", ""), ("mancl-derouen", "_md"), ("kauermann-carroll", "_kc")]
)
def test_gee_binomial_matches_geepack(sw, r_ref, se_type, suffix) -> None:
    res = stepped_wedge_gee(sw, outcome="outcome_bin", family="binomial", se_type=se_type, **KW)
    compare(res, r_ref, "gee_binomial", se_model="gee_binomial" + suffix)
    meta = json.loads((R_DIR / "sw_reference.json").read_text())["models"]["gee_binomial"]
    assert res.diagnostics["working_correlation"] == pytest.approx(meta["alpha"], rel=1e-4)
    row = res.row("treatment")
    assert row["scale"] == "logit"
    assert row["exp_estimate"] == pytest.approx(math.exp(row["estimate"]))
    assert row["exp_ci_low"] == pytest.approx(math.exp(row["ci_low"]))
    assert row["dof"] == 15 - 7  # t(n_clusters - p)


@pytest.mark.parametrize(
    "se_type, suffix", [("robust", ""), ("mancl-derouen", "_md"), ("kauermann-carroll", "_kc")]
)
def test_gee_poisson_offset_matches_geepack(cells, r_ref, se_type, suffix) -> None:
    res = stepped_wedge_gee(
        cells, outcome="events", exposure="persons", family="poisson", se_type=se_type, **KW
    )
    compare(res, r_ref, "gee_poisson", se_model="gee_poisson" + suffix)
    assert res.row("treatment")["scale"] == "log"


def test_gee_published_vignette_value(sw) -> None:
    """steppedwedge vignette 'Basic package workflow', analysis_2 (GEE, exchangeable, binomial,
    immediate treatment): 'Treatment effect estimate: 0.389; 95% CI 0.138, 0.64' (robust SE,
    estimate +/- 1.96 SE)."""
    res = stepped_wedge_gee(
        sw, outcome="outcome_bin", family="binomial", se_type="robust", df_method="normal", **KW
    )
    row = res.row("treatment")
    assert round(row["estimate"], 3) == 0.389
    assert round(row["ci_low"], 3) == 0.138
    assert round(row["ci_high"], 2) == 0.64


def test_exposure_time_lmm_matches_lme4(sw, r_ref) -> None:
    res = exposure_time_model(sw, outcome="outcome_cont", average_over=5, **KW)
    assert list(res.tidy["term"]) == [f"exposure_time={e}" for e in range(1, 6)] + [
        "average_first_5"
    ]
    compare(res, r_ref, "lmm_exposure")
    assert res.diagnostics["max_exposure_observed"] == 5
    # The average of the exposure-time effects covers the documented b_cont = 0.5.
    avg = res.row("average_first_5")
    assert avg["ci_low"] < 0.5 < avg["ci_high"]


@pytest.mark.parametrize(
    "se_type, suffix", [("robust", ""), ("mancl-derouen", "_md"), ("kauermann-carroll", "_kc")]
)
def test_exposure_time_gee_matches_geepack(sw, r_ref, se_type, suffix) -> None:
    res = exposure_time_model(
        sw,
        outcome="outcome_bin",
        model="gee",
        family="binomial",
        se_type=se_type,
        average_over=5,
        df_method="normal",
        **KW,
    )
    compare(res, r_ref, "gee_binomial_exposure", se_model="gee_binomial_exposure" + suffix)


def test_exposure_time_binned_tail_and_average_weights(sw) -> None:
    full = exposure_time_model(sw, outcome="outcome_cont", average_over=2, **KW)
    binned = exposure_time_model(sw, outcome="outcome_cont", max_exposure=3, average_over=5, **KW)
    assert list(binned.tidy["term"]) == [
        "exposure_time=1",
        "exposure_time=2",
        "exposure_time>=3",
        "average_first_5",
    ]
    e = binned.tidy.set_index("term")["estimate"]
    # Exposure times 3, 4 and 5 share the tail coefficient, so it weighs 3/5.
    expected = (e["exposure_time=1"] + e["exposure_time=2"] + 3 * e["exposure_time>=3"]) / 5
    assert e["average_first_5"] == pytest.approx(expected, rel=1e-12)
    f = full.tidy.set_index("term")["estimate"]
    assert f["average_first_2"] == pytest.approx(
        (f["exposure_time=1"] + f["exposure_time=2"]) / 2, rel=1e-12
    )
    with pytest.raises(ValueError, match="exposure times"):
        exposure_time_model(sw, outcome="outcome_cont", average_over=12, **KW)


# ---------------------------------------------------------------------------- internals


def test_small_sample_sandwich_against_dense_definition() -> None:
    """The rank-p shortcut equals the textbook dense (I - H_i)^-1 and ^-1/2 formulas."""
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(6), [3, 5, 4, 6, 2, 5])
    x = np.column_stack(
        [np.ones(len(groups)), rng.normal(size=len(groups)), rng.integers(0, 2, len(groups))]
    )
    mu = np.exp(x @ np.array([0.5, 0.2, -0.3]))
    y = rng.poisson(mu).astype(float)
    alpha = 0.2
    got = small_sample_sandwich(x, y, mu, mu, mu, groups, alpha)
    blocks = []
    for g in np.unique(groups):
        i = groups == g
        n = int(i.sum())
        r = np.full((n, n), alpha) + (1 - alpha) * np.eye(n)
        a = np.diag(np.sqrt(mu[i]))
        blocks.append((x[i] * mu[i][:, None], np.linalg.inv(a @ r @ a), y[i] - mu[i]))
    bread_inv = np.linalg.inv(sum(d.T @ v @ d for d, v, _ in blocks))

    def dense(power: float) -> np.ndarray:
        meat = np.zeros((3, 3))
        for d, v, res in blocks:
            h = d @ bread_inv @ d.T @ v
            w, p = np.linalg.eig(np.eye(len(res)) - h)
            adj = (p @ np.diag(w.real**-power) @ np.linalg.inv(p)).real
            u = d.T @ v @ adj @ res
            meat += np.outer(u, u)
        return bread_inv @ meat @ bread_inv

    for name, power in (("robust", 0.0), ("mancl-derouen", 1.0), ("kauermann-carroll", 0.5)):
        np.testing.assert_allclose(got[name], dense(power), rtol=1e-10, atol=1e-14)


def test_cluster_start_ranks_and_one_way_switch(sw) -> None:
    start = cluster_start_ranks(sw, **KW)
    assert list(start.to_numpy()) == [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3 + [6] * 3
    broken = sw.copy()
    broken.loc[(broken["cluster"] == 1) & (broken["period"] == 6), "trt"] = 0
    with pytest.raises(ValueError, match="switch back"):
        hussey_hughes_lmm(broken, outcome="outcome_cont", **KW)


def test_gee_df_guard_and_invalid_working_correlation(sw) -> None:
    few = sw[sw["cluster"] <= 6]
    with pytest.raises(ValueError, match="degrees of freedom"):
        # Intercept, treatment, 5 periods and a covariate: 8 parameters, 6 clusters.
        stepped_wedge_gee(
            few, outcome="outcome_bin", family="binomial", covariates=["outcome_cont"], **KW
        )
    # Here the exchangeable moment estimate (-0.0066) is below -1/(n_i - 1) for the largest
    # cluster (153 rows): not a correlation matrix, so the fit falls back to independence.
    res = stepped_wedge_gee(
        few,
        outcome="outcome_bin",
        family="binomial",
        covariates=["outcome_cont"],
        df_method="normal",
        **KW,
    )
    assert res.diagnostics["working_correlation_structure"].startswith("independence")
    assert res.diagnostics["working_correlation"] == 0.0
    indep = sm.GEE(
        few["outcome_bin"], res_design(few), groups=few["cluster"], family=sm.families.Binomial()
    ).fit()
    assert res.estimate("treatment") == pytest.approx(indep.params["trt"], rel=1e-6)


def test_gee_without_events_in_a_period_fails_clearly(cells, sw) -> None:
    """A period with no events anywhere has an infinite log-rate effect: a clear error naming
    the period instead of numpy's "SVD did not converge" from the diverging iterations."""
    sparse = cells.assign(events=cells["events"].where(cells["period"] != 3, 0))
    with pytest.raises(ValueError, match=r"no finite estimate.*period=3"):
        stepped_wedge_gee(sparse, outcome="events", exposure="persons", family="poisson", **KW)
    with pytest.raises(ValueError, match=r"no events in the rows of 1 term\(s\) \(period=3\)"):
        exposure_time_model(
            sparse, outcome="events", exposure="persons", model="gee", average_over=1, **KW
        )
    # binomial: an exposure time whose rows are all 1 has an infinite log odds ratio
    certain = sw.assign(outcome_bin=sw["outcome_bin"].where(sw["trt"] == 0, 1))
    with pytest.raises(ValueError, match=r"no variation in the outcome.*treatment"):
        stepped_wedge_gee(certain, outcome="outcome_bin", family="binomial", **KW)


def res_design(frame: pd.DataFrame) -> pd.DataFrame:
    x = pd.get_dummies(frame["period"].astype(str), prefix="p", drop_first=True, dtype=float)
    x.insert(0, "trt", frame["trt"].astype(float))
    x["outcome_cont"] = frame["outcome_cont"]
    return sm.add_constant(x)


# ---------------------------------------------------------------------------- permutation


def test_permutation_statistic_is_two_way_fe_on_cell_means(sw) -> None:
    res = permutation_test(sw, outcome="outcome_cont", n_permutations=199, seed=3, **KW)
    cells = sw.groupby(["cluster", "period"], as_index=False).agg(
        y=("outcome_cont", "mean"), trt=("trt", "first")
    )
    x = pd.get_dummies(cells[["cluster", "period"]].astype(str), drop_first=True, dtype=float)
    x.insert(0, "trt", cells["trt"].astype(float))
    ols = sm.OLS(cells["y"], sm.add_constant(x)).fit()
    assert res.estimate("treatment") == pytest.approx(ols.params["trt"], rel=1e-10)
    draws = res.tables["permutation"]
    assert len(draws) == 199 and draws["estimate"].std() > 0
    # The effect (~0.5, SD of the null ~0.1) is far in the tail of the permutation draws.
    assert res.row("treatment")["p_value"] == pytest.approx(1 / 200)
    again = permutation_test(sw, outcome="outcome_cont", n_permutations=199, seed=3, **KW)
    pd.testing.assert_frame_equal(draws, again.tables["permutation"])


def test_permutation_null_and_lmm_statistic(sw) -> None:
    null = sw.copy()
    rng = np.random.default_rng(9)
    null["y0"] = null["outcome_cont"] - 0.52 * null["trt"] + rng.normal(scale=0.01, size=len(null))
    res = permutation_test(null, outcome="y0", n_permutations=99, seed=1, **KW)
    assert res.row("treatment")["p_value"] > 0.05
    assert res.diagnostics["share_as_extreme"] == pytest.approx(
        (res.row("treatment")["p_value"] * 100 - 1) / 99
    )
    lmm = permutation_test(
        sw, outcome="outcome_cont", n_permutations=3, seed=1, statistic="lmm", **KW
    )
    assert lmm.estimate("treatment") == pytest.approx(
        hussey_hughes_lmm(sw, outcome="outcome_cont", **KW).estimate("treatment"), rel=1e-12
    )


def test_permutation_statistic_with_covariate_and_never_treated(sw) -> None:
    """Cell means of a covariate enter the fixed-effects regression; a never-treated cluster
    keeps 'never' in the pool of start times."""
    data = sw.assign(x=sw["cluster"] % 4 + sw["period"] * 0.1 + np.sin(np.arange(len(sw))))
    data.loc[data["cluster"] == 15, "trt"] = 0
    res = permutation_test(
        data, outcome="outcome_cont", covariates=["x"], n_permutations=50, seed=2, **KW
    )
    cells = data.groupby(["cluster", "period"], as_index=False).agg(
        y=("outcome_cont", "mean"), x=("x", "mean"), trt=("trt", "first")
    )
    x = pd.get_dummies(cells[["cluster", "period"]].astype(str), drop_first=True, dtype=float)
    x.insert(0, "trt", cells["trt"].astype(float))
    x["x"] = cells["x"]
    ols = sm.OLS(cells["y"], sm.add_constant(x)).fit()
    assert res.estimate("treatment") == pytest.approx(ols.params["trt"], rel=1e-10)
    with pytest.raises(ValueError, match="numeric covariates"):
        permutation_test(
            data.assign(g=data["cluster"].astype(str)),
            outcome="outcome_cont",
            covariates=["g"],
            n_permutations=5,
            **KW,
        )


# ---------------------------------------------------------------------------- simulation


def simulate_sw(
    rng: np.random.Generator,
    *,
    n_clusters: int = 12,
    n_periods: int = 5,
    cell_size: int = 10,
    effect: float = 0.4,
    cluster_sd: float = 0.3,
    counts: bool = False,
) -> pd.DataFrame:
    """Cross-sectional stepped wedge with randomised start order and a period trend."""
    starts = rng.permutation(np.resize(np.arange(2, n_periods + 1), n_clusters))
    cl = np.repeat(np.arange(n_clusters), n_periods * cell_size)
    per = np.tile(np.repeat(np.arange(1, n_periods + 1), cell_size), n_clusters)
    trt = (per >= starts[cl]).astype(int)
    u = rng.normal(scale=cluster_sd, size=n_clusters)[cl]
    lin = 0.1 * per + effect * trt + u
    if counts:
        mu = 2.0 * np.exp(lin)
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))  # NB2 with alpha = 0.5
    else:
        y = lin + rng.normal(size=len(cl))
    return pd.DataFrame({"cluster": cl, "period": per, "trt": trt, "y": y})


def _lmm_monte_carlo(reps: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    est, cover = [], []
    for _ in range(reps):
        row = hussey_hughes_lmm(simulate_sw(rng), outcome="y", **KW).row("treatment")
        est.append(row["estimate"])
        cover.append(row["ci_low"] <= 0.4 <= row["ci_high"])
    est_arr = np.asarray(est)
    return (
        float(est_arr.mean() - 0.4),
        float(est_arr.std(ddof=1) / math.sqrt(reps)),
        float(np.mean(cover)),
    )


def test_hussey_hughes_monte_carlo_fast() -> None:
    bias, mc_se, coverage = _lmm_monte_carlo(30, seed=2024)
    assert abs(bias) < 3 * mc_se
    assert coverage >= 0.8


@pytest.mark.slow
def test_hussey_hughes_monte_carlo_full() -> None:
    bias, mc_se, coverage = _lmm_monte_carlo(200, seed=2025)
    assert abs(bias) < 3 * mc_se
    # Binomial MC error of coverage with 200 reps is ~1.5 points.
    assert 0.91 <= coverage <= 0.99


def test_gee_negative_binomial_recovers_rate_ratio() -> None:
    rng = np.random.default_rng(17)
    data = simulate_sw(rng, n_clusters=20, cell_size=40, counts=True)
    res = stepped_wedge_gee(data, outcome="y", family="negbin", **KW)
    row = res.row("treatment")
    assert row["ci_low"] < 0.4 < row["ci_high"]
    assert row["exp_ci_low"] < math.exp(0.4) < row["exp_ci_high"]
    assert 0.3 < res.diagnostics["nb_alpha"] < 0.8
    assert row["se_type"].startswith("GEE sandwich, Mancl-DeRouen")


# ---------------------------------------------------------------------------- R regeneration


@pytest.mark.needs_r
def test_r_fixtures_regenerate(tmp_path: Path) -> None:
    """Re-run the R script and check it reproduces the checked-in fixtures."""
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript not installed")
    subprocess.run(
        ["Rscript", str(R_DIR / "make_sw_fixtures.R"), str(SW_CSV), str(tmp_path)],
        check=True,
        timeout=600,
    )
    new = pd.read_csv(tmp_path / "sw_reference.csv")
    old = pd.read_csv(R_DIR / "sw_reference.csv")
    pd.testing.assert_frame_equal(new[["model", "term"]], old[["model", "term"]])
    np.testing.assert_allclose(
        new[["estimate", "std_error"]], old[["estimate", "std_error"]], rtol=1e-6
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "sw_panel_example.csv"), pd.read_csv(R_DIR / "sw_panel_example.csv")
    )
