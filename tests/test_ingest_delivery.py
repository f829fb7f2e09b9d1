"""Safe with real deliveries (issue 15): every delivered file is accounted for, one unreadable
file fails only its source, empty deliveries are visible, and faults and concurrency get clear
words. Each case asserts its stated outcome, that rows read = loaded + quarantined for every
file the warehouse holds, that the delivery manifest, raw.ingest_log and the input fingerprint
name the same files, and that ingesting again once the fault is removed leaves the warehouse
exactly as a fresh ingest of the same folder would."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from sicp.cli import main
from sicp.contract import SOURCES
from sicp.ingest import IngestError, IngestRunError, ingest_all, input_fingerprint, reconcile
from sicp.ingest import load as ingest_load
from sicp.ingest.files import sha256_file
from tests.ingest_helpers import dump, query, tw


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An input folder and warehouse that ``sicp ingest`` and ``ingest_all`` both use."""
    raw, wh = tmp_path / "raw", tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("SICP_INPUT_DIR", str(raw))
    monkeypatch.setenv("SICP_WAREHOUSE", str(wh))
    monkeypatch.delenv("SICP_MAX_QUARANTINE_SHARE", raising=False)
    monkeypatch.delenv("SICP_DEBUG", raising=False)
    return raw, wh


# --- helpers -------------------------------------------------------------------------------


def manifest(warehouse: Path) -> dict[str, tuple]:
    """file -> (source, status, reason) for this run's rows (previous rows left out)."""
    return {
        f: (s, st, r)
        for f, s, st, r in query(
            warehouse,
            "SELECT file, source, status, reason FROM raw.delivery_manifest "
            "WHERE status <> 'previous'",
        )
    }


def assert_consistent(warehouse: Path) -> None:
    """Rows read = loaded + quarantined for every file the warehouse holds, recounted from the
    tables; the manifest's ok and previous files, raw.ingest_log and the fingerprint agree."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        logged = con.execute("SELECT source_file, file_sha256 FROM raw.ingest_log").fetchall()
        assert logged
        for (name,) in con.execute("SELECT DISTINCT source_name FROM raw.ingest_log").fetchall():
            checks = reconcile(con, SOURCES[name])
            assert checks and all(c.ok for c in checks), checks
        held = con.execute(
            "SELECT file, sha256 FROM raw.delivery_manifest WHERE status IN ('ok', 'previous')"
        ).fetchall()
        assert sorted(held) == sorted(logged)
        assert con.execute("SELECT * FROM raw.input_fingerprint").fetchall() == [
            (input_fingerprint(logged), len(logged))
        ]


def listing(raw: Path) -> list[tuple[str, str]]:
    return sorted(
        (p.relative_to(raw).as_posix(), sha256_file(p))
        for p in raw.rglob("*")
        if p.is_file() and not p.is_symlink()
    )


def assert_reingest_consistent(
    raw: Path, warehouse: Path, fresh: dict[str, list[tuple]] | None = None
) -> None:
    """Ingest again (the fault removed): everything loads, and the warehouse equals a fresh
    ingest of the same folder: ``fresh`` when the caller has one (its first ingest into an
    empty warehouse), the tiny world's (computed once) when the folder is that, else one made
    here."""
    report = ingest_all(raw, warehouse)
    assert all(r.status in ("ok", "extra") for r in report.manifest), report.manifest
    assert_consistent(warehouse)
    if fresh is not None:
        expected = fresh
    elif listing(raw) == _BASELINE["listing"]:
        expected = _BASELINE["dump"]
    else:
        fresh = warehouse.with_name("fresh.duckdb")
        fresh.unlink(missing_ok=True)
        ingest_all(raw, fresh)
        expected = dump(fresh)
    assert dump(warehouse) == expected


_BASELINE: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def baseline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tiny world and its warehouse, ingested once: most cases start from a copy."""
    folder = tmp_path_factory.mktemp("baseline")
    raw, wh = folder / "raw", folder / "warehouse.duckdb"
    tw.build(raw)
    ingest_all(raw, wh)
    _BASELINE.update(raw=raw, warehouse=wh, listing=listing(raw), dump=dump(wh))


def delivered_and_loaded(raw: Path, wh: Path) -> dict[str, pd.DataFrame]:
    """The tiny world delivered and ingested (a copy of the baseline); returns its frames."""
    shutil.copytree(_BASELINE["raw"], raw)
    shutil.copy2(_BASELINE["warehouse"], wh)
    return tw.frames()


def run_cli(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["ingest"])
    out, err = capsys.readouterr()
    return code, out, err


def rel(raw: Path, key: str) -> str:
    return tw.path_for(raw, key).relative_to(raw).as_posix()


