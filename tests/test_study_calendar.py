"""The study follows its data: the window is what the record extracts cover, a gap in an
extract fails the build by name, ``sicp analyse`` refuses a failed build, and each protocol
runs in isolation with its status stored (issue 14)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.store import read_protocol_runs, read_results
from tests.worlds import BuiltWorld, query

SICP = Path(sys.executable).with_name("sicp")
PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"


def _sicp(
    root: Path, *args: str, protocols: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SICP_INPUT_DIR": str(root / "raw"),
        "SICP_WAREHOUSE": str(root / "warehouse.duckdb"),
        "SICP_RESULTS_DIR": str(root / "results"),
        "SICP_REPORTS_DIR": str(root / "reports"),
        "SICP_PROTOCOLS_DIR": str(protocols or PROTOCOLS),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "0",
    }
    return subprocess.run(
        [str(SICP), *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def _world_with_spells(world: BuiltWorld, root: Path, keep) -> Path:
    """A copy of the small world's input whose hospital spells are filtered by ``keep``."""
    shutil.copytree(world.warehouse.parent / "raw", root / "raw")
    spells_file = root / "raw" / "records" / "hospital_spells.parquet"
    spells = pd.read_parquet(spells_file)
    spells[keep(pd.to_datetime(spells["admitted_on"]))].to_parquet(spells_file, index=False)
    return root


def _built(root: Path) -> subprocess.CompletedProcess[str]:
    ingest = _sicp(root, "ingest")
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    return _sicp(root, "build")


def test_window_is_the_span_every_defining_extract_covers(small_dbt_world: BuiltWorld) -> None:
    calendar = query(small_dbt_world.warehouse, "select * from marts.study_calendar")
    defining = calendar[calendar["defines_window"] == 1]
    assert set(defining["source_name"]) == {
        "practice_population",
        "hospital_spells",
        "ae_attendances",
        "gp_contacts",
    }
    start, end = defining["first_month"].max(), defining["last_month"].min()
    assert (calendar["study_start_month"] == start).all()
    assert (calendar["study_end_month"] == end).all()
    for mart in ("practice_month_panel", "person_month_panel", "contact_centre_calls_monthly"):
        got = query(
            small_dbt_world.warehouse,
            f"select min(month) as lo, max(month) as hi, min(period) as p "
            f"from marts.{mart} where period >= 1",
        ).iloc[0]
        assert got["lo"] == start and got["hi"] == end and got["p"] == 1, mart


@pytest.mark.parametrize("start_month", ["2013-01-01"])
def test_a_shorter_extract_shortens_the_study_without_code(
    small_dbt_world: BuiltWorld, tmp_path: Path, start_month: str
) -> None:
    """Hospital spells delivered only to 2018-06: no panel month after it, and every dbt test
    passes (no phantom months with person-months and no events)."""
    root = _world_with_spells(small_dbt_world, tmp_path, lambda d: d < pd.Timestamp("2018-07-01"))
    build = _built(root)
    assert build.returncode == 0, build.stdout[-3000:]
    assert "dbt build passed" in build.stdout
    panel = query(
        root / "warehouse.duckdb",
        "select max(month) as hi, max(period) as n from marts.practice_month_panel",
    )
    assert panel["hi"].iloc[0] == pd.Timestamp("2018-06-01")
    window = query(root / "warehouse.duckdb", "select * from intermediate.int_study_window")
    assert window["end_month"].iloc[0] == pd.Timestamp("2018-06-01")
    assert (
        panel["n"].iloc[0]
        == (2018 - window["start_month"].iloc[0].year) * 12
        + 6
        - window["start_month"].iloc[0].month
        + 1
    )


