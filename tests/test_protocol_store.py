"""Protocol validation (clear errors) and the results store (lineage, byte-identical files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.economics import cost_consequence
from analysis.its import segmented_its
from analysis.protocol import ProtocolError, canonical_hash, load_protocol, load_protocols
from analysis.results import inference_row, tidy_frame
from analysis.runner import apply_filters, run_protocol
from analysis.store import LINEAGE, STORE_COLUMNS, to_store_rows, write_results
from analysis.trial import itt_ancova
from sicp.report_data import cost_consequence_rows

GOOD = {
    "id": "demo_protocol",
    "title": "Demo",
    "question": "Does it work?",
    "population": "everyone",
    "outcome": "emergency_admissions",
    "estimand": "ATT",
    "data": {"panel": "practice_month_panel"},
    "method": {
        "name": "sw_gee",
        "options": {"treatment": "in_mdg_scope", "period": "period", "cluster": "practice_code"},
    },
    "sensitivity": [{"id": "lmm", "method": {"name": "sw_lmm"}}],
}
COST_BLOCK = {"outcome": "cost_gbp", "periods_per_year": 12, "price_year": 2018}


def write(tmp_path: Path, content: dict, name: str | None = None) -> Path:
    path = tmp_path / f"{name or content.get('id', 'x')}.yml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


def test_a_good_protocol_loads_with_its_analyses(tmp_path):
    protocol = load_protocol(write(tmp_path, GOOD))
    analyses = protocol.analyses()
    assert [a.analysis_id for a in analyses] == ["primary", "lmm"]
    assert analyses[1].method.name == "sw_lmm"
    assert protocol.hash == canonical_hash(GOOD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": {"name": "magic"}}, "method.name 'magic' is not a known method"),
        (
            {"data": {"panel": "nowhere"}},
            "data.panel must be one of the dbt project's analysis "
            "panels (marts tagged analysis_panel): "
            "area_month_panel, ",
        ),
        # A mart that is not an analysis panel, and the two phantom panels once listed.
        ({"data": {"panel": "study_calendar"}}, "data.panel must be one of"),
        ({"data": {"panel": "person_wave_costs"}}, "data.panel must be one of"),
        # Every column a protocol names is checked against the panel's manifest columns.
        (
            {"outcome": "emergency_admisions"},
            "analysis 'primary': outcome names 'emergency_admisions', not a column of "
            "practice_month_panel",
        ),
        ({"covariates": ["age"]}, "analysis 'primary': covariates names 'age'"),
        (
            {
                "method": {
                    "name": "sw_gee",
                    "options": {
                        "treatment": "in_mdg_scope",
                        "period": "period",
                        "cluster": "mdg_id",
                    },
                }
            },
            "analysis 'primary': option cluster names 'mdg_id'",
        ),
        (
            {
                "sensitivity": [
                    {"id": "lmm", "method": {"name": "sw_lmm", "options": {"subject": "person_id"}}}
                ]
            },
            "analysis 'lmm': option subject names 'person_id'",
        ),
        (
            {"sensitivity": [{"id": "recent", "filters": {"year": 2016}}]},
            "analysis 'recent': filters names 'year'",
        ),
        (
            {
                "data": {
                    "panel": "practice_month_panel",
                    "derive": {"rate": "emergency_admissions / population"},
                }
            },
            "data.derive.rate reads 'population', not a column of practice_month_panel",
        ),
        (
            {
                "data": {
                    "panel": "practice_month_panel",
                    "derive": {"rate": "emergency_admissions /"},
                }
            },
            "data.derive.rate: not a valid expression",
        ),
        (
            {
                "data": {
                    "panel": "practice_month_panel",
                    "aggregate": {
                        "by": ["practice_code", "month"],
                        "sum": ["emergency_admissions"],
                    },
                }
            },
            "option treatment names 'in_mdg_scope'",
        ),  # aggregated away
        (
            {
                "data": {
                    "panel": "practice_month_panel",
                    "aggregate": {"by": ["practice_code", "qtr"], "sum": []},
                }
            },
            "data.aggregate.by names 'qtr'",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "outcome": "cost_pounds", "terms": ["treatment"]}},
            "analysis 'cost_consequence': outcome names 'cost_pounds'",
        ),
        ({"colour": "blue"}, "unknown field(s): colour"),
        ({"covariates": "age"}, "covariates must be a list"),
        ({"level": "galaxy"}, "level 'galaxy' must be one of"),
        (
            {"reporting": {"term": "t", "unit": "per 1", "000 per month": None}},
            "reporting must be a mapping of term, transform and unit",
        ),
        ({"sensitivity": [{"method": {"name": "sw_lmm"}}]}, "sensitivity[0] must be a mapping"),
        (
            {
                "method": {
                    "name": "sw_gee",
                    "options": {"treatment": "t", "period": "p", "cluster": "c", "bogus": 1},
                }
            },
            "unknown option 'bogus' for sw_gee",
        ),
        (
            {"method": {"name": "sw_gee", "options": {"treatment": "t"}}},
            "sw_gee needs option 'cluster'",
        ),
        ({"cost_consequence": ["cost"]}, "cost_consequence must be a mapping"),
        (
            {"cost_consequence": {"outcome": "cost", "price_year": 2018}},
            "cost_consequence: missing required field(s): periods_per_year",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "method": {"name": "sw_lmm"}}},
            "cost_consequence: unknown field(s): method",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "periods_per_year": 0}},
            "cost_consequence.periods_per_year must be a positive number",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "periods_per_year": "monthly"}},
            "cost_consequence.periods_per_year must be a positive number",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "price_year": "2017/18"}},
            "cost_consequence.price_year must be a year",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "outcome": ["cost"]}},
            "cost_consequence.outcome must be a column name",
        ),
        ({"cost_consequence": COST_BLOCK}, "cost_consequence.terms is needed when"),
        (
            {"cost_consequence": {**COST_BLOCK, "terms": []}},
            "cost_consequence.terms must be a non-empty list",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "terms": ["treatment"], "options": ["lmm"]}},
            "cost_consequence.options must be a mapping",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "terms": ["treatment"], "options": {"bogus": 1}}},
            "analysis 'cost_consequence': unknown option 'bogus' for sw_gee",
        ),
        (
            {
                "cost_consequence": {
                    **COST_BLOCK,
                    "terms": ["treatment"],
                    "options": {"cluster": None},
                }
            },
            "analysis 'cost_consequence': sw_gee needs option 'cluster'",
        ),
        (
            {
                "cost_consequence": {
                    **COST_BLOCK,
                    "terms": ["treatment"],
                    "data": {"panel": "twic_analysis_set"},
                }
            },
            "cost_consequence.data may hold only derive, aggregate, filters",
        ),
        (
            {"cost_consequence": {**COST_BLOCK, "terms": ["treatment"], "covariates": "age"}},
            "cost_consequence.covariates must be a list",
        ),
        (
            {"sensitivity": [{"id": "cost_consequence"}]},
            "sensitivity[0].id 'cost_consequence' is reserved",
        ),
        (
            {
                "method": {"name": "cost_effectiveness", "options": {"cost": "c", "arm": "a"}},
                "cost_consequence": {**COST_BLOCK, "terms": ["incremental_cost"]},
            },
            "cost_consequence does not apply to cost_effectiveness",
        ),
    ],
)
def test_a_bad_protocol_fails_naming_file_and_field(tmp_path, change, message):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(ProtocolError) as err:
        load_protocol(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_fields_and_mismatched_file_name_are_reported(tmp_path):
    content = {k: v for k, v in GOOD.items() if k != "estimand"}
    with pytest.raises(ProtocolError, match="missing required field"):
        load_protocol(write(tmp_path, content))
    with pytest.raises(ProtocolError, match="must equal the file name"):
        load_protocol(write(tmp_path, GOOD, name="other_name"))


def test_hash_ignores_formatting_but_not_content(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "demo_protocol.yml").write_text(yaml.safe_dump(GOOD, sort_keys=False) + "# note\n")
    b = tmp_path / "b"
    b.mkdir()
    (b / "demo_protocol.yml").write_text(yaml.safe_dump(GOOD, sort_keys=True))
    assert load_protocols(a)[0].hash == load_protocols(b)[0].hash
    changed = {**GOOD, "estimand": "ATE"}
    assert canonical_hash(changed) != canonical_hash(GOOD)


def test_filters_support_equality_lists_and_ranges():
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["x", "y", "x", "z"]})
    assert apply_filters(df, {"b": "x"})["a"].tolist() == [1, 3]
    assert apply_filters(df, {"b": ["y", "z"]})["a"].tolist() == [2, 4]
    assert apply_filters(df, {"a": {"min": 2, "max": 3}})["a"].tolist() == [2, 3]
    with pytest.raises(KeyError, match="unknown column"):
        apply_filters(df, {"c": 1})


def _rows(protocol_id: str, estimate: float) -> pd.DataFrame:
    tidy = tidy_frame(
        [inference_row("treatment", estimate, 0.1, n_obs=100, n_clusters=10)],
        method="demo",
        se_type="robust",
        scale="difference",
    )
    return to_store_rows(
        tidy,
        protocol_id=protocol_id,
        protocol_hash="h",
        analysis_id="primary",
        method_name="sw_gee",
        outcome="y",
        panel="p",
        input_fingerprint="f",
        code_version="v",
    )


def test_store_files_are_byte_identical_for_the_same_inputs(tmp_path):
    digests = []
    for run in ("one", "two"):
        folder = tmp_path / run
        folder.mkdir()
        write_results(
            pd.concat([_rows("b", 0.5), _rows("a", -0.2)]), folder / "w.duckdb", folder / "results"
        )
        digests.append(
            hashlib.sha256((folder / "results" / "estimates.parquet").read_bytes()).hexdigest()
        )
    assert digests[0] == digests[1]


def test_store_replaces_a_protocols_rows_and_keeps_the_others(tmp_path):
    wh, out = tmp_path / "w.duckdb", tmp_path / "results"
    write_results(pd.concat([_rows("a", 1.0), _rows("b", 2.0)]), wh, out)
    store = write_results(_rows("a", 3.0), wh, out)
    assert list(store.columns) == list(STORE_COLUMNS)
    assert dict(zip(store["protocol_id"], store["estimate"], strict=True)) == {"a": 3.0, "b": 2.0}
    with duckdb.connect(str(wh), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM results.estimates").fetchone()[0]
    assert n == 2


def test_inference_row_gives_wald_interval_and_p_value():
    row = inference_row("t", 1.96, 1.0)
    assert row["ci_low"] == pytest.approx(0.0, abs=1e-3)
    assert row["p_value"] == pytest.approx(0.05, abs=1e-3)
    t_row = inference_row("t", 1.0, 0.5, df=5)
    assert t_row["ci_high"] - 1.0 == pytest.approx(0.5 * 2.5706, rel=1e-4)


# ------------------------------------------------------------------ cost consequence in runs


def _trial_panel(n: int = 300, seed: int = 5) -> pd.DataFrame:
    """A trial set with a score, a 12-month cost and their baselines, and a price year."""
    rng = np.random.default_rng(seed)
    offered = np.repeat([0, 1], n // 2)
    base = rng.gamma(2.0, 500.0, n)
    return pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "offered": offered,
            "stratum": rng.integers(1, 4, n),
            "selfman_score_baseline": rng.normal(50, 10, n),
            "selfman_score_followup": rng.normal(52, 10, n) + 2 * offered,
            "cost_baseline_12m": base,
            "cost_12m": 0.6 * base + 80 * offered + rng.gamma(2, 300, n),
            "price_year": 2018,
        }
    )


TRIAL_PROTOCOL = {
    "id": "trial_protocol",
    "title": "Trial",
    "question": "Q",
    "population": "P",
    "outcome": "selfman_score_followup",
    "estimand": "ITT",
    "data": {"panel": "twic_analysis_set"},
    "method": {
        "name": "trial_itt",
        "options": {
            "arm": "offered",
            "offer_level": 1,
            "baseline": "selfman_score_baseline",
            "stratum": "stratum",
        },
    },
    "reporting": {"term": "itt", "unit": "mean difference"},
    "cost_consequence": {
        "outcome": "cost_per_month",
        "periods_per_year": 12,
        "price_year": 2018,
        "options": {"baseline": "baseline_per_month"},
        "data": {
            "derive": {
                "cost_per_month": "cost_12m / 12",
                "baseline_per_month": "cost_baseline_12m / 12",
            }
        },
    },
}


def test_a_cost_block_stores_the_hand_fitted_cost_consequence(tmp_path):
    protocol = load_protocol(write(tmp_path, TRIAL_PROTOCOL))
    panel = _trial_panel()
    run = run_protocol(protocol, panel, fingerprint="f", version="v")
    stored = run.rows[run.rows["analysis_id"] == "cost_consequence"].reset_index(drop=True)
    frame = panel.assign(
        cost_per_month=panel["cost_12m"] / 12, baseline_per_month=panel["cost_baseline_12m"] / 12
    )
    by_hand = cost_consequence(
        itt_ancova(
            frame,
            outcome="cost_per_month",
            arm="offered",
            offer_level=1,
            baseline="baseline_per_month",
            stratum="stratum",
        ),
        periods_per_year=12,
        price_year=2018,
        terms=["itt"],
    )
    expected = to_store_rows(
        by_hand.tidy,
        protocol_id="trial_protocol",
        protocol_hash=protocol.hash,
        analysis_id="cost_consequence",
        method_name="trial_itt",
        outcome="cost_per_month",
        panel="twic_analysis_set",
        input_fingerprint="f",
        code_version="v",
    )
    pd.testing.assert_frame_equal(stored, expected)
    # a monthly cost x 12 is the annual cost's ITT: the rescaling is the only change
    annual = itt_ancova(
        panel,
        outcome="cost_12m",
        arm="offered",
        offer_level=1,
        baseline="cost_baseline_12m",
        stratum="stratum",
    ).row("itt")
    assert stored.loc[0, "estimate"] == pytest.approx(annual["estimate"])
    assert stored.loc[0, "ci_high"] == pytest.approx(annual["ci_high"])
    assert stored.loc[0, "scale"] == "GBP per person per year (2017/18 prices)"
    primary = run.rows[run.rows["analysis_id"] == "primary"]
    assert primary["outcome"].unique().tolist() == ["selfman_score_followup"]
    assert (stored[list(LINEAGE[:2])] == primary[list(LINEAGE[:2])].iloc[0]).all().all()
    assert set(run.results) == {"primary", "cost_consequence"}


def test_a_cost_block_without_data_uses_the_primary_steps_and_its_overrides(tmp_path):
    """Aggregated ITS: the block's own aggregate, family gaussian and the offset removed."""
    rng = np.random.default_rng(2)
    months = np.arange(1, 49)
    panel = pd.DataFrame(
        {
            "practice_code": np.repeat(["A", "B"], 48),
            "period": np.tile(months, 2),
            "month": np.tile(pd.date_range("2016-01-01", periods=48, freq="MS"), 2),
            "emergency_admissions": rng.poisson(30, 96),
            "person_months_65plus": 1000,
        }
    )
    panel["cost_gbp"] = 90_000 + 5_000 * (panel["period"] >= 25) + rng.normal(0, 2000, 96)
    content = {
        "id": "its_protocol",
        "title": "ITS",
        "question": "Q",
        "population": "P",
        "outcome": "emergency_admissions",
        "estimand": "step",
        "data": {
            "panel": "practice_month_panel",
            "aggregate": {
                "by": ["period", "month"],
                "sum": ["emergency_admissions", "person_months_65plus"],
            },
        },
        "method": {
            "name": "its_segmented",
            "options": {
                "time": "period",
                "interventions": "2018-01",
                "family": "quasipoisson",
                "population": "person_months_65plus",
                "slope_change": False,
            },
        },
        "reporting": {"term": "level_change", "transform": "exp"},
        "cost_consequence": {
            "outcome": "cost_pm",
            "periods_per_year": 12,
            "price_year": 2018,
            "options": {"family": "gaussian", "population": None},
            "data": {
                "aggregate": {
                    "by": ["period", "month"],
                    "sum": ["cost_gbp", "person_months_65plus"],
                    "derive": {"cost_pm": "cost_gbp / person_months_65plus"},
                }
            },
        },
    }
    protocol = load_protocol(write(tmp_path, content))
    spec = protocol.cost_consequence()
    assert spec is not None and "population" not in spec.analysis.method.options
    run = run_protocol(protocol, panel, fingerprint="f", version="v")
    row = run.rows[run.rows["analysis_id"] == "cost_consequence"].iloc[0]
    series = panel.groupby("period", as_index=False)[["cost_gbp", "person_months_65plus"]].sum()
    series["cost_pm"] = series["cost_gbp"] / series["person_months_65plus"]
    by_hand = segmented_its(
        series,
        outcome="cost_pm",
        time="period",
        interventions=25,
        family="gaussian",
        slope_change=False,
    ).row("level_change")
    for col in ("estimate", "std_error", "ci_low", "ci_high"):
        assert row[col] == pytest.approx(12 * by_hand[col])
    assert row["p_value"] == pytest.approx(by_hand["p_value"])
    assert row["term"] == "level_change" and row["method_name"] == "its_segmented"