def loaded_rows(warehouse: Path, source: str) -> int:
    return query(warehouse, f"SELECT count(*) FROM raw.{source}")[0][0]


def run_log(warehouse: Path) -> list[dict]:
    path = warehouse.parent / "ingest_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- 1. every delivered file is accounted for ----------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("recruitment", "cohort/RECRUITMENT.sav"),
        ("recruitment", "cohort/recruitment.SAV"),
        ("survey_wave_02", "cohort/Survey_Wave_02.SAV"),
        ("gp_contacts", "records/GP_Contacts.PARQUET"),
        ("deaths", "Records/deaths.parquet"),  # the folder's case too
    ],
)
def test_names_match_case_insensitively(world, key, name):
    raw, wh = world
    frames = tw.build(raw)
    original = tw.path_for(raw, key)
    if name.startswith("Records/"):
        (raw / "Records").mkdir()
        for p in (raw / "records").iterdir():
            p.rename(raw / "Records" / p.name)
        (raw / "records").rmdir()
    else:
        original.rename(raw / name)
    report = ingest_all(raw, wh)
    first = dump(wh)  # a fresh ingest of this folder
    source = tw.source_of(key)
    (file,) = [f for f in report.source(source.name).files if f.source_file == name]
    assert (file.rows_read, file.rows_loaded, file.rows_quarantined) == (
        len(frames[key]),
        len(frames[key]),
        0,
    )
    assert manifest(wh)[name][:2] == (source.name, "ok")
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh, fresh=first)


@pytest.mark.parametrize(
    ("name", "wave"),
    [("survey_wave_9.sav", 9), ("survey_wave_10.sav", 10), ("survey_wave_003.sav", 3)],
)
def test_wave_number_with_any_number_of_digits(world, name, wave):
    raw, wh = world
    frames = tw.build(raw)
    delivered = frames["survey_wave_02"].assign(wave=wave)
    tw.write(delivered, raw / "cohort" / name, SOURCES["survey_wave"])
    report = ingest_all(raw, wh)
    first = dump(wh)  # a fresh ingest of this folder
    (file,) = [f for f in report.source("survey_wave").files if f.source_file == f"cohort/{name}"]
    assert (file.rows_read, file.rows_loaded, file.rows_quarantined) == (len(delivered),) * 2 + (0,)
    assert query(wh, "SELECT count(*) FROM raw.survey_wave WHERE wave = ?", [wave]) == [
        (len(delivered),)
    ]
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh, fresh=first)


@pytest.mark.parametrize(
    ("name", "shown", "problem"),
    [
        ("cohort/survey_wave_08 (copy).sav", None, "matches no source of the data contract"),
        ("cohort/survey_wave_02.sav.bak", None, "matches no source of the data contract"),
        (
            "records/recruitment.sav",
            None,
            "matches no source of the data contract; recruitment files belong in cohort/",
        ),
        (
            "gp_contacts.csv",
            None,
            "matches no source of the data contract; gp_contacts files belong in records/",
        ),
        ("notes.txt", None, "matches no source of the data contract"),
        ("archive/deaths.parquet", "archive/", "a folder that is not part of the data contract"),
        (
            "records/old/deaths.parquet",
            "records/old/",
            "a sub-folder; the data contract has none inside records/",
        ),
    ],
    ids=["copy", "backup", "wrong_folder", "at_the_top", "notes", "stray_folder", "sub_folder"],
)
def test_a_file_of_no_source_stops_ingest_naming_it(world, capsys, name, shown, problem):
    raw, wh = world
    delivered_and_loaded(raw, wh)
    before = {t: rows for t, rows in dump(wh).items() if t != "delivery_manifest"}
    shown = shown or name  # a stray folder is named, not what is inside it
    stray = raw / name
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(tw.path_for(raw, "survey_wave_02").read_bytes())
    with pytest.raises(IngestRunError) as failure:
        ingest_all(raw, wh)
    assert str(failure.value).startswith(f"{shown}: {problem}")
    # Nothing was loaded: every table but the manifest is as it was, and the manifest says why.
    assert {t: rows for t, rows in dump(wh).items() if t != "delivery_manifest"} == before
    rows = manifest(wh)
    assert rows[shown][1:] == ("refused", failure.value.problem)
    assert {status for _, status, _ in rows.values()} == {"refused", "skipped"}
    assert_consistent(wh)
    # The command: exit 1, the same words, where the manifest is, and no traceback.
    code, _, err = run_cli(capsys)
    assert code == 1 and f"sicp ingest: {shown}: {problem}" in err
    assert f"delivery manifest: raw.delivery_manifest in {wh}" in err and "Traceback" not in err
    assert run_log(wh)[-1]["outcome"] == "refused"
    stray.unlink()
    if shown.endswith("/"):
        stray.parent.rmdir()
    assert_reingest_consistent(raw, wh)


