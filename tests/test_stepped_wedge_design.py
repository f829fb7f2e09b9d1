"""Design-based stepped-wedge options (issue 16, points 4 and 5), against independent computations.

* ``unit_effects="fixed"``: the GEE equals statsmodels' GEE with cluster dummies (independence
  working correlation); the mixed model equals statsmodels' MixedLM with cluster dummies and a
  person intercept.
* ``inference_cluster``: the sandwich (plain and Mancl-DeRouen) equals a dense, hand-computed
  cluster-robust sandwich whose scores and leverages are summed over the coarser units.
* ``assignment_unit``: on a design small enough to enumerate by hand, the permutation
  distribution is exactly the statistic under each distinct assignment of start times to the
  assigned units, never-treated clusters kept as controls.
* ``heterogeneity_test``: the Wald statistic equals (R b)' (R V R')^-1 (R b) computed from
  statsmodels' own estimates and covariance with another contrast basis.
* The shipped sw_* protocols load with the new sensitivity analyses.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from scipy import stats

from analysis.columns import column_options
from analysis.protocol import ProtocolError, load_protocol, load_protocols
from analysis.stepped_wedge import (
    _distinct_permutations,
    _n_distinct,
    exposure_time_model,
    hussey_hughes_lmm,
    permutation_test,
    stepped_wedge_gee,
)
from tests.reference_data import reference_csv

ROOT = Path(__file__).resolve().parents[1]
KW = {"treatment": "trt", "cluster": "cluster", "period": "period"}
GEE_FIT = {"maxiter": 200, "ctol": 1e-8, "scale": "X2", "ddof_scale": 0}


def counts_design(
    seed: int,
    *,
    mdg_sizes: tuple[int, ...] = (3, 3, 2, 2),
    mdg_starts: tuple[int, ...] = (2, 3, 3, 4),
    n_never: int = 3,
    n_periods: int = 5,
    effect: float = -0.2,
) -> pd.DataFrame:
    """Cluster-period counts: practices nested in MDGs that start together, plus never-treated
    practices in their own MDG, with practice random effects and person-time offsets."""
    rng = np.random.default_rng(seed)
    rows = []
    cluster = 0
    groups = [
        (f"m{g}", size, start)
        for g, (size, start) in enumerate(zip(mdg_sizes, mdg_starts, strict=True))
    ]
    groups.append(("never", n_never, None))
    for mdg, size, start in groups:
        for _ in range(size):
            cluster += 1
            u = rng.normal(scale=0.3)
            for t in range(1, n_periods + 1):
                trt = int(start is not None and t >= start)
                persons = float(rng.integers(80, 160))
                mu = persons * 0.05 * math.exp(u + 0.05 * t + effect * trt)
                rows.append(
                    {
                        "cluster": cluster,
                        "mdg": mdg,
                        "period": t,
                        "trt": trt,
                        "persons": persons,
                        "events": int(rng.poisson(mu)),
                    }
                )
    return pd.DataFrame(rows)


def design_matrix(frame: pd.DataFrame, effects: pd.DataFrame, *, units: bool) -> pd.DataFrame:
    """Effects, intercept, period dummies and (optionally) cluster dummies, built by pandas."""
    parts = [
        effects.astype(float),
        pd.Series(1.0, index=frame.index, name="const"),
        pd.get_dummies(frame["period"], prefix="p", drop_first=True, dtype=float),
    ]
    if units:
        parts.append(pd.get_dummies(frame["cluster"], prefix="c", drop_first=True, dtype=float))
    return pd.concat(parts, axis=1)


# ---------------------------------------------------------------------------- fixed effects


def test_gee_unit_fixed_effects_equal_statsmodels_gee_with_dummies() -> None:
    data = counts_design(3)
    # a practice with no events has no within-practice contrast: dropped, and named
    data.loc[data["cluster"] == 2, "events"] = 0
    res = stepped_wedge_gee(
        data,
        outcome="events",
        exposure="persons",
        unit_effects="fixed",
        se_type="robust",
        df_method="normal",
        **KW,
    )
    assert res.diagnostics["n_clusters_dropped"] == 1
    assert res.diagnostics["clusters_dropped"] == "2"
    assert res.diagnostics["working_correlation_structure"].startswith("independence")
    kept = data[data["cluster"] != 2].sort_values(["cluster", "period"]).reset_index(drop=True)
    x = design_matrix(kept, kept[["trt"]], units=True)
    ref = sm.GEE(
        kept["events"],
        x,
        groups=kept["cluster"],
        family=sm.families.Poisson(),
        cov_struct=sm.cov_struct.Independence(),
        offset=np.log(kept["persons"]),
    ).fit(**GEE_FIT)
    row = res.row("treatment")
    assert row["estimate"] == pytest.approx(ref.params["trt"], rel=1e-8)
    assert row["std_error"] == pytest.approx(ref.bse["trt"], rel=1e-8)
    assert int(row["n_clusters"]) == kept["cluster"].nunique()
    # the fixed effects change the estimate: it is not the marginal model's
    plain = stepped_wedge_gee(
        data, outcome="events", exposure="persons", se_type="robust", df_method="normal", **KW
    )
    assert abs(plain.estimate("treatment") - row["estimate"]) > 1e-4
    with pytest.raises(ValueError, match="unit_effects must be"):
        stepped_wedge_gee(data, outcome="events", exposure="persons", unit_effects="fixd", **KW)


def test_exposure_time_gee_unit_fixed_effects_equal_statsmodels() -> None:
    data = counts_design(4).sort_values(["cluster", "period"]).reset_index(drop=True)
    res = exposure_time_model(
        data,
        outcome="events",
        model="gee",
        exposure="persons",
        unit_effects="fixed",
        se_type="robust",
        df_method="normal",
        average_over=2,
        **KW,
    )
    start = data[data["trt"] == 1].groupby("cluster")["period"].min()
    exposure = (data["period"] - data["cluster"].map(start) + 1).where(data["trt"] == 1, 0)
    effects = pd.DataFrame({f"e{e}": (exposure == e).astype(float) for e in (1, 2, 3, 4)})
    x = design_matrix(data, effects, units=True)
    ref = sm.GEE(
        data["events"],
        x,
        groups=data["cluster"],
        family=sm.families.Poisson(),
        cov_struct=sm.cov_struct.Independence(),
        offset=np.log(data["persons"]),
    ).fit(**GEE_FIT)
    for e in (1, 2, 3, 4):
        row = res.row(f"exposure_time={e}")
        assert row["estimate"] == pytest.approx(ref.params[f"e{e}"], rel=1e-7)
        assert row["std_error"] == pytest.approx(ref.bse[f"e{e}"], rel=1e-7)


def test_lmm_unit_fixed_effects_equal_mixedlm_with_dummies() -> None:
    """Cluster fixed effects with a person intercept: MixedLM(groups=person) on the dummies."""
    panel = pd.read_csv(ROOT / "tests" / "fixtures" / "r" / "sw_panel_example.csv")
    res = hussey_hughes_lmm(
        panel,
        outcome="outcome",
        treatment="trt",
        cluster="cluster",
        period="wave",
        subject="person",
        unit_effects="fixed",
    )
    frame = panel.sort_values(["cluster", "wave"], kind="mergesort").reset_index(drop=True)
    x = pd.concat(
        [
            frame[["trt"]].astype(float),
            pd.Series(1.0, index=frame.index, name="const"),
            pd.get_dummies(frame["wave"], prefix="w", drop_first=True, dtype=float),
            pd.get_dummies(frame["cluster"], prefix="c", drop_first=True, dtype=float),
        ],
        axis=1,
    )
    ref = sm.MixedLM(frame["outcome"], x, groups=frame["person"]).fit(reml=True)
    row = res.row("treatment")
    assert row["estimate"] == pytest.approx(ref.params["trt"], rel=1e-4)
    assert row["std_error"] == pytest.approx(ref.bse["trt"], rel=1e-3)
    assert res.diagnostics["subject_variance"] == pytest.approx(ref.cov_re.iloc[0, 0], rel=1e-3)
    assert row["dof"] == panel["cluster"].nunique() - 2
    with pytest.raises(ValueError, match="without a random effect"):
        hussey_hughes_lmm(
            panel,
            outcome="outcome",
            treatment="trt",
            cluster="cluster",
            period="wave",
            unit_effects="fixed",
        )


# ---------------------------------------------------------------------------- MDG sandwich


def dense_sandwich(
    x: np.ndarray,
    y: np.ndarray,
    mu: np.ndarray,
    groups: np.ndarray,
    units: np.ndarray,
    alpha: float,
    corrected: bool,
) -> np.ndarray:
    """Textbook Poisson-GEE sandwich, meat summed over ``units``; with ``corrected`` the
    residuals of each unit are scaled by (I - H_g)^+ (Mancl-DeRouen, Moore-Penrose inverse)
    with V_g block-diagonal over the working clusters of the unit."""
    blocks = {}
    for g in np.unique(groups):
        i = np.flatnonzero(groups == g)
        n = len(i)
        r = np.full((n, n), alpha) + (1 - alpha) * np.eye(n)
        a = np.diag(np.sqrt(mu[i]))
        blocks[g] = (i, x[i] * mu[i][:, None], np.linalg.inv(a @ r @ a))
    bread_inv = np.linalg.inv(sum(d.T @ v @ d for _, d, v in blocks.values()))
    meat = np.zeros_like(bread_inv)
    for unit in np.unique(units):
        members = [blocks[g] for g in np.unique(groups[units == unit])]
        idx = np.concatenate([i for i, _, _ in members])
        d = np.vstack([d for _, d, _ in members])
        v = np.zeros((len(idx), len(idx)))
        at = 0
        for i, _, vi in members:
            v[at : at + len(i), at : at + len(i)] = vi
            at += len(i)
        resid = y[idx] - mu[idx]
        if corrected:
            h = d @ bread_inv @ d.T @ v
            resid = np.linalg.pinv(np.eye(len(idx)) - h, rcond=1e-9) @ resid
        score = d.T @ v @ resid
        meat += np.outer(score, score)
    return bread_inv @ meat @ bread_inv


@pytest.mark.parametrize("se_type", ["robust", "mancl-derouen"])
def test_mdg_clustered_sandwich_equals_hand_computed(se_type: str) -> None:
    data = counts_design(5).sort_values(["cluster", "period"]).reset_index(drop=True)
    res = stepped_wedge_gee(
        data,
        outcome="events",
        exposure="persons",
        se_type=se_type,
        inference_cluster="mdg",
        df_method="clusters-minus-two",
        **KW,
    )
    x = design_matrix(data, data[["trt"]], units=False)
    ref = sm.GEE(
        data["events"],
        x,
        groups=data["cluster"],
        family=sm.families.Poisson(),
        cov_struct=sm.cov_struct.Exchangeable(),
        offset=np.log(data["persons"]),
    ).fit(**GEE_FIT)
    alpha = float(ref.model.cov_struct.dep_params)
    mu = np.asarray(ref.fittedvalues)
    cov = dense_sandwich(
        x.to_numpy(),
        data["events"].to_numpy(float),
        mu,
        data["cluster"].to_numpy(),
        data["mdg"].to_numpy(),
        alpha,
        corrected=se_type == "mancl-derouen",
    )
    row = res.row("treatment")
    assert row["estimate"] == pytest.approx(ref.params["trt"], rel=1e-8)
    assert row["std_error"] == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-7)
    n_mdg = data["mdg"].nunique()
    assert int(row["n_clusters"]) == n_mdg and row["dof"] == n_mdg - 2
    assert row["se_type"].endswith("clustered by mdg")
    assert res.diagnostics["n_working_clusters"] == data["cluster"].nunique()
    # clustering at the working cluster itself is the default sandwich
    same = stepped_wedge_gee(
        data.assign(unit=data["cluster"]),
        outcome="events",
        exposure="persons",
        se_type=se_type,
        inference_cluster="unit",
        df_method="clusters-minus-two",
        **KW,
    )
    default = stepped_wedge_gee(
        data,
        outcome="events",
        exposure="persons",
        se_type=se_type,
        df_method="clusters-minus-two",
        **KW,
    )
    assert same.std_error("treatment") == pytest.approx(default.std_error("treatment"), rel=1e-10)


def test_mdg_clustered_fixed_effects_sandwich_uses_pseudo_inverse() -> None:
    """Each practice's fixed effect has leverage 1 in its MDG: the Mancl-DeRouen residuals
    use the Moore-Penrose inverse of I - H_g, finite and equal to the dense computation."""
    data = counts_design(6).sort_values(["cluster", "period"]).reset_index(drop=True)
    res = stepped_wedge_gee(
        data,
        outcome="events",
        exposure="persons",
        unit_effects="fixed",
        inference_cluster="mdg",
        df_method="clusters-minus-two",
        **KW,
    )
    x = design_matrix(data, data[["trt"]], units=True)
    ref = sm.GEE(
        data["events"],
        x,
        groups=data["cluster"],
        family=sm.families.Poisson(),
        cov_struct=sm.cov_struct.Independence(),
        offset=np.log(data["persons"]),
    ).fit(**GEE_FIT)
    cov = dense_sandwich(
        x.to_numpy(),
        data["events"].to_numpy(float),
        np.asarray(ref.fittedvalues),
        data["cluster"].to_numpy(),
        data["mdg"].to_numpy(),
        0.0,
        corrected=True,
    )
    assert np.isfinite(res.std_error("treatment"))
    assert res.std_error("treatment") == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-6)


def test_inference_cluster_must_nest_the_clusters() -> None:
    data = counts_design(7)
    data.loc[(data["cluster"] == 1) & (data["period"] == 5), "mdg"] = "m1"
    with pytest.raises(ValueError, match="must nest the working clusters"):
        stepped_wedge_gee(
            data,
            outcome="events",
            exposure="persons",
            inference_cluster="mdg",
            df_method="clusters-minus-two",
            **KW,
        )
    with pytest.raises(ValueError, match="model-based"):
        exposure_time_model(data, outcome="events", inference_cluster="mdg", **KW)


# ---------------------------------------------------------------------------- permutation


def tiny_design() -> pd.DataFrame:
    """Six practices, four periods: MDG A (two practices starting in period 2 and one that never
    takes part), B and C (one practice each, period 3), D (one never-treated practice)."""
    practices = {
        "a1": ("A", 2),
        "a2": ("A", 2),
        "a_never": ("A", None),
        "b1": ("B", 3),
        "c1": ("C", 3),
        "d_never": ("D", None),
    }
    rows = []
    for k, (name, (mdg, start)) in enumerate(practices.items()):
        for t in range(1, 5):
            trt = int(start is not None and t >= start)
            rows.append(
                {
                    "cluster": name,
                    "mdg": mdg,
                    "period": t,
                    "trt": trt,
                    "y": k + 0.3 * t + 1.0 * trt + 0.2 * math.sin(7 * k + t),
                }
            )
    return pd.DataFrame(rows)


def two_way_fe(frame: pd.DataFrame, trt: pd.Series) -> float:
    """Treatment coefficient of OLS on practice and period dummies (one row per cell)."""
    x = pd.get_dummies(frame[["cluster", "period"]].astype(str), drop_first=True, dtype=float)
    x.insert(0, "trt", trt.astype(float))
    return float(sm.OLS(frame["y"], sm.add_constant(x)).fit().params["trt"])


def test_permutation_enumerates_assignments_to_mdgs_only() -> None:
    data = tiny_design()
    res = permutation_test(data, outcome="y", assignment_unit="mdg", n_permutations=100, **KW)
    # By hand: start periods {2, 3, 3} go to the treated MDGs A, B, C in 3 distinct ways;
    # a_never and d_never are controls in every one.
    expected = {}
    for a, b, c in [(2, 3, 3), (3, 2, 3), (3, 3, 2)]:
        start = {"a1": a, "a2": a, "b1": b, "c1": c}
        trt = data["period"] >= data["cluster"].map(start).fillna(np.inf)
        expected[(a, b, c)] = two_way_fe(data, trt)
    observed = expected[(2, 3, 3)]
    assert res.estimate("treatment") == pytest.approx(observed, rel=1e-10)
    table = res.tables["permutation"]
    assert list(table.columns) == ["draw", "estimate", "mdg=A", "mdg=B", "mdg=C", "observed"]
    got = {
        tuple(r[["mdg=A", "mdg=B", "mdg=C"]].astype(int)): r["estimate"]
        for _, r in table.iterrows()
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10)
    assert table.loc[table["observed"], ["mdg=A", "mdg=B", "mdg=C"]].values.tolist() == [[2, 3, 3]]
    p = sum(abs(v) >= abs(observed) - 1e-12 for v in expected.values()) / 3
    assert res.row("treatment")["p_value"] == pytest.approx(p)
    d = res.diagnostics
    assert (d["n_distinct_assignments"], d["n_permutations"], d["n_assigned_units"]) == (3, 3, 3)
    assert d["smallest_attainable_p"] == pytest.approx(1 / 3)
    assert d["permutation_scheme"].startswith("exact: all 3 distinct assignments")
    assert "2 never-treated clusters kept as controls" in d["permutation_scheme"]
    assert int(res.row("treatment")["n_clusters"]) == 3


def test_permutation_by_mdg_monte_carlo_when_assignments_exceed_draws() -> None:
    data = tiny_design()
    res = permutation_test(data, outcome="y", assignment_unit="mdg", n_permutations=2, seed=4, **KW)
    table = res.tables["permutation"]
    assert len(table) == 2 and "observed" not in table
    for _, r in table.iterrows():
        assert sorted(r[["mdg=A", "mdg=B", "mdg=C"]].astype(int)) == [2, 3, 3]
    extreme = int((table["estimate"].abs() >= abs(res.estimate("treatment")) - 1e-12).sum())
    assert res.row("treatment")["p_value"] == pytest.approx((1 + extreme) / 3)
    assert res.diagnostics["smallest_attainable_p"] == pytest.approx(1 / 3)
    assert res.diagnostics["permutation_scheme"].startswith("Monte Carlo: 2 random draws")


def test_permutation_by_unit_refuses_units_whose_clusters_start_apart() -> None:
    data = tiny_design()
    data.loc[(data["cluster"] == "a2") & (data["period"] == 2), "trt"] = 0
    with pytest.raises(ValueError, match=r"treated clusters of mdg \['A'\] start in different"):
        permutation_test(data, outcome="y", assignment_unit="mdg", **KW)


def test_distinct_permutations_of_a_multiset() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    got = _distinct_permutations(values)
    expected = sorted(set(itertools.permutations(values.tolist())))
    assert [tuple(r) for r in got] == expected
    assert _n_distinct(values.tolist()) == len(expected) == 30
    assert _n_distinct([np.nan, np.nan, 1.0]) == 3


# ---------------------------------------------------------------------------- heterogeneity


def sw_exposure_design(sw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The reference data sorted as the estimator sorts it, its exposure-time design and the
    names of the five exposure-time columns."""
    frame = sw.sort_values(["cluster", "period"], kind="mergesort").reset_index(drop=True)
    start = frame[frame["trt"] == 1].groupby("cluster")["period"].min()
    exposure = (frame["period"] - frame["cluster"].map(start) + 1).where(frame["trt"] == 1, 0)
    names = [f"e{e}" for e in range(1, 6)]
    effects = pd.DataFrame({n: (exposure == e).astype(float) for e, n in enumerate(names, 1)})
    return frame, design_matrix(frame, effects, units=False), names


