"""Consent is a ledger, not a snapshot (issue 15, class 3): a withdrawal once received is kept
until an explicit, logged reinstatement, and outputs from a warehouse built before the latest
consent change are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from sicp.ingest import ingest_all
from tests.ingest_helpers import tw
from tests.worlds import BuiltWorld, query

SICP = Path(sys.executable).with_name("sicp")


def _recruitment(withdrawn: dict[int, str | None], drop: tuple[int, ...] = ()) -> pd.DataFrame:
    frame = tw.frames()["recruitment"].copy()
    for row, date in withdrawn.items():
        frame.loc[row, "withdrawn_on"] = date
    return frame.drop(index=list(drop)).reset_index(drop=True)


def _deliver(raw: Path, recruitment: pd.DataFrame) -> None:
    tw.write(recruitment, tw.path_for(raw, "recruitment"), tw.source_of("recruitment"))


def _excluded(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT person_id, reason FROM raw.consent_exclusions WHERE scope = 'all'"
        ).fetchall()
    return dict(rows)


def _ledger(warehouse: Path) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT * FROM raw.consent_ledger ORDER BY seq").df()


def _sicp(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SICP_INPUT_DIR": str(root / "raw"),
        "SICP_WAREHOUSE": str(root / "warehouse.duckdb"),
        "SICP_RESULTS_DIR": str(root / "results"),
        "SICP_REPORTS_DIR": str(root / "reports"),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "0",
    }
    return subprocess.run(
        [str(SICP), *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, str]:
    raw, wh = tmp_path / "raw", tmp_path / "warehouse.duckdb"
    frames = tw.build(raw)
    person = frames["recruitment"].loc[2, "person_id"]
    _deliver(raw, _recruitment({2: "2016-05-01"}))
    ingest_all(raw, wh)
    return raw, wh, person


def test_a_withdrawal_is_entered_once_with_the_file_it_came_in(tiny) -> None:
    raw, wh, person = tiny
    assert _excluded(wh) == {person: "withdrew all consent on 2016-05-01"}
    ingest_all(raw, wh)  # the same delivery again changes nothing
    ledger = _ledger(wh)
    assert list(ledger["event"]) == ["exclude"]
    assert ledger.loc[0, "received_in"] == "cohort/recruitment.sav"
    assert len(ledger.loc[0, "file_sha256"]) == 64


@pytest.mark.parametrize("later", ["omits the person", "clears the date"])
def test_a_later_extract_cannot_forget_a_withdrawal(tiny, later: str) -> None:
    raw, wh, person = tiny
    recruitment = _recruitment({}, drop=(2,)) if later == "omits the person" else _recruitment({})
    _deliver(raw, recruitment)
    ingest_all(raw, wh)
    assert _excluded(wh) == {person: "withdrew all consent on 2016-05-01"}
    assert len(_ledger(wh)) == 1


def test_only_a_logged_reinstatement_brings_a_person_back(tiny, tmp_path: Path) -> None:
    raw, wh, person = tiny
    refused = _sicp(tmp_path, "consent", "reinstate", person)
    assert refused.returncode == 2 and "--by and --why" in refused.stderr
    nobody = _sicp(tmp_path, "consent", "reinstate", "NOT-EXCLUDED", "--by", "x", "--why", "y")
    assert nobody.returncode == 2 and "not excluded" in nobody.stderr
    done = _sicp(
        tmp_path,
        "consent",
        "reinstate",
        person,
        "--by",
        "Dr A (data manager)",
        "--why",
        "form CF-17: withdrawal entered against the wrong person",
    )
    assert done.returncode == 0, done.stderr
    assert _excluded(wh) == {}
    ledger = _ledger(wh)
    assert list(ledger["event"]) == ["exclude", "reinstate"]
    assert ledger.loc[1, "authorised_by"] == "Dr A (data manager)"
    assert "wrong person" in ledger.loc[1, "reason"]
    ingest_all(raw, wh)  # the old withdrawal delivered again is not a new one
    assert _excluded(wh) == {}
    _deliver(raw, _recruitment({2: "2017-02-01"}))  # a new withdrawal is
    ingest_all(raw, wh)
    assert _excluded(wh) == {person: "withdrew all consent on 2017-02-01"}
    listed = _sicp(tmp_path, "consent", "list")
    assert listed.returncode == 0 and "reinstate" in listed.stdout


def test_outputs_of_a_warehouse_built_before_a_withdrawal_are_refused(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    """Ingest a new withdrawal after the build: export, analyse and report refuse until the
    marts are rebuilt, and then the person is in none of them."""
    root = tmp_path
    shutil.copytree(small_dbt_world.warehouse.parent / "raw", root / "raw")
    assert _sicp(root, "ingest").returncode == 0
    assert _sicp(root, "build").returncode == 0
    assert _sicp(root, "analyse", "--protocol", "twic_eq5d").returncode == 0
    marts = query(
        root / "warehouse.duckdb", "select distinct person_id from marts.person_wave_panel"
    )
    person = sorted(marts["person_id"])[0]
    recruitment_file = root / "raw" / "cohort" / "recruitment.sav"
    import pyreadstat

    frame, meta = pyreadstat.read_sav(
        str(recruitment_file), user_missing=True, dates_as_pandas_datetime=True
    )
    frame.loc[frame["person_id"] == person, "withdrawn_on"] = pd.Timestamp("2018-01-15")
    pyreadstat.write_sav(
        frame,
        str(recruitment_file),
        column_labels=meta.column_labels,
        variable_value_labels=meta.variable_value_labels,
        missing_ranges=meta.missing_ranges,
    )
    assert _sicp(root, "ingest").returncode == 0
    for command in (["export"], ["analyse", "--protocol", "twic_eq5d"], ["report"]):
        run = _sicp(root, *command)
        assert run.returncode == 1, command
        assert "stale" in run.stderr and "sicp build" in run.stderr, (command, run.stderr)
        assert "Traceback" not in run.stderr
    assert _sicp(root, "build").returncode == 0
    exported = _sicp(root, "export", "--format", "parquet")
    assert exported.returncode == 0, exported.stderr
    for parquet in (root / "results" / "panels").glob("*.parquet"):
        frame = pd.read_parquet(parquet)
        if "person_id" in frame:
            assert person not in set(frame["person_id"]), parquet.name
    report = _sicp(root, "report")  # results from before the rebuild
    assert report.returncode == 1 and "sicp analyse" in report.stderr
    assert "twic_eq5d" in report.stderr


def test_row_level_exports_are_marked_and_kept_out_of_the_reports(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    from sicp.export import ROW_LEVEL_NOTICE, ExportError, export_marts

    written = export_marts(
        small_dbt_world.warehouse,
        tmp_path / "panels",
        formats=("parquet",),
        marts=("twic_analysis_set",),
        reports_dir=tmp_path / "reports",
    )
    assert written["twic_analysis_set"][0].exists()
    notice = (tmp_path / "panels" / ROW_LEVEL_NOTICE).read_text()
    assert "NOT FOR RELEASE" in notice and "no small-number suppression" in notice
    with pytest.raises(ExportError, match="inside the reports folder"):
        export_marts(
            small_dbt_world.warehouse,
            tmp_path / "reports" / "panels",
            formats=("parquet",),
            reports_dir=tmp_path / "reports",
        )
