"""Audit helpers for the outcome-measure audit: definitions, lineage, tests, reconciliation.

Lineage comes from dbt's manifest and test results from the node results of the build that made
the warehouse's marts, recorded in the warehouse itself (``meta.dbt_node_results``), so the audit
shows what that build ran, whether the CLI or Dagster ran it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.columns import column_options
from analysis.methods import METHODS
from analysis.protocol import Protocol, panel_columns_of
from sicp.report_data import ReportInputs

#: Measures whose practice-month total must equal the person-month sum.
RECONCILED = (
    "emergency_admissions",
    "emergency_readmissions_30d",
    "ae_attendances",
    "acsc_emergency_admissions",
    "permanent_care_home_admissions",
    "deaths",
    "deaths_at_home",
)


#: The order measures are shown in, by kind (the seed's ``kind``).
KINDS = ("record", "indicator", "survey", "cost")


def measure_definitions(inputs: ReportInputs) -> pd.DataFrame:
    """The documented definitions, from the ``outcome_measures`` seed as loaded, by kind."""
    order = " ".join(f"when '{k}' then {i}" for i, k in enumerate(KINDS))
    return inputs.query(
        f"select * from reference.outcome_measures order by case kind {order} end, measure"
    )


def panel_columns(measure: pd.Series) -> list[tuple[str, str]]:
    """The (panel, column) pairs that carry a measure, in the seed's order (its
    ``panel_columns``, the measure's own column first)."""
    return [
        tuple(item.strip().split(".", 1))
        for item in str(measure["panel_columns"]).split(";")
        if item.strip()
    ]


def protocol_columns(protocol: Protocol) -> dict[tuple[str, str], str]:
    """The panel columns a protocol's estimates are of, with the role each plays: the outcome
    (through the data block's steps), the cost consequence's outcome, and the primary method's
    column options (a baseline score, a cost)."""
    roles: dict[tuple[str, str], str] = {}
    options = protocol.analyses()[0].method.options
    for option in column_options(METHODS[protocol.method.name]):
        value = options.get(option)
        for column in value if isinstance(value, list) else [value]:
            if column is not None:
                roles[(protocol.panel, str(column))] = f"{option} option"
    cost = protocol.cost_consequence()
    if cost is not None:
        for column in panel_columns_of(cost.data, cost.outcome):
            roles[(protocol.panel, column)] = "cost consequence"
    for column in panel_columns_of(protocol.data, protocol.outcome):
        roles[(protocol.panel, column)] = "outcome"
    return roles


def _role_rank(role: str) -> int:
    return {"outcome": 0, "cost consequence": 1}.get(role, 2)


def measure_uses(
    measures: pd.DataFrame, protocols: Mapping[str, Protocol]
) -> dict[str, list[tuple[str, str]]]:
    """Per measure, the protocols whose estimates are of it, with the role: matched on the
    exact panel columns, never on a name's prefix."""
    uses: dict[str, list[tuple[str, str]]] = {m: [] for m in measures["measure"]}
    for pid, protocol in sorted(protocols.items()):
        roles = protocol_columns(protocol)
        for _, m in measures.iterrows():
            found = [roles[c] for c in panel_columns(m) if c in roles]
            if found:  # the outcome before the cost consequence before an option
                uses[m["measure"]].append((pid, min(found, key=_role_rank)))
    return uses


