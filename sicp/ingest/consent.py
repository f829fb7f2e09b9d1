"""Consent as a ledger, not a snapshot.

Every exclusion a recruitment delivery carries (a withdrawal of all consent, a refusal of
record linkage) is appended to ``raw.consent_ledger`` the first time it is received, with the
file and fingerprint it came in. A later delivery cannot take it back, by omitting the person or
by clearing the date: only an explicit reinstatement (``sicp consent reinstate``), logged in the
same ledger with who authorised it and why, does. ``raw.consent_exclusions``, which every
staging model anti-joins on, is rebuilt from the ledger: the people whose latest event for a
scope is an exclusion.

The ledger's latest sequence number is the consent state a build was made from
(``meta.dbt_builds.consent_seq``, read by :func:`sicp.warehouse.inputs_state`); outputs made
from a warehouse built before the latest change are refused (:func:`sicp.warehouse.check_current`).
"""

from __future__ import annotations

import duckdb

from sicp.contract import RAW
from sicp.ingest.tables import qualified

EXCLUDE, REINSTATE = "exclude", "reinstate"
#: Who may be excluded and from what: ``all`` (withdrew every consent) or ``records`` (no
#: record linkage).
SCOPES = ("all", "records")


def record_exclusions(con: duckdb.DuckDBPyConnection, delivered: str) -> int:
    """Append the exclusions of ``delivered`` (a relation of person_id, scope, reason,
    source_file, file_sha256) that the ledger has not received before (same person, scope and
    reason); rebuild ``raw.consent_exclusions``. Returns the number of new ledger rows."""
    ledger = qualified(RAW.consent_ledger)
    before = _seq(con)
    con.execute(f"""
        INSERT INTO {ledger}
        SELECT {before} + row_number() OVER (ORDER BY d.person_id, d.scope, d.reason),
               d.person_id, d.scope, '{EXCLUDE}', d.reason, d.source_file, d.file_sha256, NULL
        FROM {delivered} AS d
        WHERE NOT EXISTS (
            SELECT 1 FROM {ledger} AS l
            WHERE l.person_id = d.person_id AND l.scope = d.scope AND l.reason = d.reason
              AND l.event = '{EXCLUDE}')
    """)
    rebuild_exclusions(con)
    return _seq(con) - before


def reinstate(
    con: duckdb.DuckDBPyConnection, person_id: str, scope: str, *, authorised_by: str, why: str
) -> int:
    """Log a reinstatement of ``person_id``'s ``scope`` consent; returns its sequence number.

    Refused unless the person is excluded in that scope now, and unless who and why are
    given, so the ledger says why a withdrawn person is back."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not authorised_by.strip() or not why.strip():
        raise ValueError("a reinstatement needs who authorised it and why")
    current = con.execute(
        f"SELECT count(*) FROM {qualified(RAW.consent_exclusions)} "
        f"WHERE person_id = ? AND scope = ?",
        [person_id, scope],
    ).fetchone()
    if not current or not current[0]:
        raise ValueError(f"{person_id} is not excluded in scope {scope!r}; nothing to reinstate")
    seq = _seq(con) + 1
    con.execute(
        f"INSERT INTO {qualified(RAW.consent_ledger)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            seq,
            person_id,
            scope,
            REINSTATE,
            why.strip(),
            "sicp consent reinstate",
            None,
            authorised_by.strip(),
        ],
    )
    rebuild_exclusions(con)
    return seq


def rebuild_exclusions(con: duckdb.DuckDBPyConnection) -> None:
    """``raw.consent_exclusions`` = each (person, scope) whose latest ledger event excludes."""
    table = qualified(RAW.consent_exclusions)
    con.execute(f"DELETE FROM {table}")
    con.execute(f"""
        INSERT INTO {table}
        SELECT person_id, scope, reason FROM (
            SELECT person_id, scope, event, reason,
                   row_number() OVER (PARTITION BY person_id, scope ORDER BY seq DESC) AS latest
            FROM {qualified(RAW.consent_ledger)}
        ) WHERE latest = 1 AND event = '{EXCLUDE}'
        ORDER BY person_id, scope
    """)


def _seq(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(
        f"SELECT coalesce(max(seq), 0) FROM {qualified(RAW.consent_ledger)}"
    ).fetchone()
    return int(row[0]) if row else 0
