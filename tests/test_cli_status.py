"""``sicp status`` (read-only, one line per item), ``sicp --version`` and the settings file
(sicp.toml: the environment wins over it, it wins over the defaults)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from analysis.store import code_version
from sicp.cli import DISTRIBUTION, main
from sicp.settings import PATH_SETTINGS, PROJECT_ROOT, Paths
from sicp.warehouse import record_build
from tests.test_rerun import built_copy, use
from tests.worlds import BuiltWorld, query, world_paths


def status(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``sicp status``'s lines by item; it always exits 0 and prints nothing on stderr."""
    assert main(["status"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return {line[:13].strip(): line[13:].strip() for line in out.splitlines()}


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def test_status_of_a_delivery_not_yet_ingested(
    small_dbt_world: BuiltWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = world_paths(tmp_path)
    shutil.copytree(small_dbt_world.warehouse.parent / "raw", paths.input_dir)
    use(paths, monkeypatch)
    ingested = query(small_dbt_world.warehouse, "SELECT * FROM raw.input_fingerprint")
    lines = status(capsys)
    assert list(lines) == ["settings", "input folder", "warehouse", "code version"]
    assert lines["settings"] == "environment and defaults (no sicp.toml; SICP_CONFIG unset)"
    # The folder's fingerprint is the one ingest recorded for the same files.
    assert lines["input folder"] == (
        f"{paths.input_dir}: fingerprint "
        f"{ingested['fingerprint'][0][:12]} "
        f"({ingested['n_files'][0]} files)"
    )
    assert lines["warehouse"] == f"{paths.warehouse}: missing; run `sicp ingest`"
    assert lines["code version"] == code_version(PROJECT_ROOT)


def test_status_of_a_built_world_follows_ingest_build_and_analyse(
    small_dbt_world: BuiltWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = built_copy(small_dbt_world, tmp_path, protocols=["twic_eq5d"])
    use(paths, monkeypatch)
    monkeypatch.setattr("analysis.runner.code_version", lambda repo: "v-test")
    monkeypatch.setattr("analysis.store.code_version", lambda repo: "v-test")
    before = listing(tmp_path)
    lines = status(capsys)
    assert listing(tmp_path) == before  # status wrote nothing
    assert list(lines) == [
        "settings",
        "input folder",
        "warehouse",
        "last build",
        "results",
        "protocols",
        "code version",
    ]
    assert lines["input folder"].endswith("; as last ingested")
    assert lines["last build"].startswith("#1 at ")
    assert lines["last build"].endswith(
        "(dbt build (tests)): passed, "
        f"{len(small_dbt_world.run_results['results'])} nodes; "
        "marts current"
    )
    assert lines["results"] == f"{paths.results_dir}: none; run `sicp analyse`"
    assert lines["protocols"] == f"1 in {paths.protocols_dir}"
    assert lines["code version"] == "v-test"

    assert main(["analyse"]) == 0
    capsys.readouterr()
    assert status(capsys)["results"] == f"{paths.results_dir}: 1 of 1 protocols current"

    record_build(paths.warehouse, small_dbt_world.run_results, invoked_by="a rebuild")
    lines = status(capsys)
    assert "#2 at " in lines["last build"] and "(a rebuild): passed" in lines["last build"]
    assert lines["results"] == (
        f"{paths.results_dir}: 0 of 1 protocols current; 1 to run "
        f"again, as the marts were rebuilt (build 1 -> 2): twic_eq5d"
    )

    delivered = sorted(paths.input_dir.rglob("*.csv"))[0]
    delivered.write_bytes(delivered.read_bytes() + b"\n")
    assert "; changed since the last ingest (" in status(capsys)["input folder"]


def test_status_says_the_warehouse_is_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = world_paths(tmp_path)
    use(paths, monkeypatch)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('held', flush=True); sys.stdin.read()",
            str(paths.warehouse),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        lines = status(capsys)
    finally:
        holder.communicate("", timeout=30)  # end of stdin: the holder closes and exits
    assert lines["warehouse"] == (
        f"the warehouse {paths.warehouse} is in use by another "
        f"process (pid {holder.pid}); wait for it to finish and run "
        f"again"
    )
    assert lines["input folder"] == (
        f"{paths.input_dir}: missing; set SICP_INPUT_DIR or input_dir in sicp.toml"
    )


def test_version_is_the_package_version_and_the_git_commit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sicp {version(DISTRIBUTION)}")
    assert ("(git " in out) == (code_version(PROJECT_ROOT) != "unknown")


@pytest.fixture
def no_path_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PATH_SETTINGS.values(), "SICP_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_path_variables")
def test_environment_wins_over_sicp_toml_which_wins_over_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sicp.toml").write_text(
        'input_dir = "delivery"\nwarehouse = "/srv/w.duckdb"\n', encoding="utf-8"
    )
    monkeypatch.chdir(site)
    monkeypatch.setenv("SICP_WAREHOUSE", str(tmp_path / "env.duckdb"))
    paths = Paths.from_env()
    assert paths.input_dir == site / "delivery"  # the file
    assert paths.warehouse == tmp_path / "env.duckdb"  # the environment
    assert paths.results_dir == PROJECT_ROOT / "data" / "results"  # the default
    monkeypatch.delenv("SICP_WAREHOUSE")
    assert Paths.from_env().warehouse == Path("/srv/w.duckdb")


@pytest.mark.usefixtures("no_path_variables")
def test_sicp_config_names_the_file_and_its_folder_anchors_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "config" / "study.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('results_dir = "../results"\n', encoding="utf-8")
    (tmp_path / "sicp.toml").write_text('results_dir = "ignored"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SICP_CONFIG", str(elsewhere))
    assert Paths.from_env().results_dir == tmp_path / "results"
    assert status(capsys)["settings"] == f"{elsewhere} (environment variables win over it)"
