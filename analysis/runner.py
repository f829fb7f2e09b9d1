"""Run protocols: read the panel a protocol names, fit each of its analyses, store the rows.

A protocol's ``cost_consequence`` block is one more fit: the primary method on the block's cost
outcome, restated as GBP per person per year by :func:`analysis.economics.cost_consequence`
and stored under the analysis id ``cost_consequence`` with the same lineage columns.

Plain Python with no Dagster imports; the Dagster asset factory and ``sicp analyse`` both call
:func:`run_protocol`. Panels are read from the warehouse read-only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.economics import cost_consequence
from analysis.methods import fit
from analysis.protocol import CostConsequence, Protocol, load_protocols
from analysis.results import EstimationResult
from analysis.store import append_run_log, code_version, to_store_rows, write_results

#: The dbt schema that holds the marts (see dbt/dbt_project.yml).
MARTS_SCHEMA = "marts"


@dataclass
class ProtocolRun:
    protocol: Protocol
    results: dict[str, EstimationResult]
    rows: pd.DataFrame
    seconds: float


def apply_filters(df: pd.DataFrame, filters: Mapping[str, Any]) -> pd.DataFrame:
    """Keep rows matching every filter: a scalar (equal), a list (in) or {min, max} (range)."""
    keep = pd.Series(True, index=df.index)
    for column, rule in filters.items():
        if column not in df.columns:
            raise KeyError(f"filter on unknown column {column!r}; columns: {list(df.columns)}")
        values = df[column]
        if isinstance(rule, Mapping):
            if "min" in rule:
                keep &= values >= rule["min"]
            if "max" in rule:
                keep &= values <= rule["max"]
        elif isinstance(rule, list):
            keep &= values.isin(rule)
        else:
            keep &= values == rule
    return df.loc[keep].reset_index(drop=True)


def prepare_panel(panel: pd.DataFrame, data_spec: Mapping[str, Any]) -> pd.DataFrame:
    """Apply a protocol's ``data`` block: ``derive`` new columns with pandas expressions, then
    ``aggregate`` (``by`` columns, ``sum`` columns), so series such as "Salford against the rest
    of Greater Manchester" are stated in the protocol rather than coded."""
    frame = panel.copy()
    for name, expression in (data_spec.get("derive", {}) or {}).items():
        frame[name] = frame.eval(expression)
    aggregate = data_spec.get("aggregate")
    if aggregate:
        frame = (frame.groupby(list(aggregate["by"]), as_index=False, sort=True)
                 [list(aggregate["sum"])].sum())
        for name, expression in (aggregate.get("derive", {}) or {}).items():
            frame[name] = frame.eval(expression)
    return frame


def read_panel(warehouse: Path, panel: str) -> pd.DataFrame:
    """The mart in a canonical row order: a rebuilt table may store its rows in another order,
    and floating-point sums in the estimators would then differ in the last bits."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f'SELECT * FROM {MARTS_SCHEMA}."{panel}" ORDER BY ALL').df()


def input_fingerprint(warehouse: Path) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT fingerprint FROM raw.input_fingerprint").fetchone()
    if row is None:
        raise RuntimeError(f"{warehouse}: raw.input_fingerprint is empty; run the ingest first")
    return str(row[0])


def check_price_year(data: pd.DataFrame, price_year: int) -> None:
    """A panel that carries its costs' ``price_year`` must agree with the protocol's stated one,
    so a change of dbt's var('cost_price_year') cannot silently relabel the results."""
    if "price_year" not in data.columns:
        return
    found = sorted({int(y) for y in data["price_year"].dropna().unique()})
    if found and found != [int(price_year)]:
        raise ValueError(f"the panel's costs are in price year(s) {found}, the protocol states "
                         f"{price_year}")


def fit_cost_consequence(spec: CostConsequence, panel: pd.DataFrame) -> EstimationResult:
    """The cost block's fit on the panel, rescaled to GBP per person per year."""
    data = apply_filters(prepare_panel(panel, spec.data), spec.analysis.filters)
    check_price_year(data, spec.price_year)
    result = fit(spec.analysis.method, data, outcome=spec.outcome,
                 covariates=list(spec.analysis.covariates))
    return cost_consequence(result, periods_per_year=spec.periods_per_year,
                            price_year=spec.price_year, terms=spec.terms)


def run_protocol(protocol: Protocol, panel: pd.DataFrame, *, fingerprint: str,
                 version: str) -> ProtocolRun:
    """Fit the primary, every sensitivity analysis and the cost consequence of one protocol."""
    started = time.perf_counter()
    results: dict[str, EstimationResult] = {}
    frames = []

    def store(analysis_id: str, method_name: str, outcome: str, result: EstimationResult) -> None:
        results[analysis_id] = result
        frames.append(to_store_rows(
            result.tidy, protocol_id=protocol.id, protocol_hash=protocol.hash,
            analysis_id=analysis_id, method_name=method_name, outcome=outcome,
            panel=protocol.panel, input_fingerprint=fingerprint, code_version=version,
        ))

    prepared = prepare_panel(panel, protocol.raw["data"])
    for analysis in protocol.analyses():
        data = apply_filters(prepared, analysis.filters)
        store(analysis.analysis_id, analysis.method.name, protocol.outcome,
              fit(analysis.method, data, outcome=protocol.outcome,
                  covariates=list(analysis.covariates)))
    cost = protocol.cost_consequence()
    if cost is not None:
        store(cost.analysis.analysis_id, cost.analysis.method.name, cost.outcome,
              fit_cost_consequence(cost, panel))
    return ProtocolRun(protocol, results, pd.concat(frames, ignore_index=True),
                       time.perf_counter() - started)


def write_tables(run: ProtocolRun, results_dir: Path) -> list[Path]:
    """Auxiliary tables (counterfactual series, weights, draws) and the diagnostics as parquet."""
    written = []
    for analysis_id, result in run.results.items():
        diagnostics = pd.DataFrame({"name": list(result.diagnostics),
                                    "value": [str(v) for v in result.diagnostics.values()]})
        for name, table in sorted({**result.tables, "diagnostics": diagnostics}.items()):
            path = results_dir / "tables" / run.protocol.id / analysis_id / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.reset_index(drop=True).to_parquet(path, index=False)
            written.append(path)
    return written


def run_all_protocols(paths: Any, only: Iterable[str] | None = None) -> pd.DataFrame:
    """Run protocols (all, or the ids in ``only``) and write them to the results store."""
    protocols = load_protocols(paths.protocols_dir)
    wanted = set(only) if only else None
    fingerprint = input_fingerprint(paths.warehouse)
    version = code_version(paths.protocols_dir.parent)
    panels: dict[str, pd.DataFrame] = {}
    runs = []
    for protocol in protocols:
        if wanted is not None and protocol.id not in wanted:
            continue
        if protocol.panel not in panels:
            panels[protocol.panel] = read_panel(paths.warehouse, protocol.panel)
        run = run_protocol(protocol, panels[protocol.panel], fingerprint=fingerprint,
                           version=version)
        write_tables(run, paths.results_dir)
        runs.append(run)
    store = write_results(pd.concat([r.rows for r in runs], ignore_index=True),
                          paths.warehouse, paths.results_dir)
    append_run_log(paths.results_dir, [
        {"protocol_id": r.protocol.id, "seconds": round(r.seconds, 3), "rows": len(r.rows)}
        for r in runs
    ])
    return store