def test_two_files_for_one_source_stop_ingest_naming_both(world, capsys):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    contacts = frames["gp_contacts"]
    contacts.to_csv(raw / "records" / "gp_contacts.csv", index=False)
    with pytest.raises(IngestRunError) as failure:
        ingest_all(raw, wh)
    message = str(failure.value)
    assert message.startswith(
        "records/gp_contacts.csv, records/gp_contacts.parquet: 2 files for "
        "gp_contacts (records/gp_contacts.csv, records/gp_contacts.parquet), "
        "which takes one file; ingest cannot tell which is meant"
    )
    assert loaded_rows(wh, "gp_contacts") == len(contacts)  # not doubled
    rows = manifest(wh)
    assert rows["records/gp_contacts.csv"][1] == rows["records/gp_contacts.parquet"][1] == "refused"
    assert_consistent(wh)
    code, _, err = run_cli(capsys)
    assert code == 1 and "which takes one file" in err and "Traceback" not in err
    (raw / "records" / "gp_contacts.csv").unlink()
    assert_reingest_consistent(raw, wh)
    assert loaded_rows(wh, "gp_contacts") == len(contacts)


def test_two_files_giving_one_wave_stop_ingest(world):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    tw.write(frames["survey_wave_02"], raw / "cohort" / "survey_wave_2.sav", SOURCES["survey_wave"])
    with pytest.raises(
        IngestRunError,
        match=r"^cohort/survey_wave_02\.sav, cohort/survey_wave_2"
        r"\.sav: 2 files give wave 2 of survey_wave",
    ):
        ingest_all(raw, wh)
    assert query(wh, "SELECT count(*) FROM raw.survey_wave WHERE wave = 2") == [
        (len(frames["survey_wave_02"]),)
    ]
    assert_consistent(wh)
    (raw / "cohort" / "survey_wave_2.sav").unlink()
    assert_reingest_consistent(raw, wh)


SECRET = "root:x:0:0:SECRET-LINE-THAT-MUST-NOT-LEAK:/root:/bin/bash"


@pytest.mark.parametrize("case", ["file_outside", "etc_passwd", "file_inside", "folder"])
def test_symlinks_are_refused_without_reading_the_target(world, tmp_path, capsys, case):
    raw, wh = world
    delivered_and_loaded(raw, wh)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"{SECRET}\n{SECRET}\n")
    if case == "folder":
        link, target = raw / "programme", outside
        for p in (raw / "programme").iterdir():
            p.rename(outside / p.name)
        (raw / "programme").rmdir()
        shown = "programme"
    else:
        target = {
            "file_outside": outside / "secret.csv",
            "etc_passwd": Path("/etc/passwd"),
            "file_inside": tw.path_for(raw, "coaching_uptake"),
        }[case]
        link = raw / "records" / "deaths.csv"
        shown = "records/deaths.csv"
    link.symlink_to(target)
    with pytest.raises(IngestRunError) as failure:
        ingest_all(raw, wh)
    message = str(failure.value)
    assert message.startswith(f"{shown}: is a symbolic link; ingest reads only regular files")
    assert SECRET not in message and "root:" not in message and str(target) not in message
    rows = query(
        wh, "SELECT status, sha256, size_bytes FROM raw.delivery_manifest WHERE file = ?", [shown]
    )
    assert rows == [("refused", None, None)]  # never measured, never hashed
    code, out, err = run_cli(capsys)
    assert code == 1 and "root:" not in out + err and "Traceback" not in err
    assert "root:" not in (wh.parent / "ingest_log.jsonl").read_text()
    assert_consistent(wh)
    link.unlink()
    if case == "folder":
        outside.rename(raw / "programme")
        (raw / "programme" / "secret.csv").unlink()
    assert_reingest_consistent(raw, wh)


