"""One treated area (issue 16, point 6): placebo-in-space and Ferman-Pinto inference for the
single-treated-unit DiD, checked against direct computation, in simulation, and in the shipped
protocols."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import lsq_linear

from analysis.did import _placebo_inference, twfe
from analysis.protocol import ProtocolError, load_protocol, load_protocols

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"
N_AREAS, N_MONTHS, START = 6, 20, 11


def _panel(
    seed: int = 3,
    effect: float = 0.0,
    population: np.ndarray | None = None,
    shifts: np.ndarray | None = None,
    noise: float = 0.5,
) -> pd.DataFrame:
    """6 areas x 20 months, area 0 treated from month 11: area and month effects, noise of SD
    ``noise``, the ``effect`` on area 0, and optional post-period ``shifts`` per area (its own
    shock)."""
    rng = np.random.default_rng(seed)
    area, month = np.divmod(np.arange(N_AREAS * N_MONTHS), N_MONTHS)
    month = month + 1
    post = (month >= START).astype(float)
    y = (
        rng.normal(0, 2, N_AREAS)[area]
        + rng.normal(0, 1, N_MONTHS)[month - 1]
        + rng.normal(0, noise, area.size)
    )
    if shifts is not None:
        y = y + shifts[area] * post
    d = (area == 0) * post
    pop = np.full(N_AREAS, 5000.0) if population is None else population
    return pd.DataFrame(
        {"area": area, "month": month, "y": y + effect * d, "d": d, "pop": pop[area]}
    )


def _fit(data: pd.DataFrame, se_type: str, **options: object):
    extra = {"population": "pop"} if se_type == "ferman_pinto" else {}
    return twfe(
        data,
        outcome="y",
        unit="area",
        time="month",
        treatment="d",
        se_type=se_type,
        **extra,
        **options,
    )


def _by_hand(data: pd.DataFrame) -> np.ndarray:
    """Each area's post-minus-pre mean less that of its comparators (area 0 never one)."""
    means = data.assign(post=data["month"] >= START).groupby(["area", "post"])["y"].mean()
    change = (means.xs(True, level="post") - means.xs(False, level="post")).to_numpy()
    stats = np.empty(N_AREAS)
    stats[0] = change[0] - change[1:].mean()
    for j in range(1, N_AREAS):
        stats[j] = change[j] - np.delete(change[1:], j - 1).mean()
    return stats


@pytest.mark.parametrize("effect", [0.0, 3.0])
def test_placebo_rank_and_p_by_hand(effect: float) -> None:
    data = _panel(effect=effect)
    res = _fit(data, "placebo")
    stats = _by_hand(data)
    rank = 1 + int(np.sum(np.abs(stats[1:]) >= abs(stats[0])))
    row = res.row("d")
    assert row["estimate"] == pytest.approx(stats[0], rel=1e-10)
    assert res.diagnostics["placebo_rank"] == rank
    assert row["p_value"] == pytest.approx(rank / N_AREAS)
    assert row["p_value"] >= res.diagnostics["p_min"] == pytest.approx(1 / N_AREAS)
    assert np.isnan(row["std_error"]) and "p = rank / 6 (smallest 0.167)" in row["se_type"]
    table = res.tables["placebo"].set_index("unit").sort_index()
    np.testing.assert_allclose(table["statistic"], stats, rtol=1e-10)
    assert table.loc[0, "rank"] == rank and table.loc[0, "treated"]
    assert res.diagnostics["placebo_sd"] == pytest.approx(np.std(stats[1:], ddof=1))
    if effect:
        assert rank == 1


