"""One asset per protocol file: adding ``protocols/<id>.yml`` adds ``results/<id>``.

Each asset reads the mart its protocol names (a dbt asset), fits every analysis and replaces the
protocol's rows and status in the results store, by the same two calls as ``sicp analyse``
(``attempt_protocol``, ``store_outcome``). A protocol that fails is recorded as failed and its
asset fails; one that is not applicable to the data materialises with that status.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from analysis.protocol import Protocol, load_protocols
from analysis.runner import (
    MARTS_SCHEMA,
    attempt_protocol,
    built_from,
    input_fingerprint,
    read_panel,
    store_outcome,
)
from analysis.store import STATUS_FAILED, code_version
from dagster_project.resources import WAREHOUSE_POOL, Folder, Warehouse
from sicp.settings import PROJECT_ROOT

GROUP = "results"


def _protocol_asset(protocol: Protocol) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([GROUP, protocol.id]),
        deps=[dg.AssetKey([MARTS_SCHEMA, protocol.panel])],
        group_name=GROUP,
        pool=WAREHOUSE_POOL,
        description=f"{protocol.title}\n\n{protocol.question}",
        tags={"level": protocol.level, "method": protocol.method.name},
        metadata={"protocol_file": str(protocol.path), "protocol_hash": protocol.hash},
    )
    def _asset(warehouse: Warehouse, results_folder: Folder) -> dg.MaterializeResult:
        path = Path(warehouse.path)
        fingerprint, version = input_fingerprint(path), code_version(PROJECT_ROOT)
        outcome = attempt_protocol(
            protocol,
            lambda panel: read_panel(path, panel),
            fingerprint=fingerprint,
            version=version,
        )
        store_outcome(
            outcome,
            path,
            results_folder.dir,
            fingerprint=fingerprint,
            version=version,
            build_seq=built_from(path),
        )
        if outcome.status == STATUS_FAILED:
            raise dg.Failure(
                description=f"{protocol.id} failed: {outcome.reason}",
                metadata={"status": outcome.status, "reason": outcome.reason},
            )
        primary = outcome.rows[outcome.rows["analysis_id"] == "primary"]
        return dg.MaterializeResult(
            metadata={
                "status": outcome.status,
                "reason": outcome.reason,
                "rows": len(outcome.rows),
                "analyses": ", ".join(outcome.run.results) if outcome.run else "",
                "primary": dg.MetadataValue.md(
                    primary[
                        ["term", "estimate", "std_error", "ci_low", "ci_high", "p_value"]
                    ].to_markdown(index=False)
                ),
                "protocol_hash": protocol.hash,
                "seconds": round(outcome.seconds, 2),
            }
        )

    return _asset


def build_protocol_assets(protocols_dir: Path) -> list[dg.AssetsDefinition]:
    """An asset for every protocol in the folder (validated on load, with clear errors)."""
    return [_protocol_asset(p) for p in load_protocols(protocols_dir)]
