"""What a researcher sees: ``sicp demo`` prints one line per stage (the Dagster and dbt logs go
to a log file it names), and the Dagster UI, started on the same instance, serves the demo's
run, its materialisations and asset checks over its GraphQL API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagster_project.pipeline import demo_console
from sicp.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
#: Two quick protocols keep the small world's run short; the stages are all there.
PROTOCOLS = ("its_salford_emergency_admissions", "twic_eq5d")
STAGES = ("generate", "ingest", "dbt", "protocols", "export", "reports")
CONSENT_CHECK = "assert_no_withdrawn_person_in_marts"


def test_quiet_output_sends_this_process_and_its_children_to_the_log(tmp_path, capfd):
    """Python's own output, raw writes to the file descriptors and a child process's stdout
    and stderr all reach the log; only the stage lines reach the terminal."""
    log = tmp_path / "logs" / "demo.log"
    with demo_console(log) as console:
        print("printed by python")
        print("warned by python", file=sys.stderr)
        os.write(1, b"written to fd 1\n")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('child stdout'); print('child stderr', file=sys.stderr)",
            ],
            check=True,
            timeout=60,
        )
        console.stream.write("stage line\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("stage line\n", "")
    assert not console.colours
    text = log.read_text()
    for line in (
        "printed by python",
        "warned by python",
        "written to fd 1",
        "child stdout",
        "child stderr",
    ):
        assert line in text


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Any]:
    """``sicp demo --scenario small`` as ``make demo`` runs it, output not a terminal, every
    path (the Dagster instance too) under one temporary folder."""
    root = tmp_path_factory.mktemp("demo")
    (root / "protocols").mkdir()
    for name in PROTOCOLS:
        shutil.copy(PROJECT_ROOT / "protocols" / f"{name}.yml", root / "protocols")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SICP_CONFIG")}
    env |= {
        "SICP_INPUT_DIR": str(root / "raw"),
        "SICP_WAREHOUSE": str(root / "warehouse.duckdb"),
        "SICP_RESULTS_DIR": str(root / "results"),
        "SICP_REPORTS_DIR": str(root / "reports"),
        "SICP_PROTOCOLS_DIR": str(root / "protocols"),
    }
    proc = subprocess.run(
        [str(BIN / "sicp"), "demo", "--scenario", "small", "--seed", "5"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    home = subprocess.run(
        [sys.executable, "-m", "dagster_project.instance"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    return {"root": root, "env": env, "proc": proc, "home": Path(home)}


def test_demo_prints_one_line_per_stage_and_names_its_log(demo):
    proc = demo["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    lines = output.splitlines()
    assert len(lines) < 60, output
    assert "\x1b[" not in output and "\r" not in output
    staged = [line.split()[0] for line in lines if re.search(r"\(\d+\.\d s\)$", line)]
    assert staged == list(STAGES), output
    assert re.search(r"^dbt +\d+/\d+ models, 6/6 seeds; checks \d+ passed", output, re.M), output
    assert re.search(rf"^protocols +{len(PROTOCOLS)}/{len(PROTOCOLS)} protocols", output, re.M)
    log = Path(re.search(r"^Full Dagster and dbt log: (.+)$", output, re.M).group(1))
    assert log.parent == demo["root"] / "logs"
    text = log.read_text()
    assert "dagster - DEBUG" in text and "Running with dbt=" in text and "OK created sql" in text
    assert "\x1b[" not in text
    # `make ui` serves the instance the demo names (python -m dagster_project.instance).
    run = re.search(r"^  Dagster run \(make ui\) +(\S+) in (.+)$", output, re.M)
    assert Path(run.group(2)) == demo["home"] == demo["root"] / "dagster_home"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str, timeout: float = 30) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer
    return answer["data"]


@pytest.fixture(scope="module")
def ui(demo) -> Iterator[str]:
    """``dagster-webserver`` on a free loopback port over the demo's instance: its GraphQL
    address once the code location has loaded (bounded wait), killed afterwards."""
    port = _free_port()
    log = demo["root"] / "webserver.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-m",
                "dagster_project.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=demo["root"],
            env={**demo["env"], "DAGSTER_HOME": str(demo["home"])},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no asset graph: " + log.read_text()[-3000:]
            try:
                if _graphql(url, "{ assetNodes { id } }", timeout=10)["assetNodes"]:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_ui_shows_the_asset_graph_by_layer_and_the_sensor_off(ui):
    nodes = _graphql(ui, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    groups = {tuple(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert groups[("raw", "recruitment")] == "raw"
    assert groups[("staging", "stg_practices__practices")] == "staging"
    assert groups[("marts", "person_wave_panel")] == "marts"
    assert {groups[("results", p)] for p in PROTOCOLS} == {"results"}
    assert {"intermediate", "data_quality", "seeds"} <= set(groups.values())
    assert "default" not in groups.values()
    sensors = _graphql(
        ui,
        """{ sensorsOrError(repositorySelector: {
        repositoryName: "__repository__", repositoryLocationName: "dagster_project.definitions"})
        { ... on Sensors { results { name sensorState { status } } } } }""",
    )
    assert sensors["sensorsOrError"]["results"] == [
        {"name": "new_survey_wave", "sensorState": {"status": "STOPPED"}}
    ]


def test_ui_shows_the_demo_run_its_materialisations_and_checks(ui, demo):
    runs = _graphql(ui, "{ runsOrError { ... on Runs { results { runId jobName status } } } }")
    [run] = runs["runsOrError"]["results"]
    assert (run["jobName"], run["status"]) == ("ingest_and_build", "SUCCESS")
    assert f"Dagster run (make ui)          {run['runId']} in " in demo["proc"].stdout
    mart = _graphql(
        ui,
        """{ assetOrError(assetKey: {path: ["marts", "person_wave_panel"]})
        { ... on Asset { assetMaterializations(limit: 1) { runId } } } }""",
    )
    assert mart["assetOrError"]["assetMaterializations"] == [{"runId": run["runId"]}]
    checks = _graphql(
        ui,
        f"""{{ assetCheckExecutions(limit: 1, checkName: "{CONSENT_CHECK}",
        assetKey: {{path: ["marts", "person_wave_panel"]}}) {{ runId status }} }}""",
    )
    assert checks["assetCheckExecutions"] == [{"runId": run["runId"], "status": "SUCCEEDED"}]
