"""``sicp analyse`` re-runs only what changed: the skip decision (analysis.runner.rerun_reason)
and the CLI on a copy of the small built world."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from analysis.protocol import load_protocol
from analysis.runner import Lineage, rerun_reason
from analysis.store import STATUS_FAILED, STATUS_NOT_APPLICABLE, STATUS_OK
from sicp.cli import main
from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import BuiltWorld, world_paths

PROTOCOL = load_protocol(PROJECT_ROOT / "protocols" / "twic_eq5d.yml")
NOW = Lineage(input_fingerprint="f" * 64, build_seq=4, code_version="v1")


def stored_run(**changes: object) -> dict[str, object]:
    """A ``protocol_runs`` row of PROTOCOL as a run under NOW stores it, with ``changes``."""
    return {
        "protocol_id": PROTOCOL.id,
        "protocol_hash": PROTOCOL.hash,
        "status": STATUS_OK,
        "reason": "",
        "n_estimates": 2,
        "input_fingerprint": NOW.input_fingerprint,
        "code_version": NOW.code_version,
        "build_seq": NOW.build_seq,
        **changes,
    }


def stored_rows(n: int = 2, **changes: object) -> pd.DataFrame:
    """PROTOCOL's estimate rows as stored under NOW (lineage columns only), with ``changes``."""
    return pd.DataFrame(
        {
            "protocol_id": PROTOCOL.id,
            "protocol_hash": PROTOCOL.hash,
            "input_fingerprint": NOW.input_fingerprint,
            "code_version": NOW.code_version,
            **changes,
        },
        index=range(n),
    )


def test_a_result_with_every_stamp_current_is_kept() -> None:
    assert rerun_reason(PROTOCOL, NOW, stored_run(), stored_rows()) is None
    not_applicable = stored_run(status=STATUS_NOT_APPLICABLE, n_estimates=0)
    assert rerun_reason(PROTOCOL, NOW, not_applicable, stored_rows(0)) is None


@pytest.mark.parametrize(
    ("stored", "rows", "reason"),
    [
        (None, stored_rows(0), "no stored result"),
        (
            stored_run(status=STATUS_FAILED, n_estimates=0),
            stored_rows(0),
            "it failed at its last run",
        ),
        (stored_run(protocol_hash="0" * 64), stored_rows(), "the protocol changed"),
        (stored_run(input_fingerprint="e" * 64), stored_rows(), "the inputs changed"),
        (stored_run(build_seq=3), stored_rows(), "the marts were rebuilt (build 3 -> 4)"),
        (stored_run(build_seq=pd.NA), stored_rows(), "the marts were rebuilt (build <NA> -> 4)"),
        (stored_run(code_version="v0"), stored_rows(), "the code changed (v0 -> v1)"),
        (stored_run(), stored_rows(1), "the estimates store does not hold its last run's rows"),
        (
            stored_run(),
            stored_rows(code_version="v0"),
            "the estimates store does not hold its last run's rows",
        ),
    ],
)
def test_a_result_is_run_again_when_anything_it_came_from_changed(
    stored: dict[str, object] | None, rows: pd.DataFrame, reason: str
) -> None:
    assert rerun_reason(PROTOCOL, NOW, stored, rows) == reason


# --- the CLI on the small world -------------------------------------------------------------

#: Three quick protocols of different designs (trial, interrupted time series, dose-response).
SUBSET = ("assets_eq5d", "its_salford_emergency_admissions", "twic_eq5d")


def built_copy(world: BuiltWorld, root: Path, protocols: Sequence[str] = SUBSET) -> Paths:
    """A writable copy of the shared small world (raw folder and warehouse, whose dbt build
    the fixture recorded as ``sicp build`` does; the fixture's own is read by other tests),
    and a protocols folder holding ``protocols`` only."""
    paths = world_paths(root, protocols_dir=root / "protocols")
    shutil.copytree(world.warehouse.parent / "raw", paths.input_dir)
    shutil.copy2(world.warehouse, paths.warehouse)
    paths.protocols_dir.mkdir()
    for pid in protocols:
        shutil.copy2(PROJECT_ROOT / "protocols" / f"{pid}.yml", paths.protocols_dir)
    return paths


def use(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI at ``paths``, with no settings file."""
    monkeypatch.chdir(paths.warehouse.parent)
    monkeypatch.delenv("SICP_CONFIG", raising=False)
    for name, value in (
        ("SICP_INPUT_DIR", paths.input_dir),
        ("SICP_WAREHOUSE", paths.warehouse),
        ("SICP_RESULTS_DIR", paths.results_dir),
        ("SICP_REPORTS_DIR", paths.reports_dir),
        ("SICP_PROTOCOLS_DIR", paths.protocols_dir),
    ):
        monkeypatch.setenv(name, str(value))


def analyse(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    """Run ``sicp analyse``; each protocol's printed line, by protocol id (a protocol that
    ran is printed as it finishes, with its place in the run: ``[2/3] id ...``)."""
    assert main(["analyse", *args]) == 0
    out = capsys.readouterr().out
    lines = [
        re.sub(r"^  \[\d+/\d+\] ", "  ", line) for line in out.splitlines() if line.startswith("  ")
    ]
    return {line.split()[0]: line for line in lines}


def ran(paths: Paths) -> list[str]:
    """The protocols of the run log, one per run, oldest first."""
    log = paths.results_dir / "run_log.jsonl"
    return [json.loads(line)["protocol_id"] for line in log.read_text().splitlines()]


def store_bytes(paths: Paths) -> dict[str, bytes]:
    return {
        name: (paths.results_dir / name).read_bytes()
        for name in ("estimates.parquet", "protocol_runs.parquet")
    }


def test_analyse_runs_only_what_changed(
    small_dbt_world: BuiltWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = built_copy(small_dbt_world, tmp_path)
    use(paths, monkeypatch)
    # A fixed code version: a commit in the working tree during the test is not a code change.
    monkeypatch.setattr("analysis.runner.code_version", lambda repo: "v-test")

    first = analyse(capsys)
    assert sorted(first) == list(SUBSET) and ran(paths) == list(SUBSET)
    assert all("ran because no stored result" in line for line in first.values())
    stored = store_bytes(paths)

    again = analyse(capsys)
    assert all(" ok " in line and "unchanged, kept" in line for line in again.values()), again
    assert ran(paths) == list(SUBSET) and store_bytes(paths) == stored

    forced = analyse(capsys, "--force")
    assert all("ran because of --force" in line for line in forced.values())
    assert ran(paths) == list(SUBSET) * 2 and store_bytes(paths) == stored

    edited = paths.protocols_dir / "twic_eq5d.yml"
    edited.write_text(edited.read_text().replace('title: "', 'title: "Edited: ', 1))
    after_edit = analyse(capsys)
    assert "ran because the protocol changed" in after_edit["twic_eq5d"]
    assert all("unchanged, kept" in after_edit[pid] for pid in SUBSET if pid != "twic_eq5d")
    assert ran(paths) == [*list(SUBSET) * 2, "twic_eq5d"]

    monkeypatch.setattr("analysis.runner.code_version", lambda repo: "v-next")
    new_code = analyse(capsys, "--protocol", "assets_eq5d")
    assert list(new_code) == ["assets_eq5d"]
    assert "ran because the code changed (v-test -> v-next)" in new_code["assets_eq5d"]