def test_placebo_interval_is_the_test_inversion() -> None:
    """At 80% with 6 areas the interval is estimate +- the largest comparator |statistic|:
    effects just inside are not rejected (p > 0.2), effects just outside are (p = 1/6). At 95%
    no effect can be rejected, since p >= 1/6, and the interval is unbounded (NaN)."""
    data = _panel(effect=3.0)
    res = _fit(data, "placebo", level=0.8)
    row = res.row("d")
    half = np.abs(_by_hand(data)[1:]).max()
    assert row["ci_low"] == pytest.approx(row["estimate"] - half)
    assert row["ci_high"] == pytest.approx(row["estimate"] + half)
    for bound, inward in ((row["ci_low"], 1e-6), (row["ci_high"], -1e-6)):
        inside = _fit(data.assign(y=data["y"] - (bound + inward) * data["d"]), "placebo")
        outside = _fit(data.assign(y=data["y"] - (bound - inward) * data["d"]), "placebo")
        assert inside.row("d")["p_value"] > 0.2 >= outside.row("d")["p_value"]
    wide = _fit(data, "placebo")
    assert np.isnan(wide.row("d")["ci_low"]) and np.isnan(wide.row("d")["ci_high"])
    assert "no bounded 95% interval" in wide.diagnostics["ci_note"]
    assert wide.diagnostics["ci_max_level"] == pytest.approx(5 / 6)
    assert wide.diagnostics["ci_low_at_max_level"] == pytest.approx(row["ci_low"])


def test_ferman_pinto_with_equal_populations_is_the_plain_placebo_test() -> None:
    for effect in (0.0, 0.8, 3.0):
        data = _panel(effect=effect)
        plain, fp = _fit(data, "placebo"), _fit(data, "ferman_pinto")
        assert fp.row("d")["p_value"] == plain.row("d")["p_value"]
        assert fp.diagnostics["placebo_rank"] == plain.diagnostics["placebo_rank"]
        pd.testing.assert_series_equal(
            fp.tables["placebo"]["rank"], plain.tables["placebo"]["rank"]
        )
        assert fp.diagnostics["fp_sd_ratio_treated"] == pytest.approx(1.0)


def test_ferman_pinto_ranks_a_much_larger_treated_area_higher() -> None:
    """Comparators' own shocks shrink as 1 / sqrt(population); the treated area is 100 times
    the largest comparator, so its moderate statistic is extreme only once each statistic is
    divided by its SD under Var = A + B / N (checked against bounded least squares)."""
    population = np.array([1.6e6, 1e3, 2e3, 4e3, 8e3, 16e3])
    shifts = np.array([0.0, 1.0, -1.0, 1.0, -1.0, 1.0]) * 30 / np.sqrt(population)
    data = _panel(effect=0.6, population=population, shifts=shifts, noise=0.02)
    plain, fp = _fit(data, "placebo"), _fit(data, "ferman_pinto")
    assert plain.diagnostics["placebo_rank"] >= 3
    assert fp.diagnostics["placebo_rank"] == 1
    assert fp.row("d")["p_value"] == pytest.approx(1 / 6)
    assert plain.row("d")["p_value"] == pytest.approx(plain.diagnostics["placebo_rank"] / 6)
    table = fp.tables["placebo"].set_index("unit").sort_index()
    stats = _by_hand(data)
    np.testing.assert_allclose(table["statistic"], stats, rtol=1e-10)
    inverse = 1 / population
    design = np.column_stack([np.full(6, 1 + 1 / 5), inverse + inverse[1:].mean() / 5])
    fit = lsq_linear(design[1:], stats[1:] ** 2, bounds=(0, np.inf), method="bvls")
    np.testing.assert_allclose(table["sd"], np.sqrt(design @ fit.x), rtol=1e-6)
    assert fp.diagnostics["fp_var_inverse_population"] == pytest.approx(fit.x[1], rel=1e-6)
    assert fp.diagnostics["fp_sd_ratio_treated"] < 0.5


def test_ferman_pinto_needs_its_population_option() -> None:
    data = _panel()
    with pytest.raises(ValueError, match="needs population"):
        twfe(data, outcome="y", unit="area", time="month", treatment="d", se_type="ferman_pinto")
    with pytest.raises(ValueError, match="only it reads population"):
        _fit(data, "placebo", population="pop")
    with pytest.raises(ValueError, match="positive population"):
        _fit(data.assign(pop=np.where(data["area"] == 2, 0.0, data["pop"])), "ferman_pinto")


