"""Export the analysis marts to parquet and Stata ``.dta`` for researchers working outside Python.

Both carry the marts' documentation (:mod:`sicp.labels_export`). Parquet: each column's dbt
description (and value labels) in its field metadata, the mart's description and the build and
inputs it came from in the file's. Stata: the descriptions as variable labels, value labels on
coded columns (``sex`` 1 = male, 0/1 indicators no/yes), the provenance as the dataset label,
and each column in the smallest Stata type that holds every value exactly; a ``.dta`` that
would still be large is written zipped. docs/exports.md describes the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sicp.dbt_schema import MANIFEST, MARTS_LAYER, analysis_panels
from sicp.labels_export import MartDocs, dbt_docs, mart_value_labels, named_value_labels
from sicp.warehouse import BUILD_LOG, inputs_state, table_exists

FORMATS: tuple[str, ...] = ("parquet", "dta")
#: ``auto`` zips a ``.dta`` above :data:`ZIP_DTA_ABOVE_BYTES` (Stata opens it after
#: ``unzipfile``; R's haven::read_dta and pandas.read_stata read the zip directly).
DTA_COMPRESSION: tuple[str, ...] = ("auto", "zip", "none")
ZIP_DTA_ABOVE_BYTES = 100_000_000
#: Stata limits variable names to 32 characters, variable and dataset labels to 80 and str#
#: to 2045 bytes (longer strings need strL).
_STATA_NAME_MAX = 32
_STATA_LABEL_MAX = 80
_STATA_STR_MAX = 2045
#: Stata's integer types (DuckDB type, smallest and largest non-missing value, bytes): the
#: top of each range is reserved for missing values.
_STATA_INTEGERS = (
    ("TINYINT", -127, 100, 1),
    ("SMALLINT", -32767, 32740, 2),
    ("INTEGER", -2147483647, 2147483620, 4),
)
#: A double holds every integer up to 2**53 exactly, and Stata has no 64-bit integer.
_EXACT_IN_DOUBLE = 2**53
_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
#: Arrow integers to pandas' nullable integers, which to_stata writes with Stata missing
#: values (NumPy integers cannot hold a missing value; floats would undo the compaction).
_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
}


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # the DuckDB type


@dataclass(frozen=True)
class _Profile:
    """What one scan of a mart tells the writers: its row count and, per column, the range of
    an integer-valued column (None when all missing), whether a float column is exact in
    float32, and the longest string in bytes."""

    rows: int
    integer_ranges: dict[str, tuple[int, int] | None]
    float32_exact: frozenset[str]
    string_bytes: dict[str, int]


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[_Column]:
    return [
        _Column(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()
    ]


def _profile(con: duckdb.DuckDBPyConnection, relation: str, columns: list[_Column]) -> _Profile:
    """One aggregate query over the mart (DuckDB, vectorised: 0.02 s on 3 million rows)."""
    aggregates = ["count(*)"]
    for c in columns:
        q = f'"{c.name}"'
        if c.kind in _INTEGER_TYPES:
            aggregates += [f"min({q})", f"max({q})"]
        elif c.kind in _FLOAT_TYPES:
            aggregates += [
                f"min({q})",
                f"max({q})",
                f"bool_and({q} IS NULL OR (isfinite({q}) AND {q} = trunc({q})))",
                f"bool_and({q} IS NULL OR coalesce(TRY_CAST({q} AS FLOAT) = {q}, false))",
            ]
        elif c.kind == "VARCHAR":
            aggregates.append(f"coalesce(max(strlen({q})), 0)")
    values = iter(con.execute(f"SELECT {', '.join(aggregates)} FROM {relation}").fetchall()[0])
    rows = next(values)
    ranges: dict[str, tuple[int, int] | None] = {}
    float32: set[str] = set()
    strings: dict[str, int] = {}
    for c in columns:
        if c.kind in _INTEGER_TYPES or c.kind in _FLOAT_TYPES:
            low, high = next(values), next(values)
            integral, exact32 = (
                (next(values), next(values)) if c.kind in _FLOAT_TYPES else (True, False)
            )
            if integral or low is None:
                ranges[c.name] = None if low is None else (int(low), int(high))
            elif exact32:
                float32.add(c.name)
        elif c.kind == "VARCHAR":
            strings[c.name] = next(values)
    return _Profile(rows, ranges, frozenset(float32), strings)


def _provenance(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The build the marts came from (meta.dbt_builds, when the build was recorded) and the
    input fingerprint it was built from (else the raw layer's now)."""
    fingerprint, _ = inputs_state(con)
    if not table_exists(con, "meta", "dbt_builds"):
        return {"input_fingerprint": fingerprint}
    rows = con.execute(
        f"SELECT build_seq, built_at, invoked_by, input_fingerprint FROM "
        f"{BUILD_LOG} ORDER BY build_seq DESC LIMIT 1"
    ).fetchall()
    if not rows:
        return {"input_fingerprint": fingerprint}
    seq, built_at, invoked_by, built_from = rows[0]
    return {
        "input_fingerprint": str(built_from),
        "build_seq": str(seq),
        "built_at": str(built_at),
        "build_invoked_by": str(invoked_by),
    }


