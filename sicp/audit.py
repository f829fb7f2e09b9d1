"""Audit helpers for the outcome-measure audit: definitions, lineage, tests, reconciliation.

Lineage and test results come from dbt's own artefacts (``manifest.json``, ``run_results.json``)
so the audit shows what the warehouse actually ran, not a description of it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sicp.report_data import ReportInputs

#: Measures whose practice-month total must equal the person-month sum.
RECONCILED = ("emergency_admissions", "emergency_readmissions_30d", "ae_attendances",
              "acsc_emergency_admissions", "permanent_care_home_admissions", "deaths",
              "deaths_at_home")


def measure_definitions(inputs: ReportInputs) -> pd.DataFrame:
    """The documented definitions, from the ``outcome_measures`` seed as loaded."""
    return inputs.query("select * from reference.outcome_measures order by measure")


def _node_id(manifest: dict[str, Any], name: str) -> str | None:
    for uid, node in manifest["nodes"].items():
        if node.get("resource_type") in ("model", "seed") and node["name"] == name:
            return uid
    return None


def measure_lineage(manifest: dict[str, Any], model: str) -> list[str]:
    """Raw sources and models upstream of ``model``, the model, then the marts built on it."""
    start = _node_id(manifest, model)
    if start is None:
        return [model]
    parents = manifest.get("parent_map", {})
    children = manifest.get("child_map", {})
    upstream: list[str] = []
    stack = [start]
    seen = {start}
    while stack:
        uid = stack.pop()
        for parent in parents.get(uid, []):
            if parent not in seen and not parent.startswith("seed."):
                seen.add(parent)
                upstream.append(parent)
                stack.append(parent)
    marts = sorted({c for c in children.get(start, []) if c.startswith("model.")
                    and manifest["nodes"][c]["fqn"][1:2] == ["marts"]}
                   | {g for c in children.get(start, []) if c.startswith("model.")
                      for g in children.get(c, []) if g.startswith("model.")
                      and manifest["nodes"][g]["fqn"][1:2] == ["marts"]})

    def label(uid: str) -> str:
        if uid.startswith("source."):
            src = manifest["sources"][uid]
            return f"{src['source_name']}.{src['name']}"
        return manifest["nodes"][uid]["name"]

    ordered = sorted(upstream, key=lambda u: (not u.startswith("source."), "stg_" not in u, u))
    return [label(u) for u in ordered] + [model] + [label(m) for m in marts]


def model_test_results(manifest: dict[str, Any], run_results: dict[str, Any] | None,
                       model: str) -> pd.DataFrame:
    """Each dbt data test attached to ``model`` with its status in the last ``dbt build``."""
    uid = _node_id(manifest, model)
    status = {r["unique_id"]: r["status"] for r in (run_results or {}).get("results", [])}
    rows = [
        {"test": node.get("test_metadata", {}).get("name", node["name"]),
         "column": node.get("column_name"), "status": status.get(test_id, "not run")}
        for test_id, node in manifest["nodes"].items()
        if node.get("resource_type") == "test" and uid in node.get("depends_on", {}).get("nodes", [])
    ]
    return pd.DataFrame(rows, columns=["test", "column", "status"])


def quarantine_summary(inputs: ReportInputs) -> pd.DataFrame:
    return inputs.query("""
        select source_name, column_name, reason, count(*) as rows
        from raw.quarantine group by all order by source_name, column_name, reason
    """)


def reconciliation(inputs: ReportInputs) -> pd.DataFrame:
    """Totals of each measure in the practice-month mart against the person-month mart."""
    sums = ", ".join(f"sum({m}) as {m}" for m in RECONCILED)
    practice = inputs.query(f"select {sums} from marts.practice_month_panel").iloc[0]
    person = inputs.query(f"select {sums} from marts.person_month_panel").iloc[0]
    return pd.DataFrame({
        "measure": list(RECONCILED),
        "practice_month_total": [int(practice[m]) for m in RECONCILED],
        "person_month_sum": [int(person[m]) for m in RECONCILED],
        "agrees": ["yes" if int(practice[m]) == int(person[m]) else "NO" for m in RECONCILED],
    })