@pytest.mark.parametrize("case", ["etc_passwd_copy", "file_inside"])
def test_hard_links_are_refused_without_being_read(world, tmp_path, capsys, case):
    """A hard link is a second name of the same file, which may be outside the folder (here
    a stand-in for /etc/passwd on the same file system, since /etc may be another one)."""
    raw, wh = world
    delivered_and_loaded(raw, wh)
    before = dump(wh)
    secret = tmp_path / "passwd"
    secret.write_text(f"{SECRET}\n")
    target = {"etc_passwd_copy": secret, "file_inside": tw.path_for(raw, "coaching_uptake")}[case]
    link = raw / "records" / "deaths.csv"
    tw.path_for(raw, "deaths").unlink()
    os.link(target, link)
    code, out, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err and "root:" not in out + err
    assert (
        "records/deaths.csv: has another name on this file system (a hard link), which may "
        "lie outside the input folder, so it is not read"
    ) in err
    assert query(
        wh,
        "SELECT status, sha256, size_bytes FROM raw.delivery_manifest "
        "WHERE file = 'records/deaths.csv'",
    ) == [("refused", None, None)]
    assert "root:" not in (wh.parent / "ingest_log.jsonl").read_text()
    after = dump(wh)
    assert {t: after[t] for t in before if t != "delivery_manifest"} == {
        t: rows for t, rows in before.items() if t != "delivery_manifest"
    }  # nothing loaded
    link.unlink()
    tw.write(tw.frames()["deaths"], tw.path_for(raw, "deaths"), SOURCES["deaths"])
    assert_reingest_consistent(raw, wh)


def test_a_file_ingest_may_not_read_fails_only_its_source(world, capsys, monkeypatch):
    """Permission denied (simulated: the tests may run as root, who reads everything)."""
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    tw.write(frames["deaths"].iloc[:2], tw.path_for(raw, "deaths"), SOURCES["deaths"])
    tw.write(
        frames["contact_centre_calls"].iloc[:2],
        tw.path_for(raw, "contact_centre_calls"),
        SOURCES["contact_centre_calls"],
    )
    import sicp.ingest.files as files
    import sicp.ingest.manifest as manifest_module

    real = files.sha256_file
    denied = tw.path_for(raw, "deaths")

    def unreadable(path):
        if Path(path) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(files, "sha256_file", unreadable)
    monkeypatch.setattr(manifest_module, "sha256_file", unreadable)
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert "records/deaths.parquet: the file cannot be read (Permission denied)" in err
    assert loaded_rows(wh, "contact_centre_calls") == 2  # the other sources load
    assert loaded_rows(wh, "deaths") == len(frames["deaths"])  # deaths keeps its load
    assert manifest(wh)["records/deaths.parquet"][1] == "failed"
    assert_consistent(wh)
    monkeypatch.undo()
    assert_reingest_consistent(raw, wh)


def test_a_pipe_is_refused_without_being_opened(world):
    raw, wh = world
    delivered_and_loaded(raw, wh)
    before = dump(wh)["deaths"]
    fifo = raw / "records" / "deaths.csv"
    os.mkfifo(fifo)  # reading it would block for ever
    with pytest.raises(
        IngestRunError,
        match=r"^records/deaths\.csv: is not a regular file "
        r"\(a pipe\); remove it",
    ):
        ingest_all(raw, wh)
    assert dump(wh)["deaths"] == before
    assert manifest(wh)["records/deaths.csv"][1] == "refused"
    assert_consistent(wh)
    fifo.unlink()
    assert_reingest_consistent(raw, wh)


def test_an_input_folder_reached_through_a_link_is_fine(world, tmp_path):
    raw, wh = world
    tw.build(raw)
    linked = tmp_path / "drop"
    linked.symlink_to(raw, target_is_directory=True)  # data/raw -> a mounted share, say
    report = ingest_all(linked, wh)
    first = dump(wh)
    assert {r.status for r in report.manifest} == {"ok"}
    assert_consistent(wh)
    assert_reingest_consistent(linked, wh, fresh=first)


def test_allowed_extras_are_listed_and_never_read(world):
    raw, wh = world
    tw.build(raw)
    first = ingest_all(raw, wh)
    extras = {
        "truth.json": "{}",
        "README.md": "# delivery 3",
        "SHA256SUMS": "abc  x\n",
        "cohort/readme.txt": "waves",
        "records/deaths.parquet.sha256": "abc\n",
        "records/.DS_Store": "\0",
    }
    for name, text in extras.items():
        (raw / name).write_text(text)
    report = ingest_all(raw, wh)
    assert report.fingerprint == first.fingerprint  # extras are not inputs
    rows = manifest(wh)
    for name, text in extras.items():
        assert rows[name][1] == "extra", name
        assert query(
            wh, "SELECT size_bytes, sha256 FROM raw.delivery_manifest WHERE file = ?", [name]
        ) == [(len(text.encode()), hashlib.sha256(text.encode()).hexdigest())]
    assert_consistent(wh)
    # truth.json is allowed at the top only.
    (raw / "cohort" / "truth.json").write_text("{}")
    with pytest.raises(IngestRunError, match=r"^cohort/truth\.json: matches no source"):
        ingest_all(raw, wh)
    (raw / "cohort" / "truth.json").unlink()
    assert_reingest_consistent(raw, wh)


