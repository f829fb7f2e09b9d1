"""The dbt models as Dagster assets: staging, intermediate, marts and their tests.

dbt sources declare ``meta.dagster.asset_key: ["raw", <table>]``, so dagster-dbt links each
model to the ingest assets it reads. Models are grouped by layer (their folder under
``models/``) and every dbt test, the singular ones in ``dbt/tests/`` included, is an asset check.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Failure
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from dagster_project.dbt_project import get_dbt_project
from dagster_project.resources import WAREHOUSE_POOL, Warehouse
from sicp.warehouse import record_build

SEED_GROUP = "seeds"


class LayerTranslator(DagsterDbtTranslator):
    """Groups dbt assets by layer: a model by its folder under ``models/`` (``staging``,
    ``intermediate``, ``marts``, ``data_quality``), a seed in ``seeds``."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return SEED_GROUP
        fqn = dbt_resource_props["fqn"]  # [project, folder, ..., name]
        return fqn[1] if len(fqn) > 2 else None


def attach_singular_tests(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with each singular test that reads several models or seeds attached to one
    of them (``meta.dagster.ref``, which dagster-dbt reads), so that it becomes an asset check
    instead of an anonymous observation: the most derived one (most ancestors; ties by name),
    the others becoming the check's additional dependencies. A test's own ``ref`` is kept."""
    nodes = dict(manifest["nodes"])
    parents: Mapping[str, list[str]] = manifest["parent_map"]

    def ancestors(uid: str, seen: set[str]) -> set[str]:
        for parent in parents.get(uid, []):
            if parent not in seen:
                seen.add(parent)
                ancestors(parent, seen)
        return seen

    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "test" or node.get("attached_node"):  # generic: attached
            continue
        config = node.get("config", {})
        meta = config.get("meta") or {}
        upstream = node["depends_on"]["nodes"]
        candidates = [n for n in upstream if n in nodes]  # models and seeds, not sources
        if len(upstream) < 2 or not candidates or meta.get("dagster", {}).get("ref"):
            continue
        target = max(candidates, key=lambda n: (len(ancestors(n, set())), nodes[n]["name"]))
        ref = {"name": nodes[target]["name"], "package": nodes[target]["package_name"]}
        nodes[uid] = {
            **node,
            "config": {
                **config,
                "meta": {**meta, "dagster": {**meta.get("dagster", {}), "ref": ref}},
            },
        }
    return {**manifest, "nodes": nodes}


_project = get_dbt_project()
MANIFEST = attach_singular_tests(json.loads(_project.manifest_path.read_text()))
TRANSLATOR = LayerTranslator(DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=MANIFEST, project=_project, dagster_dbt_translator=TRANSLATOR, pool=WAREHOUSE_POOL
)
def sicp_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models against the same warehouse the ingest wrote; the
    build's outcome goes to ``meta.dbt_builds`` as ``sicp build``'s does, pass or fail."""
    with warehouse.for_dbt():
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
    yield from invocation.stream()
    summary = record_build(
        Path(warehouse.path),
        invocation.get_artifact("run_results.json"),
        invoked_by=f"dagster run {context.run.run_id}",
    )
    if not invocation.is_successful() or not summary["success"]:
        raise Failure(
            description=f"dbt build failed: {summary['n_failed']} failed "
            f"({summary['failed_nodes'] or 'see the dbt log'}), "
            f"{summary['n_skipped']} skipped"
        )
