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

from analysis.protocol import COST_CONSEQUENCE_ID, Protocol, load_protocols
from analysis.store import read_results
from sicp.disclosure import primary_mask


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


def cost_consequence_rows(estimates: pd.DataFrame, protocols: dict[str, Protocol]
                          ) -> pd.DataFrame:
    """One row per primary protocol: its headline effect beside its cost consequence (GBP per
    person per year, from the same estimator on priced utilisation), or why it has none."""
    effects = headline_rows(estimates, protocols).set_index("protocol_id")
    rows = []
    for pid in effects.index:
        protocol = protocols[pid]
        effect = effects.loc[pid]
        row: dict[str, Any] = {
            "protocol_id": pid, "label": effect["label"], "unit": effect["unit"],
            **{f"effect_{k}": effect[k] for k in ("estimate", "ci_low", "ci_high")},
            "cost_estimate": math.nan, "cost_ci_low": math.nan, "cost_ci_high": math.nan,
            "cost_p_value": math.nan, "cost_n_obs": pd.NA, "cost_outcome": "", "cost_note": ""}
        spec = protocol.cost_consequence()
        if spec is None:
            row["cost_note"] = ("its incremental cost is in the cost-effectiveness table"
                                if protocol.raw["method"]["name"] == "cost_effectiveness"
                                else f"no priced utilisation in {protocol.panel}")
            rows.append(row)
            continue
        hit = estimates[(estimates["protocol_id"] == pid)
                        & (estimates["analysis_id"] == COST_CONSEQUENCE_ID)
                        & (estimates["term"] == spec.terms[0])]
        if hit.empty:
            row["cost_note"] = "declared but not in the results store"
        else:
            cost = hit.iloc[0]
            row.update({f"cost_{k}": float(cost[k]) for k in
                        ("estimate", "ci_low", "ci_high", "p_value")})
            row.update(cost_n_obs=cost["n_obs"], cost_outcome=cost["outcome"])
        rows.append(row)
    return pd.DataFrame(rows)


def calls_by_reason(inputs: ReportInputs) -> pd.DataFrame:
    """Centre-of-contact calls by reason from the first month with a call (the launch): calls of
    the registered 65+, their person-months, calls per 1,000 aged 65+ per month, and calls of
    people outside that population (unattributed)."""
    return inputs.query("""
        with since as (
            select * from marts.contact_centre_calls_monthly
            where month >= (select min(month) from marts.contact_centre_calls_monthly
                            where calls > 0)
        )
        select
            reason,
            sum(case when neighbourhood is not null then calls else 0 end) as calls,
            sum(person_months_65plus) as person_months_65plus,
            1000.0 * sum(case when neighbourhood is not null then calls else 0 end)
                / sum(person_months_65plus) as calls_per_1000_65plus,
            sum(case when neighbourhood is null then calls else 0 end) as unattributed_calls
        from since
        group by reason
        order by reason
    """)


def calls_by_neighbourhood(inputs: ReportInputs, threshold: int) -> pd.DataFrame:
    """Calls (every reason) per 1,000 aged 65+ by neighbourhood and month; a month whose call
    count is below ``threshold`` (but not 0) has its rate hidden (NaN), since the rate and the
    neighbourhood's population would give the count back."""
    frame = inputs.query("""
        select neighbourhood, month, sum(calls) as calls,
               max(person_months_65plus) as person_months_65plus
        from marts.contact_centre_calls_monthly
        where neighbourhood is not null
        group by neighbourhood, month
        order by neighbourhood, month
    """)
    frame["calls_per_1000_65plus"] = 1000.0 * frame["calls"] / frame["person_months_65plus"]
    hidden = primary_mask(frame["calls"].to_numpy(float), threshold)
    frame.loc[hidden, "calls_per_1000_65plus"] = math.nan
    return frame


def calls_by_twic_arm(inputs: ReportInputs) -> pd.DataFrame:
    """Centre-of-contact calls of the trial's participants (record-linkage consent) in their
    registered 65+ person-months of the 12 months from the month of randomisation, by arm:
    coaching calls (offer and sessions) and every other call, per 1,000 person-months."""
    return inputs.query("""
        with arms as (
            select person_id, arm, cast(date_trunc('month', randomised_on) as date) as first_month
            from marts.twic_analysis_set
            where consent_linkage = 1
        ),
        months as (
            select a.arm, p.person_id, p.month
            from arms as a
            inner join intermediate.int_person_month_costs as p
                on p.person_id = a.person_id
               and p.month >= a.first_month
               and p.month < a.first_month + interval 12 month
        ),
        calls as (
            select m.arm,
                   sum(case when c.reason = 'coaching' then 1 else 0 end) as coaching_calls,
                   sum(case when c.reason <> 'coaching' then 1 else 0 end) as other_calls
            from months as m
            inner join staging.stg_contact_centre_calls__calls as c
                on c.person_id = m.person_id
               and cast(date_trunc('month', c.called_on) as date) = m.month
            group by m.arm
        )
        select m.arm, count(distinct m.person_id) as people, count(*) as person_months,
               coalesce(max(c.coaching_calls), 0) as coaching_calls,
               coalesce(max(c.other_calls), 0) as other_calls
        from months as m
        left join calls as c on c.arm = m.arm
        group by m.arm
        order by m.arm
    """).assign(
        coaching_per_1000=lambda d: 1000.0 * d["coaching_calls"] / d["person_months"],
        other_per_1000=lambda d: 1000.0 * d["other_calls"] / d["person_months"])