def test_a_gap_in_an_extract_fails_the_build_and_analyse_refuses_it(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    root = _world_with_spells(
        small_dbt_world,
        tmp_path,
        lambda d: (d < pd.Timestamp("2016-07-01")) | (d >= pd.Timestamp("2016-08-01")),
    )
    build = _built(root)
    assert build.returncode != 0
    assert "assert_study_window_within_coverage" in build.stdout
    assert "dbt build FAILED" in build.stdout
    refused = _sicp(root, "analyse")
    assert refused.returncode == 1
    assert (
        "last dbt build" in refused.stderr
        and "assert_study_window_within_coverage" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    allowed = _sicp(root, "analyse", "--allow-failed-build", "--protocol", "twic_eq5d")
    assert allowed.returncode == 0, allowed.stderr[-3000:]


def _protocol(folder: Path, source: str, new_id: str, **changes) -> None:
    content = yaml.safe_load((PROTOCOLS / f"{source}.yml").read_text())
    content["id"] = new_id
    for dotted, value in changes.items():
        node = content
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (folder / f"{new_id}.yml").write_text(yaml.safe_dump(content, sort_keys=False))


def test_each_protocol_runs_in_isolation_and_records_its_status(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    root = tmp_path
    shutil.copytree(small_dbt_world.warehouse.parent / "raw", root / "raw")
    shutil.copy(small_dbt_world.warehouse, root / "warehouse.duckdb")
    protocols = root / "protocols"
    protocols.mkdir()
    _protocol(protocols, "twic_eq5d", "a_trial_ok")
    # Broken when it runs (its filter leaves no rows); a protocol naming a column its panel
    # lacks no longer gets this far: it fails when the protocols load (test below).
    _protocol(
        protocols, "twic_eq5d", "b_trial_broken", **{"data.filters": {"stratum": "no-such-stratum"}}
    )
    _protocol(
        protocols,
        "contact_centre_ae",
        "c_launch_after_the_data",
        **{"method.options.interventions": "2031-01"},
    )
    for name in ("b_trial_broken", "c_launch_after_the_data"):
        content = yaml.safe_load((protocols / f"{name}.yml").read_text())
        content.pop("cost_consequence", None)
        (protocols / f"{name}.yml").write_text(yaml.safe_dump(content, sort_keys=False))
    record = _sicp(root, "build")  # the copied warehouse needs a recorded build
    assert record.returncode == 0, record.stdout[-3000:]
    run = _sicp(root, "analyse", protocols=protocols)
    assert run.returncode == 1
    assert "b_trial_broken" in run.stderr and "Traceback" not in run.stderr + run.stdout
    statuses = read_protocol_runs(root / "results").set_index("protocol_id")
    assert statuses.loc["a_trial_ok", "status"] == "ok"
    assert statuses.loc["b_trial_broken", "status"] == "failed"
    assert statuses.loc["b_trial_broken", "reason"].split(":")[0].endswith("Error")
    assert statuses.loc["c_launch_after_the_data", "status"] == "not_applicable"
    assert (
        "2031-01 lies outside the data's calendar"
        in statuses.loc["c_launch_after_the_data", "reason"]
    )
    store = read_results(root / "results")
    assert set(store["protocol_id"]) == {"a_trial_ok"}
    assert statuses.loc["a_trial_ok", "n_estimates"] == len(store)
    assert not (root / "results" / "tables" / "b_trial_broken").exists()
    # Fixing the broken protocol replaces its status; the others keep theirs.
    _protocol(protocols, "twic_eq5d", "b_trial_broken")
    again = _sicp(root, "analyse", "--protocol", "b_trial_broken", protocols=protocols)
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = read_protocol_runs(root / "results").set_index("protocol_id")
    assert statuses.loc["b_trial_broken", "status"] == "ok"
    assert statuses.loc["c_launch_after_the_data", "status"] == "not_applicable"
    unknown = _sicp(root, "analyse", "--protocol", "nope", protocols=protocols)
    assert unknown.returncode == 2 and "--protocol: no protocol nope in " in unknown.stderr
    _protocol(protocols, "twic_eq5d", "d_trial_typo", outcome="no_such_column")
    typo = _sicp(root, "analyse", protocols=protocols)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "d_trial_typo.yml: analysis 'primary': outcome names 'no_such_column'" in typo.stderr
