"""User mistakes come out as one line naming the command, what is wrong, where and what to do,
with exit code 2; other errors are one line with exit code 1; --debug shows the traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from sicp.cli import UsageError, main
from sicp.ingest.tables import ensure_raw_schema
from sicp.warehouse import record_build

PATH_VARIABLES = ("SICP_INPUT_DIR", "SICP_WAREHOUSE", "SICP_RESULTS_DIR", "SICP_REPORTS_DIR")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every path under an empty folder, no settings file, no debug: nothing ingested yet."""
    monkeypatch.chdir(tmp_path)
    for name in PATH_VARIABLES:
        monkeypatch.setenv(name, str(tmp_path / name.removeprefix("SICP_").lower()))
    monkeypatch.delenv("SICP_CONFIG", raising=False)
    monkeypatch.setenv("SICP_DEBUG", "")  # off, and restored after --debug sets it
    yield tmp_path


def ingested(site: Path) -> Path:
    """A warehouse with ingest's bookkeeping tables (an empty consent ledger) and no build."""
    warehouse = site / "warehouse"
    with duckdb.connect(str(warehouse)) as con:
        ensure_raw_schema(con)
    return warehouse


def built(site: Path) -> Path:
    """That warehouse with a passed build recorded as `sicp build` records one."""
    warehouse = ingested(site)
    record_build(warehouse, {"results": [], "metadata": {"generated_at": "now"}}, "test")
    return warehouse


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    """Run the CLI; assert the exit code and a single stderr line without a traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


# (what the user did, the state to set up, argv, what the line must say)
MISTAKES = [
    (
        "wrong scenario name",
        None,
        ["synth", "--scenario", "no_such_scenario", "--out", "w"],
        ["sicp synth: --scenario: unknown scenario 'no_such_scenario'; known: default"],
    ),
    (
        "wrong scenario name for the demo",
        None,
        ["demo", "--scenario", "no_such_scenario"],
        ["sicp demo: --scenario: unknown scenario 'no_such_scenario'"],
    ),
    (
        "missing input folder",
        None,
        ["ingest"],
        ["sicp ingest: the input folder", "input_dir does not exist", "SICP_INPUT_DIR"],
    ),
    (
        "build before ingest",
        None,
        ["build"],
        ["sicp build: the warehouse", "does not exist; run `sicp ingest` first"],
    ),
    (
        "analyse before ingest",
        None,
        ["analyse"],
        ["sicp analyse: the warehouse", "does not exist", "`sicp build` first"],
    ),
    (
        "analyse before build",
        ingested,
        ["analyse"],
        ["sicp analyse: ", "has no recorded dbt build; run `sicp build` first"],
    ),
    (
        "export before build",
        ingested,
        ["export"],
        ["sicp export: ", "has no recorded dbt build; run `sicp build` first"],
    ),
    (
        "report before build",
        ingested,
        ["report"],
        ["sicp report: ", "has no recorded dbt build; run `sicp build` first"],
    ),
    (
        "report before analyse",
        built,
        ["report"],
        ["sicp report: no results in", "results_dir; run `sicp analyse` first"],
    ),
    (
        "unknown protocol id",
        None,
        ["analyse", "--protocol", "no_such_protocol"],
        ["sicp analyse: --protocol: no protocol no_such_protocol in", "protocols; known: "],
    ),
    (
        "unknown protocol id to report",
        None,
        ["report", "--protocol", "no_such_protocol"],
        ["sicp report: --protocol: no protocol no_such_protocol"],
    ),
    (
        "bad report --format",
        None,
        ["report", "--format", "docx"],
        ["sicp report: argument --format: invalid choice: 'docx'", "see `sicp report --help`"],
    ),
    (
        "bad export --format",
        None,
        ["export", "--format", "xlsx"],
        ["sicp export: argument --format: invalid choice: 'xlsx'"],
    ),
    ("unknown command", None, ["analyze"], ["sicp: argument COMMAND: invalid choice: 'analyze'"]),
    (
        "export into the reports folder",
        built,
        ["export", "--out", "reports_dir/panels"],
        ["sicp export: --out: ", "is inside the reports folder", "choose a folder outside it"],
    ),
    (
        "consent before ingest",
        None,
        ["consent", "list"],
        ["sicp consent: the warehouse", "does not exist; run `sicp ingest` first"],
    ),
    (
        "consent reinstate of an unknown person",
        ingested,
        ["consent", "reinstate", "P-NOBODY", "--by", "Dr A", "--why", "form 1"],
        ["sicp consent: reinstate: P-NOBODY is not excluded in scope 'all'", "sicp consent list"],
    ),
    (
        "consent reinstate without who and why",
        ingested,
        ["consent", "reinstate", "P-1"],
        ["sicp consent: reinstate: give PERSON_ID, --by and --why"],
    ),
    (
        "validate an unknown protocol",
        None,
        ["validate", "--protocol", "no_such_protocol"],
        ["sicp validate: --protocol: no protocol with a truth named ['no_such_protocol']"],
    ),
    (
        "validate --update without --protocol",
        None,
        ["validate", "--update"],
        ["sicp validate: --update reruns the protocols named with --protocol"],
    ),
    (
        "validate --update of no study",
        None,
        ["validate", "--update", "--protocol", "twic_eq5d"],
        ["sicp validate: --update: no study in", "results_dir/validation"],
    ),
    (
        "validate one replication",
        None,
        ["validate", "--reps", "1"],
        ["sicp validate: --reps 1: a Monte Carlo study needs at least 2 replications"],
    ),
    (
        "validate to two places",
        None,
        ["validate", "--update-docs", "--out", "x"],
        ["sicp validate: argument --out: not allowed with argument --update-docs"],
    ),
]


@pytest.mark.parametrize(
    ("mistake", "state", "argv", "says"), MISTAKES, ids=[m[0] for m in MISTAKES]
)
def test_a_user_mistake_is_one_line_and_exit_code_2(
    site: Path,
    capsys: pytest.CaptureFixture[str],
    mistake: str,
    state,
    argv: list[str],
    says: list[str],
) -> None:
    if state is not None:
        state(site)
    err = one_line_error(capsys, argv)
    for part in says:
        assert part in err, (mistake, err)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('warehous = "w.duckdb"\n', "sicp.toml: unknown key(s) warehous; the keys are input_dir"),
        ("warehouse = 3\n", "sicp.toml: warehouse must be a path in quotes, e.g. warehouse = "),
        ("warehouse = \n", "sicp.toml: not valid TOML"),
    ],
)
def test_a_bad_settings_file_is_a_user_mistake(
    site: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    (site / "sicp.toml").write_text(content, encoding="utf-8")
    err = one_line_error(capsys, ["status"])
    assert err.startswith(f"sicp status: {site / 'sicp.toml'}") and says in err


def test_a_missing_named_settings_file_is_a_user_mistake(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SICP_CONFIG", str(site / "elsewhere.toml"))
    err = one_line_error(capsys, ["status"])
    assert err == (
        f"sicp status: SICP_CONFIG={site / 'elsewhere.toml'}: no such file; point it "
        f"at a sicp.toml or unset it"
    )


def test_a_failure_inside_a_command_is_one_line_and_exit_code_1(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("sicp.synth.generate_world", broken)
    err = one_line_error(capsys, ["synth", "--out", "w"], code=1)
    assert err == (
        "sicp synth: RuntimeError: disk on fire second line (run with --debug for the traceback)"
    )


def test_debug_shows_the_traceback(site: Path) -> None:
    with pytest.raises(UsageError, match="no_such_scenario"):
        main(["--debug", "synth", "--scenario", "no_such_scenario", "--out", "w"])
