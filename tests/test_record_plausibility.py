"""Implausible records are visible and graded (issue 15, class 6): a plausibility finding that
would bias an outcome as defined fails the build by name; one that no person-month counts is a
graded finding in dq_record_checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.worlds import BuiltWorld, query

SICP = Path(sys.executable).with_name("sicp")


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SICP_INPUT_DIR": str(root / "raw"),
        "SICP_WAREHOUSE": str(root / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "0",
    }
    return subprocess.run(
        [str(SICP), *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_a_negative_stay_blocks_and_an_event_after_death_is_graded(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    shutil.copytree(small_dbt_world.warehouse.parent / "raw", tmp_path / "raw")
    spells_file = tmp_path / "raw" / "records" / "hospital_spells.parquet"
    spells = pd.read_parquet(spells_file)
    deaths = pd.read_parquet(tmp_path / "raw" / "records" / "deaths.parquet")
    dead = spells["person_id"].isin(deaths["person_id"])
    after_death = spells[dead].index[0]
    died = deaths.set_index("person_id").loc[spells.loc[after_death, "person_id"], "died_on"]
    spells.loc[after_death, "admitted_on"] = (pd.Timestamp(died) + pd.Timedelta(days=2)).date()
    spells.loc[after_death, "discharged_on"] = (pd.Timestamp(died) + pd.Timedelta(days=4)).date()
    spells.loc[3, "discharged_on"] = (
        pd.Timestamp(spells.loc[3, "admitted_on"]) - pd.Timedelta(days=3)
    ).date()
    spells.to_parquet(spells_file, index=False)
    assert _run(tmp_path, "ingest").returncode == 0
    build = _run(tmp_path, "build")
    assert build.returncode == 1
    assert "Failed: assert_no_blocking_record_findings" in build.stdout
    checks = query(
        tmp_path / "warehouse.duckdb", "select * from data_quality.dq_record_checks"
    ).set_index("check_name")
    assert checks.loc["spell discharged before admission", "n_failing"] == 1
    assert checks.loc["spell discharged before admission", "blocking"] == 1
    assert checks.loc["admission after the date of death", "n_failing"] >= 1
    assert checks.loc["admission after the date of death", "severity"] == "warning"
    assert checks.loc["admission after the date of death", "blocking"] == 0
