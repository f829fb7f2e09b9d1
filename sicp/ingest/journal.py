"""Make one ``sicp ingest`` run all or nothing for the warehouse's ``raw`` schema.

Each source loads in its own transaction (a failed source must not abort the others, and
DuckDB aborts a whole transaction on any failed statement), so without more a run stopped
half-way (a full disk, a killed process) would leave some sources holding the new delivery and
the rest the old one. The journal keeps what the run replaces until the run ends:

- at the start, a copy of every bookkeeping table (quarantine, ingest log, consent ledger,
  labels, manifest ...: small) and a table ``raw._ingest_journal`` naming what is kept;
- before a source's rows are replaced, its previous table is renamed aside (no copy: a
  catalogue change), in that source's own transaction.

:func:`commit` drops what was kept, in one transaction; :func:`rollback` puts it back, in one
transaction, so the warehouse is as it was before the run. A run that could not do either (the
process was killed) leaves the journal behind: the next ingest rolls it back before it starts,
and ``sicp build`` refuses the warehouse until then (:func:`interrupted`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from sicp.contract import RAW
from sicp.ingest.manifest import DELIVERY_MANIFEST, ensure_manifest
from sicp.ingest.sql import ident, literal
from sicp.ingest.tables import BOOKKEEPING, ensure_raw_schema, qualified
from sicp.warehouse import table_exists, transaction

JOURNAL = "_ingest_journal"
#: Prefix of a table kept aside while a run is in progress.
KEPT = "_kept__"
_KINDS = ("copied", "renamed", "created")
#: The bookkeeping tables a run rewrites, copied at its start.
COPIED = (*BOOKKEEPING, DELIVERY_MANIFEST)


def interrupted(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an ingest run was stopped without committing or rolling back."""
    return table_exists(con, RAW.schema, JOURNAL)


def interrupted_ingest(warehouse: Path) -> str | None:
    """Why ``warehouse`` cannot be built from (an ingest stopped half-way), or None."""
    if not Path(warehouse).exists():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not interrupted(con):
            return None
    return (
        f"an ingest into {warehouse} stopped before it finished, so its raw layer mixes "
        f"two deliveries; run sicp ingest again (it first puts the previous load back)"
    )


def begin(con: duckdb.DuckDBPyConnection) -> bool:
    """Start a journal; returns whether an interrupted run's journal was rolled back first."""
    recovered = interrupted(con)
    if recovered:
        rollback(con)
    ensure_raw_schema(con)
    ensure_manifest(con)
    with transaction(con):
        con.execute(f"CREATE TABLE {qualified(JOURNAL)} (table_name VARCHAR, kind VARCHAR)")
        for table in COPIED:
            if table_exists(con, RAW.schema, table):  # all of them, after ensure_*
                con.execute(
                    f"CREATE TABLE {qualified(KEPT + table)} AS SELECT * FROM {qualified(table)}"
                )
                _note(con, table, "copied")
    return recovered


def keep_source_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Before ``raw.<table>`` is replaced (inside the source's transaction): rename the
    previous table aside, or note that the run creates it. Nothing when no journal is open
    (a single source loaded on its own) or the table is already kept."""
    if not interrupted(con):
        return
    noted = con.execute(
        f"SELECT count(*) FROM {qualified(JOURNAL)} WHERE table_name = ?", [table]
    ).fetchall()[0][0]
    if noted:
        con.execute(f"DROP TABLE IF EXISTS {qualified(table)}")
    elif table_exists(con, RAW.schema, table):
        con.execute(f"ALTER TABLE {qualified(table)} RENAME TO {ident(KEPT + table)}")
        _note(con, table, "renamed")
    else:
        _note(con, table, "created")


def commit(con: duckdb.DuckDBPyConnection) -> None:
    """The run is complete: drop what was kept."""
    with transaction(con):
        for table, kind in _entries(con):
            if kind != "created":
                con.execute(f"DROP TABLE IF EXISTS {qualified(KEPT + table)}")
        con.execute(f"DROP TABLE {qualified(JOURNAL)}")


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Put back every table the run replaced or created, as it was before the run."""
    with transaction(con):
        for table, kind in _entries(con):
            con.execute(f"DROP TABLE IF EXISTS {qualified(table)}")
            if kind != "created":
                con.execute(f"ALTER TABLE {qualified(KEPT + table)} RENAME TO {ident(table)}")
        con.execute(f"DROP TABLE {qualified(JOURNAL)}")


def _entries(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    rows = con.execute(f"SELECT table_name, kind FROM {qualified(JOURNAL)}").fetchall()
    unknown = {kind for _, kind in rows} - set(_KINDS)
    if unknown:
        raise RuntimeError(f"raw.{JOURNAL} holds unknown entries {sorted(unknown)}")
    return rows


def _note(con: duckdb.DuckDBPyConnection, table: str, kind: str) -> None:
    con.execute(f"INSERT INTO {qualified(JOURNAL)} VALUES ({literal(table)}, {literal(kind)})")
