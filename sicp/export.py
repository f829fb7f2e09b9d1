"""Export the analysis marts to parquet and Stata ``.dta`` for researchers working outside Python.

Parquet is written by DuckDB itself (fast, keeps types); ``.dta`` goes through pandas and
pyreadstat, with each column's dbt description as its Stata variable label when the dbt
manifest is available.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat

from sicp.settings import PROJECT_ROOT

#: The marts the lead's protocols and outside researchers use (schema ``marts``).
MARTS: tuple[str, ...] = (
    "practice_month_panel",
    "person_month_panel",
    "person_wave_panel",
    "area_month_panel",
    "twic_analysis_set",
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


def _stata_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Make a mart frame writable to Stata.

    Stata has no nullable integers or booleans, so those become int (no missing values) or
    double (with missing values); dates become Python dates so they are written as ``%td``.
    """
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
            out[col] = s.astype("float64") if s.isna().any() else s.astype("int64")
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            out[col] = [None if pd.isna(v) else v.date() for v in s]
    return out


def export_marts(warehouse: Path, out_dir: Path, formats: Iterable[str] = FORMATS,
                 marts: Iterable[str] = MARTS) -> dict[str, list[Path]]:
    """Write each mart as ``out_dir/<mart>.<format>``; return the files written per mart.

    The warehouse is opened read-only, so an export can run beside readers (not beside dbt).
    """
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {list(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
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
                df = _stata_frame(con.execute(f"SELECT * FROM {relation}").df())
                too_long = [c for c in df.columns if len(c) > _STATA_NAME_MAX]
                if too_long:
                    raise ValueError(f"{relation}: column names longer than Stata's "
                                     f"{_STATA_NAME_MAX} characters: {too_long}")
                mart_labels = labels.get(mart, {})
                pyreadstat.write_dta(
                    df, str(path),
                    column_labels=[mart_labels.get(c, "")[:_STATA_LABEL_MAX] for c in df.columns],
                )
                files.append(path)
            written[mart] = files
    return written
