"""Ingest: validate, pseudonymise and load the input folder into the warehouse's raw schema.

Pure functions over a DuckDB connection; the Dagster assets in ``dagster_project`` and the
``sicp ingest`` command are thin wrappers around them.
"""

from sicp.ingest.discovery import Delivery, scan
from sicp.ingest.files import IngestError, contract_files, input_fingerprint
from sicp.ingest.load import (
    PSEUDONYM_KEY_ENV,
    Reconciliation,
    ingest_all,
    ingest_order,
    ingest_source,
    reconcile,
    referenced_sources,
    write_input_fingerprint,
)
from sicp.ingest.losses import (
    MAX_QUARANTINE_SHARE_ENV,
    REFERENCE_SOURCES,
    QuarantineLimitError,
    QuarantineLoss,
    check_quarantine,
    max_quarantine_share,
    quarantine_losses,
)
from sicp.ingest.manifest import DELIVERY_MANIFEST, IngestRunError, read_manifest
from sicp.ingest.report import FileReport, IngestReport, ManifestRow, SourceReport

__all__ = [
    "DELIVERY_MANIFEST",
    "MAX_QUARANTINE_SHARE_ENV",
    "PSEUDONYM_KEY_ENV",
    "REFERENCE_SOURCES",
    "Delivery",
    "FileReport",
    "IngestError",
    "IngestReport",
    "IngestRunError",
    "ManifestRow",
    "QuarantineLimitError",
    "QuarantineLoss",
    "Reconciliation",
    "SourceReport",
    "check_quarantine",
    "contract_files",
    "ingest_all",
    "ingest_order",
    "ingest_source",
    "input_fingerprint",
    "max_quarantine_share",
    "quarantine_losses",
    "read_manifest",
    "reconcile",
    "referenced_sources",
    "scan",
    "write_input_fingerprint",
]
