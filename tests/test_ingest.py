"""Ingest on valid input: layout, lineage, labels, missing codes, pseudonymisation, consent,
idempotence and the input fingerprint."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat
import pytest

from sicp.contract import DUCKDB_TYPES, LINEAGE_COLUMNS, RAW, SOURCES, Column
from sicp.ingest import ingest_all, input_fingerprint, reconcile
from sicp.ingest import sql as ingest_sql
from sicp.ingest.files import sha256_file
from sicp.synth import generate_world
from tests.ingest_helpers import KEY, dump, query, tw


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, dict[str, pd.DataFrame]]:
    raw = tmp_path / "raw"
    return raw, tmp_path / "warehouse.duckdb", tw.build(raw)


def test_every_source_lands_with_contract_columns_and_lineage(tiny):
    raw, wh, frames = tiny
    report = ingest_all(raw, wh)
    assert [s.source_name for s in report.sources] == list(SOURCES)
    with duckdb.connect(str(wh), read_only=True) as con:
        for source in SOURCES.values():
            described = con.execute(f"DESCRIBE raw.{source.name}").fetchall()
            assert [(name, dtype) for name, dtype, *_ in described] == [
                *((c.name, DUCKDB_TYPES[c.dtype]) for c in source.columns),
                *LINEAGE_COLUMNS.items(),
            ]
            checks = reconcile(con, source)
            assert checks and all(c.ok for c in checks), checks
        lineage = con.execute(
            "SELECT DISTINCT _source_file, _file_sha256 FROM raw.deaths"
        ).fetchall()
        assert lineage == [("records/deaths.parquet", sha256_file(raw / "records/deaths.parquet"))]
        rows = con.execute(
            "SELECT _source_row FROM raw.survey_wave WHERE wave = 2 ORDER BY _source_row"
        ).fetchall()
        assert [r for (r,) in rows] == list(range(1, len(frames["survey_wave_02"]) + 1))
    assert report.source("survey_wave").rows_loaded == sum(
        len(frames[f"survey_wave_{w:02d}"]) for w in tw.WAVES
    )


def _relabel_wave_1(raw: Path) -> None:
    """Labels written by hand, unlike the contract's, prove where ingest reads them from."""
    pyreadstat.write_sav(
        tw.frames()["survey_wave_01"],
        str(tw.path_for(raw, "survey_wave_01")),
        column_labels={"mode": "How the form came back"},
        variable_value_labels={"mode": {1: "by post", 2: "web", 3: "phone"}},
    )


def test_labels_come_from_the_sav_metadata(tiny):
    raw, wh, _ = tiny
    _relabel_wave_1(raw)
    (raw / "cohort" / "survey_wave_02.sav").unlink()
    ingest_all(raw, wh)
    assert query(
        wh,
        "SELECT value, label FROM raw.value_labels WHERE source_name = "
        "'survey_wave' AND column_name = 'mode' ORDER BY value",
    ) == [("1", "by post"), ("2", "web"), ("3", "phone")]
    assert query(
        wh,
        "SELECT label FROM raw.variable_labels WHERE source_name = 'survey_wave' "
        "AND column_name = 'mode'",
    ) == [("How the form came back",)]
    assert query(
        wh,
        "SELECT value, label FROM raw.value_labels WHERE source_name = "
        "'recruitment' AND column_name = 'sex' ORDER BY value",
    ) == [("1", "male"), ("2", "female")]


def test_conflicting_labels_across_waves_keep_the_later_file_and_warn(tiny):
    raw, wh, _ = tiny
    _relabel_wave_1(raw)
    report = ingest_all(raw, wh)
    assert query(
        wh,
        "SELECT value, label FROM raw.value_labels WHERE source_name = "
        "'survey_wave' AND column_name = 'mode' ORDER BY value",
    ) == [("1", "postal"), ("2", "online"), ("3", "telephone")]
    assert (
        "cohort/survey_wave_02.sav: value label of mode=1 changed from 'by post' to "
        "'postal'; the later file's label is kept" in report.source("survey_wave").warnings
    )


