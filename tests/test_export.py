"""Labelled, compact exports (issue #19 item 6): value and variable labels in the ``.dta``,
column descriptions and provenance in the parquet, the smallest exact Stata types, zipping."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from sicp import export
from sicp.export import export_marts
from sicp.labels_export import YES_NO, named_value_labels
from sicp.warehouse import inputs_state, record_build
from tests.worlds import BuiltWorld, query


def _manifest(world: BuiltWorld) -> Path:
    return world.warehouse.parent / "target" / "manifest.json"


def test_dta_carries_value_and_variable_labels(small_dbt_world: BuiltWorld, tmp_path: Path) -> None:
    """``sex`` reaches Stata and R labelled (contract and .sav labels), so do the survey's
    coded columns and the 0/1 indicators dbt documents; counts stay unlabelled. Read back by
    pyreadstat (what haven uses: readstat) and by pandas."""
    marts = ("person_month_panel", "person_wave_panel", "practice_month_panel")
    written = export_marts(
        small_dbt_world.warehouse,
        tmp_path,
        formats=("dta",),
        marts=marts,
        manifest=_manifest(small_dbt_world),
    )
    assert {p.name for files in written.values() for p in files} == {f"{m}.dta" for m in marts}

    _, wave = pyreadstat.read_dta(str(tmp_path / "person_wave_panel.dta"), metadataonly=True)
    labels = wave.variable_value_labels
    assert labels["sex"] == {1: "male", 2: "female"}
    assert labels["mode"] == {1: "postal", 2: "online", 3: "telephone"}
    assert labels["social_care_need"] == {0: "none", 1: "some", 2: "substantial"}
    assert labels["consent_linkage"] == labels["has_care_plan"] == YES_NO
    assert labels["taken_on"] == YES_NO  # described "1 when ...", no accepted_values test
    assert "eq_vas" not in labels and "gp_visits_6m" not in labels
    assert wave.column_names_to_labels["sex"] == "Sex."
    assert wave.column_names_to_labels["eq5d_index"].startswith("EQ-5D-5L index")
    assert wave.file_label.startswith("person_wave_panel, build 1 of ")  # the fixture's build
    assert ", inputs " in wave.file_label

    _, practice = pyreadstat.read_dta(str(tmp_path / "practice_month_panel.dta"), metadataonly=True)
    assert practice.variable_value_labels == {"in_mdg_scope": YES_NO, "never_treated": YES_NO}

    month = pd.read_stata(
        tmp_path / "person_month_panel.dta",
        convert_categoricals=True,
        columns=["sex", "in_mdg_scope", "emergency_admissions"],
    )
    assert set(month["sex"].cat.categories) == {"male", "female"}
    assert set(month["in_mdg_scope"].dropna()) <= {"no", "yes"}
    assert pd.api.types.is_integer_dtype(month["emergency_admissions"])
    with pd.io.stata.StataReader(tmp_path / "person_month_panel.dta") as reader:
        assert reader.value_labels()["sex"] == {1: "male", 2: "female"}
        assert reader.variable_labels()["person_id"] == "Pseudonymous person identifier."


def test_dta_uses_the_smallest_exact_types_and_keeps_every_value(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    """Codes and counts are bytes, seasons (years) ints, strings as wide as their longest value; every
    value (missing ones too) reads back as the mart holds it."""
    mart = "person_month_panel"
    export_marts(
        small_dbt_world.warehouse,
        tmp_path,
        formats=("dta",),
        marts=(mart,),
        manifest=_manifest(small_dbt_world),
    )
    stata, meta = pyreadstat.read_dta(str(tmp_path / f"{mart}.dta"))
    types = meta.readstat_variable_types
    assert types["sex"] == types["in_mdg_scope"] == types["emergency_admissions"] == "int8"
    assert types["flu_season"] == "int16"  # 2011, ...: above a Stata byte's 100
    assert meta.original_variable_types["month"] == "%td"
    ours = query(small_dbt_world.warehouse, f"SELECT * FROM marts.{mart}")
    longest = int(ours["person_id"].str.len().max())
    assert meta.original_variable_types["person_id"] == f"%{longest}s"
    for column in ours.columns:
        if pd.api.types.is_datetime64_any_dtype(ours[column]):
            assert pd.to_datetime(stata[column]).equals(ours[column].astype("datetime64[ns]"))
        elif pd.api.types.is_numeric_dtype(ours[column]):
            assert ours[column].isna().equals(stata[column].isna()), column
            assert (
                ours[column].dropna().astype(float).equals(stata[column].dropna().astype(float))
            ), column
        else:
            assert ours[column].fillna("").equals(stata[column]), column


@pytest.fixture()
def odd_mart(tmp_path: Path) -> Path:
    """A warehouse whose ``twic_analysis_set`` holds every kind of column the type choice
    must get right, and nothing else the export reads."""
    warehouse = tmp_path / "odd.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.value_labels (source_name VARCHAR, column_name VARCHAR, "
            "value VARCHAR, label VARCHAR)"
        )
        con.execute("CREATE SCHEMA marts")
        con.execute("""
            CREATE TABLE marts.twic_analysis_set AS
            SELECT * FROM (VALUES
                (0::BIGINT, 101::BIGINT, 2147483620::BIGINT, 1099511627776::BIGINT, 3::HUGEINT,
                 1.0::DOUBLE, 0.5::DOUBLE, 0.1::DOUBLE, 'ab', repeat('x', 3000),
                 DATE '2016-04-01'),
                (100, -5, 1, 1, 250, 250.0, 0.25, 1 / 3, 'abcde', 'y', DATE '2017-01-31'),
                (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
            ) AS t(tiny, small, large, beyond_long, huge_sum, whole, halves, rate, code, text,
                   day)
        """)
    return warehouse


def test_dta_types_are_exact_for_every_kind_of_column(odd_mart: Path, tmp_path: Path) -> None:
    """byte/int/long by range; a BIGINT beyond long a double (exact below 2**53); a double
    holding whole numbers an integer; one exact in float32 a float; others doubles; strL only
    for a string longer than str2045. An integer a double cannot hold is refused."""
    out = tmp_path / "out"
    export_marts(
        odd_mart,
        out,
        formats=("dta",),
        marts=("twic_analysis_set",),
        manifest=tmp_path / "no_manifest.json",
    )
    stata, meta = pyreadstat.read_dta(str(out / "twic_analysis_set.dta"))
    assert meta.readstat_variable_types == {
        "tiny": "int8",
        "small": "int16",
        "large": "int32",
        "beyond_long": "double",
        "huge_sum": "int16",
        "whole": "int16",
        "halves": "float",
        "rate": "double",
        "code": "string",
        "text": "string",
        "day": "double",
    }
    assert meta.original_variable_types["code"] == "%5s"
    assert b"GSO" in (out / "twic_analysis_set.dta").read_bytes()  # a strL's stored value
    ours = query(odd_mart, "SELECT * FROM marts.twic_analysis_set")
    for column in ("tiny", "small", "large", "beyond_long", "huge_sum", "whole", "halves", "rate"):
        assert ours[column].isna().equals(stata[column].isna()), column
        assert ours[column].dropna().astype(float).tolist() == stata[column].dropna().tolist()
    assert stata["text"].tolist() == ["x" * 3000, "y", ""]

    with duckdb.connect(str(odd_mart)) as con:
        con.execute(
            "UPDATE marts.twic_analysis_set SET beyond_long = 1152921504606846976 WHERE tiny = 0"
        )
    with pytest.raises(
        ValueError,
        match=r"beyond_long: values from 1 to 1152921504606846976 "
        r"cannot be held exactly in Stata",
    ):
        export_marts(
            odd_mart,
            out,
            formats=("dta",),
            marts=("twic_analysis_set",),
            manifest=tmp_path / "no_manifest.json",
        )


def test_large_dta_is_zipped_and_replaces_a_stale_plain_file(
    small_dbt_world: BuiltWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the threshold ``auto`` writes ``<mart>.dta.zip`` (one member, ``<mart>.dta``,
    which pandas reads directly) and removes the plain file of an earlier export; ``none``
    writes plain again and removes the zip."""
    mart = "twic_analysis_set"
    plain, zipped = tmp_path / f"{mart}.dta", tmp_path / f"{mart}.dta.zip"
    run = {
        "warehouse": small_dbt_world.warehouse,
        "out_dir": tmp_path,
        "formats": ("dta",),
        "marts": (mart,),
        "manifest": _manifest(small_dbt_world),
    }
    assert export_marts(**run)[mart] == [plain]
    monkeypatch.setattr(export, "ZIP_DTA_ABOVE_BYTES", 1000)
    assert export_marts(**run)[mart] == [zipped]
    assert not plain.exists()
    assert zipfile.ZipFile(zipped).namelist() == [f"{mart}.dta"]
    frame = pd.read_stata(zipped, convert_categoricals=True)
    assert len(frame) == len(query(small_dbt_world.warehouse, f"SELECT * FROM marts.{mart}"))
    assert set(frame["sex"].cat.categories) == {"male", "female"}
    assert export_marts(**run, dta_compression="none")[mart] == [plain]
    assert not zipped.exists()
    with pytest.raises(ValueError, match="unknown .dta compression 'gz'"):
        export_marts(**run, dta_compression="gz")


def test_parquet_carries_descriptions_labels_and_provenance(
    small_dbt_world: BuiltWorld, tmp_path: Path
) -> None:
    """Each field's dbt description (and value labels) in its metadata; the mart, its dbt
    description, the row-level notice, the input fingerprint and the recorded build in the
    file's. The values and types are those of the mart, as DuckDB wrote them before."""
    warehouse = tmp_path / "warehouse.duckdb"  # a copy: recording a build writes
    shutil.copy(small_dbt_world.warehouse, warehouse)
    summary = record_build(warehouse, small_dbt_world.run_results, "test")
    mart = "person_month_panel"
    manifest = _manifest(small_dbt_world)
    export_marts(
        warehouse, tmp_path / "out", formats=("parquet",), marts=(mart,), manifest=manifest
    )
    path = tmp_path / "out" / f"{mart}.parquet"
    schema = pq.read_schema(path)
    model = json.loads(manifest.read_text())["nodes"][f"model.sicp.{mart}"]
    assert schema.field("sex").metadata == {
        b"description": b"Sex.",
        b"value_labels": b'{"1": "male", "2": "female"}',
    }
    assert schema.field("person_id").metadata == {
        b"description": b"Pseudonymous person identifier."
    }
    assert json.loads(schema.field("taken_on").metadata[b"value_labels"]) == {"0": "no", "1": "yes"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        fingerprint, _ = inputs_state(con)
        mart_df = con.execute(f"SELECT * FROM marts.{mart}").df()
        parquet = con.execute(f"SELECT * FROM '{path}'").df()
    assert {
        k.decode(): v.decode() for k, v in schema.metadata.items() if k.startswith(b"sicp.")
    } == {
        "sicp.mart": mart,
        "sicp.description": model["description"],
        "sicp.notice": "ROW-LEVEL, PSEUDONYMISED DATA - NOT FOR RELEASE",
        "sicp.input_fingerprint": fingerprint,
        "sicp.build_seq": str(summary["build_seq"]),
        "sicp.built_at": summary["built_at"],
        "sicp.build_invoked_by": "test",
    }
    pd.testing.assert_frame_equal(parquet, mart_df)


def test_named_labels_merge_the_contract_and_the_delivered_files() -> None:
    """The contract's words win for a code both label; delivered labels add columns and codes
    the contract does not label; user-missing codes (NULL in the marts), non-integer codes and
    a name two sources label differently are left out."""
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.value_labels (source_name VARCHAR, column_name VARCHAR, "
            "value VARCHAR, label VARCHAR)"
        )
        con.executemany(
            "INSERT INTO raw.value_labels VALUES (?, ?, ?, ?)",
            [
                ("recruitment", "sex", "1", "Male"),
                ("recruitment", "sex", "2.0", "Female"),
                ("survey_wave", "satisfied_care", "1", "very dissatisfied"),
                ("survey_wave", "satisfied_care", "5", "very satisfied"),
                ("survey_wave", "satisfied_care", "-9", "not answered"),
                ("survey_wave", "satisfied_care", "2.5", "in between"),
                ("survey_wave", "lonely_01", "1", "hardly ever"),
                ("recruitment", "lonely_01", "1", "often"),
            ],
        )
        named = named_value_labels(con)
    assert named["sex"] == {1: "male", 2: "female"}
    assert named["satisfied_care"] == {1: "very dissatisfied", 5: "very satisfied"}
    assert named["mode"] == {1: "postal", 2: "online", 3: "telephone"}  # contract only
    assert "lonely_01" not in named