def _write_parquet(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[_Column],
    path: Path,
    docs: MartDocs,
    value_labels: dict[str, dict[int, str]],
    table_metadata: dict[str, str],
) -> None:
    """One mart as parquet through Arrow, which (unlike DuckDB's COPY) writes field metadata.
    The types stay those DuckDB's COPY wrote (HUGEINT sums as DOUBLE)."""
    select = ", ".join(
        f'CAST("{c.name}" AS DOUBLE) AS "{c.name}"' if c.kind == "HUGEINT" else f'"{c.name}"'
        for c in columns
    )
    table = con.sql(f"SELECT {select} FROM {relation}").to_arrow_table()
    fields = []
    for c in columns:
        metadata = {}
        if docs.columns.get(c.name):
            metadata["description"] = docs.columns[c.name]
        if c.name in value_labels:
            metadata["value_labels"] = json.dumps(value_labels[c.name])
        fields.append(table.schema.field(c.name).with_metadata(metadata))
    pq.write_table(table.cast(pa.schema(fields, metadata=table_metadata)), path)


def _stata_select(
    relation: str,
    columns: list[_Column],
    profile: _Profile,
) -> tuple[str, int]:
    """The SELECT that casts each column to the smallest Stata type holding its values exactly,
    and the bytes of one row in the ``.dta``.

    Integer-valued columns (DuckDB sums them to HUGEINT; some doubles hold counts) become
    byte, int or long by their range; a double exact in float32 becomes float; anything else
    stays double. An integer beyond 2**53 cannot be held exactly and is refused.
    """
    select, row_bytes = [], 0
    for c in columns:
        q = f'"{c.name}"'
        if c.name in profile.integer_ranges:
            cast, width = _stata_integer(relation, c, profile.integer_ranges[c.name])
            select.append(f"CAST({q} AS {cast}) AS {q}")
        elif c.name in profile.float32_exact:
            select.append(f"CAST({q} AS FLOAT) AS {q}")
            width = 4
        else:
            select.append(q)
            length = profile.string_bytes.get(c.name)
            # A strL holds an 8-byte reference per row; a double or a date takes 8 bytes.
            width = max(length, 1) if length is not None and length <= _STATA_STR_MAX else 8
        row_bytes += width
    return f"SELECT {', '.join(select)} FROM {relation}", row_bytes


def _stata_integer(
    relation: str, column: _Column, values: tuple[int, int] | None
) -> tuple[str, int]:
    """The smallest Stata integer type (as DuckDB's) for an integer-valued column, else
    double: exact for a double column, and for integers up to 2**53."""
    if values is None:
        return "TINYINT", 1
    low, high = values
    for cast, smallest, largest, width in _STATA_INTEGERS:
        if smallest <= low and high <= largest:
            return cast, width
    if column.kind in _FLOAT_TYPES or (low >= -_EXACT_IN_DOUBLE and high <= _EXACT_IN_DOUBLE):
        return "DOUBLE", 8
    raise ValueError(
        f"{relation}.{column.name}: values from {low} to {high} cannot be held "
        "exactly in Stata (no 64-bit integers; doubles are exact up to 2**53)"
    )


def _write_dta(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[_Column],
    profile: _Profile,
    path: Path,
    compression: str,
    docs: MartDocs,
    value_labels: dict[str, dict[int, str]],
    data_label: str,
) -> Path:
    """One mart as Stata 14+ ``.dta`` (format 118) through pandas; returns the file written,
    ``<path>.zip`` when zipped.

    pandas writes the compact types it is given (pyreadstat widens every integer to long: 571
    MB against pandas' 385 MB on the demo person-month panel, and 16 s against 14 s), value
    labels on numeric columns, str# sized to the longest value and zip compression.
    Nullable integers keep their missing values as Stata missing, dates become ``%td``.
    """
    too_long = [c.name for c in columns if len(c.name) > _STATA_NAME_MAX]
    if too_long:
        raise ValueError(
            f"{relation}: column names longer than Stata's {_STATA_NAME_MAX} characters: {too_long}"
        )
    query, row_bytes = _stata_select(relation, columns, profile)
    zipped = compression == "zip" or (
        compression == "auto" and profile.rows * row_bytes > ZIP_DTA_ABOVE_BYTES
    )
    target = path.with_name(path.name + ".zip") if zipped else path
    table = con.sql(query).to_arrow_table()
    df = table.to_pandas(types_mapper=_NULLABLE_INTEGERS.get, date_as_object=False)
    dates = {
        c.name: "td" if c.kind == "DATE" else "tc"
        for c in columns
        if c.kind == "DATE" or c.kind.startswith("TIMESTAMP")
    }
    variable_labels = {
        c: text[:_STATA_LABEL_MAX] for c, text in docs.columns.items() if text and c in df.columns
    }
    df.to_stata(
        target,
        write_index=False,
        version=118,
        convert_dates=dates,
        variable_labels=variable_labels,
        value_labels=value_labels,
        data_label=data_label,
        convert_strl=[c for c, n in profile.string_bytes.items() if n > _STATA_STR_MAX],
        compression={"method": "zip", "archive_name": path.name} if zipped else None,
    )
    # The other form from an earlier export would be stale beside this one.
    (path if zipped else path.with_name(path.name + ".zip")).unlink(missing_ok=True)
    return target


