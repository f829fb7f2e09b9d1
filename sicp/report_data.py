"""What the reports read: the results store, protocol metadata, marts and dbt artefacts.

Reports compute nothing heavy: they call these readers, then arrange tables and figures.
Everything is opened read-only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.protocol import Protocol, load_protocols
from analysis.store import read_results


@dataclass(frozen=True)
class ReportInputs:
    results_dir: Path
    warehouse: Path
    protocols_dir: Path
    dbt_target: Path

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReportInputs:
        return cls(Path(params["results_dir"]), Path(params["warehouse"]),
                   Path(params["protocols_dir"]), Path(params["dbt_target"]))

    def estimates(self) -> pd.DataFrame:
        return read_results(self.results_dir)

    def protocols(self, subset: str = "") -> dict[str, Protocol]:
        """Protocols by id; ``subset`` (comma-separated ids, as a report parameter) narrows them."""
        wanted = {s.strip() for s in subset.split(",") if s.strip()}
        protocols = {p.id: p for p in load_protocols(self.protocols_dir)}
        unknown = wanted - set(protocols)
        if unknown:
            raise KeyError(f"unknown protocol id(s) {sorted(unknown)}; known: {sorted(protocols)}")
        return {k: v for k, v in protocols.items() if not wanted or k in wanted}

    def table(self, protocol_id: str, analysis_id: str, name: str) -> pd.DataFrame | None:
        path = self.results_dir / "tables" / protocol_id / analysis_id / f"{name}.parquet"
        return pd.read_parquet(path) if path.exists() else None

    def query(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).df()

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.dbt_target / "manifest.json").read_text(encoding="utf-8"))

    def run_results(self) -> dict[str, Any] | None:
        path = self.dbt_target / "run_results.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def details(row: pd.Series) -> dict[str, Any]:
    return json.loads(row["details"]) if isinstance(row.get("details"), str) else {}


def headline_rows(estimates: pd.DataFrame, protocols: dict[str, Protocol],
                  primary_only: bool = True) -> pd.DataFrame:
    """One row per protocol: its reporting term from the primary analysis, on the shown scale."""
    rows = []
    for pid, protocol in sorted(protocols.items()):
        if primary_only and not protocol.primary:
            continue
        reporting = protocol.raw.get("reporting", {}) or {}
        term = reporting.get("term")
        hit = estimates[(estimates["protocol_id"] == pid) & (estimates["analysis_id"] == "primary")
                        & (estimates["term"] == term)]
        if hit.empty:
            continue
        row = hit.iloc[0]
        shown = transform(row, reporting.get("transform"))
        rows.append({
            "protocol_id": pid,
            "label": protocol.raw.get("outcome_label", protocol.outcome),
            "level": protocol.level,
            "component": protocol.raw.get("component", ""),
            "unit": reporting.get("unit", ""),
            "null_value": 1.0 if reporting.get("transform") == "exp" else 0.0,
            "p_value": row["p_value"],
            "n_obs": row["n_obs"],
            "n_clusters": row["n_clusters"],
            **shown,
        })
    return pd.DataFrame(rows)


def transform(row: pd.Series, how: str | None) -> dict[str, float]:
    """Estimate and CI on the reporting scale (``exp`` turns log ratios into ratios)."""
    keys = ("estimate", "ci_low", "ci_high")
    values = {k: float(row[k]) for k in keys}
    if how == "exp":
        values = {k: math.exp(v) if not math.isnan(v) else v for k, v in values.items()}
    return values


def effect_sentence(row: pd.Series, digits: int = 3) -> str:
    """A headline effect in words, with its interval and what the interval means."""
    est, low, high, null = row["estimate"], row["ci_low"], row["ci_high"], row["null_value"]
    fmt = f"{{:.{digits}g}}"
    interval = (f" (95% CI {fmt.format(low)} to {fmt.format(high)})"
                if not (math.isnan(low) or math.isnan(high)) else "")
    if math.isnan(low) or math.isnan(high):
        verdict = "no interval is available for this estimate"
    elif low > null:
        verdict = "the interval lies wholly above no effect"
    elif high < null:
        verdict = "the interval lies wholly below no effect"
    else:
        verdict = "the interval includes no effect"
    unit = f" {row['unit']}" if row.get("unit") else ""
    return f"**{row['label']}**: {fmt.format(est)}{unit}{interval}; {verdict}."


def lineage(estimates: pd.DataFrame) -> pd.DataFrame:
    """Protocol hashes, input fingerprint and code version behind every stored estimate."""
    cols = ["protocol_id", "protocol_hash", "input_fingerprint", "code_version"]
    return estimates[cols].drop_duplicates().sort_values("protocol_id").reset_index(drop=True)


def expand_details(rows: pd.DataFrame) -> pd.DataFrame:
    """Store rows with their ``details`` JSON spread into columns (event time, group, ...)."""
    extra = pd.DataFrame([json.loads(d) if isinstance(d, str) else {} for d in rows["details"]],
                         index=rows.index)
    return pd.concat([rows.drop(columns=["details"]), extra], axis=1)


def diagnostics(inputs: ReportInputs, protocol_id: str, analysis_id: str = "primary"
                ) -> dict[str, str]:
    table = inputs.table(protocol_id, analysis_id, "diagnostics")
    return {} if table is None else dict(zip(table["name"], table["value"], strict=True))