def test_manifest_run_log_and_fingerprint_agree(world):
    raw, wh = world
    frames = tw.build(raw)
    report = ingest_all(raw, wh)
    on_disk = sorted(
        (p.relative_to(raw).as_posix(), sha256_file(p)) for p in raw.rglob("*") if p.is_file()
    )
    held = query(
        wh,
        "SELECT file, sha256, size_bytes, rows_read, rows_loaded, rows_quarantined, "
        "status FROM raw.delivery_manifest ORDER BY file",
    )
    assert [(f, s) for f, s, *_ in held] == on_disk
    for f, _, size, read, loaded, quarantined, status in held:
        assert (size, status) == ((raw / f).stat().st_size, "ok")
        assert read == loaded + quarantined
    assert report.fingerprint == input_fingerprint(on_disk)
    entry = run_log(wh)[-1]
    assert (entry["outcome"], entry["fingerprint"], entry["n_files"]) == (
        "ok",
        report.fingerprint,
        len(on_disk),
    )
    assert entry["rows_read"] == sum(s.rows_read for s in report.sources) == entry["rows_loaded"]
    assert {f["file"] for f in entry["files"]} == {f for f, _ in on_disk}
    assert_consistent(wh)
    # A failed source keeps its previous load: its old file is 'previous', the new 'failed',
    # and the fingerprint still covers exactly the files the warehouse holds.
    deaths = frames["deaths"].iloc[:2]
    deaths.drop(columns=["place_of_death"]).to_parquet(tw.path_for(raw, "deaths"))
    with pytest.raises(IngestRunError, match="required column"):
        ingest_all(raw, wh)
    statuses = sorted(
        query(
            wh,
            "SELECT status, sha256 = ? FROM raw.delivery_manifest WHERE "
            "file = 'records/deaths.parquet'",
            [sha256_file(tw.path_for(raw, "deaths"))],
        )
    )
    assert statuses == [("failed", True), ("previous", False)]
    assert_consistent(wh)
    assert run_log(wh)[-1]["outcome"] == "failed"
    tw.write(deaths, tw.path_for(raw, "deaths"), SOURCES["deaths"])
    assert_reingest_consistent(raw, wh)
    assert loaded_rows(wh, "deaths") == 2


def test_a_warehouse_kept_inside_the_input_folder_is_not_a_delivery(world):
    raw, _ = world
    tw.build(raw)
    wh = raw / "warehouse.duckdb"
    ingest_all(raw, wh)
    report = ingest_all(raw, wh)  # its .wal, spill folder and run log too
    assert {
        r.file for r in report.manifest if r.file.startswith(("warehouse", "ingest_log"))
    } == set()
    assert_consistent(wh)


# --- 2. one unreadable file fails only its source -------------------------------------------


@pytest.mark.parametrize(
    ("zone", "late"),
    [
        ("Europe/London", pd.Timestamp("2015-06-01 00:30")),  # BST: 2015-05-31 23:30 UTC
        ("+01:00", pd.Timestamp("2015-06-01 00:30")),  # a fixed offset
        ("UTC", pd.Timestamp("2015-06-01 23:59")),
        ("America/New_York", pd.Timestamp("2015-06-01 21:00")),  # 2015-06-02 01:00 UTC
    ],
)
def test_timezone_aware_dates_are_read_in_their_own_zone(world, zone, late):
    raw, wh = world
    deaths = tw.frames()["deaths"]
    expected = [pd.Timestamp(d).date() for d in deaths["died_on"]]
    expected[0] = late.date()
    delivered = deaths.copy()
    local = pd.to_datetime(delivered["died_on"])
    local[0] = late
    if zone.startswith("+"):  # written by pyarrow as tz="+01:00"
        delivered["died_on"] = (
            (local - pd.Timedelta(hours=1))
            .dt.tz_localize("UTC")
            .dt.tz_convert(dt.timezone(dt.timedelta(hours=1)))
        )
    else:
        delivered["died_on"] = local.dt.tz_localize(zone)
    tw.build(raw, edit={"deaths": delivered})
    report = ingest_all(raw, wh)
    first = dump(wh)  # a fresh ingest of this folder
    assert query(wh, "SELECT died_on FROM raw.deaths ORDER BY _source_row") == [
        (d,) for d in expected
    ]
    (warning,) = report.source("deaths").warnings
    assert warning.startswith(
        "records/deaths.parquet: column died_on holds timezone-aware timestamps (zone "
    )
    assert "1 had a time of day other than midnight, dropped" in warning
    assert report.source("deaths").rows_quarantined == 0
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh, fresh=first)


