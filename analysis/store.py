"""The results store: one tidy row per estimate, with the lineage that makes it auditable.

Rows live in the warehouse table ``results.estimates`` and in ``estimates.parquet``. Both are
written in a canonical order with no wall-clock content, so the same inputs, protocols and code
give byte-identical files; timings go to ``run_log.jsonl`` beside them instead.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.results import TIDY_COLUMNS

#: Lineage and identity columns that precede the tidy estimate columns on every row.
LINEAGE = (
    "protocol_id",
    "protocol_hash",
    "analysis_id",
    "method_name",
    "outcome",
    "panel",
    "input_fingerprint",
    "code_version",
)
#: Columns of the store, in order. Estimator-specific extra columns of a tidy row (event time,
#: group, exponentiated estimate, ...) travel in ``details`` as canonical JSON.
STORE_COLUMNS = LINEAGE + TIDY_COLUMNS + ("details",)
SORT_KEY = ["protocol_id", "analysis_id", "term"]

#: What became of each protocol at its last run: ``ok`` (its rows are in the store),
#: ``failed`` (an error, with the reason) or ``not_applicable`` (its question cannot be asked of
#: this extract, e.g. a month outside the data's calendar). Failed and not-applicable protocols
#: have no rows and no tables, so tables and estimates never disagree.
STATUS_OK, STATUS_FAILED, STATUS_NOT_APPLICABLE = "ok", "failed", "not_applicable"
STATUS_COLUMNS = (
    "protocol_id",
    "protocol_hash",
    "status",
    "reason",
    "n_estimates",
    "input_fingerprint",
    "code_version",
    "build_seq",
)


def code_version(repo: Path) -> str:
    """``git describe`` of the code that produced a result ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def to_store_rows(tidy: pd.DataFrame, **lineage: object) -> pd.DataFrame:
    """Stamp a tidy estimates table with its lineage and keep the store's columns only."""
    missing = [k for k in LINEAGE if k not in lineage]
    if missing:
        raise ValueError(f"lineage missing: {missing}")
    rows = tidy.copy()
    extra = [c for c in tidy.columns if c not in TIDY_COLUMNS]
    records = tidy[extra].to_dict("records") if extra else [{}] * len(tidy)
    rows["details"] = [_details(record) for record in records]
    for key, value in lineage.items():
        rows[key] = value
    return rows[list(STORE_COLUMNS)]


def _details(record: dict[str, object]) -> str:
    clean = {
        k: (
            None
            if v is None or (isinstance(v, float) and v != v) or v is pd.NA
            else v.item()
            if hasattr(v, "item")
            else v
        )
        for k, v in record.items()
    }
    return json.dumps(clean, sort_keys=True, default=str)


def _canonical(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows[list(STORE_COLUMNS)].sort_values(SORT_KEY, kind="mergesort").reset_index(drop=True)
    for col in ("n_obs", "n_clusters"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    for col in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    for col in LINEAGE + ("term", "method", "se_type", "scale", "details"):
        out[col] = out[col].astype("string")
    return out


def _replace_rows(
    new: pd.DataFrame,
    protocol_ids: Sequence[str],
    canonical: Callable[[pd.DataFrame], pd.DataFrame],
    name: str,
    warehouse: Path,
    results_dir: Path,
) -> pd.DataFrame:
    """Replace the rows of ``protocol_ids`` in ``<name>.parquet`` and ``results.<name>`` by
    ``new``; return the whole table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    parquet = results_dir / f"{name}.parquet"
    existing = pq.read_table(parquet).to_pandas() if parquet.exists() else None
    out = canonical(new)
    if existing is not None and len(existing):
        keep = existing[~existing["protocol_id"].isin(list(protocol_ids))]
        out = canonical(pd.concat([keep, out], ignore_index=True))
    table = pa.Table.from_pandas(out, preserve_index=False)
    pq.write_table(table, parquet, compression="zstd", write_statistics=False)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS results")
        con.register("new_rows", out)
        con.execute(f"CREATE OR REPLACE TABLE results.{name} AS SELECT * FROM new_rows")
        con.unregister("new_rows")
    return out


def write_results(
    rows: pd.DataFrame,
    warehouse: Path,
    results_dir: Path,
    protocol_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Replace the store's rows for ``protocol_ids`` (default: the protocols present in
    ``rows``) by ``rows``; return the whole store."""
    ids = list(rows["protocol_id"].unique()) if protocol_ids is None else list(protocol_ids)
    return _replace_rows(rows, ids, _canonical, "estimates", warehouse, results_dir)


def _canonical_status(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows[list(STATUS_COLUMNS)].sort_values("protocol_id", kind="mergesort")
    out = out.reset_index(drop=True)
    for col in ("n_estimates", "build_seq"):
        out[col] = pd.to_numeric(out[col]).astype("Int64")
    for col in STATUS_COLUMNS:
        if col not in ("n_estimates", "build_seq"):
            out[col] = out[col].astype("string")
    return out


def write_protocol_runs(statuses: pd.DataFrame, warehouse: Path, results_dir: Path) -> pd.DataFrame:
    """Record each protocol's last status (``protocol_runs.parquet``, ``results.protocol_runs``)."""
    return _replace_rows(
        statuses,
        list(statuses["protocol_id"]),
        _canonical_status,
        "protocol_runs",
        warehouse,
        results_dir,
    )


def _canonical_multiplicity(rows: pd.DataFrame) -> pd.DataFrame:
    from analysis.multiplicity import COLUMNS

    out = (
        rows[list(COLUMNS)]
        .sort_values(["multiplicity_family", "protocol_id"], kind="mergesort")
        .reset_index(drop=True)
    )
    for col in ("p_value", "p_adjusted"):
        out[col] = pd.to_numeric(out[col]).astype("float64")
    for col in ("n_declared", "n_adjusted"):
        out[col] = pd.to_numeric(out[col]).astype("Int64")
    for col in set(COLUMNS) - {"p_value", "p_adjusted", "n_declared", "n_adjusted"}:
        out[col] = out[col].astype("string")
    return out


def write_multiplicity(rows: pd.DataFrame, warehouse: Path, results_dir: Path) -> pd.DataFrame:
    """Replace the adjusted p-values of the families' members in ``rows``
    (``multiplicity.parquet``, ``results.multiplicity``); return the whole table."""
    return _replace_rows(
        rows,
        list(rows["protocol_id"]),
        _canonical_multiplicity,
        "multiplicity",
        warehouse,
        results_dir,
    )


def read_multiplicity(results_dir: Path) -> pd.DataFrame:
    """The adjusted p-values of every family; empty (with the columns) before any run."""
    from analysis.multiplicity import COLUMNS

    path = results_dir / "multiplicity.parquet"
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})
    return pq.read_table(path).to_pandas()


def read_results(results_dir: Path) -> pd.DataFrame:
    return pq.read_table(results_dir / "estimates.parquet").to_pandas()


def read_protocol_runs(results_dir: Path) -> pd.DataFrame:
    """Each protocol's last status; empty (with the columns) before any run."""
    path = results_dir / "protocol_runs.parquet"
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="string") for c in STATUS_COLUMNS})
    return pq.read_table(path).to_pandas()


def append_run_log(results_dir: Path, entries: Sequence[dict[str, object]]) -> None:
    """Timings and run facts that would break byte-identity if stored with the estimates."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with (results_dir / "run_log.jsonl").open("a", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
