"""One asset per contract source, loading ``raw.<source>``, plus the ingest catalogue.

Asset bodies are thin: ``sicp.ingest`` does the work and these turn its report into Dagster
metadata, asset-check results and failures with plain-words messages.
"""

import dagster as dg
from dagster import AssetExecutionContext

from dagster_project.resources import WAREHOUSE_POOL, Folder, Warehouse
from sicp.contract import DUCKDB_TYPES, LINEAGE_COLUMNS, RAW, SOURCES, Source
from sicp.ingest import (
    IngestError,
    SourceReport,
    contract_files,
    ingest_source,
    input_fingerprint,
    max_quarantine_share,
    reconcile,
    referenced_sources,
    write_input_fingerprint,
)
from sicp.ingest.discovery import scan
from sicp.ingest.load import CONSENT_SOURCE
from sicp.ingest.losses import source_loss
from sicp.ingest.manifest import DELIVERY_MANIFEST, MANIFEST_COLUMNS, finish
from sicp.ingest.tables import BOOKKEEPING, qualified

GROUP = "raw"
RECONCILE_CHECK = "rows_reconcile"
LOSS_CHECK = "quarantine_within_limits"
FOLDER_CHECK = "matches_input_folder"


def raw_key(table: str) -> dg.AssetKey:
    """Asset key of a ``raw`` table; dbt sources name the same keys in ``meta.dagster``."""
    return dg.AssetKey([RAW.schema, table])


def _schema(columns: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in columns.items()])


def _table_metadata(table: str, columns: dict[str, str]) -> dict[str, object]:
    return {
        "dagster/table_name": f"{RAW.schema}.{table}",
        "dagster/column_schema": _schema(columns),
    }


def _markdown_table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _report_metadata(report: SourceReport) -> dict[str, object]:
    return {
        "dagster/row_count": report.rows_loaded,
        "rows_read": report.rows_read,
        "rows_loaded": report.rows_loaded,
        "rows_quarantined": report.rows_quarantined,
        "missing_codes_recoded": report.missing_codes_recoded,
        "files": _markdown_table(
            ("file", "sha256", "read", "loaded", "quarantined"),
            [
                (f.source_file, f.file_sha256[:12], f.rows_read, f.rows_loaded, f.rows_quarantined)
                for f in report.files
            ],
        ),
        "quarantine": _markdown_table(
            ("column", "reason", "rows"), list(report.quarantine_summary[:25])
        ),
        "warnings": dg.MetadataValue.json(list(report.warnings)),
        "seconds": round(report.seconds, 3),
    }


def _source_columns(source: Source) -> dict[str, str]:
    return {**{c.name: DUCKDB_TYPES[c.dtype] for c in source.columns}, **LINEAGE_COLUMNS}


def source_asset(source: Source) -> dg.AssetsDefinition:
    """The asset loading ``source`` (the recruitment asset also yields consent exclusions)."""
    key = raw_key(source.name)
    deps = [raw_key(r) for r in sorted(referenced_sources(source))]
    specs = [
        dg.AssetSpec(
            key,
            description=source.description,
            deps=deps,
            group_name=GROUP,
            kinds={"duckdb"},
            metadata=_table_metadata(source.name, _source_columns(source)),
        )
    ]
    if source.name == CONSENT_SOURCE:
        specs.append(
            dg.AssetSpec(
                raw_key(RAW.consent_exclusions),
                deps=deps,
                group_name=GROUP,
                kinds={"duckdb"},
                description="People to exclude downstream: scope 'all' (withdrew all consent) and "
                "'records' (no record-linkage consent). Every staging model anti-joins "
                "on it.",
                metadata=_table_metadata(
                    RAW.consent_exclusions, BOOKKEEPING[RAW.consent_exclusions]
                ),
            )
        )
    check = dg.AssetCheckSpec(
        RECONCILE_CHECK,
        asset=key,
        description="Per file: rows read = rows loaded + rows quarantined, and both counts "
        "match what the raw table and raw.quarantine hold.",
    )
    loss_check = dg.AssetCheckSpec(
        LOSS_CHECK,
        asset=key,
        description="The source lost no more rows to quarantine than allowed: none for a "
        "reference table, else at most SICP_MAX_QUARANTINE_SHARE (the rule "
        "`sicp ingest` exits non-zero on).",
    )

    @dg.multi_asset(
        name=f"raw_{source.name}", specs=specs, check_specs=[check, loss_check], pool=WAREHOUSE_POOL
    )
    def _load(context: AssetExecutionContext, input_folder: Folder, warehouse: Warehouse):
        with warehouse.connect() as con:
            try:
                report = ingest_source(con, input_folder.dir, source)
            except IngestError as exc:
                raise dg.Failure(
                    description=str(exc), metadata={"where": exc.where}, allow_retries=False
                ) from exc
            recount = reconcile(con, source)
            consent = (
                con.execute(
                    f"SELECT scope, count(*) FROM {qualified(RAW.consent_exclusions)}"
                    f" GROUP BY scope ORDER BY scope"
                ).fetchall()
                if source.name == CONSENT_SOURCE
                else []
            )
        for warning in report.warnings:
            context.log.warning(warning)
        yield dg.MaterializeResult(asset_key=key, metadata=_report_metadata(report))
        if source.name == CONSENT_SOURCE:
            yield dg.MaterializeResult(
                asset_key=raw_key(RAW.consent_exclusions),
                metadata={f"people_excluded_{scope}": n for scope, n in consent}
                | {"dagster/row_count": sum(n for _, n in consent)},
            )
        loss = source_loss(report, max_quarantine_share())
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=LOSS_CHECK,
            passed=loss is None,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows_read": report.rows_read,
                "rows_quarantined": report.rows_quarantined,
                "finding": str(loss) if loss else "within the limits",
            },
        )
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=RECONCILE_CHECK,
            passed=all(r.ok for r in recount),
            metadata={
                "files": _markdown_table(
                    (
                        "file",
                        "read",
                        "loaded",
                        "quarantined",
                        "rows in table",
                        "rows in quarantine",
                    ),
                    [
                        (
                            r.source_file,
                            r.rows_read,
                            r.rows_loaded,
                            r.rows_quarantined,
                            r.rows_in_table,
                            r.rows_in_quarantine,
                        )
                        for r in recount
                    ],
                )
            },
        )

    return _load


