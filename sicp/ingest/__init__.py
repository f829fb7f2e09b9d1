"""Ingest: validate, pseudonymise and load the input folder into the warehouse's raw schema.

Pure functions over a DuckDB connection; the Dagster assets in ``dagster_project`` and the
``sicp ingest`` command are thin wrappers around them.
"""

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
from sicp.ingest.report import FileReport, IngestReport, SourceReport

__all__ = [
    "PSEUDONYM_KEY_ENV",
    "FileReport",
    "IngestError",
    "IngestReport",
    "Reconciliation",
    "SourceReport",
    "contract_files",
    "ingest_all",
    "ingest_order",
    "ingest_source",
    "input_fingerprint",
    "reconcile",
    "referenced_sources",
    "write_input_fingerprint",
]
