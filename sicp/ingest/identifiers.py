"""The direct-identifier scan: no NHS number, email address, postcode or telephone number in a
delivered value reaches any table.

Which identifiers are scanned for, and in which sources, is declared in the data contract
(:data:`sicp.contract.DIRECT_IDENTIFIERS`); this module says how each is recognised. Every value
of every column is scanned as the file delivered it (text as text, numbers as their digits):
a hit quarantines the row with a reason naming the column and the kind of identifier, and the
offending value is masked, so the value is stored nowhere (not in the raw table, quarantine,
labels or missing-code reasons). Value and variable labels of ``.sav`` files are scanned too
(:func:`find`); a hit there fails the file (:mod:`sicp.ingest.labels`).

Recognition is in two steps, so the scan costs little on millions of rows:

1. A cheap SQL prefilter (one RE2 regular expression, or a range test for numbers) picks the
   values that could hold an identifier: a 10-digit token, an ``@``, a postcode-shaped or a
   phone-shaped token.
2. Only those values go to :func:`find` (a Python function registered in DuckDB), which applies
   the exact rules: the Modulus 11 check digit of an NHS number, the digit count of a phone
   number. The prefilter matches everything :func:`find` can find (the same patterns, without
   the checks), so step 1 never hides a hit.

Rules (chosen to keep false positives off codes and identifiers the contract itself uses):

- Tokens are delimited by word boundaries (ASCII letters and digits are word characters;
  anything else, ``_`` included, separates words), so ``H0000000001`` (a spell id) or
  ``P87001-000001`` (a person id) is not a 10-digit token, while ``x-9434765919``,
  ``nhs_9434765919`` and ``see 9434765919`` are.
- NHS number: 10 digits with a valid Modulus 11 check digit, written unbroken
  (``9434765919``) or in 3-3-4 groups separated by a space or a hyphen (``943 476 5919``,
  ``943-476-5919``); in a numeric column, a whole number of 10 digits. Scanned in every source.
  A column of 10-digit numeric identifiers (say spell ids of 10 digits) would have about one
  value in eleven pass the check by chance: such identifiers must be delivered with a prefix.
- Email address: ``local@domain.tld``. Person-level sources only.
- UK postcode: a full postcode (``M5 4WT``, ``SW1A 1AA``; letters in either case); the inward
  part uses only the letters postcodes use. Written without its space (``M54WT``) it is
  recognised only when its area letters are one of the UK's postcode areas
  (:data:`POSTCODE_AREAS`), which keeps codes such as ``QX12AB`` off. Person-level sources
  only (a practice's own address in ``practices.csv`` is not personal data).
- UK telephone number: 11 digits starting ``01``, ``02``, ``03`` or ``07``, or ``+44`` and 10
  digits, with or without spaces or hyphens (``0161 234 5678``, ``07700 900123``,
  ``+44 7700 900123``). Person-level sources only.
"""

from __future__ import annotations

import re

import duckdb

from sicp.contract import DIRECT_IDENTIFIERS, DirectIdentifier
from sicp.ingest.sql import literal

#: Shown in quarantine instead of a value that holds a direct identifier.
MASK = "*" * 10

#: The DuckDB function :func:`register` creates: ``sicp_identifier(text, person_level)``
#: returns the label of the identifier found (e.g. ``an NHS number``) or NULL.
SQL_FUNCTION = "sicp_identifier"

#: Candidate patterns, valid both in Python ``re`` (with re.ASCII) and in DuckDB's RE2.
CANDIDATES: dict[str, str] = {
    "nhs_number": r"\b(?:[0-9]{10}|[0-9]{3}[ -][0-9]{3}[ -][0-9]{4})\b",
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    "uk_postcode": r"(?i:\b[A-Z]{1,2}[0-9][A-Z0-9]? *[0-9][ABD-HJLNP-UW-Z]{2}\b)",
    "uk_phone": r"(?:\+44[ -]?(?:\(0\)[ -]?)?|\b0)[1237](?:[ -]?[0-9]){9}\b",
}

#: The UK's postcode areas (the letters before the first digit), Crown Dependencies included.
_AREAS = """
    AB AL B BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT DY
    E EC EH EN EX FK FY G GL GU GY HA HD HG HP HR HS HU HX IG IM IP IV JE KA KT KW KY L LA LD
    LE LL LN LS LU M ME MK ML N NE NG NN NP NR NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG
    SK SL SM SN SO SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB W WA WC WD WF WN WR WS WV YO ZE
"""
POSTCODE_AREAS = frozenset(_AREAS.split())


