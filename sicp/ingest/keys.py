"""The pseudonymisation key: refused when weak, and checked against the key the warehouse was
built with.

Weak keys. ``SICP_PSEUDONYM_KEY`` is refused when it is shorter than 16 characters, has
leading or trailing white space (usually a copy-and-paste slip, and a different key from the
one meant), or has fewer than 8 distinct characters (16 spaces, ``aaaa...``, ``abab...``).

Stored check value. Each source whose ``person_id`` ingest derived from NHS numbers records a
check value of the key in ``raw.pseudonym_key_check``: HMAC-SHA256(key, ``sicp-key-check``), a
one-way function of the key (the key itself is never stored). Before pseudonymising, ingest
compares the current key's check value with every stored one; if any differs, the source is
refused before anything is written: with another key every person would get a new pseudonym,
and the new rows would not link to those already loaded (nor to results, exports and the
consent ledger made from them).

Re-keying on purpose (``SICP_REKEY=1``). The check is then waived, and each source ingested in
that run stores the new key's check value as it is rebuilt from its current files. Re-keying
is complete only when every pseudonymised source has been re-ingested under the new key, which
``sicp ingest`` (every source, every run) does; :func:`mixed_keys` lists the sources still on
another key, and until there are none a run without ``SICP_REKEY`` is refused whichever of the
two keys it uses. Re-keying cannot translate old pseudonyms: anything keyed by them outside the
raw sources (results, exports, consent-ledger entries from deliveries no longer in the input
folder) refers to people under the old key. Unset ``SICP_REKEY`` after the re-keying run.

A source that now delivers ``person_id`` instead of NHS numbers drops its check value.
"""

from __future__ import annotations

import hashlib
import os

import duckdb

from sicp.contract import RAW
from sicp.ingest.files import IngestError
from sicp.ingest.tables import PSEUDONYM_KEY_CHECK, qualified

PSEUDONYM_KEY_ENV = "SICP_PSEUDONYM_KEY"
REKEY_ENV = "SICP_REKEY"
MIN_KEY_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 8
#: The message whose HMAC under the key is the stored check value.
CHECK_MESSAGE = b"sicp-key-check"


def weak_key_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable pseudonymisation key, or None. Never quotes it."""
    if not value.strip():
        return f"{PSEUDONYM_KEY_ENV} is empty or only white space"
    if value != value.strip():
        return (
            f"{PSEUDONYM_KEY_ENV} begins or ends with white space (a copy-and-paste slip "
            f"would give a different key); remove it"
        )
    if len(value) < MIN_KEY_LENGTH:
        return (
            f"{PSEUDONYM_KEY_ENV} is shorter than {MIN_KEY_LENGTH} characters; use a "
            f"longer secret key"
        )
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return (
            f"{PSEUDONYM_KEY_ENV} has fewer than {MIN_DISTINCT_CHARACTERS} distinct "
            f"characters, too little to be secret; use a long random key (for example "
            f'the output of `python -c "import secrets; print(secrets.token_hex(32))"`)'
        )
    return None


def rekey_requested() -> bool:
    return os.environ.get(REKEY_ENV, "").strip().lower() in ("1", "true", "yes")


def key_check(params: dict[str, bytes]) -> str:
    """HMAC-SHA256(key, CHECK_MESSAGE) as hex, from the padded keys of
    :func:`sicp.ingest.sql.hmac_parameters` (HMAC is H(K^opad || H(K^ipad || m)))."""
    inner = hashlib.sha256(params["hmac_ipad"] + CHECK_MESSAGE).digest()
    return hashlib.sha256(params["hmac_opad"] + inner).hexdigest()


def stored_checks(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Source name -> stored key check value."""
    return dict(
        con.execute(
            f"SELECT source_name, key_check FROM {qualified(PSEUDONYM_KEY_CHECK)} ORDER BY 1"
        ).fetchall()
    )


def mixed_keys(con: duckdb.DuckDBPyConnection) -> list[list[str]]:
    """Groups of sources pseudonymised under the same key, when there is more than one group
    (an unfinished re-keying); [] when the warehouse has one key (or none)."""
    groups: dict[str, list[str]] = {}
    for name, check in stored_checks(con).items():
        groups.setdefault(check, []).append(name)
    return sorted(groups.values()) if len(groups) > 1 else []


def check_key(con: duckdb.DuckDBPyConnection, where: str, params: dict[str, bytes]) -> None:
    """Refuse to pseudonymise with a key other than the one the warehouse's pseudonymised
    sources were built with, unless re-keying was asked for (module docstring)."""
    current = key_check(params)
    other = sorted(name for name, check in stored_checks(con).items() if check != current)
    if not other:
        return
    if rekey_requested():
        ledger = con.execute(f"SELECT count(*) FROM {qualified(RAW.consent_ledger)}").fetchone()
        if ledger and ledger[0]:
            raise IngestError(
                where,
                f"re-keying is refused: the consent ledger holds {ledger[0]} entr"
                f"{'y' if ledger[0] == 1 else 'ies'} recorded under the old pseudonyms, which "
                f"no longer match anyone under a new key, so a withdrawal could be lost. "
                f"Re-key into a new, empty warehouse (SICP_WAREHOUSE) from the full delivery "
                f"history instead",
            )
        return
    raise IngestError(
        where,
        f"{PSEUDONYM_KEY_ENV} differs from the key this warehouse was built with (the "
        f"pseudonyms of {', '.join(other)} came from another key); every person would get a "
        f"new pseudonym and no longer link to the data already loaded. Use the original key. "
        f"To re-key on purpose, set {REKEY_ENV}=1 and run sicp ingest on the whole input "
        f"folder, which rebuilds every pseudonymised source under the new key and then "
        f"records it; results, exports and consent-ledger entries made under the old key do "
        f"not carry over. Nothing of this source was loaded (a previous load stays in place)",
    )


def record_key(con: duckdb.DuckDBPyConnection, source_name: str, params: dict[str, bytes]) -> None:
    """Inside the load's transaction: store the key check value of ``source_name`` (or drop
    it, when none of its files carries NHS numbers any more)."""
    table = qualified(PSEUDONYM_KEY_CHECK)
    con.execute(f"DELETE FROM {table} WHERE source_name = ?", [source_name])
    if params:
        con.execute(f"INSERT INTO {table} VALUES (?, ?)", [source_name, key_check(params)])
