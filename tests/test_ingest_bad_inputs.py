"""The bad-input matrix of issue 3: one test per case, each asserting the stated outcome
(quarantine with a reason, or a clear failure naming the file) and that every valid row
still loaded unchanged."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from sicp.contract import SOURCES
from sicp.ingest import IngestError, ingest_all, ingest_source
from tests.ingest_helpers import KEY, query, tw


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "raw", tmp_path / "warehouse.duckdb"


def load(raw: Path, warehouse: Path, *keys: str):
    """Ingest practices (the reference every other source checks against) and the sources of
    ``keys`` only: quicker than the whole folder, which a few tests below still use."""
    names = dict.fromkeys(["practices", *(tw.source_of(k).name for k in keys)])
    with duckdb.connect(str(warehouse)) as con:
        return [ingest_source(con, raw, SOURCES[name]) for name in names][-1]


def quarantine(warehouse: Path, source: str) -> list[tuple]:
    return query(
        warehouse,
        "SELECT source_file, source_row, column_name, offending_value, reason "
        "FROM raw.quarantine WHERE source_name = ? ORDER BY source_row",
        [source],
    )


def log(warehouse: Path, source: str) -> list[tuple]:
    return query(
        warehouse,
        "SELECT source_file, rows_read, rows_loaded, rows_quarantined "
        "FROM raw.ingest_log WHERE source_name = ? ORDER BY source_file",
        [source],
    )


def assert_loaded(warehouse: Path, key: str, expected: pd.DataFrame) -> None:
    """The raw table holds exactly ``expected`` (contract columns, in file order)."""
    source = tw.source_of(key)
    columns = ", ".join(f'"{c}"' for c in source.column_names)
    where = "WHERE wave = ?" if source.per_wave else ""
    params = [int(key.rsplit("_", 1)[1])] if source.per_wave else []
    rows = query(
        warehouse,
        f"SELECT {columns} FROM raw.{source.name} {where} ORDER BY _source_file, _source_row",
        params,
    )
    want = [
        tuple(None if pd.isna(v) else v for v in r)
        for r in expected[list(source.column_names)].itertuples(index=False)
    ]
    assert rows == want


def rewrite(raw: Path, key: str, frame: pd.DataFrame) -> None:
    tw.write(frame, tw.path_for(raw, key), tw.source_of(key))


# --- rows quarantined with a reason --------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "column", "bad"),
    [
        ("practice_population", "registered", "many"),  # CSV
        ("risk_scores", "risk_tier", "high"),  # parquet
        ("recruitment", "birth_year", "nineteen forty"),  # SPSS .sav
    ],
)
def test_wrong_column_type_is_quarantined(world, key, column, bad):
    raw, wh = world
    frame = tw.frames()[key]
    broken = frame.astype({column: str})  # a text value makes the whole column text
    broken.loc[2, column] = bad
    tw.build(raw, edit={key: broken})
    load(raw, wh, key)
    path = tw.path_for(raw, key).relative_to(raw).as_posix()
    reason = "not a whole number"
    assert quarantine(wh, key) == [(path, 3, column, bad, reason)]
    assert log(wh, key) == [(path, 6, 5, 1)]
    assert_loaded(wh, key, frame.drop(index=2))


def test_missing_required_column_fails_naming_file_and_column(world):
    raw, wh = world
    world_frames = tw.build(raw)
    ingest_all(raw, wh)
    rewrite(raw, "recruitment", world_frames["recruitment"].drop(columns=["birth_year"]))
    with pytest.raises(
        IngestError,
        match=r"cohort/recruitment\.sav: required column\(s\) "
        r"missing: birth_year",
    ):
        ingest_all(raw, wh)
    # The failed file leaves its previous load in place; the other sources still loaded.
    assert_loaded(wh, "recruitment", world_frames["recruitment"])
    assert_loaded(wh, "deaths", world_frames["deaths"])


def test_extra_unknown_column_warns_and_loads_everything(world):
    raw, wh = world
    deaths = tw.frames()["deaths"]
    tw.build(raw, edit={"deaths": deaths.assign(favourite_colour="blue")})
    report = load(raw, wh, "deaths")
    assert report.warnings == (
        "records/deaths.parquet: column(s) not in the data contract ignored (not loaded): "
        "favourite_colour",
    )
    assert_loaded(wh, "deaths", deaths)
    columns = [r[0] for r in query(wh, "DESCRIBE raw.deaths")]
    assert "favourite_colour" not in columns


def test_unknown_practice_code_is_quarantined(world):
    raw, wh = world
    recruitment = tw.frames()["recruitment"]
    broken = recruitment.copy()
    broken.loc[4, "practice_code"] = "Z99999"  # well formed, but not in practices.csv
    tw.build(raw, edit={"recruitment": broken})
    load(raw, wh, "recruitment")
    assert quarantine(wh, "recruitment") == [
        (
            "cohort/recruitment.sav",
            5,
            "practice_code",
            "Z99999",
            "unknown practice_code: not in practices",
        )
    ]
    assert_loaded(wh, "recruitment", recruitment.drop(index=4))


def test_implausible_date_is_quarantined(world):
    raw, wh = world
    spells = tw.frames()["hospital_spells"]
    broken = spells.copy()
    broken.loc[1, "admitted_on"] = pd.Timestamp("2101-03-01").date()
    broken.loc[3, "discharged_on"] = pd.Timestamp("1899-12-31").date()
    tw.build(raw, edit={"hospital_spells": broken})
    load(raw, wh, "hospital_spells")
    assert quarantine(wh, "hospital_spells") == [
        (
            "records/hospital_spells.parquet",
            2,
            "admitted_on",
            "2101-03-01",
            "implausible date: after 2099-12-31",
        ),
        (
            "records/hospital_spells.parquet",
            4,
            "discharged_on",
            "1899-12-31",
            "implausible date: before 1900-01-01",
        ),
    ]
    assert_loaded(wh, "hospital_spells", spells.drop(index=[1, 3]))


def test_duplicate_person_in_recruitment_keeps_the_first(world):
    raw, wh = world
    recruitment = tw.frames()["recruitment"]
    broken = recruitment.copy()
    broken.loc[3, "person_id"] = broken.loc[1, "person_id"]
    tw.build(raw, edit={"recruitment": broken})
    load(raw, wh, "recruitment")
    assert quarantine(wh, "recruitment") == [
        (
            "cohort/recruitment.sav",
            4,
            "person_id",
            "P00001",
            "duplicate primary key (person_id): first occurrence is cohort/recruitment.sav row 2",
        )
    ]
    assert log(wh, "recruitment") == [("cohort/recruitment.sav", 6, 5, 1)]
    assert_loaded(wh, "recruitment", broken.drop(index=3))


def test_duplicate_questionnaire_for_same_person_and_wave(world):
    raw, wh = world
    wave2 = tw.frames()["survey_wave_02"]
    broken = pd.concat([wave2, wave2.iloc[[0]]], ignore_index=True)
    tw.build(raw, edit={"survey_wave_02": broken})
    load(raw, wh, "survey_wave")
    assert quarantine(wh, "survey_wave") == [
        (
            "cohort/survey_wave_02.sav",
            7,
            "person_id, wave",
            "P00000, 2",
            "duplicate primary key (person_id, wave): first occurrence is "
            "cohort/survey_wave_02.sav row 1",
        )
    ]
    assert_loaded(wh, "survey_wave_02", wave2)
    assert_loaded(wh, "survey_wave_01", tw.frames()["survey_wave_01"])


def test_questionnaire_in_the_wrong_wave_file_is_quarantined(world):
    raw, wh = world
    wave2 = tw.frames()["survey_wave_02"]
    broken = wave2.copy()
    broken.loc[5, "wave"] = 3
    tw.build(raw, edit={"survey_wave_02": broken})
    load(raw, wh, "survey_wave")
    assert quarantine(wh, "survey_wave") == [
        ("cohort/survey_wave_02.sav", 6, "wave", "3", "wave does not match the file name (wave 2)")
    ]
    assert_loaded(wh, "survey_wave_02", wave2.drop(index=5))


def test_out_of_range_item_value_is_quarantined(world):
    raw, wh = world
    wave1 = tw.frames()["survey_wave_01"]
    broken = wave1.copy()
    broken.loc[0, "eq_mobility"] = 7
    broken.loc[2, "lonely_02"] = 0
    tw.build(raw, edit={"survey_wave_01": broken})
    load(raw, wh, "survey_wave")
    assert quarantine(wh, "survey_wave") == [
        ("cohort/survey_wave_01.sav", 1, "eq_mobility", "7", "value above the maximum 5"),
        ("cohort/survey_wave_01.sav", 3, "lonely_02", "0", "value below the minimum 1"),
    ]
    assert_loaded(wh, "survey_wave_01", wave1.drop(index=[0, 2]))


def test_bad_nhs_check_digit_is_quarantined_masked(world, monkeypatch):
    raw, wh = world
    monkeypatch.setenv("SICP_PSEUDONYM_KEY", KEY)
    recruitment = tw.frames()["recruitment"]
    numbers = [tw.valid_nhs_number(i) for i in range(len(recruitment))]
    bad = numbers[2][:9] + str((int(numbers[2][9]) + 1) % 10)
    with_nhs = recruitment.drop(columns=["person_id"]).assign(nhs_number=numbers)
    with_nhs.loc[2, "nhs_number"] = bad
    tw.build(raw, edit={"recruitment": with_nhs})
    load(raw, wh, "recruitment")
    assert quarantine(wh, "recruitment") == [
        (
            "cohort/recruitment.sav",
            3,
            "nhs_number",
            "*" * 10,
            "invalid NHS number (not 10 digits, or the Modulus 11 check digit does not match)",
        )
    ]
    loaded = query(wh, "SELECT person_id, birth_year FROM raw.recruitment ORDER BY _source_row")
    expected = [
        (hmac.new(KEY.encode(), n.encode(), hashlib.sha256).hexdigest(), y)
        for i, (n, y) in enumerate(zip(numbers, recruitment["birth_year"], strict=True))
        if i != 2
    ]
    assert loaded == expected


def test_nhs_numbers_without_a_key_fail_clearly(world, monkeypatch):
    raw, wh = world
    monkeypatch.delenv("SICP_PSEUDONYM_KEY", raising=False)
    recruitment = tw.frames()["recruitment"]
    numbers = [tw.valid_nhs_number(i) for i in range(len(recruitment))]
    tw.build(
        raw,
        edit={"recruitment": recruitment.drop(columns=["person_id"]).assign(nhs_number=numbers)},
    )
    with pytest.raises(
        IngestError,
        match=r"cohort/recruitment\.sav: .*SICP_PSEUDONYM_KEY is "
        r"not set",
    ):
        load(raw, wh, "recruitment")


# --- files that cannot be read fail, naming the file ---------------------------------------


def test_truncated_sav_fails_and_keeps_the_previous_load(world):
    raw, wh = world
    world_frames = tw.build(raw)
    ingest_all(raw, wh)
    path = tw.path_for(raw, "survey_wave_02")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        IngestError,
        match=r"cohort/survey_wave_02\.sav: the SPSS file is "
        r"truncated or damaged",
    ):
        ingest_all(raw, wh)
    assert_loaded(wh, "survey_wave_01", world_frames["survey_wave_01"])
    assert_loaded(wh, "survey_wave_02", world_frames["survey_wave_02"])
    assert_loaded(wh, "recruitment", world_frames["recruitment"])


@pytest.mark.parametrize("key", ["unit_costs", "deaths", "recruitment"])
def test_empty_file_fails(world, key):
    raw, wh = world
    tw.build(raw)
    path = tw.path_for(raw, key)
    path.write_bytes(b"")
    rel = path.relative_to(raw).as_posix()
    with pytest.raises(IngestError, match=rf"{rel}: the file is empty"):
        load(raw, wh, key)


def test_non_utf8_csv_fails_naming_encoding_and_line(world):
    raw, wh = world
    frame = tw.frames()["coaching_randomisation"]
    frame.loc[2, "stratum"] = "Zoë's stratum"
    path = tw.path_for(raw, "coaching_randomisation")
    tw.build(raw)
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    with pytest.raises(IngestError) as failure:
        ingest_all(raw, wh)
    message = str(failure.value)
    assert message.startswith("twic/coaching_randomisation.csv: the file is not UTF-8 encoded")
    assert "byte 0xeb on line 4" in message  # header is line 1, so data row 3 is line 4
    assert_loaded(wh, "coaching_uptake", tw.frames()["coaching_uptake"])


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (
            "cohort/recruitment.sav",
            b"person_id,practice_code\nP1,P81000\n",
            "not an SPSS .sav file",
        ),
        ("records/deaths.parquet", b"person_id,died_on\nP1,2015-01-01\n", "not a parquet file"),
        ("records/deaths.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx' for deaths"),
    ],
)
def test_wrong_file_type_fails(world, name, content, problem):
    raw, wh = world
    tw.build(raw)
    (raw / name).write_bytes(content)
    with pytest.raises(IngestError, match=rf"{name}: {problem}"):
        load(raw, wh, name.split("/")[1].split(".")[0])
