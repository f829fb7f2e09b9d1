"""Callaway & Sant'Anna aggregations, pre-tests and start dates inside a period (issue 16).

The aggregations against their definitions in Callaway & Sant'Anna (2021, section 3) on the R
package's ``mpdta`` and on a noise-free panel worked by hand; the pooled pre-test without a
single-unit cohort against the same test on the panel without it; cohorts between two periods
(a practice starting in the third month of a quarter) on a panel whose effects are known; and
the monthly and partial-quarter sensitivities on the small world's practice panel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.did import callaway_santanna
from analysis.methods import fit
from analysis.protocol import load_protocol
from analysis.results import EstimationResult
from analysis.runner import prepare_panel, read_panel
from sicp.settings import PROJECT_ROOT
from tests.reference_data import reference_csv
from tests.worlds import BuiltWorld

FIXTURES = Path(__file__).parent / "fixtures" / "did_aggregation"
MONTHLY = FIXTURES / "did_practice_emergency_admissions_monthly.yml"
PRACTICE_DID = PROJECT_ROOT / "protocols" / "did_practice_emergency_admissions.yml"


def _panel(
    cohorts: dict[float, int],
    n_periods: int,
    rng: np.random.Generator | None = None,
    effect: Callable[[float, float], float] = lambda g, t: 0.0,
) -> pd.DataFrame:
    """Units in the given cohorts (0 = never treated) with unit and period effects, an effect
    ``effect(g, t)`` from period g on, and N(0, 1) noise when ``rng`` is given."""
    g = np.concatenate([[c] * k for c, k in cohorts.items()]).astype(float)
    unit, t = np.divmod(np.arange(g.size * n_periods), n_periods)
    t = t + 1.0
    y = (
        0.5 * unit
        + np.log(t)
        + np.array(
            [effect(gi, ti) if 0 < gi <= ti else 0.0 for gi, ti in zip(g[unit], t, strict=True)]
        )
    )
    if rng is not None:
        y = y + rng.normal(0, 1, y.size)
    return pd.DataFrame({"unit": unit, "time": t, "cohort": g[unit], "y": y})


def _cs(data: pd.DataFrame, **options: object) -> EstimationResult:
    return callaway_santanna(
        data, outcome="y", unit="unit", time="time", cohort="cohort", bootstrap=False, **options
    )


# ------------------------------------------------------------------ aggregations by definition


def test_aggregations_follow_their_definitions_on_mpdta() -> None:
    """theta_sel(g) = mean of ATT(g,t) over t >= g; group_overall = sum_g theta_sel(g)
    P(G=g | G<=T); simple = cohort-size-weighted mean of post cells; calendar theta_C(t) and
    dynamic theta_D(e) weight the cells of one t (one e) by cohort size, and their overall
    terms average over t (over e >= 0). Computed here from the att_gt rows and the counts."""
    data = pd.read_csv(reference_csv("did_mpdta.csv"))
    res = callaway_santanna(
        data, outcome="lemp", unit="countyreal", time="year", cohort="first.treat", bootstrap=False
    )
    size = data.groupby("countyreal")["first.treat"].first().value_counts()
    size.index = size.index.astype(float)
    cells = res.tidy[res.tidy["aggregation"] == "att_gt"]
    post = cells[cells["time"] >= cells["group"]]
    theta = post.groupby("group")["estimate"].mean()
    for g, value in theta.items():
        assert res.estimate(f"group[g={g:g}]") == pytest.approx(value, rel=1e-12)
    share = size.loc[theta.index] / size.loc[theta.index].sum()
    assert res.estimate("group_overall") == pytest.approx((theta * share).sum(), rel=1e-12)

    def by_size(c: pd.DataFrame) -> float:
        return float(np.average(c["estimate"], weights=size.loc[c["group"]]))

    assert res.estimate("simple") == pytest.approx(by_size(post), rel=1e-12)
    calendar = {t: by_size(c) for t, c in post.groupby("time")}
    for t, value in calendar.items():
        assert res.estimate(f"calendar[t={t:g}]") == pytest.approx(value, rel=1e-12)
    assert res.estimate("calendar_overall") == pytest.approx(
        np.mean(list(calendar.values())), rel=1e-12
    )
    dynamic = {e: by_size(c) for e, c in cells.groupby("event_time") if e >= 0}
    assert res.estimate("dynamic_overall") == pytest.approx(
        np.mean(list(dynamic.values())), rel=1e-12
    )


def test_group_and_simple_aggregations_by_hand() -> None:
    """Noise-free: ATT(g,t) is the effect itself. Cohort 3 (2 units) has effects 1, 2, 3, 4 in
    periods 3-6, cohort 5 (3 units) 10 and 20 in periods 5-6, 2 never-treated units.
    group: theta(3) = 2.5, theta(5) = 15, overall (2 * 2.5 + 3 * 15) / 5 = 10.
    simple: (2 * (1+2+3+4) + 3 * (10+20)) / (2*4 + 3*2) = 110 / 14: the early cohort's four
    post periods give it 8 of the 14 weights though it has 2 of the 5 treated units."""
    effects = {3.0: {3: 1.0, 4: 2.0, 5: 3.0, 6: 4.0}, 5.0: {5: 10.0, 6: 20.0}}
    res = _cs(_panel({0: 2, 3: 2, 5: 3}, 6, effect=lambda g, t: effects[g][int(t)]))
    assert res.estimate("group[g=3]") == pytest.approx(2.5, abs=1e-12)
    assert res.estimate("group[g=5]") == pytest.approx(15.0, abs=1e-12)
    assert res.estimate("group_overall") == pytest.approx(10.0, abs=1e-12)
    assert res.estimate("simple") == pytest.approx(110 / 14, abs=1e-12)
    # calendar: t=3: 1, t=4: 2, t=5: (2*3 + 3*10)/5, t=6: (2*4 + 3*20)/5
    assert res.estimate("calendar_overall") == pytest.approx((1 + 2 + 7.2 + 13.6) / 4, abs=1e-12)
    # dynamic: e=0: (2*1 + 3*10)/5, e=1: (2*2 + 3*20)/5, e=2: 3, e=3: 4
    assert res.estimate("dynamic_overall") == pytest.approx((6.4 + 12.8 + 3 + 4) / 4, abs=1e-12)


def test_group_overall_standard_error_matches_its_sampling_distribution() -> None:
    """Cohorts drawn at random, with different effects: the group aggregation's SE must carry
    the variation of the cohort shares (the weights' influence function) as well as the cells'.
    The mean analytic SE against the SD of the estimates over 300 panels (0.96; 0.61 without
    the weights' term), and 95% coverage of the population value
    P(G=3 | treated) * 1 + P(G=5 | treated) * 5 = 3."""
    rng = np.random.default_rng(16)
    estimates, ses, covered = [], [], []
    for _ in range(300):
        counts = rng.multinomial(90, [1 / 3, 1 / 3, 1 / 3])
        data = _panel(
            dict(zip((0.0, 3.0, 5.0), counts, strict=True)),
            6,
            rng,
            effect=lambda g, t: 1.0 if g == 3 else 5.0,
        )
        row = _cs(data).row("group_overall")
        estimates.append(row["estimate"])
        ses.append(row["std_error"])
        covered.append(row["ci_low"] <= 3.0 <= row["ci_high"])
    assert np.mean(ses) / np.std(estimates) == pytest.approx(1.0, abs=0.12)
    assert 0.91 <= np.mean(covered) <= 0.99


# ---------------------------------------------------------------------------------- pre-tests


def test_pretest_leaves_out_a_single_unit_cohort() -> None:
    """The pooled tests with a one-unit cohort (g=5) are those of the panel without that unit
    (never-treated controls, so it is no one's control); its own cells stay in the att_gt rows
    and the diagnostics name it with its size."""
    data = _panel({0: 30, 4: 25, 5: 1, 6: 25}, 8, np.random.default_rng(3))
    res = _cs(data)
    alone = data.loc[data["cohort"] == 5, "unit"].iloc[0]
    without = _cs(data[data["unit"] != alone])
    for key in ("pretest_wald", "pretest_means_wald"):
        assert res.diagnostics[key] == pytest.approx(without.diagnostics[key], rel=1e-10)
    assert res.diagnostics["pretest_df"] == without.diagnostics["pretest_df"] == 2 + 4
    assert res.diagnostics["pretest_means_df"] == 2
    assert res.row("pretest_wald")["p_value"] == pytest.approx(res.diagnostics["pretest_p"])
    assert res.diagnostics["pretest_cohorts"] == "g=4 (25 units), g=6 (25 units)"
    assert res.diagnostics["pretest_excluded_cohorts"] == "g=5 (1 unit)"
    assert {f"att_gt[g=5,t={t}]" for t in range(2, 9)} <= set(res.tidy["term"])
    pooled_all = _cs(data, min_cohort_units=1)
    assert pooled_all.diagnostics["pretest_df"] == 2 + 3 + 4
    assert pooled_all.diagnostics["pretest_excluded_cohorts"] == "none"
    # clustered: the size that counts is the number of clusters a cohort's units span
    clustered = _cs(data.assign(cl=np.where(data["cohort"] == 6, -1, data["unit"])), cluster="cl")
    assert clustered.diagnostics["pretest_excluded_cohorts"] == "g=5 (1 cluster), g=6 (1 cluster)"
    with pytest.raises(ValueError, match="min_cohort_units"):
        _cs(data, min_cohort_units=0)


def test_pretests_under_parallel_trends_on_the_practice_design() -> None:
    """The SICP roll-out's shape (13 never-treated, cohorts of 8 and 25 and one of 1, 32
    quarters) with parallel trends. The cell-level Wald (R did's test) inverts an 18 x 18
    covariance that the cohort of 8 units can hardly estimate and rejects at 5% in about 75% of
    panels; the test of the cohorts' mean pre-period cells (2 restrictions) in about 10% (800
    panels each; 200 here), still above its level, since cohort 9's variance rests on 8 units."""
    rng = np.random.default_rng(2022)
    cells, means = [], []
    for _ in range(200):
        res = _cs(_panel({0: 13, 6: 1, 9: 8, 13: 25}, 32, rng))
        cells.append(res.diagnostics["pretest_p"] < 0.05)
        means.append(res.diagnostics["pretest_means_p"] < 0.05)
    assert res.diagnostics["pretest_df"] == 18 and res.diagnostics["pretest_means_df"] == 2
    assert np.mean(cells) > 0.6
    assert 0.02 <= np.mean(means) <= 0.2


def test_no_wald_test_when_cells_outnumber_the_clusters() -> None:
    data = _panel({0: 4, 9: 4}, 12, np.random.default_rng(4))
    res = _cs(data)
    assert "pretest_wald" not in res.diagnostics
    assert "pretest_wald" not in set(res.tidy["term"])
    assert res.diagnostics["pretest_note"].startswith("no Wald test: the covariance of the 7")
    assert res.diagnostics["pretest_means_p"] > 0  # one restriction: well defined


# ---------------------------------------------------------------- a start inside a period


def _quarterly(starts: dict[int, int], effect: float, noise: bool = False) -> pd.DataFrame:
    """Practices (start month: count; 0 = never) over 24 months with an effect from their start
    month, averaged to quarters; ``start_exact`` is the start in quarters (3.667 = month 9)."""
    rows = []
    rng = np.random.default_rng(9)
    unit = 0
    for start, count in starts.items():
        for _ in range(count):
            for month in range(1, 25):
                y = 0.3 * unit + np.sin(month) + (effect if 0 < start <= month else 0.0)
                rows.append(
                    {
                        "unit": unit,
                        "month": month,
                        "start": start,
                        "y": y + (rng.normal() if noise else 0.0),
                    }
                )
            unit += 1
    frame = pd.DataFrame(rows).assign(time=lambda d: (d["month"] - 1) // 3 + 1)
    out = frame.groupby(["unit", "time", "start"], as_index=False)["y"].mean()
    out["start_quarter"] = np.where(out["start"] > 0, (out["start"] - 1) // 3 + 1, 0)
    out["start_exact"] = np.where(out["start"] > 0, (out["start"] - 1) / 3 + 1, 0.0)
    return out


def test_partly_treated_first_quarter_is_left_out() -> None:
    """A constant effect of 1 from the start month. Practices starting in month 7 (quarter 3's
    first month) and month 9 (its third) share start quarter 3, whose average is 1/3 treated
    for the latter: coded by quarter, the first cell is diluted. With the start in quarters
    (3.667) the partial quarter is its own row, the base is quarter 2 and every aggregated
    cell is fully treated, so all aggregations equal the effect."""
    data = _quarterly({0: 3, 7: 2, 9: 2}, effect=1.0)
    coarse = callaway_santanna(
        data, outcome="y", unit="unit", time="time", cohort="start_quarter", bootstrap=False
    )
    assert coarse.estimate("att_gt[g=3,t=3]") == pytest.approx((1 + 1 / 3) / 2, abs=1e-12)
    exact = callaway_santanna(
        data, outcome="y", unit="unit", time="time", cohort="start_exact", bootstrap=False
    )
    partial = exact.row("att_gt[g=3.66667,t=3]")
    assert partial["aggregation"] == "att_gt_partial"
    assert partial["estimate"] == pytest.approx(1 / 3, abs=1e-12)
    assert exact.estimate("att_gt[g=3.66667,t=4]") == pytest.approx(1.0, abs=1e-12)
    for term in (
        "simple",
        "group_overall",
        "calendar_overall",
        "dynamic_overall",
        "event[e=0]",
        "group[g=3]",
        "group[g=3.66667]",
    ):
        assert exact.estimate(term) == pytest.approx(1.0, abs=1e-12), term
    assert coarse.estimate("simple") == pytest.approx((5 + 2 / 3) / 6, abs=1e-12)
    # the partial cell is neither a pre-period cell nor at an event time
    noisy = callaway_santanna(
        _quarterly({0: 6, 7: 5, 9: 5}, 1.0, noise=True),
        outcome="y",
        unit="unit",
        time="time",
        cohort="start_exact",
        bootstrap=False,
    )
    assert noisy.diagnostics["pretest_df"] == 1 + 1  # t=2 of each cohort; not t=3 of 3.667
    assert pd.isna(noisy.row("att_gt[g=3.66667,t=3]")["event_time"])


def test_partly_treated_practice_is_not_a_not_yet_treated_control() -> None:
    """Not-yet-treated controls of cohort 3 at quarter 5 (base 2): a practice starting in
    month 15, quarter 5's third month, is partly treated in quarter 5 and must not be one."""
    data = _quarterly({0: 3, 7: 2, 15: 2}, effect=1.0)
    exact = callaway_santanna(
        data,
        outcome="y",
        unit="unit",
        time="time",
        cohort="start_exact",
        control_group="notyet",
        bootstrap=False,
    )
    # as a control it would give 1 - (2/5) * (1/3): its quarter 5 is a third treated
    assert exact.estimate("att_gt[g=3,t=5]") == pytest.approx(1.0, abs=1e-12)
    assert exact.estimate("att_gt[g=3,t=4]") == pytest.approx(1.0, abs=1e-12)  # it is, here


# ------------------------------------------------------------ the practice panel, small world


def test_monthly_and_partial_quarter_sensitivities_on_the_small_world(
    small_dbt_world: BuiltWorld,
) -> None:
    """The monthly protocol (tests/fixtures/did_aggregation) loads against the dbt manifest and
    fits with its bootstrap on the practice-month panel in bounded time, one cohort per start
    month; the shipped protocol's partial_first_quarter sensitivity fits beside the primary."""
    panel = read_panel(small_dbt_world.warehouse, "practice_month_panel")
    monthly = load_protocol(MONTHLY)
    started = time.perf_counter()
    res = fit(monthly.method, prepare_panel(panel, monthly.data), outcome=monthly.outcome)
    assert time.perf_counter() - started < 30
    starts = sorted(set(panel.loc[panel["start_period"] > 0, "start_period"].astype(float)))
    groups = res.tidy.loc[res.tidy["aggregation"] == "group", "group"]
    assert sorted(groups) == starts
    assert res.tidy["boot_se"].notna().any()
    for term in ("simple", "group_overall", "calendar_overall", "dynamic_overall"):
        assert np.isfinite(res.estimate(term)) and res.std_error(term) > 0

    protocol = load_protocol(PRACTICE_DID)
    prepared = prepare_panel(panel, protocol.data)
    analyses = {a.analysis_id: a for a in protocol.analyses()}
    primary = fit(analyses["primary"].method, prepared, outcome=protocol.outcome)
    partial = fit(analyses["partial_first_quarter"].method, prepared, outcome=protocol.outcome)
    mid_quarter = sorted({(s - 1) / 3 + 1 for s in starts if (s - 1) % 3})
    partial_groups = set(partial.tidy.loc[partial.tidy["aggregation"] == "group", "group"])
    assert set(mid_quarter) <= partial_groups
    assert (partial.tidy["aggregation"] == "att_gt_partial").any() == bool(mid_quarter)
    assert primary.diagnostics["n_cohorts"] == len({(s - 1) // 3 + 1 for s in starts})