def _all_but(report_or_wh: Path, failed: str) -> None:
    """Every source but ``failed`` loaded all its rows."""
    logged = {s for (s,) in query(report_or_wh, "SELECT DISTINCT source_name FROM raw.ingest_log")}
    assert logged == set(SOURCES) - {failed}


def test_unknown_time_zone_fails_only_its_source(world, capsys):
    raw, wh = world
    tw.build(raw)
    import pyarrow as pa
    import pyarrow.parquet as pq

    deaths = tw.frames()["deaths"]
    table = pa.table(
        {
            "person_id": deaths["person_id"],
            "died_on": pa.array(
                pd.to_datetime(deaths["died_on"]).astype("int64") // 1000,
                pa.timestamp("us", tz="Mars/Olympus"),
            ),
            "place_of_death": deaths["place_of_death"],
        }
    )
    pq.write_table(table, tw.path_for(raw, "deaths"))
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        "sicp ingest: records/deaths.parquet: column died_on: its timezone-aware timestamps "
        "(zone Mars/Olympus) cannot be read"
    ) in err
    _all_but(wh, "deaths")
    assert manifest(wh)["records/deaths.parquet"][1] == "failed"
    assert_consistent(wh)
    tw.write(deaths, tw.path_for(raw, "deaths"), SOURCES["deaths"])
    assert_reingest_consistent(raw, wh)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_parquet_fails_only_its_source(world, capsys, damage):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    before = query(wh, "SELECT * FROM raw.gp_contacts ORDER BY _source_row")
    path = tw.path_for(raw, "gp_contacts")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
        problem = "the parquet file is truncated (its footer is missing)"
    else:  # signature and footer (the schema) intact, the column data overwritten
        footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
        path.write_bytes(data[:4] + b"\xff" * (footer - 4) + data[footer:])
        problem = "the file cannot be read or checked ("
    code, out, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert f"sicp ingest: records/gp_contacts.parquet: {problem}" in err
    assert query(wh, "SELECT * FROM raw.gp_contacts ORDER BY _source_row") == before
    # Every other source loaded afresh, and says so in the manifest.
    rows = manifest(wh)
    assert rows["records/gp_contacts.parquet"][1] == "failed"
    assert {st for f, (_, st, _) in rows.items() if f != "records/gp_contacts.parquet"} == {"ok"}
    assert_consistent(wh)
    tw.write(frames["gp_contacts"], path, SOURCES["gp_contacts"])
    assert_reingest_consistent(raw, wh)


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom_crlf"])
def test_csv_with_bom_or_crlf_still_loads(world, variant):
    raw, wh = world
    frames = tw.build(raw)
    path = tw.path_for(raw, "coaching_randomisation")
    text = frames["coaching_randomisation"].to_csv(index=False)
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    path.write_bytes(("\ufeff" if "bom" in variant else "").encode() + text.encode())
    report = ingest_all(raw, wh)
    first = dump(wh)  # a fresh ingest of this folder
    assert report.source("coaching_randomisation").rows_quarantined == 0
    got = query(
        wh, "SELECT person_id, stratum, arm FROM raw.coaching_randomisation ORDER BY _source_row"
    )
    want = [
        tuple(r)
        for r in frames["coaching_randomisation"][["person_id", "stratum", "arm"]].itertuples(
            index=False
        )
    ]
    assert got == want
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh, fresh=first)


def test_an_unexpected_fault_fails_only_its_source_without_a_traceback(world, capsys, monkeypatch):
    raw, wh = world
    tw.build(raw)
    real = ingest_load._find_duplicates

    def broken(con, source, files):
        if source.name == "deaths":
            raise RuntimeError("boom")
        return real(con, source, files)

    monkeypatch.setattr(ingest_load, "_find_duplicates", broken)
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        "records/deaths.parquet: could not be ingested (RuntimeError: boom); nothing of "
        "deaths was loaded. This is a fault in sicp: run again with SICP_DEBUG=1"
    ) in err
    _all_but(wh, "deaths")
    assert_consistent(wh)
    monkeypatch.setenv("SICP_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        ingest_all(raw, wh)
    monkeypatch.undo()
    assert_reingest_consistent(raw, wh)


# --- 3. empty deliveries are visible --------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["deaths", "contact_centre_calls", "recruitment", "survey_wave_02", "practices"]
)
def test_a_header_only_file_fails_when_its_source_cannot_be_empty(world, capsys, key):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    source = tw.source_of(key)
    before = query(wh, f"SELECT * FROM raw.{source.name} ORDER BY _source_file, _source_row")
    tw.write(frames[key].iloc[:0], tw.path_for(raw, key), source)
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        f"{rel(raw, key)}: the file has no data rows (a header only); the data contract "
        f"says {source.name} cannot be empty"
    ) in err
    assert (
        query(wh, f"SELECT * FROM raw.{source.name} ORDER BY _source_file, _source_row") == before
    )
    assert manifest(wh)[rel(raw, key)][1] == "failed"
    if key == "practices":  # everything checked against practices waits for it
        assert manifest(wh)[rel(raw, "recruitment")][1:] == (
            "skipped",
            "not ingested because practices failed",
        )
    else:
        _all_but(wh, "-")  # every source still holds a load (this one its previous)
    assert_consistent(wh)
    tw.write(frames[key], tw.path_for(raw, key), source)
    assert_reingest_consistent(raw, wh)


