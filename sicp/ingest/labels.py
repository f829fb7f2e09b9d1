"""Value labels, user-missing codes and variable labels of labelled files (SPSS ``.sav``; the
contract accepts ``.dta`` for no source) checked before anything of the source is written.

1. Direct identifiers. Every value label (its code and its text) and every variable label of
   a contract column is scanned like the data (:mod:`sicp.ingest.identifiers`); labels are
   stored in ``raw.value_labels`` / ``raw.variable_labels``, so a hit fails the file, naming
   the column and the kind of identifier, never the text.
2. Value labels against the contract. Only columns for which the contract declares value
   labels or user-missing codes are compared, and only where the file labels them: a file
   with no labels (plain numbers) is accepted. Label texts are compared after
   :func:`normalise` (case, white space and underscores, a leading echo of the code such as
   ``1 = male``, and the short synonym list :data:`sicp.contract.LABEL_SYNONYMS`). A delivered
   label is a mismatch when
   - its code has a contract label (value label or user-missing code) and the texts differ:
     ``consent_linkage`` 0 = "yes" where the contract says 0 = "no";
   - its code has none but its text is the contract's label of another code of the column,
     so the meaning moved (``sex`` 3 = "female");
   - its code is one of the contract's user-missing codes (``SURVEY_MISSING_CODES``) and the
     text is not that code's meaning (-9 = "refused").
   Any other label on a code the contract does not know (99 = "other") is accepted: such a
   value is quarantined as outside the allowed set or range anyway.
3. User-missing codes declared in the file (SPSS missing values and ranges) are a mismatch
   when they cover a valid answer of the column (an allowed value, a labelled code, or a value
   inside its range): SPSS would hide that answer as missing. Codes outside the valid values
   are accepted (ingest applies the contract's own missing codes either way).

A mismatch fails the source with a message showing, per column, the expected and the
delivered labels; nothing of it is written and a previous load stays in place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pyreadstat

from sicp.contract import LABEL_SYNONYMS, SURVEY_MISSING_CODES, Column, Source
from sicp.ingest import identifiers
from sicp.ingest.files import IngestError, StagedFile

_SYNONYM = {text: group[0] for group in LABEL_SYNONYMS for text in group}
_CODE_ECHO = re.compile(r"^\s*(-?[0-9]+)(?:\.0+)?\s*(?:=|:|\.|\)|-)\s*")


def normalise(label: str, code: int | None = None) -> str:
    """The comparable form of a label text: lower case, single spaces (underscores count as
    spaces), no leading ``<code> =`` echo of its own code, no trailing full stop, synonyms
    mapped to the contract's word."""
    text = re.sub(r"[\s_]+", " ", str(label).casefold()).strip()
    echo = _CODE_ECHO.match(text)
    if echo and code is not None and int(echo.group(1)) == code:
        text = text[echo.end() :]
    text = text.strip(" .;,")
    return _SYNONYM.get(text, text)


def check_labels(input_dir: Path, source: Source, staged: Sequence[StagedFile]) -> None:
    """Fail (IngestError) on identifiers in labels, then on labels or user-missing codes that
    contradict the contract (module docstring)."""
    problems: list[tuple[str, str]] = []
    for f in staged:
        found = _identifier_problems(source, f)
        if found:
            problems.append(
                (
                    f.path,
                    "; ".join(found) + ". Labels are stored in the warehouse, "
                    "so direct identifiers must be removed from them",
                )
            )
    if not problems:
        for f in staged:
            mismatches = _label_mismatches(source, f)
            if f.path.lower().endswith(".sav"):
                mismatches += _missing_mismatches(source, input_dir / f.path)
            if mismatches:
                problems.append(
                    (
                        f.path,
                        "labels do not match the data contract (a code would "
                        "change meaning): "
                        + "; ".join(mismatches)
                        + ". Correct the labels or recode the file",
                    )
                )
    if not problems:
        return
    tail = f"; nothing of {source.name} was loaded (a previous load stays in place)"
    if len(problems) == 1:
        raise IngestError(problems[0][0], problems[0][1] + tail)
    raise IngestError(
        ", ".join(p for p, _ in problems),
        "\n".join(f"  - {p}: {text}" for p, text in problems) + "\n" + tail[2:],
    )