def _rejection(reps: int, treated_population: float, seed: int = 20260616) -> dict[str, float]:
    """Share of null worlds with p <= 0.10: 20 areas x 20 months, noise variance
    0.2 + 20,000 / N by population (comparators 5,000 to 200,000), rejection exactly 10% for
    exchangeable areas (p takes the values k / 20)."""
    rng = np.random.default_rng(seed)
    n_areas, n_months = 20, 20
    population = np.concatenate([[treated_population], np.geomspace(5e3, 2e5, n_areas - 1)])
    sd = np.sqrt(0.2 + 2e4 / population)
    path = (np.arange(n_months) >= 10).astype(float)
    units = pd.Index(np.arange(n_areas))
    sizes = pd.Series(population, index=units)
    p = {"placebo": [], "ferman_pinto": []}
    for _ in range(reps):
        y = (
            rng.normal(0, 1, (n_areas, 1))
            + rng.normal(0, 1, (1, n_months))
            + sd[:, None] * rng.normal(size=(n_areas, n_months))
        )
        wide = pd.DataFrame(y, index=units)
        for name, pop in (("placebo", None), ("ferman_pinto", sizes)):
            p[name].append(_placebo_inference(wide, 0, path, pop, 0.95)[0]["p_value"])
    assert min(min(v) for v in p.values()) >= 1 / n_areas
    return {name: float(np.mean(np.array(v) <= 0.10)) for name, v in p.items()}


def test_ferman_pinto_near_nominal_where_the_placebo_test_is_not_fast() -> None:
    """300 null worlds each, nominal 10%. Treated area of 4,000 (noisier than every
    comparator): the plain placebo test rejects 37%, Ferman-Pinto 16%; treated area of
    1,000,000 (quieter): 0.3% and 14%. Ferman-Pinto stays above nominal: A and B are fitted
    on 19 comparators and extrapolated beyond their sizes."""
    small = _rejection(300, 4e3)
    large = _rejection(300, 1e6)
    assert small["placebo"] > 0.25 and large["placebo"] < 0.03
    for rates in (small, large):
        assert abs(rates["ferman_pinto"] - 0.10) < abs(rates["placebo"] - 0.10)
        assert rates["ferman_pinto"] < 0.2


@pytest.mark.slow
def test_ferman_pinto_near_nominal_where_the_placebo_test_is_not_slow() -> None:
    """4,000 null worlds each (MC SE about 0.5 points at 10%): plain 37.2% and 0.2%,
    Ferman-Pinto 17.3% and 12.5%."""
    small = _rejection(4000, 4e3, seed=7)
    large = _rejection(4000, 1e6, seed=8)
    assert small["placebo"] > 0.3 and large["placebo"] < 0.01
    assert 0.08 < small["ferman_pinto"] < 0.2 and 0.08 < large["ferman_pinto"] < 0.15


def test_area_protocols_load_with_the_placebo_sensitivities(tmp_path: Path) -> None:
    protocols = {p.id: p for p in load_protocols(PROTOCOLS)}
    analyses = {a.analysis_id: a for a in protocols["did_area_emergency_admissions"].analyses()}
    assert analyses["primary"].method.options["se_type"] == "random_walk"
    assert analyses["placebo_in_space"].method.options["se_type"] == "placebo"
    fp = analyses["ferman_pinto"].method.options
    assert fp["se_type"] == "ferman_pinto" and fp["population"] == "population_65plus"
    assert fp["unit"] == "area_code" and fp["treatment"] == "salford_post"
    source = PROTOCOLS / "did_area_emergency_admissions.yml"
    broken = tmp_path / source.name
    shutil.copy(source, broken)
    broken.write_text(broken.read_text().replace("population_65plus", "population_85plus"))
    with pytest.raises(ProtocolError, match="population_85plus"):
        load_protocol(broken)
