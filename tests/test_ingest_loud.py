"""Loud, specific ingest failures (issue 14, point 4) and the contract's data-driven geography:
free neighbourhood names, the optional ``mdg`` column, required values, reference tables that
must lose no row, a configurable limit on the share quarantined, and cascaded quarantine
reasons that name their real cause. Every case on a small hand-built input folder."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from sicp.cli import main
from sicp.contract import AREA_INDICATORS, SOURCES, UNIT_COST_ITEMS
from sicp.ingest import (
    REFERENCE_SOURCES,
    IngestError,
    QuarantineLimitError,
    check_quarantine,
    ingest_all,
    ingest_source,
    max_quarantine_share,
    reconcile,
)
from tests.ingest_helpers import query, tw

SHARE_ENV = "SICP_MAX_QUARANTINE_SHARE"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An input folder and warehouse that ``sicp ingest`` (via SICP_INPUT_DIR and
    SICP_WAREHOUSE) and the functions below both use; no share limit from the caller's
    environment."""
    raw, wh = tmp_path / "raw", tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("SICP_INPUT_DIR", str(raw))
    monkeypatch.setenv("SICP_WAREHOUSE", str(wh))
    monkeypatch.delenv(SHARE_ENV, raising=False)
    return raw, wh


def rewrite(raw: Path, key: str, frame: pd.DataFrame) -> None:
    tw.write(frame, tw.path_for(raw, key), tw.source_of(key))