@pytest.mark.parametrize("key", [name for name, s in SOURCES.items() if s.may_be_empty])
def test_a_source_that_may_be_empty_loads_empty(world, capsys, key):
    raw, wh = world
    frames = tw.build(raw)
    tw.write(frames[key].iloc[:0], tw.path_for(raw, key), SOURCES[key])
    code, out, err = run_cli(capsys)
    first = dump(wh)  # a fresh ingest of this folder
    assert (code, err) == (0, "")
    assert f"warning: {rel(raw, key)}: no data rows (a valid delivery: {key} may be empty" in out
    assert loaded_rows(wh, key) == 0
    assert query(
        wh,
        "SELECT rows_read, rows_loaded, rows_quarantined FROM raw.ingest_log WHERE source_name = ?",
        [key],
    ) == [(0, 0, 0)]
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh, fresh=first)


def test_may_be_empty_is_set_only_where_zero_rows_are_plausible():
    assert {n for n, s in SOURCES.items() if s.may_be_empty} == {
        "practice_moves",
        "coaching_uptake",
    }


# --- 4. faults and concurrency get clear words ----------------------------------------------


_HOLDER = textwrap.dedent("""
    import select, sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
    print("holding", flush=True)
    select.select([sys.stdin], [], [], 60)   # until told to go, at most a minute
    con.close()
""")


@pytest.mark.parametrize("mode", ["write", "read"])
def test_a_second_process_on_the_warehouse_gets_clear_words(world, capsys, mode):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    before, file_before = dump(wh), sha256_file(wh)
    tw.write(frames["deaths"].iloc[:2], tw.path_for(raw, "deaths"), SOURCES["deaths"])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(wh), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, _, err = run_cli(capsys)
        with pytest.raises(IngestRunError) as failure:
            ingest_all(raw, wh)
    finally:
        holder.communicate("go\n", timeout=60)
    assert code == 1 and "Traceback" not in err
    assert (
        f"sicp ingest: the warehouse {wh} is in use by another process (pid {holder.pid}); "
        f"wait for it to finish"
    ) in err
    assert failure.value.outcome == "in_use"
    assert f"run log: {wh.parent / 'ingest_log.jsonl'}" in err
    # Nothing was written: the file is byte for byte as it was.
    assert sha256_file(wh) == file_before and dump(wh) == before
    assert run_log(wh)[-1]["outcome"] == "in_use"
    assert_consistent(wh)
    assert_reingest_consistent(raw, wh)
    assert loaded_rows(wh, "deaths") == 2


@pytest.mark.parametrize(
    "fault",
    [
        duckdb.IOException(
            'IO Error: Could not write file "warehouse.duckdb.wal": No space left on device'
        ),
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    ],
    ids=["duckdb_io_error", "os_error_enospc"],
)
def test_a_full_disk_leaves_the_previous_load_intact(world, capsys, monkeypatch, fault):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    before = dump(wh)
    # A new delivery: hospital spells (loaded before deaths), deaths and contact-centre calls
    # (after it) all changed.
    changed = ("hospital_spells", "deaths", "contact_centre_calls")
    for key in changed:
        tw.write(frames[key].iloc[:3], tw.path_for(raw, key), SOURCES[key])
    real = ingest_load._write_log

    def disk_fills(con, source, reports):
        real(con, source, reports)  # written, then the disk is full before the commit
        if source.name == "deaths":
            raise fault

    monkeypatch.setattr(ingest_load, "_write_log", disk_fills)
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        "sicp ingest: no space left while writing raw.deaths (from records/deaths.parquet); "
        "the previous load is intact (the whole run was rolled back)"
    ) in err
    # Every raw table, hospital spells (committed before the disk filled) included, is as it
    # was, and nothing of the run is left behind.
    assert dump(wh) == before
    assert loaded_rows(wh, "hospital_spells") == len(frames["hospital_spells"])
    assert run_log(wh)[-1]["outcome"] == "no_space"
    assert_consistent(wh)
    monkeypatch.setattr(ingest_load, "_write_log", real)
    assert_reingest_consistent(raw, wh)
    assert all(loaded_rows(wh, key) == 3 for key in changed)


