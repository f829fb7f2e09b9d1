"""SQL expressions generated from the data contract, so validation runs inside DuckDB.

Row-wise Python would take minutes on the record extracts; these expressions let DuckDB check
millions of rows in a second. Every rule comes from a :class:`sicp.contract.Column`; nothing
here restates a column list, range or allowed set.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sicp.contract import Column

_INTEGER_TYPES = frozenset(
    {
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
    }
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})

#: What a value of each contract dtype must look like, for the quarantine reason.
_TYPE_WORDS = {
    "int": "not a whole number",
    "float": "not a number",
    "date": "not a date in YYYY-MM-DD form",
    "bool": "not true/false (or 1/0)",
    "str": "not text",
}


def ident(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """A SQL literal for a contract value (str, int, float or date)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def present(x: str, file_type: str) -> str:
    """True when the file holds a value (empty text, NaN and NULL all count as absent)."""
    if file_type == "VARCHAR":
        return f"(NULLIF(trim({x}), '') IS NOT NULL)"
    if file_type in _FLOAT_TYPES:
        return f"({x} IS NOT NULL AND NOT isnan({x}))"
    return f"({x} IS NOT NULL)"


def typed(column: Column, x: str, file_type: str) -> str:
    """The value cast to the contract type, or NULL when it cannot be read as that type.

    Text is parsed strictly (DuckDB's own casts would round ``3.5`` to 4 and accept ``yes``
    as true); natively typed parquet and SPSS values take the cheap path.
    """
    target = column.dtype
    if file_type in _INTEGER_TYPES:
        return {
            "int": f"TRY_CAST({x} AS BIGINT)",
            "float": f"CAST({x} AS DOUBLE)",
            "bool": f"CASE WHEN {x} IN (0, 1) THEN {x} = 1 END",
            "str": f"CAST({x} AS VARCHAR)",
            "date": "CAST(NULL AS DATE)",
        }[target]
    if file_type in _FLOAT_TYPES:
        finite = f"{x} IS NOT NULL AND isfinite({x})"
        return {
            "int": f"CASE WHEN {finite} AND {x} = trunc({x}) THEN TRY_CAST({x} AS BIGINT) END",
            "float": f"CASE WHEN {finite} THEN CAST({x} AS DOUBLE) END",
            "bool": f"CASE WHEN {x} IN (0, 1) THEN {x} = 1 END",
            "str": "CAST(NULL AS VARCHAR)",
            "date": "CAST(NULL AS DATE)",
        }[target]
    if file_type == "DATE" and target == "date":
        return x
    if file_type.startswith("TIMESTAMP") and target == "date":
        return f"CASE WHEN CAST({x} AS TIME) = TIME '00:00:00' THEN CAST({x} AS DATE) END"
    if file_type == "BOOLEAN" and target in ("bool", "int"):
        return x if target == "bool" else f"CAST({x} AS BIGINT)"
    s = f"NULLIF(trim(CAST({x} AS VARCHAR)), '')"
    return {
        "int": f"CASE WHEN regexp_full_match({s}, '-?[0-9]+(\\.0+)?') "
        f"THEN TRY_CAST(regexp_replace({s}, '\\.0+$', '') AS BIGINT) END",
        "float": f"CASE WHEN isfinite(TRY_CAST({s} AS DOUBLE)) THEN TRY_CAST({s} AS DOUBLE) END",
        "date": f"CASE WHEN regexp_full_match({s}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') "
        f"THEN TRY_CAST({s} AS DATE) END",
        "bool": f"CASE lower({s}) WHEN 'true' THEN TRUE WHEN '1' THEN TRUE "
        f"WHEN 'false' THEN FALSE WHEN '0' THEN FALSE END",
        "str": s,
    }[target]


def rule_checks(column: Column, v: str) -> list[tuple[str, str]]:
    """(condition that breaks the rule, reason) for every value rule of ``column``."""
    checks: list[tuple[str, str]] = []
    if column.allowed is not None:
        values = ", ".join(literal(a) for a in column.allowed)
        shown = ", ".join(str(a) for a in column.allowed)
        checks.append((f"{v} NOT IN ({values})", f"value not in the allowed set ({shown})"))
    if column.min is not None:
        checks.append((f"{v} < {literal(column.min)}", f"value below the minimum {column.min:g}"))
    if column.max is not None:
        checks.append((f"{v} > {literal(column.max)}", f"value above the maximum {column.max:g}"))
    if column.pattern is not None:
        checks.append(
            (
                f"NOT regexp_full_match({v}, {literal(column.pattern)})",
                f"value does not match the pattern {column.pattern}",
            )
        )
    if column.window_start is not None:
        checks.append(
            (
                f"{v} < {literal(column.window_start)}",
                f"implausible date: before {column.window_start.isoformat()}",
            )
        )
    if column.window_end is not None:
        checks.append(
            (
                f"{v} > {literal(column.window_end)}",
                f"implausible date: after {column.window_end.isoformat()}",
            )
        )
    return checks


def type_reason(column: Column) -> str:
    return _TYPE_WORDS[column.dtype]


def as_text(x: str, file_type: str) -> str:
    """A file value as text for quarantine; SPSS stores integers as doubles, so 7.0 shows 7."""
    if file_type in _FLOAT_TYPES:
        return (
            f"CASE WHEN isfinite({x}) AND {x} = trunc({x}) AND abs({x}) < 1e15 "
            f"THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END"
        )
    return f"CAST({x} AS VARCHAR)"


def nhs_number_text(x: str, file_type: str) -> str:
    """An NHS number as 10-character text: spaces and hyphens removed, numeric types printed."""
    if file_type in _INTEGER_TYPES:
        text = f"CAST({x} AS VARCHAR)"
    elif file_type in _FLOAT_TYPES:
        text = f"CASE WHEN isfinite({x}) AND {x} = trunc({x}) THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) END"
    else:
        text = f"CAST({x} AS VARCHAR)"
    return f"NULLIF(regexp_replace({text}, '[\\s-]', '', 'g'), '')"


def nhs_number_valid(s: str) -> str:
    """Modulus 11: weights 10..2 on the first nine digits; check = 11 - (sum mod 11), 11 -> 0,
    and 10 means the number can never be valid."""
    weighted = " + ".join(
        f"TRY_CAST(substr({s}, {i}, 1) AS INTEGER) * {11 - i}" for i in range(1, 10)
    )
    return (
        f"(regexp_full_match({s}, '[0-9]{{10}}') AND "
        f"(11 - ({weighted}) % 11) % 11 = TRY_CAST(substr({s}, 10, 1) AS INTEGER))"
    )


def hmac_sha256(s: str) -> str:
    """HMAC-SHA256 of text ``s`` (hex), keyed through the ``$hmac_ipad``/``$hmac_opad`` parameters.

    The key never appears in SQL text (DuckDB echoes failing queries in its error messages);
    :func:`hmac_parameters` derives the two pads from it.
    """
    return f"sha256($hmac_opad || unhex(sha256($hmac_ipad || encode({s}))))"


def hmac_parameters(key: bytes) -> dict[str, bytes]:
    """The inner and outer padded keys of RFC 2104 HMAC for SHA-256 (block size 64)."""
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    return {
        "hmac_ipad": bytes(b ^ 0x36 for b in block),
        "hmac_opad": bytes(b ^ 0x5C for b in block),
    }