def wald(b: np.ndarray, v: np.ndarray) -> float:
    """Wald statistic of H0: all equal, with consecutive differences as the contrasts."""
    r = np.diff(np.eye(len(b)), axis=0)
    rb = r @ b
    return float(rb @ np.linalg.inv(r @ v @ r.T) @ rb)


def test_heterogeneity_wald_equals_hand_computed_gee() -> None:
    sw = pd.read_csv(reference_csv("sw_data_example.csv"))
    frame, x, names = sw_exposure_design(sw)
    ref = sm.GEE(
        frame["outcome_bin"],
        x,
        groups=frame["cluster"],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    ).fit(**GEE_FIT)
    w = wald(ref.params[names].to_numpy(), ref.cov_params().loc[names, names].to_numpy())
    normal = exposure_time_model(
        sw,
        outcome="outcome_bin",
        model="gee",
        family="binomial",
        se_type="robust",
        df_method="normal",
        heterogeneity_test=True,
        average_over=5,
        **KW,
    ).row("exposure_time_heterogeneity")
    assert normal["estimate"] == pytest.approx(w, rel=1e-6)
    assert normal["p_value"] == pytest.approx(stats.chi2.sf(w, 4), rel=1e-5)
    assert (normal["scale"], normal["df_numerator"]) == ("chi2", 4)
    # t(13) reference with a sandwich: Hotelling T^2 form, F(4, 13 - 4 + 1)
    t_ref = exposure_time_model(
        sw,
        outcome="outcome_bin",
        model="gee",
        family="binomial",
        se_type="robust",
        df_method="clusters-minus-two",
        heterogeneity_test=True,
        average_over=5,
        **KW,
    )
    row = t_ref.row("exposure_time_heterogeneity")
    assert row["estimate"] == pytest.approx(w * 10 / (13 * 4), rel=1e-6)
    assert row["p_value"] == pytest.approx(stats.f.sf(w * 10 / 52, 4, 10), rel=1e-5)
    assert (row["scale"], row["dof"]) == ("F", 10)
    assert t_ref.diagnostics["heterogeneity_reference"] == "Hotelling F(4, 10) with nu = 13"