def test_a_cost_block_fails_when_the_panel_is_in_another_price_year(tmp_path):
    protocol = load_protocol(write(tmp_path, TRIAL_PROTOCOL))
    with pytest.raises(ValueError, match=r"price year\(s\) \[2019\], the protocol states 2018"):
        run_protocol(protocol, _trial_panel().assign(price_year=2019), fingerprint="f", version="v")


def test_the_report_table_puts_each_primary_effect_beside_its_cost(tmp_path):
    with_cost = load_protocol(write(tmp_path, {**TRIAL_PROTOCOL, "primary": True}))
    content = {k: v for k, v in TRIAL_PROTOCOL.items() if k != "cost_consequence"}
    without = load_protocol(write(tmp_path, {**content, "id": "no_cost", "primary": True}))
    panel = _trial_panel()
    rows = pd.concat(
        [run_protocol(p, panel, fingerprint="f", version="v").rows for p in (with_cost, without)],
        ignore_index=True,
    )
    table = cost_consequence_rows(rows, {p.id: p for p in (with_cost, without)})
    table = table.set_index("protocol_id")
    cost = rows[rows["analysis_id"] == "cost_consequence"].iloc[0]
    effect = rows[
        (rows["protocol_id"] == "trial_protocol") & (rows["analysis_id"] == "primary")
    ].iloc[0]
    got = table.loc["trial_protocol"]
    assert (got["cost_estimate"], got["cost_ci_low"], got["cost_ci_high"]) == (
        cost["estimate"],
        cost["ci_low"],
        cost["ci_high"],
    )
    assert (got["effect_estimate"], got["effect_ci_high"]) == (
        effect["estimate"],
        effect["ci_high"],
    )
    assert got["cost_outcome"] == "cost_per_month" and got["cost_note"] == ""
    assert np.isnan(table.loc["no_cost", "cost_estimate"])
    assert table.loc["no_cost", "cost_note"] == "no priced utilisation in twic_analysis_set"


def test_every_primary_protocol_with_priced_utilisation_has_a_cost_block():
    """The cost outcome each block names is a priced column of its panel, read directly or
    through the block's own data steps."""
    priced = {
        "practice_month_panel": "cost_gbp",
        "person_wave_panel": "cost_6m",
        "twic_analysis_set": "cost_12m",
    }
    for protocol in load_protocols(Path(__file__).parents[1] / "protocols"):
        if (
            not protocol.primary
            or protocol.panel not in priced
            or protocol.method.name == "cost_effectiveness"
        ):
            continue
        spec = protocol.cost_consequence()
        assert spec is not None, protocol.id
        steps = yaml.safe_dump({"derive": dict(spec.data.derive), "aggregate": spec.data.aggregate})
        assert spec.outcome == priced[protocol.panel] or priced[protocol.panel] in steps, (
            protocol.id
        )