def assert_rows_reconcile(warehouse: Path) -> None:
    """For every file the warehouse logged: rows read = loaded + quarantined, and both counts
    match what raw.<source> and raw.quarantine hold."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        logged = {
            s for (s,) in con.execute("SELECT DISTINCT source_name FROM raw.ingest_log").fetchall()
        }
        assert logged
        for name in logged:
            checks = reconcile(con, SOURCES[name])
            assert checks and all(c.ok for c in checks), checks


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["ingest", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- geography from the data -------------------------------------------------------------


def test_unseen_neighbourhood_names_load(world):
    raw, wh = world
    practices = tw.frames()["practices"].assign(
        neighbourhood=["Atlantis", "Nowhere & Somewhere", "Bishop's Stortford", "Atlantis"]
    )
    assets = tw.frames()["community_assets"].assign(neighbourhood="Atlantis")
    assets["month"] = [tw.FIRST_DAY.replace(month=m) for m in range(2, 2 + len(assets))]
    tw.build(raw, edit={"practices": practices, "community_assets": assets})
    report = ingest_all(raw, wh)
    assert report.source("practices").rows_quarantined == 0
    assert report.source("community_assets").rows_quarantined == 0
    assert query(wh, "SELECT neighbourhood FROM raw.practices ORDER BY _source_row") == [
        (n,) for n in practices["neighbourhood"]
    ]
    assert query(wh, "SELECT DISTINCT neighbourhood FROM raw.community_assets") == [("Atlantis",)]
    assert_rows_reconcile(wh)


def test_absent_mdg_column_loads_as_null(world):
    raw, wh = world
    frames = tw.build(raw)
    assert "mdg" not in frames["practices"]
    report = ingest_all(raw, wh)
    assert report.source("practices").warnings == ()
    assert query(wh, "SELECT practice_code, mdg FROM raw.practices ORDER BY _source_row") == [
        (code, None) for code in frames["practices"]["practice_code"]
    ]
    described = [name for name, *_ in query(wh, "DESCRIBE raw.practices")]
    assert described[: len(SOURCES["practices"].columns)] == list(SOURCES["practices"].column_names)
    assert_rows_reconcile(wh)


def test_present_mdg_column_loads_its_values(world):
    raw, wh = world
    practices = tw.frames()["practices"].assign(mdg=["North MDG", "North MDG", None, "Own MDG"])
    tw.build(raw, edit={"practices": practices})
    ingest_all(raw, wh)
    assert query(wh, "SELECT mdg FROM raw.practices ORDER BY _source_row") == [
        ("North MDG",),
        ("North MDG",),
        (None,),
        ("Own MDG",),
    ]
    # Files with and without the optional column are the same source: dropping it again
    # reloads every practice with an empty MDG.
    rewrite(raw, "practices", practices.drop(columns=["mdg"]))
    ingest_all(raw, wh)
    assert query(wh, "SELECT count(*), count(mdg) FROM raw.practices") == [(4, 0)]
    assert_rows_reconcile(wh)


def test_a_required_column_is_still_required(world):
    raw, wh = world
    tw.build(raw, edit={"practices": tw.frames()["practices"].drop(columns=["neighbourhood"])})
    with (
        duckdb.connect(str(wh)) as con,
        pytest.raises(
            IngestError,
            match=r"reference/practices\.csv: required column\(s\) missing: "
            r"neighbourhood\..*; optional: mdg",
        ),
    ):
        ingest_source(con, raw, SOURCES["practices"])


# --- required values ---------------------------------------------------------------------


def test_unit_costs_missing_items_fail_and_keep_the_previous_load(world, capsys):
    raw, wh = world
    frames = tw.build(raw)
    ingest_all(raw, wh)
    before = query(wh, "SELECT * FROM raw.unit_costs ORDER BY _source_row")
    log_before = query(wh, "SELECT * FROM raw.ingest_log WHERE source_name = 'unit_costs'")
    costs = frames["unit_costs"]
    rewrite(raw, "unit_costs", costs[~costs["item"].isin(["gp_contact", "coaching_session"])])
    with pytest.raises(IngestError) as failure:
        ingest_all(raw, wh)
    message = str(failure.value)
    assert message.startswith(
        "programme/unit_costs.csv: column item lacks required value(s) "
        "gp_contact, coaching_session; the warehouse needs a row for "
        "every one of: " + ", ".join(UNIT_COST_ITEMS)
    )
    assert query(wh, "SELECT * FROM raw.unit_costs ORDER BY _source_row") == before
    assert query(wh, "SELECT * FROM raw.ingest_log WHERE source_name = 'unit_costs'") == log_before
    assert_rows_reconcile(wh)
    # The command says the same, without a traceback, and fails.
    code, _, err = run_cli(capsys)
    assert code == 1
    assert (
        "programme/unit_costs.csv: column item lacks required value(s) gp_contact, "
        "coaching_session" in err
    )
    assert "Traceback" not in err


def test_a_required_item_that_was_quarantined_names_its_row(world):
    raw, wh = world
    costs = tw.frames()["unit_costs"]
    broken = costs.copy()
    broken.loc[broken["item"] == "mdg_discussion", "cost_gbp"] = -5.0
    tw.build(raw, edit={"unit_costs": broken})
    row = int(broken.index[broken["item"] == "mdg_discussion"][0]) + 1
    with pytest.raises(
        IngestError,
        match=(
            rf"programme/unit_costs\.csv: column item lacks required value\(s\) mdg_discussion;"
            rf".*mdg_discussion was delivered but quarantined \(programme/unit_costs\.csv row "
            rf"{row}: cost_gbp '-5\.0': value below the minimum 0\)"
        ),
    ):
        ingest_all(raw, wh)
    assert not query(
        wh,
        "SELECT * FROM information_schema.tables WHERE table_schema = 'raw' "
        "AND table_name = 'unit_costs'",
    )


def test_area_indicators_missing_one_fail_and_keep_the_previous_load(world):
    raw, wh = world
    frames = tw.build(raw)
    ingest_all(raw, wh)
    before = query(wh, "SELECT * FROM raw.area_month_indicators ORDER BY _source_row")
    indicators = frames["area_month_indicators"]
    rewrite(
        raw, "area_month_indicators", indicators[indicators["indicator"] != "deaths_at_home_65plus"]
    )
    with pytest.raises(IngestError) as failure:
        ingest_all(raw, wh)
    assert str(failure.value).startswith(
        "comparators/area_month_indicators.csv: column indicator lacks required value(s) "
        "deaths_at_home_65plus; the warehouse needs a row for every one of: "
        + ", ".join(AREA_INDICATORS)
    )
    assert query(wh, "SELECT * FROM raw.area_month_indicators ORDER BY _source_row") == before
    assert_rows_reconcile(wh)


# --- reference tables and cascaded reasons -----------------------------------------------


def test_a_bad_practice_row_fails_the_command_and_dependants_name_it(world, capsys):
    raw, wh = world
    practices = tw.frames()["practices"]
    broken = practices.copy()
    broken["mdg_start_date"] = broken["mdg_start_date"].astype(str)
    broken.loc[1, "mdg_start_date"] = "2015-13-01"
    bad_code = broken.loc[1, "practice_code"]
    population = tw.frames()["practice_population"]
    population.loc[0, "practice_code"] = "Z99999"  # truly absent from practices.csv
    tw.build(raw, edit={"practices": broken, "practice_population": population})

    code, out, err = run_cli(capsys)
    assert code == 3
    assert "practices" in out and "input fingerprint" in out  # the usual report
    assert "Traceback" not in err
    assert err.startswith(
        "sicp ingest: quarantine limits: 5 source(s) lost too many rows to "
        "quarantine. The valid rows are loaded"
    )
    assert (
        "practices: 4 rows read, 1 quarantined (25.0%); a reference table must lose no row" in err
    )
    for name in ("recruitment", "practice_moves", "population"):
        assert f"  - {name}: 6 rows read, 2 quarantined (33.3%); more than the allowed 5.0%" in err
    assert "mdg_start_date: not a date in YYYY-MM-DD form (1 row)" in err
    # The valid rows are loaded all the same.
    assert query(wh, "SELECT count(*) FROM raw.practices") == [(3,)]

    cause = (
        f"practice_code {bad_code} was quarantined in practices (reference/practices.csv "
        f"row 2: mdg_start_date '2015-13-01': not a date in YYYY-MM-DD form)"
    )
    quarantined = query(
        wh,
        "SELECT source_row, offending_value, reason FROM raw.quarantine "
        "WHERE source_name = 'practice_population' ORDER BY source_row",
    )
    expected = [(1, "Z99999", "unknown practice_code: not in practices")]
    expected += [
        (i + 1, bad_code, cause) for i, c in enumerate(population["practice_code"]) if c == bad_code
    ]
    assert sorted(quarantined) == sorted(expected)
    for name in ("recruitment", "population", "practice_moves"):
        reasons = {
            r
            for (r,) in query(
                wh, "SELECT DISTINCT reason FROM raw.quarantine WHERE source_name = ?", [name]
            )
        }
        assert reasons == {cause}, name
    # practice_population is a reference table too, so it is named in the summary as well.
    assert "practice_population: 6 rows read, 3 quarantined (50.0%)" in err
    assert_rows_reconcile(wh)

    # Fixed practices: everything loads, the command succeeds, no stale cause remains.
    rewrite(raw, "practices", practices)
    rewrite(raw, "practice_population", tw.frames()["practice_population"])
    code, _, err = run_cli(capsys)
    assert (code, err) == (0, "")
    assert query(wh, "SELECT count(*) FROM raw.quarantined_keys") == [(0,)]
    assert query(wh, "SELECT count(*) FROM raw.quarantine") == [(0,)]
    assert_rows_reconcile(wh)


def test_duplicate_practice_does_not_cascade(world):
    raw, wh = world
    practices = tw.frames()["practices"]
    tw.build(
        raw, edit={"practices": pd.concat([practices, practices.iloc[[0]]], ignore_index=True)}
    )
    report = ingest_all(raw, wh)
    assert report.source("practices").rows_quarantined == 1
    assert report.source("practice_population").rows_quarantined == 0
    with pytest.raises(QuarantineLimitError, match="practices: 5 rows read, 1 quarantined"):
        check_quarantine(report, 0.05)
    assert_rows_reconcile(wh)


def test_reference_sources_are_the_reference_folder_and_unit_costs():
    assert sorted(REFERENCE_SOURCES) == [
        "practice_population",
        "practices",
        "study_area",
        "unit_costs",
    ]


# --- share of rows quarantined -----------------------------------------------------------


def _gp_contacts_with_bad_rows(raw: Path, bad: int, n: int = 20) -> None:
    frames = tw.build(raw, n=n)
    contacts = frames["gp_contacts"].copy()
    contacts.loc[: bad - 1, "contact_type"] = "carrier pigeon"
    rewrite(raw, "gp_contacts", contacts)


def test_ten_per_cent_quarantined_fails_unless_the_limit_allows_it(world, capsys, monkeypatch):
    raw, wh = world
    _gp_contacts_with_bad_rows(raw, bad=2)
    code, out, err = run_cli(capsys)
    assert code == 3
    assert "gp_contacts" in out
    assert (
        "gp_contacts: 20 rows read, 2 quarantined (10.0%); more than the allowed 5.0% "
        "(SICP_MAX_QUARANTINE_SHARE or --max-quarantine-share)"
    ) in err
    assert "contact_type: value not in the allowed set (surgery, home, telephone) (2 rows)" in err
    assert "practices" not in err
    assert query(wh, "SELECT count(*) FROM raw.gp_contacts") == [(18,)]
    assert_rows_reconcile(wh)

    code, out, err = run_cli(capsys, "--max-quarantine-share", "0.2")
    assert (code, err) == (0, "")
    assert_rows_reconcile(wh)

    monkeypatch.setenv(SHARE_ENV, "0.2")
    assert run_cli(capsys)[0] == 0
    # The flag overrides the environment.
    code, _, err = run_cli(capsys, "--max-quarantine-share", "0.05")
    assert code == 3 and "gp_contacts: 20 rows read, 2 quarantined (10.0%)" in err


def test_a_share_at_the_limit_passes(world, capsys):
    raw, wh = world
    _gp_contacts_with_bad_rows(raw, bad=1)  # 1 of 20 = 5%, not more than 5%
    code, _, err = run_cli(capsys)
    assert (code, err) == (0, "")
    assert query(wh, "SELECT count(*) FROM raw.quarantine WHERE source_name = 'gp_contacts'") == [
        (1,)
    ]
    assert_rows_reconcile(wh)


@pytest.mark.parametrize(
    ("env", "flag", "problem"),
    [
        ("lots", None, r"SICP_MAX_QUARANTINE_SHARE: 'lots' is not a number"),
        ("1.5", None, r"SICP_MAX_QUARANTINE_SHARE: 1\.5 is not a share between 0 and 1"),
        (None, -0.1, r"--max-quarantine-share: -0\.1 is not a share between 0 and 1"),
    ],
)
def test_a_bad_limit_is_a_clear_error(world, capsys, monkeypatch, env, flag, problem):
    raw, wh = world
    if env is not None:
        monkeypatch.setenv(SHARE_ENV, env)
    with pytest.raises(IngestError, match=problem):
        max_quarantine_share(flag)
    tw.build(raw)
    code, _, err = run_cli(capsys, *(["--max-quarantine-share", str(flag)] if flag else []))
    assert code == 1
    assert "Traceback" not in err and err.startswith("sicp ingest: ")
    assert not wh.exists()  # checked before anything is loaded


def test_default_limit_is_five_per_cent(monkeypatch):
    monkeypatch.delenv(SHARE_ENV, raising=False)
    assert max_quarantine_share() == 0.05
    monkeypatch.setenv(SHARE_ENV, "0.125")
    assert max_quarantine_share() == 0.125
    assert max_quarantine_share(0.3) == 0.3