SOURCE_ASSETS = [source_asset(s) for s in SOURCES.values()]

_CATALOGUE = {
    RAW.quarantine: "Rejected rows, one per offending value, with file, row, column and reason.",
    RAW.ingest_log: "One row per ingested file: sha256 and rows read, loaded and quarantined.",
    RAW.value_labels: "Value labels of labelled columns, from the SPSS files' own metadata.",
    RAW.variable_labels: "Variable labels, from the SPSS files' own metadata.",
    RAW.missing_reasons: "Why each survey user-missing code (-9/-8/-7) became NULL.",
    RAW.input_fingerprint: "SHA-256 over the sorted (file, sha256) list of everything ingested; "
    "every result cites it.",
    RAW.vocabulary: "The contract's controlled vocabularies (allowed and required values).",
    DELIVERY_MANIFEST: "Every delivered file (and every file held from an earlier ingest): "
    "source, size, SHA-256, rows read/loaded/quarantined, status and reason.",
}
_COLUMNS = {**BOOKKEEPING, DELIVERY_MANIFEST: MANIFEST_COLUMNS}


@dg.multi_asset(
    name="raw_catalogue",
    specs=[
        dg.AssetSpec(
            raw_key(table),
            description=text,
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[raw_key(s) for s in SOURCES],
            metadata=_table_metadata(table, _COLUMNS[table]),
        )
        for table, text in _CATALOGUE.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            FOLDER_CHECK,
            asset=raw_key(RAW.input_fingerprint),
            description="The warehouse holds exactly the files now in the input folder (warns when "
            "a file changed or arrived after the last ingest, or a file of no source "
            "is there).",
        )
    ],
    pool=WAREHOUSE_POOL,
)
def raw_catalogue(input_folder: Folder, warehouse: Warehouse):
    """The shared ingest tables, complete once every source has loaded: each source asset
    replaces its own rows in them; this records the input fingerprint over all of them and
    the delivery manifest's rows for files of no source (extras, refused files)."""
    delivery = scan(input_folder.dir)
    with warehouse.connect() as con:
        fingerprint, n_files = write_input_fingerprint(con)
        finish(con, delivery, loaded=None, outcomes={})
        counts = {
            t: con.execute(f"SELECT count(*) FROM {qualified(t)}").fetchall()[0][0]
            for t in _CATALOGUE
        }
        by_source = con.execute(
            f"SELECT source_name, count(DISTINCT (source_file, source_row)) "
            f"FROM {qualified(RAW.quarantine)} GROUP BY ALL ORDER BY 1"
        ).fetchall()
    refused = [f"{f.rel}: {f.reason}" for f in delivery.refused]
    try:
        on_disk = input_fingerprint(contract_files(input_folder.dir, SOURCES.values()))
    except IngestError as exc:  # a refused file of a source
        on_disk = f"unreadable: {exc}"
    for table in _CATALOGUE:
        metadata: dict[str, object] = {"dagster/row_count": counts[table]}
        if table == RAW.input_fingerprint:
            metadata |= {"fingerprint": fingerprint, "n_files": n_files}
        if table == RAW.quarantine:
            metadata["rows_quarantined_by_source"] = _markdown_table(("source", "rows"), by_source)
        yield dg.MaterializeResult(asset_key=raw_key(table), metadata=metadata)
    yield dg.AssetCheckResult(
        asset_key=raw_key(RAW.input_fingerprint),
        check_name=FOLDER_CHECK,
        passed=on_disk == fingerprint and not refused,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "warehouse": fingerprint,
            "input_folder": on_disk,
            "refused_files": dg.MetadataValue.json(refused),
        },
    )


INGEST_ASSETS = [*SOURCE_ASSETS, raw_catalogue]