def code_list(
    inputs: ReportInputs, manifest: dict[str, Any], seed: str
) -> tuple[pd.DataFrame, str, str]:
    """A code-list seed in full, with its version and source (the seed's ``meta``)."""
    node = manifest["nodes"].get(f"seed.sicp.{seed}", {})
    meta = node.get("meta") or node.get("config", {}).get("meta") or {}
    table = inputs.query(f"select * from reference.{seed} order by all")
    return table, str(meta.get("version", "not stated")), str(meta.get("source", "not stated"))


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
    marts = sorted(
        {
            c
            for c in children.get(start, [])
            if c.startswith("model.") and manifest["nodes"][c]["fqn"][1:2] == ["marts"]
        }
        | {
            g
            for c in children.get(start, [])
            if c.startswith("model.")
            for g in children.get(c, [])
            if g.startswith("model.") and manifest["nodes"][g]["fqn"][1:2] == ["marts"]
        }
    )

    def label(uid: str) -> str:
        if uid.startswith("source."):
            src = manifest["sources"][uid]
            return f"{src['source_name']}.{src['name']}"
        return manifest["nodes"][uid]["name"]

    ordered = sorted(upstream, key=lambda u: (not u.startswith("source."), "stg_" not in u, u))
    return [label(u) for u in ordered] + [model] + [label(m) for m in marts]


#: Shown for a test of the project that the build which made the marts did not run (a test
#: added since, or a build with --select): neither passed nor failed.
NOT_IN_BUILD = "not in the last build"


def model_test_results(
    manifest: dict[str, Any], results: dict[str, dict[str, Any]], model: str
) -> pd.DataFrame:
    """Each dbt data test attached to ``model``, by name, with its status in the build that
    made the warehouse's marts (``results``: sicp.warehouse.build_node_results)."""
    uid = _node_id(manifest, model)
    rows = [
        {
            "test": node["name"],
            "column": node.get("column_name") or "",
            "status": str(results.get(test_id, {}).get("status", NOT_IN_BUILD)),
        }
        for test_id, node in sorted(manifest["nodes"].items())
        if node.get("resource_type") == "test"
        and uid in node.get("depends_on", {}).get("nodes", [])
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
    return pd.DataFrame(
        {
            "measure": list(RECONCILED),
            "practice_month_total": [int(practice[m]) for m in RECONCILED],
            "person_month_sum": [int(person[m]) for m in RECONCILED],
            "agrees": ["yes" if int(practice[m]) == int(person[m]) else "NO" for m in RECONCILED],
        }
    )


def lineage_graph(
    manifest: dict[str, Any], protocols: Mapping[str, Protocol]
) -> tuple[dict[str, tuple[str, int]], list[tuple[str, str]]]:
    """The warehouse's lineage as a graph, from the dbt manifest and the protocols: every raw
    source, seed and model upstream of a panel a protocol reads, the panels, and the protocols.
    Returns nodes (id -> (label, column)) and edges (parent, child); a node's column is its
    longest distance from a raw file, the protocols one column past the last mart."""
    panels = {f"model.sicp.{p.panel}" for p in protocols.values()}
    parents = manifest.get("parent_map", {})
    keep: set[str] = set()
    stack = list(panels)
    while stack:
        uid = stack.pop()
        if uid in keep or uid.split(".", 1)[0] not in ("model", "seed", "source"):
            continue
        keep.add(uid)
        stack.extend(parents.get(uid, []))
    depth: dict[str, int] = {}

    def column(uid: str) -> int:
        if uid not in depth:
            ups = [p for p in parents.get(uid, []) if p in keep]
            depth[uid] = 1 + max((column(p) for p in ups), default=-1)
        return depth[uid]

    def label(uid: str) -> str:
        if uid.startswith("source."):
            source = manifest["sources"][uid]
            return f"{source['source_name']}.{source['name']}"
        return manifest["nodes"][uid]["name"]

    nodes = {uid: (label(uid), column(uid)) for uid in sorted(keep)}
    marts = max(column(uid) for uid in panels)  # every panel in one column
    nodes |= {uid: (label(uid), marts) for uid in panels}
    edges = [(p, uid) for uid in sorted(keep) for p in parents.get(uid, []) if p in keep]
    last = marts + 1
    for pid, protocol in sorted(protocols.items()):
        nodes[f"protocol.{pid}"] = (pid, last)
        edges.append((f"model.sicp.{protocol.panel}", f"protocol.{pid}"))
    return nodes, edges
