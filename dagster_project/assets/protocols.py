"""One asset per protocol file: adding ``protocols/<id>.yml`` adds ``results/<id>``.

Each asset reads the mart its protocol names (a dbt asset), fits every analysis and replaces the
protocol's rows in the results store. The body is thin: the work is in ``analysis.runner``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from analysis.protocol import Protocol, load_protocols
from analysis.runner import MARTS_SCHEMA, input_fingerprint, read_panel, run_protocol, write_tables
from analysis.store import code_version, write_results
from dagster_project.resources import WAREHOUSE_POOL, Folder, Warehouse
from sicp.settings import PROJECT_ROOT

GROUP = "results"


def _protocol_asset(protocol: Protocol) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([GROUP, protocol.id]),
        deps=[dg.AssetKey([MARTS_SCHEMA, protocol.panel])],
        group_name=GROUP,
        pool=WAREHOUSE_POOL,
        description=f"{protocol.title}\n\n{protocol.raw['question'].strip()}",
        tags={"level": protocol.level, "method": protocol.raw["method"]["name"]},
        metadata={"protocol_file": str(protocol.path), "protocol_hash": protocol.hash},
    )
    def _asset(warehouse: Warehouse, results_folder: Folder) -> dg.MaterializeResult:
        path = Path(warehouse.path)
        run = run_protocol(protocol, read_panel(path, protocol.panel),
                           fingerprint=input_fingerprint(path),
                           version=code_version(PROJECT_ROOT))
        write_tables(run, results_folder.dir)
        write_results(run.rows, path, results_folder.dir)
        primary = run.rows[run.rows["analysis_id"] == "primary"]
        return dg.MaterializeResult(metadata={
            "rows": len(run.rows),
            "analyses": ", ".join(run.results),
            "primary": dg.MetadataValue.md(primary[
                ["term", "estimate", "std_error", "ci_low", "ci_high", "p_value"]
            ].to_markdown(index=False)),
            "protocol_hash": protocol.hash,
            "seconds": round(run.seconds, 2),
        })

    return _asset


def build_protocol_assets(protocols_dir: Path) -> list[dg.AssetsDefinition]:
    """An asset for every protocol in the folder (validated on load, with clear errors)."""
    return [_protocol_asset(p) for p in load_protocols(protocols_dir)]
