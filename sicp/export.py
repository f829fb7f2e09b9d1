"""Export the analysis marts to parquet and Stata ``.dta`` for researchers working outside Python.

Parquet is written by DuckDB itself (fast, keeps types); ``.dta`` goes through pandas, with
each column's dbt description as its Stata variable label when the dbt manifest is available.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import duckdb

from sicp.settings import PROJECT_ROOT

#: The marts the lead's protocols and outside researchers use (schema ``marts``).
MARTS: tuple[str, ...] = (
    "practice_month_panel",
    "person_month_panel",
    "person_wave_panel",
    "area_month_panel",
    "twic_analysis_set",
    "contact_centre_calls_monthly",
)
MARTS_SCHEMA = "marts"
FORMATS: tuple[str, ...] = ("parquet", "dta")
#: Stata limits variable names to 32 characters and variable labels to 80.
_STATA_NAME_MAX = 32
_STATA_LABEL_MAX = 80


def column_labels(manifest: Path = PROJECT_ROOT / "dbt" / "target" / "manifest.json",
                  ) -> dict[str, dict[str, str]]:
    """Column descriptions of each mart from the dbt manifest ({} when dbt has not parsed)."""
    if not manifest.exists():
        return {}
    nodes = json.loads(manifest.read_text())["nodes"].values()
    return {
        n["name"]: {c: meta.get("description", "") for c, meta in n["columns"].items()}
        for n in nodes
        if n.get("resource_type") == "model" and n["name"] in MARTS
    }


def _stata_query(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[str, list[str]]:
    """The SELECT that feeds Stata, and the date columns to write as ``%td``.

    DuckDB sums integers to HUGEINT, which pandas can only hold as float; the counts fit in
    BIGINT, so they are cast in SQL and reach Stata as integers.
    """
    types = con.execute(f"DESCRIBE {relation}").fetchall()
    huge = [name for name, kind, *_ in types if kind == "HUGEINT"]
    dates = [name for name, kind, *_ in types if kind == "DATE" or kind.startswith("TIMESTAMP")]
    replace = ", ".join(f'CAST("{c}" AS BIGINT) AS "{c}"' for c in huge)
    select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
    return f"{select} FROM {relation}", dates


def _write_dta(con: duckdb.DuckDBPyConnection, relation: str, path: Path,
               labels: dict[str, str]) -> None:
    """One mart as Stata 14+ ``.dta`` (pandas' vectorised writer: about 3x faster than
    pyreadstat on the 3-million-row person-month panel); nullable integers keep their missing
    values as Stata missing, dates become ``%td``, dbt column descriptions the variable labels."""
    query, dates = _stata_query(con, relation)
    df = con.execute(query).df()
    too_long = [c for c in df.columns if len(c) > _STATA_NAME_MAX]
    if too_long:
        raise ValueError(f"{relation}: column names longer than Stata's "
                         f"{_STATA_NAME_MAX} characters: {too_long}")
    variable_labels = {c: labels[c][:_STATA_LABEL_MAX] for c in df.columns if labels.get(c)}
    df.to_stata(path, write_index=False, version=118, convert_dates=dict.fromkeys(dates, "td"),
                variable_labels=variable_labels)


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


def export_marts(warehouse: Path, out_dir: Path, formats: Iterable[str] = FORMATS,
                 marts: Iterable[str] = MARTS,
                 reports_dir: Path | None = None) -> dict[str, list[Path]]:
    """Write each mart as ``out_dir/<mart>.<format>``, with the row-level notice beside them;
    return the files written per mart. A folder inside ``reports_dir`` is refused: row-level
    data are kept out of anything called a report.

    The warehouse is opened read-only, so an export can run beside readers (not beside dbt).
    """
    if reports_dir is not None and out_dir.resolve().is_relative_to(reports_dir.resolve()):
        raise ExportError(f"{out_dir} is inside the reports folder {reports_dir}: row-level "
                          "panels are not disclosure-controlled and may not go with the reports")
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {list(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ROW_LEVEL_NOTICE).write_text(_NOTICE, encoding="utf-8")
    labels = column_labels() if "dta" in formats else {}
    written: dict[str, list[Path]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for mart in marts:
            relation = f"{MARTS_SCHEMA}.{mart}"
            files: list[Path] = []
            if "parquet" in formats:
                path = out_dir / f"{mart}.parquet"
                con.execute(f"COPY (SELECT * FROM {relation}) TO '{path}' (FORMAT parquet)")
                files.append(path)
            if "dta" in formats:
                path = out_dir / f"{mart}.dta"
                _write_dta(con, relation, path, labels.get(mart, {}))
                files.append(path)
            written[mart] = files
    return written