def _change_three_sources(raw: Path, frames: dict[str, pd.DataFrame]) -> tuple[str, ...]:
    """A new delivery of hospital spells, deaths and contact-centre calls (3 rows each):
    spells load before deaths, the calls after it."""
    changed = ("hospital_spells", "deaths", "contact_centre_calls")
    for key in changed:
        tw.write(frames[key].iloc[:3], tw.path_for(raw, key), SOURCES[key])
    return changed


def _kept_aside(warehouse: Path) -> list[str]:
    return [
        t
        for (t,) in query(
            warehouse,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'raw' AND (table_name LIKE "
            "'\\_kept\\_\\_%' ESCAPE '\\' OR table_name = "
            "'_ingest_journal') ORDER BY 1",
        )
    ]


def _recovers(
    raw: Path, wh: Path, capsys: pytest.CaptureFixture[str], changed: tuple[str, ...]
) -> None:
    """A warehouse an ingest left half-way: build refuses it; the next ingest rolls the
    half-done run back, says so, and loads the delivery as a fresh ingest would."""
    assert _kept_aside(wh)
    assert main(["build"]) == 1
    err = capsys.readouterr().err
    assert f"sicp build: an ingest into {wh} stopped before it finished" in err
    assert "Traceback" not in err
    code, out, err = run_cli(capsys)
    assert (code, err) == (0, "")
    assert (
        "note: an earlier ingest stopped before it finished; what it had loaded was rolled "
        "back before this one began"
    ) in out
    assert run_log(wh)[-1]["rolled_back_interrupted_run"] is True
    assert _kept_aside(wh) == []
    assert all(loaded_rows(wh, key) == 3 for key in changed)
    assert_reingest_consistent(raw, wh)


def test_a_disk_too_full_even_to_roll_back_is_undone_by_the_next_ingest(world, capsys, monkeypatch):
    raw, wh = world
    changed = _change_three_sources(raw, delivered_and_loaded(raw, wh))
    real = ingest_load._write_log
    no_space = duckdb.IOException("IO Error: No space left on device")

    def disk_fills(con, source, reports):
        real(con, source, reports)
        if source.name == "deaths":
            raise no_space

    def still_full(con):
        raise no_space

    monkeypatch.setattr(ingest_load, "_write_log", disk_fills)
    monkeypatch.setattr(ingest_load.journal, "rollback", still_full)
    code, _, err = run_cli(capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        "no space left while writing raw.deaths (from records/deaths.parquet); the "
        "previous load is kept aside in the warehouse and the next ingest puts it back "
        "before it loads anything (sicp build refuses the warehouse until then)"
    ) in err
    monkeypatch.undo()
    monkeypatch.setenv("SICP_INPUT_DIR", str(raw))
    monkeypatch.setenv("SICP_WAREHOUSE", str(wh))
    _recovers(raw, wh, capsys, changed)


_KILLED_MID_INGEST = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sicp.ingest import ingest_all, load

    real = load._write_log

    def killed(con, source, reports):
        real(con, source, reports)
        if source.name == "deaths":          # hospital spells are committed by now
            os.kill(os.getpid(), signal.SIGKILL)

    load._write_log = killed
    ingest_all(Path(sys.argv[1]), Path(sys.argv[2]))
""")


def test_an_ingest_killed_half_way_is_undone_by_the_next(world, capsys):
    raw, wh = world
    frames = delivered_and_loaded(raw, wh)
    before = dump(wh)
    changed = _change_three_sources(raw, frames)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_INGEST, str(raw), str(wh)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert loaded_rows(wh, "hospital_spells") == 3  # the half-done run is visible ...
    kept = dump(wh)
    assert kept["_kept__hospital_spells"] == before["hospital_spells"]  # ... and undoable
    _recovers(raw, wh, capsys, changed)


def test_a_full_disk_while_writing_the_manifest_is_named(world, capsys, monkeypatch):
    raw, wh = world
    delivered_and_loaded(raw, wh)

    def full(*args, **kwargs):
        raise duckdb.IOException("IO Error: No space left on device")

    monkeypatch.setattr(ingest_load, "finish", full)
    with pytest.raises(
        IngestError,
        match=r"no space left while writing the delivery manifest "
        r"\(raw\.delivery_manifest\); the previous load is "
        r"intact",
    ):
        ingest_all(raw, wh)
    assert_consistent(wh)
    monkeypatch.undo()
    assert_reingest_consistent(raw, wh)