def test_heterogeneity_wald_equals_hand_computed_lmm() -> None:
    """Model-based covariance: W / q against F(q, clusters - 2)."""
    sw = pd.read_csv(reference_csv("sw_data_example.csv"))
    frame, x, names = sw_exposure_design(sw)
    ref = sm.MixedLM(frame["outcome_cont"], x, groups=frame["cluster"]).fit(reml=True)
    w = wald(ref.fe_params[names].to_numpy(), ref.cov_params().loc[names, names].to_numpy())
    row = exposure_time_model(
        sw, outcome="outcome_cont", heterogeneity_test=True, average_over=5, **KW
    ).row("exposure_time_heterogeneity")
    assert row["estimate"] == pytest.approx(w / 4, rel=1e-3)
    assert row["p_value"] == pytest.approx(stats.f.sf(w / 4, 4, 13), rel=1e-2)
    assert row["dof"] == 13


def test_heterogeneity_not_computable_with_fewer_clusters_than_contrasts() -> None:
    sw = pd.read_csv(reference_csv("sw_data_example.csv"))
    sw = sw.assign(group=(sw["cluster"] - 1) // 5)  # 3 units: sandwich rank <= 3 < 4 contrasts
    res = exposure_time_model(
        sw,
        outcome="outcome_bin",
        model="gee",
        family="binomial",
        inference_cluster="group",
        df_method="clusters-minus-two",
        heterogeneity_test=True,
        average_over=5,
        **KW,
    )
    row = res.row("exposure_time_heterogeneity")
    assert math.isnan(row["estimate"]) and math.isnan(row["p_value"])
    assert (
        "fewer inference clusters than contrasts" in res.diagnostics["heterogeneity_not_computable"]
    )


def null_exposure_world(
    rng: np.random.Generator, n_clusters: int = 40, n_periods: int = 16
) -> pd.DataFrame:
    """Staggered starts, cluster and cluster-period noise, no effect at any exposure time."""
    starts = rng.permutation(np.resize(np.arange(2, 10), n_clusters))
    cl = np.repeat(np.arange(n_clusters), n_periods)
    per = np.tile(np.arange(1, n_periods + 1), n_clusters)
    mu = 60.0 * np.exp(
        rng.normal(scale=0.3, size=n_clusters)[cl]
        + 0.02 * per
        + rng.normal(scale=0.05, size=len(cl))
    )
    return pd.DataFrame(
        {"cluster": cl, "period": per, "trt": (per >= starts[cl]).astype(int), "y": rng.poisson(mu)}
    )


@pytest.mark.slow
def test_heterogeneity_test_size_on_null_worlds() -> None:
    """On 200 null worlds (40 clusters, 15 exposure-time effects: q = 14) the Hotelling form
    rejected 9% at the 5% level and W / q against F(q, nu) (the sandwich treated as known)
    32%: the reason _heterogeneity_test uses the former for a sandwich, and a reminder that
    even it is somewhat liberal with q this close to the number of clusters."""
    rng = np.random.default_rng(2016)
    hotelling, plain = [], []
    for _ in range(200):
        res = exposure_time_model(
            null_exposure_world(rng),
            outcome="y",
            model="gee",
            df_method="clusters-minus-two",
            heterogeneity_test=True,
            average_over=None,
            **KW,
        )
        row = res.row("exposure_time_heterogeneity")
        q, den, nu = int(row["df_numerator"]), float(row["dof"]), 38.0
        w = float(row["estimate"]) * nu * q / den
        hotelling.append(row["p_value"] < 0.05)
        plain.append(stats.f.sf(w / q, q, nu) < 0.05)
    assert 0.02 <= np.mean(hotelling) <= 0.12
    assert np.mean(plain) >= 0.2


# ---------------------------------------------------------------------------- protocols


SW_SENSITIVITIES = {
    "sw_emergency_admissions": {
        "immediate_effect",
        "negative_binomial",
        "permutation",
        "mdg_clustered",
        "practice_fixed_effects",
        "practice_fixed_effects_mdg_clustered",
        "exposure_time_curve",
        "permutation_mdg",
    },
    "sw_care_home_admissions": {
        "immediate_effect",
        "mdg_clustered",
        "practice_fixed_effects",
        "practice_fixed_effects_mdg_clustered",
        "exposure_time_curve",
        "permutation_mdg",
    },
    **{
        f"sw_survey_{name}": {"exposure_time", "practice_fixed_effects"}
        for name in ("eq5d", "loneliness", "pacic", "selfman", "wellbeing")
    },
}


def test_shipped_sw_protocols_load_with_the_design_sensitivities() -> None:
    protocols = {p.id: p for p in load_protocols(ROOT / "protocols")}
    for pid, expected in SW_SENSITIVITIES.items():
        analyses = {a.analysis_id: a for a in protocols[pid].analyses()}
        assert set(analyses) - {"primary"} == expected, pid
        if pid.startswith("sw_survey_"):
            assert analyses["exposure_time"].method.options["heterogeneity_test"] is True
            assert analyses["practice_fixed_effects"].method.options["unit_effects"] == "fixed"
            continue
        primary = analyses["primary"].method.options
        assert "inference_cluster" not in primary and "unit_effects" not in primary
        assert analyses["mdg_clustered"].method.options["inference_cluster"] == "mdg"
        assert analyses["permutation_mdg"].method.options["assignment_unit"] == "mdg"
        assert analyses["exposure_time_curve"].method.options["heterogeneity_test"] is True


def test_design_options_name_columns_checked_when_a_protocol_loads(tmp_path: Path) -> None:
    assert "inference_cluster" in column_options(stepped_wedge_gee)
    assert "inference_cluster" in column_options(exposure_time_model)
    assert "assignment_unit" in column_options(permutation_test)
    content = yaml.safe_load((ROOT / "protocols" / "sw_emergency_admissions.yml").read_text())
    content["sensitivity"].append(
        {
            "id": "bad",
            "method": {"name": "sw_permutation", "options": {"assignment_unit": "no_such_column"}},
        }
    )
    path = tmp_path / "sw_emergency_admissions.yml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(ProtocolError, match="no_such_column"):
        load_protocol(path)
