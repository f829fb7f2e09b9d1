"""The dbt models as Dagster assets: staging, intermediate, marts and their tests.

dbt sources declare ``meta.dagster.asset_key: ["raw", <table>]``, so dagster-dbt links each
model to the ingest assets it reads without a custom translator.
"""

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.dbt_project import get_dbt_project
from dagster_project.resources import WAREHOUSE_POOL, Warehouse

_project = get_dbt_project()


@dbt_assets(manifest=_project.manifest_path, project=_project, pool=WAREHOUSE_POOL)
def sicp_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models against the same warehouse the ingest wrote."""
    with warehouse.for_dbt():
        invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
