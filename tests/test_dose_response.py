"""Dose-response DiD: the within estimator against R plm, the closed-form wild cluster
restricted bootstrap against a literal refit-every-replicate bootstrap, and Monte Carlo coverage
and size with eight clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.dose_response import bootstrap_weights, dose_response_did
from tests.reference_data import assert_r_fixture_regenerates

FIXTURES = Path(__file__).parent / "fixtures" / "r_econ"
PANEL = FIXTURES / "dose_panel.csv"
PLM = FIXTURES / "dose_plm.csv"
SCALE = 10_000.0


def simulate_panel(
    *,
    n_clusters: int = 8,
    persons: int = 30,
    waves: int = 5,
    beta: float = 0.5,
    shock_sd: float = 0.3,
    missing: float = 0.2,
    seed: int = 1,
) -> pd.DataFrame:
    """Persons nested in neighbourhoods; dose = cumulative funding starting at a neighbourhood-
    specific wave; neighbourhood x wave shocks make errors correlated within clusters.
    The true effect is ``beta`` per GBP 10,000 of dose."""
    rng = np.random.default_rng(seed)
    start = rng.integers(1, waves, n_clusters)
    rate = rng.gamma(2.0, 0.5, n_clusters)
    shock = rng.normal(0.0, shock_sd, (n_clusters, waves))
    hood = np.repeat(np.arange(n_clusters), persons)
    person = np.arange(n_clusters * persons)
    alpha = rng.normal(0.0, 1.0, person.size)
    p, t = np.repeat(person, waves), np.tile(np.arange(waves), person.size)
    g = hood[p]
    dose = rate[g] * np.maximum(0, t - start[g] + 1) * SCALE
    x1 = rng.normal(size=p.size)
    y = (
        alpha[p]
        + 0.1 * t
        + beta * dose / SCALE
        + 0.2 * x1
        + shock[g, t]
        + rng.normal(0.0, 1.0, p.size)
    )
    keep = rng.random(p.size) >= missing
    return pd.DataFrame(
        {
            "person": [f"p{i:04d}" for i in p[keep]],
            "wave": t[keep] + 1,
            "hood": [f"h{j}" for j in g[keep]],
            "dose": np.round(dose[keep], 6),
            "x1": np.round(x1[keep], 6),
            "y": np.round(y[keep], 6),
        }
    )


def fit(data: pd.DataFrame, **options) -> object:
    return dose_response_did(
        data,
        outcome="y",
        unit="person",
        time="wave",
        dose="dose",
        cluster="hood",
        dose_scale=SCALE,
        **options,
    )


# ----------------------------------------------------------------------------- against R plm


def test_fixture_panel_is_the_simulator_output() -> None:
    """The committed panel R read is exactly what simulate_panel(seed=2024) writes."""
    stored = pd.read_csv(PANEL)
    pd.testing.assert_frame_equal(stored, simulate_panel(seed=2024), check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("spec,covariates", [("no_covariates", []), ("x1", ["x1"])])
def test_matches_plm_within_twoways(spec: str, covariates: list[str]) -> None:
    """tests/fixtures/r_econ/make_dose_fixture.R: estimate to 1e-6 (plm within twoways and lm
    with dummies); CR1 SE without its (N-1)/(N-K) factor equals sandwich::vcovCL HC0 with the
    G/(G-1) adjustment."""
    ref = pd.read_csv(PLM).set_index("spec").loc[spec]
    res = fit(pd.read_csv(PANEL), covariates=covariates, n_boot=99)
    assert res.estimate("dose") == pytest.approx(ref["estimate_plm"], rel=1e-6)
    assert res.estimate("dose") == pytest.approx(ref["estimate_lm"], rel=1e-6)
    n, k = res.diagnostics["n_obs"], 1 + len(covariates) + res.diagnostics["n_periods"] - 1
    se_g_only = res.diagnostics["cr1_se"] / np.sqrt((n - 1) / (n - k))
    assert se_g_only == pytest.approx(ref["se_cluster_g"], rel=1e-6)
    assert res.std_error("dose") == res.diagnostics["cr1_se"]
    assert int(res.tidy["n_clusters"].iloc[0]) == ref["n_clusters"] == 8


@pytest.mark.needs_r
def test_plm_fixture_regenerates(tmp_path: Path) -> None:
    assert_r_fixture_regenerates(
        FIXTURES / "make_dose_fixture.R",
        [PANEL],
        PLM,
        ["estimate_plm", "estimate_lm", "se_cluster_g"],
        tmp_path / "plm.csv",
    )


# ------------------------------------------------------------- bootstrap against brute force


def _literal_wcr_pvalue(data: pd.DataFrame, b0: float, n_boot: int, kind: str, seed: int) -> float:
    """WCR done the slow way: dummies for persons and waves, restricted fit, then a full OLS
    refit and CR sandwich for every replicate (same weights as the estimator draws)."""
    d = data[data.groupby("person")["person"].transform("size") > 1]
    d = d.sort_values(["person", "wave"]).reset_index(drop=True)
    x, y = d["dose"].to_numpy() / SCALE, d["y"].to_numpy()
    z = np.column_stack(
        [
            d[["x1"]].to_numpy(),
            pd.get_dummies(d["person"], dtype=float),
            pd.get_dummies(d["wave"], drop_first=True, dtype=float),
        ]
    )
    xz = np.column_stack([x, z])
    inv = np.linalg.pinv(xz.T @ xz)
    cl = pd.factorize(d["hood"])[0]

    def t_stat(yy: np.ndarray) -> float:
        b = inv @ xz.T @ yy
        score = np.bincount(cl, (xz @ inv[0]) * (yy - xz @ b))
        return (b[0] - b0) / np.sqrt(score @ score)

    fitted = z @ np.linalg.lstsq(z, y - b0 * x, rcond=None)[0] + b0 * x
    weights = bootstrap_weights(cl.max() + 1, n_boot, kind, seed)
    t_star = np.array([t_stat(fitted + (y - fitted) * weights[cl, b]) for b in range(n_boot)])
    return float(np.mean(np.abs(t_star) >= abs(t_stat(y)) * (1 - 1e-12)))


@pytest.mark.parametrize("kind", ["webb", "rademacher"])
def test_closed_form_bootstrap_equals_literal_refits(kind: str) -> None:
    data = simulate_panel(n_clusters=6, persons=8, waves=4, beta=0.3, seed=5)
    res = fit(data, covariates=["x1"], n_boot=99, seed=9, boot_weights=kind)
    row = res.row("dose")
    assert row["p_value"] == _literal_wcr_pvalue(data, 0.0, 99, kind, 9)
    # Test inversion: the literal p-value crosses alpha = 0.05 at each CI end.
    eps = 1e-6 * res.std_error("dose")
    assert _literal_wcr_pvalue(data, row["ci_low"] + eps, 99, kind, 9) >= 0.05
    assert _literal_wcr_pvalue(data, row["ci_low"] - eps, 99, kind, 9) < 0.05
    assert _literal_wcr_pvalue(data, row["ci_high"] - eps, 99, kind, 9) >= 0.05
    assert _literal_wcr_pvalue(data, row["ci_high"] + eps, 99, kind, 9) < 0.05


def test_weights_default_to_webb_with_few_clusters() -> None:
    few = fit(simulate_panel(n_clusters=8, seed=3), n_boot=99)
    many = fit(simulate_panel(n_clusters=14, persons=10, seed=3), n_boot=99)
    assert few.diagnostics["boot_weights"] == "webb"
    assert many.diagnostics["boot_weights"] == "rademacher"
    assert set(np.unique(bootstrap_weights(8, 500, "webb", 1)).round(6)) == set(
        np.round([-np.sqrt(1.5), -1, -np.sqrt(0.5), np.sqrt(0.5), 1, np.sqrt(1.5)], 6)
    )


def test_deterministic_given_seed() -> None:
    data = simulate_panel(seed=11)
    a, b = fit(data, seed=3), fit(data, seed=3)
    pd.testing.assert_frame_equal(a.tidy, b.tidy)
    other = fit(data, seed=4)
    assert other.estimate("dose") == a.estimate("dose")
    assert (other.row("dose")["ci_low"], other.row("dose")["ci_high"]) != (
        a.row("dose")["ci_low"],
        a.row("dose")["ci_high"],
    )


def test_dose_scale_rescales_estimate_and_interval() -> None:
    data = simulate_panel(seed=12)
    per_10k = fit(data)
    per_unit = dose_response_did(
        data, outcome="y", unit="person", time="wave", dose="dose", cluster="hood"
    )
    for col in ("estimate", "std_error", "ci_low", "ci_high"):
        assert per_10k.row("dose")[col] == pytest.approx(
            per_unit.row("dose")[col] * SCALE, rel=1e-6
        )
    assert per_10k.row("dose")["p_value"] == per_unit.row("dose")["p_value"]
    assert "10000" in per_10k.tidy["scale"].iloc[0]


def test_absorbed_covariate_dropped_and_movers_nested() -> None:
    data = simulate_panel(seed=13)
    data["female"] = data["person"].str[-1].isin(list("02468")).astype(float)
    base = fit(data, covariates=["x1"])
    res = fit(data, covariates=["x1", "female"])
    assert res.diagnostics["dropped_covariates"] == "female"
    assert res.estimate("dose") == pytest.approx(base.estimate("dose"), rel=1e-9)
    moved = data.copy()
    mover = moved["person"] == moved["person"].iloc[0]
    moved.loc[mover & (moved["wave"] >= 3), "hood"] = "h7"
    res = fit(moved)
    assert res.diagnostics["n_units_cluster_reassigned"] == 1
    assert res.diagnostics["n_clusters"] == 8


def test_rejects_dose_without_within_variation() -> None:
    data = simulate_panel(seed=14)
    data["dose"] = data.groupby("person")["dose"].transform("first")
    with pytest.raises(ValueError, match="no variation"):
        fit(data)


def test_bootstrap_is_fast_on_cohort_sized_panel() -> None:
    data = simulate_panel(persons=1000, waves=4, seed=15)
    assert len(data) > 25_000
    res = fit(data, covariates=["x1"], n_boot=999)
    assert res.diagnostics["boot_seconds"] < 3.0
    assert res.row("dose")["ci_low"] < 0.5 < res.row("dose")["ci_high"]


# --------------------------------------------------------------------- Monte Carlo properties


def _monte_carlo(beta: float, reps: int, n_boot: int) -> pd.DataFrame:
    rows = []
    for r in range(reps):
        res = fit(simulate_panel(beta=beta, seed=1000 + r), n_boot=n_boot, seed=r)
        row = res.row("dose")
        rows.append(
            {
                "estimate": row["estimate"],
                "covered": row["ci_low"] <= beta <= row["ci_high"],
                "reject0": row["p_value"] < 0.05,
                "cr1_covered": res.diagnostics["cr1_ci_low"]
                <= beta
                <= res.diagnostics["cr1_ci_high"],
            }
        )
    return pd.DataFrame(rows)


def test_coverage_with_eight_clusters_fast() -> None:
    """50 worlds with 8 clusters: WCR coverage of the true slope is near 95% (binomial SD about
    3 points at 50 reps, so below 86% would signal a broken interval), and the true effect is
    usually detected."""
    mc = _monte_carlo(0.5, reps=50, n_boot=199)
    assert mc["covered"].mean() >= 0.86
    assert abs(mc["estimate"].mean() - 0.5) < 0.1
    assert mc["reject0"].mean() > 0.5


def test_null_world_size() -> None:
    """No effect: estimates centre on zero and the bootstrap test rejects at about 5%."""
    mc = _monte_carlo(0.0, reps=50, n_boot=199)
    assert abs(mc["estimate"].mean()) < 0.1
    assert mc["reject0"].mean() <= 0.14


@pytest.mark.slow
def test_coverage_with_eight_clusters_slow() -> None:
    """200 worlds: WCR coverage within Monte Carlo error of 95% (measured 96.5%), while the
    CR1 t(G-1) interval under-covers (measured 86%)."""
    mc = _monte_carlo(0.5, reps=200, n_boot=399)
    assert 0.91 <= mc["covered"].mean() <= 0.99
    assert mc["cr1_covered"].mean() < mc["covered"].mean()
    assert abs(mc["estimate"].mean() - 0.5) < 0.05
