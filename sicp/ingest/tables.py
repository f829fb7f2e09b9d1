"""DDL of the ``raw`` schema: one table per contract source plus the ingest bookkeeping tables.

No table holds a wall-clock timestamp: the warehouse must be byte-for-byte a function of the
input files, so every later result can be reproduced from the input fingerprint.
"""

from __future__ import annotations

import duckdb

from sicp.contract import DUCKDB_TYPES, LINEAGE_COLUMNS, RAW, Source, vocabulary_rows
from sicp.ingest import identifiers
from sicp.ingest.sql import ident

#: Key values of quarantined rows (the keys other sources reference, such as a practice code),
#: with the row's reasons: a dependant row whose key is missing only because its referenced row
#: was quarantined names that cause instead of "unknown". Internal to ingest (not a dbt source).
QUARANTINED_KEYS = "quarantined_keys"

#: Per source whose person_ids ingest derived from NHS numbers, a check value of the key used
#: (HMAC(key, "sicp-key-check"), never the key): a later run with another key is refused
#: unless re-keying is asked for (sicp.ingest.keys). Internal to ingest (not a dbt source).
PSEUDONYM_KEY_CHECK = "pseudonym_key_check"

BOOKKEEPING: dict[str, dict[str, str]] = {
    RAW.quarantine: {
        "source_name": "VARCHAR",
        "source_file": "VARCHAR",
        "source_row": "BIGINT",
        "column_name": "VARCHAR",
        "offending_value": "VARCHAR",
        "reason": "VARCHAR",
    },
    RAW.ingest_log: {
        "source_name": "VARCHAR",
        "source_file": "VARCHAR",
        "file_sha256": "VARCHAR",
        "rows_read": "BIGINT",
        "rows_loaded": "BIGINT",
        "rows_quarantined": "BIGINT",
    },
    RAW.value_labels: {
        "source_name": "VARCHAR",
        "column_name": "VARCHAR",
        "value": "VARCHAR",
        "label": "VARCHAR",
    },
    RAW.variable_labels: {"source_name": "VARCHAR", "column_name": "VARCHAR", "label": "VARCHAR"},
    RAW.missing_reasons: {
        "source_file": "VARCHAR",
        "source_row": "BIGINT",
        "person_id": "VARCHAR",
        "wave": "BIGINT",
        "column_name": "VARCHAR",
        "code": "BIGINT",
        "reason": "VARCHAR",
    },
    RAW.consent_exclusions: {"person_id": "VARCHAR", "scope": "VARCHAR", "reason": "VARCHAR"},
    RAW.consent_ledger: {
        "seq": "BIGINT",
        "person_id": "VARCHAR",
        "scope": "VARCHAR",
        "event": "VARCHAR",
        "reason": "VARCHAR",
        "received_in": "VARCHAR",
        "file_sha256": "VARCHAR",
        "authorised_by": "VARCHAR",
    },
    RAW.input_fingerprint: {"fingerprint": "VARCHAR", "n_files": "BIGINT"},
    RAW.vocabulary: {
        "source_name": "VARCHAR",
        "column_name": "VARCHAR",
        "value": "VARCHAR",
        "required": "BOOLEAN",
    },
    QUARANTINED_KEYS: {
        "source_name": "VARCHAR",
        "key_column": "VARCHAR",
        "key_value": "VARCHAR",
        "source_file": "VARCHAR",
        "source_row": "BIGINT",
        "reason": "VARCHAR",
    },
    PSEUDONYM_KEY_CHECK: {"source_name": "VARCHAR", "key_check": "VARCHAR"},
}


def qualified(table: str) -> str:
    return f"{ident(RAW.schema)}.{ident(table)}"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``raw`` schema and its bookkeeping tables if they do not exist yet, write
    the contract's controlled vocabularies (``raw.contract_vocabulary``) afresh, and give the
    connection the identifier-scan function ingest's SQL calls (sicp.ingest.identifiers)."""
    identifiers.register(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW.schema)}")
    for table, columns in BOOKKEEPING.items():
        body = ", ".join(f"{ident(c)} {t}" for c, t in columns.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {qualified(table)} ({body})")
    vocabulary = vocabulary_rows()
    stored = con.execute(
        f"SELECT source_name, column_name, value, required FROM "
        f"{qualified(RAW.vocabulary)} ORDER BY ALL"
    ).fetchall()
    if stored != sorted(vocabulary):
        con.execute(f"DELETE FROM {qualified(RAW.vocabulary)}")
        con.executemany(f"INSERT INTO {qualified(RAW.vocabulary)} VALUES (?, ?, ?, ?)", vocabulary)


def source_table_ddl(source: Source) -> str:
    """``CREATE OR REPLACE`` for ``raw.<source>``: contract columns in order, then lineage."""
    columns = [
        f"{ident(c.name)} {DUCKDB_TYPES[c.dtype]}{'' if c.nullable else ' NOT NULL'}"
        for c in source.columns
    ]
    columns += [f"{ident(c)} {t} NOT NULL" for c, t in LINEAGE_COLUMNS.items()]
    return f"CREATE OR REPLACE TABLE {qualified(source.name)} ({', '.join(columns)})"
