"""End to end: a participant who withdrew consent, planted in every person-level source of a
synthetic world, reaches no staging, intermediate or mart table after ingest and dbt build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat
import pytest

from sicp.contract import SOURCES, Source
from sicp.ingest import ingest_all
from sicp.ingest.files import discover
from sicp.settings import Paths
from sicp.synth import generate_world
from sicp.warehouse import dbt_build, duckdb_config

PLANTED = "PWITHDRAWN01"


def _plant(path: Path, source: Source, withdrawn: bool) -> None:
    """Append a copy of the file's first row as the planted person (new ids where unique)."""
    if path.suffix == ".sav":
        frame, meta = pyreadstat.read_sav(
            str(path), user_missing=True, dates_as_pandas_datetime=True
        )
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = frame.iloc[[0]].copy()
    row["person_id"] = PLANTED
    for column in source.primary_key:
        if column != "person_id" and source.column(column).dtype == "str":
            row[column] = f"{PLANTED}-{column}"
    if withdrawn:
        row["withdrawn_on"] = pd.Timestamp("2016-06-01")
        row["consent_linkage"] = 1
        row["consent_trials"] = 1
    frame = pd.concat([frame, row], ignore_index=True)
    if path.suffix == ".sav":
        pyreadstat.write_sav(
            frame,
            str(path),
            column_labels=meta.column_labels,
            variable_value_labels=meta.variable_value_labels,
            missing_ranges=meta.missing_ranges,
        )
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


@pytest.mark.slow
def test_withdrawn_person_reaches_no_downstream_table(tmp_path):
    raw = tmp_path / "raw"
    generate_world("small", 11, raw)
    planted_in = []
    for source in SOURCES.values():
        if not source.person_level:
            continue
        for path in discover(raw, source):
            _plant(path, source, withdrawn=source.name == "recruitment")
            planted_in.append(source.name)
    paths = replace(
        Paths.from_env(),
        input_dir=raw,
        warehouse=tmp_path / "warehouse.duckdb",
        results_dir=tmp_path / "results",
    )
    ingest_all(raw, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        # The planted rows are valid: they reach raw, so the exclusion below is consent's doing.
        for name in set(planted_in):
            assert (
                con.execute(
                    f"SELECT count(*) FROM raw.{name} WHERE person_id = ?", [PLANTED]
                ).fetchall()[0][0]
                >= 1
            ), name
        assert con.execute(
            "SELECT scope, reason FROM raw.consent_exclusions WHERE person_id = ?", [PLANTED]
        ).fetchall() == [("all", "withdrew all consent on 2016-06-01")]
    assert dbt_build(paths) == 0
    # dbt ran in this process and its DuckDB instance may still be open read-write: match it
    # (same file, same settings: profiles.yml restates duckdb_config's defaults).
    with duckdb.connect(str(paths.warehouse), config=duckdb_config(paths.warehouse)) as con:
        tables = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema NOT IN ('raw', 'information_schema', 'pg_catalog') "
            "AND data_type = 'VARCHAR'"
        ).fetchall()
        assert {schema for schema, _, _ in tables} >= {"staging", "intermediate", "marts"}
        leaks = [
            (s, t, c)
            for s, t, c in tables
            if con.execute(
                f'SELECT count(*) FROM "{s}"."{t}" WHERE "{c}" = ?', [PLANTED]
            ).fetchall()[0][0]
        ]
    assert leaks == []
