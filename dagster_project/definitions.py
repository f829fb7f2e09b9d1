"""The Dagster code location: ``dagster dev -m dagster_project.definitions``.

Paths come from :class:`sicp.settings.Paths` (``SICP_INPUT_DIR``, ``SICP_WAREHOUSE``), and
``SICP_PSEUDONYM_KEY`` must be set when input files carry NHS numbers; ``SICP_DBT_TARGET``
selects a dbt target other than the DuckDB warehouse (a Spark or Trino cluster). Runs use the in-process
executor: every step writes the one DuckDB file, so steps run one after another within a run,
and the ``sicp_warehouse`` pool (limit 1, see dagster.yaml) keeps separate runs apart.
"""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from dagster_project.assets.dbt import sicp_dbt_assets
from dagster_project.assets.ingest import GROUP, INGEST_ASSETS
from dagster_project.assets.protocols import build_protocol_assets
from dagster_project.dbt_project import get_dbt_project
from dagster_project.resources import Folder, Warehouse
from dagster_project.sensors import new_survey_wave
from sicp.settings import Paths
from sicp.warehouse import dbt_target

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups(GROUP),
    description="Validate, pseudonymise and load every input file into the raw schema.",
)
everything_job = dg.define_asset_job(
    "ingest_and_build",
    selection=dg.AssetSelection.all(),
    description="Ingest, build every dbt model (with its tests) and run every protocol.",
)


def build_definitions(paths: Paths, dbt_colours: bool = False) -> dg.Definitions:
    """The code location for ``paths``. dbt writes colour codes only with ``dbt_colours`` (its
    output reaches a terminal); in the UI's compute logs and in log files they are noise."""
    return dg.Definitions(
        assets=[*INGEST_ASSETS, sicp_dbt_assets, *build_protocol_assets(paths.protocols_dir)],
        jobs=[ingest_job, everything_job],
        sensors=[new_survey_wave],
        resources={
            "input_folder": Folder(path=str(paths.input_dir)),
            "warehouse": Warehouse(path=str(paths.warehouse)),
            "results_folder": Folder(path=str(paths.results_dir)),
            "dbt": DbtCliResource(
                project_dir=get_dbt_project(),
                target=dbt_target(),
                global_config_flags=[] if dbt_colours else ["--no-use-colors"],
            ),
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions(Paths.from_env())
