"""What the exports say about each mart and column: dbt descriptions and value labels.

A coded column reaches Stata (and R through haven) labelled when its meaning is known from

1. the data contract (:mod:`sicp.contract`): a column's ``value_labels`` (``sex`` 1 = male),
2. the labels delivered in the labelled inputs (``raw.value_labels``, written at ingest from
   the ``.sav`` files' own metadata): codes or columns the contract does not label,
3. dbt: a 0/1 column with an ``accepted_values: [0, 1]`` test, or whose description says what
   1 means ("1 when ...", "1 for ...", "1 from ...", "1 once ..."), gets 0 = no, 1 = yes.

Labels attach by column name, the way the marts keep the contract's names (``sex`` of
person_month_panel comes from the population extract, coded as recruitment's labelled
``sex``). A name labelled differently by two sources is ambiguous and left unlabelled: no label
is better than a wrong one. :func:`mart_value_labels` labels integer-valued columns only, and
with yes/no only those whose values are 0 and 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from sicp.contract import SOURCES

YES_NO: dict[int, str] = {0: "no", 1: "yes"}
#: A dbt description that states what 1 means, after an optional lead-in ("Individual
#: exposure: 1 once ...").
_SAYS_WHAT_ONE_MEANS = re.compile(r"(?:^|:\s)1 (?:when|for|from|once)\b")


@dataclass(frozen=True)
class MartDocs:
    """A mart's dbt documentation: its description, its columns' descriptions and the columns
    documented as 0/1."""

    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    binary: frozenset[str] = frozenset()


def dbt_docs(manifest: Path, marts: Iterable[str]) -> dict[str, MartDocs]:
    """The dbt documentation of each mart from the manifest ({} when dbt has not parsed)."""
    if not manifest.exists():
        return {}
    nodes = json.loads(manifest.read_text())["nodes"].values()
    wanted = set(marts)
    models = {
        n["unique_id"]: n
        for n in nodes
        if n.get("resource_type") == "model" and n["name"] in wanted
    }
    tested: dict[str, set[str]] = {uid: set() for uid in models}
    for n in nodes:
        meta = n.get("test_metadata") or {}
        kwargs = meta.get("kwargs") or {}
        if (
            n.get("resource_type") == "test"
            and meta.get("name") == "accepted_values"
            and n.get("attached_node") in tested
            and sorted(kwargs.get("values") or ()) == [0, 1]
        ):
            tested[n["attached_node"]].add(n.get("column_name") or kwargs.get("column_name"))
    out = {}
    for uid, model in models.items():
        columns = {c: meta.get("description", "") for c, meta in model["columns"].items()}
        described = {c for c, text in columns.items() if _SAYS_WHAT_ONE_MEANS.search(text)}
        out[model["name"]] = MartDocs(
            model.get("description", ""), columns, frozenset(tested[uid] | described)
        )
    return out


def _merge(by_source: Iterable[tuple[str, dict[int, str]]]) -> dict[str, dict[int, str]]:
    """Per column name, the sources' labels together; a name to one of whose codes two sources
    give different texts is dropped."""
    merged: dict[str, dict[int, str]] = {}
    ambiguous: set[str] = set()
    for name, labels in by_source:
        known = merged.setdefault(name, {})
        if any(known.get(code, text) != text for code, text in labels.items()):
            ambiguous.add(name)
        known.update(labels)
    return {name: labels for name, labels in merged.items() if name not in ambiguous}


def contract_value_labels() -> dict[str, dict[int, str]]:
    """The contract's value labels by column name."""
    return _merge(
        (c.name, dict(c.value_labels))
        for s in SOURCES.values()
        for c in s.columns
        if c.value_labels
    )


def delivered_value_labels(con: duckdb.DuckDBPyConnection) -> dict[str, dict[int, str]]:
    """The value labels the labelled inputs carried (``raw.value_labels``), by column name.

    Stata labels integers only, so other codes are skipped; so are the contract's user-missing
    codes, which ingest turned into missing values: no mart holds them.
    """
    missing = {
        (s.name, c.name): set(c.missing_codes or ()) for s in SOURCES.values() for c in s.columns
    }
    per_source: dict[tuple[str, str], dict[int, str]] = {}
    rows = con.execute(
        "SELECT source_name, column_name, value, label FROM raw.value_labels"
    ).fetchall()
    for source, column, value, label in rows:
        try:
            number = float(value)
        except ValueError:
            continue
        if number.is_integer() and int(number) not in missing.get((source, column), ()):
            per_source.setdefault((source, column), {})[int(number)] = label
    return _merge((column, labels) for (_, column), labels in per_source.items())


def named_value_labels(con: duckdb.DuckDBPyConnection) -> dict[str, dict[int, str]]:
    """Contract and delivered labels by column name; the contract's text wins for a code both
    label (ingest has checked they mean the same; the contract's words are stable)."""
    contract = contract_value_labels()
    delivered = delivered_value_labels(con)
    return {
        name: {**delivered.get(name, {}), **contract.get(name, {})}
        for name in contract.keys() | delivered.keys()
    }


def mart_value_labels(
    integer_ranges: dict[str, tuple[int, int] | None],
    named: dict[str, dict[int, str]],
    docs: MartDocs,
) -> dict[str, dict[int, str]]:
    """The value labels of one mart's integer columns (``integer_ranges``: column -> (min,
    max), None when every value is missing): named labels first, else yes/no for a documented
    0/1 column whose values are 0 and 1 only (so a count is never labelled yes/no)."""
    out = {}
    for column, values in integer_ranges.items():
        if column in named:
            out[column] = named[column]
        elif column in docs.binary and (values is None or (values[0] >= 0 and values[1] <= 1)):
            out[column] = YES_NO
    return out