def _identifier_problems(source: Source, f: StagedFile) -> list[str]:
    out = []
    for column, labels in f.value_labels.items():
        if column not in source.column_names:
            continue
        kinds = sorted(
            {
                k
                for value, label in labels.items()
                for k in (
                    identifiers.find(value, source.person_level),
                    identifiers.find(label, source.person_level),
                )
                if k
            }
        )
        out += [f"a value label of {column} holds what looks like {k}" for k in kinds]
    for column, label in f.variable_labels.items():
        kind = (
            identifiers.find(label, source.person_level) if column in source.column_names else None
        )
        if kind:
            out.append(f"the variable label of {column} holds what looks like {kind}")
    return out


def _code(value: object) -> int | float | str:
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return int(number) if number.is_integer() else number


def _show(labels: dict[int | float | str, str]) -> str:
    def order(item: tuple[object, str]) -> tuple[int, float, str]:
        code = item[0]
        return (0, float(code), "") if isinstance(code, int | float) else (1, 0.0, str(code))

    return ", ".join(f'{code} = "{text}"' for code, text in sorted(labels.items(), key=order))


def _expected(column: Column) -> dict[int | float | str, str]:
    return {**(column.value_labels or {}), **(column.missing_codes or {})}


def _label_mismatches(source: Source, f: StagedFile) -> list[str]:
    out = []
    for column in source.columns:
        delivered_raw = f.value_labels.get(column.name)
        expected = _expected(column)
        if not delivered_raw or not expected:
            continue
        delivered = {_code(k): v for k, v in delivered_raw.items()}
        meaning = {normalise(text, code): code for code, text in expected.items()}
        wrong = []
        for code, text in delivered.items():
            said = normalise(text, code if isinstance(code, int) else None)
            if code in expected:
                if said != normalise(expected[code], code):
                    wrong.append(code)
            elif said in meaning or (
                code in SURVEY_MISSING_CODES and said != normalise(SURVEY_MISSING_CODES[code])
            ):
                wrong.append(code)
        if wrong:
            out.append(f"{column.name}: expected {_show(expected)}; delivered {_show(delivered)}")
    return out


def _valid_overlap(column: Column, low: float, high: float) -> list[float] | bool:
    """Valid answers of ``column`` inside [low, high] (a list), True when the column's range
    overlaps it, False when none."""
    missing = set(column.missing_codes or {})
    codes = (
        column.allowed
        if column.allowed is not None
        else (tuple(column.value_labels) if column.value_labels else None)
    )
    if codes is not None:
        return [
            c for c in codes if isinstance(c, int | float) and low <= c <= high and c not in missing
        ]
    if column.dtype not in ("int", "float") or (column.min is None and column.max is None):
        return False
    top = math.inf if column.max is None else column.max
    bottom = -math.inf if column.min is None else column.min
    return low <= top and high >= bottom


def _missing_mismatches(source: Source, path: Path) -> list[str]:
    try:
        _, meta = pyreadstat.read_sav(str(path), metadataonly=True, user_missing=True)
    except pyreadstat.ReadstatError:
        return []  # staging read the file already; it cannot be damaged here
    out = []
    for column in source.columns:
        for declared in meta.missing_ranges.get(column.name, []):
            low, high = float(declared["lo"]), float(declared["hi"])
            overlap = _valid_overlap(column, low, high)
            if not overlap:
                continue
            shown = f"{_code(low)}" if low == high else f"{_code(low)} to {_code(high)}"
            valid = (
                _show({c: (column.value_labels or {}).get(c, "valid") for c in overlap})
                if isinstance(overlap, list)
                else _range(column)
            )
            contract = _show(column.missing_codes) if column.missing_codes else "none"
            out.append(
                f"{column.name}: the file declares {shown} user-missing, which hides "
                f"valid answers ({valid}); expected user-missing codes: {contract}"
            )
    return out


def _range(column: Column) -> str:
    low = "" if column.min is None else f"{column.min:g}"
    high = "" if column.max is None else f"{column.max:g}"
    return f"range {low}–{high}"
