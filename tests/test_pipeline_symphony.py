"""End to end on the second embedded site (scenario ``symphony``): another window, other
neighbourhoods, another roll-out and trial date, fewer waves. The shipped protocols run
unchanged through ``sicp ingest && sicp build && sicp analyse && sicp report``; every command
exits 0 and every primary estimate covers its truth (issue 14)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.store import read_protocol_runs
from sicp.synth import generate_world
from sicp.synth.scenario import load_scenario
from tests.worlds import query, truth_checks, world_paths

SICP = Path(sys.executable).with_name("sicp")
#: One world; coverage at 95% is a property of repeated worlds, so a seed's misses are
#: expected now and then (seeds 1-4 are reported in the issue notes).
SEED = 2


@pytest.fixture(scope="module")
def symphony(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("symphony")
    paths = world_paths(root)
    generate_world("symphony", SEED, paths.input_dir)
    env = {
        **os.environ,
        "SICP_INPUT_DIR": str(paths.input_dir),
        "SICP_WAREHOUSE": str(paths.warehouse),
        "SICP_RESULTS_DIR": str(paths.results_dir),
        "SICP_REPORTS_DIR": str(paths.reports_dir),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "0",
    }
    runs = {}
    for command in (["ingest"], ["build"], ["analyse"], ["report", "--format", "html"]):
        runs[command[0]] = subprocess.run(
            [str(SICP), *command], cwd=root, env=env, capture_output=True, text=True, check=False
        )
    return paths, runs


def test_every_command_exits_0_with_the_shipped_protocols(symphony) -> None:
    _, runs = symphony
    for name, run in runs.items():
        assert run.returncode == 0, f"sicp {name}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr, name


def test_every_protocol_ran_and_every_primary_covers_its_truth(symphony) -> None:
    paths, _ = symphony
    statuses = read_protocol_runs(paths.results_dir)
    assert set(statuses["status"]) == {"ok"}, statuses[statuses["status"] != "ok"].to_dict(
        "records"
    )
    misses = [
        f"{pid}/{aid}: truth {value:.4g} outside [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
        for pid, aid, row, value in truth_checks(paths)
        if not math.isnan(row["ci_low"]) and not row["ci_low"] <= value <= row["ci_high"]
    ]
    assert not misses, "\n".join(misses)


def test_the_warehouse_follows_the_sites_own_calendar_and_geography(symphony) -> None:
    paths, _ = symphony
    scn = load_scenario("symphony")
    wh = paths.warehouse
    window = query(
        wh, "select distinct study_start_month, study_end_month from marts.study_calendar"
    ).iloc[0]
    assert window["study_start_month"] == pd.Timestamp(scn["calendar"]["start"])
    assert window["study_end_month"] == pd.Timestamp(scn["calendar"]["end"])
    rollout = query(wh, "select * from marts.practice_rollout")
    assert set(rollout["neighbourhood"]) == set(scn["deprivation"])
    starts = sorted({str(e["start"]) for e in scn["rollout"] if e["start"]})
    got = rollout.dropna(subset=["rollout_wave"]).groupby("rollout_wave")["mdg_first_month"].min()
    assert [m.strftime("%Y-%m-%d") for m in got] == starts
    design = query(wh, "select * from marts.trial_design").iloc[0]
    assert (design["baseline_wave"], design["followup_wave"]) == (
        scn["twic"]["baseline_wave"],
        scn["twic"]["followup_wave"],
    )
    waves = query(wh, "select count(*) as n from marts.survey_waves")["n"].iloc[0]
    assert waves == scn["cohort"]["waves"]
    study = query(
        wh, "select distinct area_name from marts.area_month_panel where is_study_area = 1"
    )["area_name"]
    assert list(study) == ["South Somerset"]
    names = " ".join(
        query(wh, "select distinct neighbourhood from marts.practice_month_panel")["neighbourhood"]
    )
    assert "Salford" not in names and "Eccles" not in names