#: Written beside every export: the panels are row-level data, which no disclosure control
#: has touched, so they stay inside the secure environment and out of any report.
ROW_LEVEL_NOTICE = "ROW_LEVEL_DATA_README.txt"
_NOTICE = """ROW-LEVEL, PSEUDONYMISED DATA - NOT FOR RELEASE

The files in this folder are analysis panels with one row per person-month, person-wave,
practice-month or area-month. They carry pseudonymous person identifiers and exact counts:
no small-number suppression has been applied. Use them for analysis inside the secure
environment only. Do not attach them to, or copy them into, a report, and do not publish any
number read from them without output checking (the reports apply suppression; these do not).
"""


class ExportError(ValueError):
    """An export that would put row-level data where it must not go."""


def export_marts(
    warehouse: Path,
    out_dir: Path,
    formats: Iterable[str] = FORMATS,
    marts: Iterable[str] | None = None,
    reports_dir: Path | None = None,
    *,
    dta_compression: str = "auto",
    manifest: Path = MANIFEST,
) -> dict[str, list[Path]]:
    """Write each mart (default: every analysis panel of the dbt project,
    :func:`sicp.dbt_schema.analysis_panels`) as ``out_dir/<mart>.parquet`` and ``<mart>.dta`` (``.dta.zip`` when
    zipped, see :data:`DTA_COMPRESSION`), with the row-level notice beside them; return the
    files written per mart. A folder inside ``reports_dir`` is refused: row-level data are kept
    out of anything called a report. ``manifest`` is the dbt manifest the descriptions and 0/1
    tests come from.

    The warehouse is opened read-only, so an export can run beside readers (not beside dbt).
    """
    if reports_dir is not None and out_dir.resolve().is_relative_to(reports_dir.resolve()):
        raise ExportError(
            f"{out_dir} is inside the reports folder {reports_dir}: row-level "
            "panels are not disclosure-controlled and may not go with the reports"
        )
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {list(FORMATS)}")
    if dta_compression not in DTA_COMPRESSION:
        raise ValueError(
            f"unknown .dta compression {dta_compression!r}; known: {list(DTA_COMPRESSION)}"
        )
    marts = tuple(marts) if marts is not None else tuple(analysis_panels())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ROW_LEVEL_NOTICE).write_text(_NOTICE, encoding="utf-8")
    docs = dbt_docs(manifest, marts)
    written: dict[str, list[Path]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        provenance = _provenance(con)
        named = named_value_labels(con)
        for mart in marts:
            relation = f"{MARTS_LAYER}.{mart}"
            mart_docs = docs.get(mart, MartDocs())
            columns = _columns(con, relation)
            profile = _profile(con, relation, columns)
            value_labels = mart_value_labels(profile.integer_ranges, named, mart_docs)
            files: list[Path] = []
            if "parquet" in formats:
                path = out_dir / f"{mart}.parquet"
                metadata = {
                    "sicp.mart": mart,
                    "sicp.description": mart_docs.description,
                    "sicp.notice": _NOTICE.splitlines()[0],
                    **{f"sicp.{k}": v for k, v in provenance.items()},
                }
                _write_parquet(con, relation, columns, path, mart_docs, value_labels, metadata)
                files.append(path)
            if "dta" in formats:
                files.append(
                    _write_dta(
                        con,
                        relation,
                        columns,
                        profile,
                        out_dir / f"{mart}.dta",
                        dta_compression,
                        mart_docs,
                        value_labels,
                        _data_label(mart, provenance),
                    )
                )
            written[mart] = files
    return written


def _data_label(mart: str, provenance: dict[str, str]) -> str:
    """The Stata dataset label: the mart, its build and inputs (80 characters at most)."""
    build = (
        f", build {provenance['build_seq']} of {provenance['built_at'][:10]}"
        if "build_seq" in provenance
        else ""
    )
    return f"{mart}{build}, inputs {provenance['input_fingerprint'][:12]}"[:_STATA_LABEL_MAX]
