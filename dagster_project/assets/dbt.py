"""The dbt models as Dagster assets: staging, intermediate, marts and their tests.

dbt sources declare ``meta.dagster.asset_key: ["raw", <table>]``, so dagster-dbt links each
model to the ingest assets it reads without a custom translator.
"""

from pathlib import Path

from dagster import AssetExecutionContext, Failure
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.dbt_project import get_dbt_project
from dagster_project.resources import WAREHOUSE_POOL, Warehouse
from sicp.warehouse import record_build

_project = get_dbt_project()


@dbt_assets(manifest=_project.manifest_path, project=_project, pool=WAREHOUSE_POOL)
def sicp_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models against the same warehouse the ingest wrote; the
    build's outcome goes to ``meta.dbt_builds`` as ``sicp build``'s does, pass or fail."""
    with warehouse.for_dbt():
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
    yield from invocation.stream()
    summary = record_build(Path(warehouse.path), invocation.get_artifact("run_results.json"),
                           invoked_by=f"dagster run {context.run.run_id}")
    if not invocation.is_successful() or not summary["success"]:
        raise Failure(description=f"dbt build failed: {summary['n_failed']} failed "
                                  f"({summary['failed_nodes'] or 'see the dbt log'}), "
                                  f"{summary['n_skipped']} skipped")
