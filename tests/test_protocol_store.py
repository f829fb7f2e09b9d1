"""Protocol validation (clear errors) and the results store (lineage, byte-identical files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from analysis.protocol import ProtocolError, canonical_hash, load_protocol, load_protocols
from analysis.results import inference_row, tidy_frame
from analysis.runner import apply_filters
from analysis.store import STORE_COLUMNS, to_store_rows, write_results

GOOD = {
    "id": "demo_protocol",
    "title": "Demo",
    "question": "Does it work?",
    "population": "everyone",
    "outcome": "y",
    "estimand": "ATT",
    "data": {"panel": "practice_month_panel"},
    "method": {"name": "sw_gee", "options": {"treatment": "in_mdg_scope", "period": "period",
                                             "cluster": "practice_code"}},
    "sensitivity": [{"id": "lmm", "method": {"name": "sw_lmm"}}],
}


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
        ({"data": {"panel": "nowhere"}}, "data.panel must be one of"),
        ({"colour": "blue"}, "unknown field(s): colour"),
        ({"covariates": "age"}, "covariates must be a list"),
        ({"level": "galaxy"}, "level 'galaxy' must be one of"),
        ({"reporting": {"term": "t", "unit": "per 1", "000 per month": None}},
         "reporting must be a mapping of term, transform and unit"),
        ({"sensitivity": [{"method": {"name": "sw_lmm"}}]}, "sensitivity[0] must be a mapping"),
        ({"method": {"name": "sw_gee", "options": {"treatment": "t", "period": "p",
                                                   "cluster": "c", "bogus": 1}}},
         "unknown option 'bogus' for sw_gee"),
        ({"method": {"name": "sw_gee", "options": {"treatment": "t"}}},
         "sw_gee needs option 'cluster'"),
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
    tidy = tidy_frame([inference_row("treatment", estimate, 0.1, n_obs=100, n_clusters=10)],
                      method="demo", se_type="robust", scale="difference")
    return to_store_rows(tidy, protocol_id=protocol_id, protocol_hash="h", analysis_id="primary",
                         method_name="sw_gee", outcome="y", panel="p", input_fingerprint="f",
                         code_version="v")


def test_store_files_are_byte_identical_for_the_same_inputs(tmp_path):
    digests = []
    for run in ("one", "two"):
        folder = tmp_path / run
        folder.mkdir()
        write_results(pd.concat([_rows("b", 0.5), _rows("a", -0.2)]), folder / "w.duckdb",
                      folder / "results")
        digests.append(hashlib.sha256((folder / "results" / "estimates.parquet").read_bytes())
                       .hexdigest())
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