def _postcode(token: str) -> bool:
    """A postcode with its space, or without it when its area is a real one."""
    return " " in token or re.match(r"[A-Za-z]+", token).group(0).upper() in POSTCODE_AREAS


_BY_KIND: dict[str, DirectIdentifier] = {d.kind: d for d in DIRECT_IDENTIFIERS}
_COMPILED = {kind: re.compile(pattern, re.ASCII) for kind, pattern in CANDIDATES.items()}
#: Smallest and largest whole number of 10 digits (an NHS number in a numeric column).
_TEN_DIGITS = (1_000_000_000, 9_999_999_999)


def kinds(person_level: bool) -> tuple[DirectIdentifier, ...]:
    """The identifiers scanned for in a source (person-level sources get every kind)."""
    return tuple(d for d in DIRECT_IDENTIFIERS if person_level or not d.person_level_only)


def nhs_number_valid(digits: str) -> bool:
    """Modulus 11: weights 10..2 on the first nine digits; check = 11 - (sum mod 11), 11 -> 0,
    and 10 means the number can never be valid."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = (11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=False)) % 11) % 11
    return check != 10 and check == int(digits[9])


_EXACT = {
    "nhs_number": lambda token: nhs_number_valid(re.sub(r"[ -]", "", token)),
    "email": lambda token: True,
    "uk_postcode": _postcode,
    "uk_phone": lambda token: True,
}
assert set(_BY_KIND) == set(CANDIDATES) == set(_EXACT), "every declared identifier needs a rule"


def find(text: object, person_level: bool = True) -> str | None:
    """The label of the first direct identifier in ``text`` (e.g. ``an NHS number``), or None.

    ``text`` may be a number (an NHS number delivered in a numeric column)."""
    if text is None:
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text != text or not float(text).is_integer():  # NaN or a fraction
            return None
        text = str(int(text))
    value = str(text).replace("_", " ")
    for ident in kinds(person_level):
        for match in _COMPILED[ident.kind].finditer(value):
            if _EXACT[ident.kind](match.group(0)):
                return ident.label
    return None


def prefilter_pattern(person_level: bool) -> str:
    """One RE2 pattern matching every value :func:`find` could find something in."""
    return "|".join(f"(?:{CANDIDATES[d.kind]})" for d in kinds(person_level))


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Create :data:`SQL_FUNCTION` on ``con`` (once per connection)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [SQL_FUNCTION]
    ).fetchall()[0][0]
    if not exists:
        con.create_function(
            SQL_FUNCTION,
            find,
            [duckdb.sqltype("VARCHAR"), duckdb.sqltype("BOOLEAN")],
            duckdb.sqltype("VARCHAR"),
            null_handling="special",
            side_effects=False,
        )


def sql_found(
    x: str, file_type: str, person_level: bool, allowed: tuple[object, ...] | None = None
) -> str:
    """SQL: the label of the direct identifier in the file value ``x`` (of DuckDB type
    ``file_type``), or NULL. Only text and whole numbers of 10 digits can hold one. Text
    equal to one of ``allowed`` (the contract's own values of the column) is not scanned."""
    level = "TRUE" if person_level else "FALSE"
    if file_type == "VARCHAR":
        pattern = prefilter_pattern(person_level).replace("'", "''")
        safe = ""
        if allowed:
            safe = f"WHEN trim({x}) IN ({', '.join(literal(str(a)) for a in allowed)}) THEN NULL "
        return (
            f"CASE {safe}WHEN regexp_matches(replace({x}, '_', ' '), '{pattern}') "
            f"THEN {SQL_FUNCTION}({x}, {level}) END"
        )
    low, high = _TEN_DIGITS
    if file_type in ("DOUBLE", "FLOAT"):
        whole = f"{x} BETWEEN {low} AND {high} AND {x} = trunc({x})"
        return (
            f"CASE WHEN {whole} THEN "
            f"{SQL_FUNCTION}(CAST(CAST({x} AS BIGINT) AS VARCHAR), {level}) END"
        )
    if file_type in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    ):
        return (
            f"CASE WHEN {x} BETWEEN {low} AND {high} THEN "
            f"{SQL_FUNCTION}(CAST({x} AS VARCHAR), {level}) END"
        )
    return "CAST(NULL AS VARCHAR)"


def sql_reason(column: str, found: str) -> str:
    """SQL: the quarantine reason for a value in which ``found`` (SQL) names an identifier."""
    tail = (
        " (a direct identifier): the row is quarantined and the value is not stored; "
        "remove direct identifiers from the extract"
    )
    return f"({literal(f'column {column} holds what looks like ')} || {found} || {literal(tail)})"