def test_user_missing_codes_become_null_with_reason(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    wave = tw.frames()["survey_wave_01"]
    coded = wave.copy()
    coded.loc[0, "eq_pain"] = -9
    coded.loc[0, "pacic_03"] = -7
    coded.loc[4, "has_care_plan"] = -8
    tw.build(raw, edit={"survey_wave_01": coded})
    report = ingest_all(raw, wh)
    assert report.source("survey_wave").rows_quarantined == 0
    assert report.source("survey_wave").missing_codes_recoded == 3
    assert query(wh, "SELECT * FROM raw.survey_missing_reasons ORDER BY source_row, code") == [
        ("cohort/survey_wave_01.sav", 1, "P00000", 1, "eq_pain", -9, "not answered"),
        ("cohort/survey_wave_01.sav", 1, "P00000", 1, "pacic_03", -7, "unreadable"),
        ("cohort/survey_wave_01.sav", 5, "P00004", 1, "has_care_plan", -8, "not applicable"),
    ]
    assert query(
        wh,
        "SELECT eq_pain, pacic_03, eq_mobility FROM raw.survey_wave "
        "WHERE wave = 1 AND _source_row = 1",
    ) == [(None, None, wave.loc[0, "eq_mobility"])]


def test_idempotent_reingest_changes_nothing(tiny):
    raw, wh, _ = tiny
    first = ingest_all(raw, wh)
    before = dump(wh)
    second = ingest_all(raw, wh)
    assert dump(wh) == before
    assert second.fingerprint == first.fingerprint
    assert before[RAW.input_fingerprint] == [(first.fingerprint, first.n_files)]


def test_changed_file_replaces_its_previous_load_and_removed_wave_disappears(tiny):
    raw, wh, frames = tiny
    first = ingest_all(raw, wh)
    deaths = frames["deaths"].iloc[:3].copy()
    deaths.loc[0, "place_of_death"] = "hospice"
    tw.write(deaths, tw.path_for(raw, "deaths"), SOURCES["deaths"])
    (raw / "cohort" / "survey_wave_02.sav").unlink()
    second = ingest_all(raw, wh)
    assert query(wh, "SELECT person_id, place_of_death FROM raw.deaths ORDER BY _source_row") == [
        tuple(r) for r in deaths[["person_id", "place_of_death"]].itertuples(index=False)
    ]
    assert query(wh, "SELECT DISTINCT wave FROM raw.survey_wave") == [(1,)]
    assert query(
        wh, "SELECT rows_read, file_sha256 FROM raw.ingest_log WHERE source_name = 'deaths'"
    ) == [(3, sha256_file(tw.path_for(raw, "deaths")))]
    assert not query(wh, "SELECT * FROM raw.ingest_log WHERE source_file LIKE '%wave_02%'")
    assert second.fingerprint != first.fingerprint and second.n_files == first.n_files - 1


def test_input_fingerprint_depends_on_names_and_contents_only(tiny):
    raw, wh, _ = tiny
    report = ingest_all(raw, wh)
    on_disk = [
        (p.relative_to(raw).as_posix(), sha256_file(p)) for p in raw.rglob("*") if p.is_file()
    ]
    assert report.fingerprint == input_fingerprint(on_disk)
    assert input_fingerprint(reversed(on_disk)) == report.fingerprint
    renamed = [(f"x/{path}", sha) for path, sha in on_disk]
    assert input_fingerprint(renamed) != report.fingerprint


def test_consent_exclusions(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    recruitment = tw.frames()["recruitment"]
    edited = recruitment.copy()
    edited.loc[1, "withdrawn_on"] = pd.Timestamp("2016-03-01").date()
    edited.loc[2, "consent_linkage"] = 0
    # A later duplicate of person 3 that records a withdrawal: quarantined as a duplicate,
    # but the withdrawal must still be honoured.
    duplicate = edited.iloc[[3]].assign(withdrawn_on=pd.Timestamp("2017-05-02").date())
    # An implausible withdrawal date: quarantined for its date, still excluded.
    edited.loc[4, "withdrawn_on"] = pd.Timestamp("1899-01-01").date()
    edited = pd.concat([edited, duplicate], ignore_index=True)
    tw.build(raw, edit={"recruitment": edited})
    ingest_all(raw, wh)
    assert query(wh, "SELECT * FROM raw.consent_exclusions ORDER BY person_id, scope") == [
        ("P00001", "all", "withdrew all consent on 2016-03-01"),
        ("P00002", "records", "no consent to record linkage"),
        ("P00003", "all", "withdrew all consent on 2017-05-02"),
        ("P00004", "all", "withdrew all consent on 1899-01-01"),
    ]
    assert [
        r
        for (r,) in query(
            wh, "SELECT source_row FROM raw.quarantine WHERE source_name = 'recruitment' ORDER BY 1"
        )
    ] == [5, 7]


def test_no_raw_nhs_number_reaches_any_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SICP_PSEUDONYM_KEY", KEY)
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    frames = tw.frames()
    numbers = [tw.valid_nhs_number(i) for i in range(len(frames["recruitment"]))]
    invalid = [n[:9] + str((int(n[9]) + 1) % 10) for n in numbers]
    spaced = [f"{n[:3]} {n[3:6]} {n[6:]}" for n in numbers]
    edit = {}
    for key in ("recruitment", "survey_wave_01", "hospital_spells", "coaching_uptake"):
        frame = frames[key].drop(columns=["person_id"])
        nhs = list(spaced if key == "hospital_spells" else numbers)
        nhs[1] = invalid[1]
        edit[key] = frame.assign(nhs_number=nhs[: len(frame)])
    tw.build(raw, edit=edit)
    ingest_all(raw, wh)
    everything = [str(v) for rows in dump(wh).values() for row in rows for v in row]
    for number in [*numbers, *invalid]:
        assert not any(number in v or number[:6] in v for v in everything), number
    # The same person gets the same pseudonym in every source, so linkage still works.
    pseudonym = hmac.new(KEY.encode(), numbers[0].encode(), hashlib.sha256).hexdigest()
    for table in ("recruitment", "survey_wave", "hospital_spells", "coaching_uptake"):
        assert query(wh, f"SELECT count(*) FROM raw.{table} WHERE person_id = ?", [pseudonym]) == [
            (1,)
        ]
    masked = query(wh, "SELECT DISTINCT column_name, offending_value FROM raw.quarantine")
    assert masked == [("nhs_number", "**********")]


@pytest.mark.parametrize("key", [b"k" * 16, b"a much longer key " * 8])
def test_sql_hmac_matches_python(key):
    con = duckdb.connect()
    numbers = ["9434765919", "4010232137"]
    con.execute("CREATE TEMP TABLE n AS SELECT unnest(?::VARCHAR[]) AS s", [numbers])
    got = con.execute(
        f"SELECT {ingest_sql.hmac_sha256('s')} FROM n ORDER BY rowid",
        ingest_sql.hmac_parameters(key),
    ).fetchall()
    assert [g for (g,) in got] == [
        hmac.new(key, n.encode(), hashlib.sha256).hexdigest() for n in numbers
    ]


def test_modulus_11():
    con = duckdb.connect()
    valid = ["9434765919", "4010232137", *(tw.valid_nhs_number(i) for i in range(50))]
    invalid = ["9434765918", "943476591", "94347659190", "94347x5919", "0000000010"]
    rows = con.execute(
        f"SELECT s, {ingest_sql.nhs_number_valid('s')} FROM unnest(?::VARCHAR[]) t(s)",
        [valid + invalid],
    ).fetchall()
    assert {s: ok for s, ok in rows} == {
        **dict.fromkeys(valid, True),
        **dict.fromkeys(invalid, False),
    }


@pytest.mark.parametrize(
    ("dtype", "text", "expected"),
    [
        ("int", "3", 3),
        ("int", "3.0", 3),
        ("int", "3.5", None),
        ("int", "1e3", None),
        ("float", "0.25", 0.25),
        ("float", "nan", None),
        ("float", "abc", None),
        ("date", "2015-01-05", pd.Timestamp("2015-01-05").date()),
        ("date", "2015-1-5", None),
        ("date", "2015-02-30", None),
        ("date", "05/01/2015", None),
        ("bool", "true", True),
        ("bool", "0", False),
        ("bool", "yes", None),
    ],
)
def test_text_is_parsed_strictly(dtype, text, expected):
    column = Column("x", dtype, "x")
    got = (
        duckdb.connect()
        .execute(
            f"SELECT {ingest_sql.typed(column, 'x', 'VARCHAR')} FROM (SELECT ?::VARCHAR AS x)",
            [text],
        )
        .fetchall()
    )
    assert got == [(expected,)]


def test_small_synthetic_world_loads_clean(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    summary = generate_world("small", 7, raw)
    report = ingest_all(raw, wh)
    for name, rows in summary["files"].items():
        source = next(s for s in report.sources for f in s.files if f.source_file == name)
        (file,) = [f for f in source.files if f.source_file == name]
        assert file.rows_read == rows
        assert file.rows_read == file.rows_loaded + file.rows_quarantined
    assert report.source("recruitment").rows_quarantined == 0
    assert report.source("survey_wave").rows_quarantined == 0


@pytest.mark.slow
def test_default_world_ingests_in_under_a_minute(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    generate_world("default", 42, raw)
    started = time.perf_counter()
    report = ingest_all(raw, wh)
    seconds = time.perf_counter() - started
    print(f"default world: {sum(s.rows_read for s in report.sources):,} rows in {seconds:.1f} s")
    assert seconds < 60
