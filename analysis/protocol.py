"""Pre-specified analysis protocols: YAML files in ``protocols/``, validated and hashed.

A protocol is data. It names the question, population, outcome, estimand, the panel it reads,
the method with its options, covariates and sensitivity analyses, and optionally a
``cost_consequence`` block: the primary method refitted on a priced-utilisation outcome and
restated as GBP per person per year. Its hash (SHA-256 of the canonical JSON of the parsed file)
goes on every result row, so a reported number can be traced to the exact protocol version that
produced it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analysis.calendar import resolve_milestones, uses_milestones
from analysis.columns import column_options
from analysis.methods import METHODS, check_options
from sicp.dbt_schema import analysis_panels

LEVELS = ("population", "cluster", "individual", "external")
REQUIRED = ("id", "title", "question", "population", "outcome", "estimand", "data", "method")
OPTIONAL = (
    "level",
    "component",
    "primary",
    "covariates",
    "sensitivity",
    "truth",
    "notes",
    "outcome_label",
    "reporting",
    "cost_consequence",
    "multiplicity_family",
)
#: The analysis id of a protocol's cost-consequence rows in the results store.
COST_CONSEQUENCE_ID = "cost_consequence"
COST_REQUIRED = ("outcome", "periods_per_year", "price_year")
COST_OPTIONAL = ("terms", "options", "data", "covariates", "estimand")
#: Keys of the cost block's own ``data``: the panel is always the protocol's.
COST_DATA_KEYS = ("derive", "aggregate", "filters")


class ProtocolError(ValueError):
    """A protocol file that cannot be used, with the file and the field in the message."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    """One fit: the primary analysis or a sensitivity analysis of a protocol."""

    analysis_id: str
    method: MethodSpec
    filters: Mapping[str, Any]
    covariates: tuple[str, ...]


@dataclass(frozen=True)
class CostConsequence:
    """The primary method refitted on a cost outcome, rescaled to GBP per person per year.

    ``data`` is the ``data`` block the cost fit reads (the protocol's panel with the block's
    own derive/aggregate/filters, or the primary's when the block states none); the filters are
    also in ``analysis.filters``, as for every analysis."""

    analysis: Analysis
    outcome: str
    data: DataSpec
    periods_per_year: float
    price_year: int
    terms: tuple[str, ...]
    #: What the block states itself: its estimand and the options it changes.
    estimand: str = ""
    changed_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """A ``data`` block: the panel, then ``derive``, ``aggregate`` and ``filters`` steps."""

    panel: str
    derive: Mapping[str, str] = field(default_factory=dict)
    aggregate: Mapping[str, Any] | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, block: Mapping[str, Any]) -> DataSpec:
        return cls(
            str(block["panel"]),
            dict(block.get("derive", {}) or {}),
            block.get("aggregate") or None,
            dict(block.get("filters", {}) or {}),
        )


@dataclass(frozen=True)
class Reporting:
    """How a protocol's headline is shown: the term, a transform (``exp``) and the unit."""

    term: str = ""
    transform: str | None = None
    unit: str = ""


@dataclass(frozen=True)
class Protocol:
    """A pre-specified analysis, every field a reader needs named and typed. Built only by
    :func:`load_protocol` (and :meth:`with_content` for resolved milestones)."""

    id: str
    path: Path
    #: Canonical hash of the file's content: the identity of what was pre-specified.
    hash: str
    title: str
    question: str
    population: str
    outcome: str
    outcome_label: str
    estimand: str
    component: str
    level: str
    primary: bool
    notes: str
    data: DataSpec
    method: MethodSpec
    covariates: tuple[str, ...]
    reporting: Reporting
    #: How validation finds the true value: ``{analysis_id: {effect:, term:, transform:}}``.
    truth: Mapping[str, Any]
    #: The family of primary hypotheses whose p-values are adjusted together (Holm), if any.
    multiplicity_family: str
    _content: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, content: Mapping[str, Any], path: Path, hash_: str) -> Protocol:
        reporting = content.get("reporting", {}) or {}
        method = content["method"]
        return cls(
            id=str(content["id"]),
            path=path,
            hash=hash_,
            title=str(content["title"]),
            question=str(content["question"]).strip(),
            population=str(content["population"]),
            outcome=str(content["outcome"]),
            outcome_label=str(content.get("outcome_label", content["outcome"])),
            estimand=str(content["estimand"]),
            component=str(content.get("component", "")),
            level=str(content.get("level", "cluster")),
            primary=bool(content.get("primary")),
            notes=str(content.get("notes", "") or ""),
            data=DataSpec.of(content["data"]),
            method=MethodSpec(str(method["name"]), dict(method.get("options", {}) or {})),
            covariates=tuple(content.get("covariates", []) or []),
            reporting=Reporting(
                str(reporting.get("term", "") or ""),
                reporting.get("transform"),
                str(reporting.get("unit", "") or ""),
            ),
            truth=content.get("truth", {}) or {},
            multiplicity_family=str(content.get("multiplicity_family", "") or ""),
            _content=content,
        )

    @property
    def panel(self) -> str:
        return self.data.panel

    def analyses(self) -> list[Analysis]:
        """The primary analysis followed by each sensitivity analysis, in file order."""
        return _analyses(self._content)

    def cost_consequence(self) -> CostConsequence | None:
        """The cost-consequence analysis the protocol declares, if any."""
        block = self._content.get("cost_consequence")
        return None if block is None else _cost_spec(self._content, block)

    def uses_milestones(self) -> bool:
        return uses_milestones(self._content)

    def with_milestones(self, months: Mapping[str, Any]) -> Protocol:
        """The protocol with each milestone replaced by its month (same hash: the same
        pre-specified protocol, resolved against one delivery)."""
        return Protocol.of(resolve_milestones(self._content, months), self.path, self.hash)


def _analyses(content: Mapping[str, Any]) -> list[Analysis]:
    """A sensitivity analysis inherits the primary method, filters, covariates and those of the
    primary options its method accepts (column names, say), and overrides what it states."""
    method = content["method"]
    options = dict(method.get("options", {}) or {})
    covariates = tuple(content.get("covariates", []) or [])
    filters = dict(content["data"].get("filters", {}) or {})
    out = [Analysis("primary", MethodSpec(method["name"], options), filters, covariates)]
    for sens in content.get("sensitivity", []) or []:
        own = sens.get("method", {}) or {}
        name = own.get("name", method["name"])
        own_options = dict(own.get("options", {}) or {})
        accepted = inspect.signature(METHODS[name]).parameters if name in METHODS else {}
        merged = {**{k: v for k, v in options.items() if k in accepted}, **own_options}
        out.append(
            Analysis(
                str(sens["id"]),
                MethodSpec(name, merged),
                {**filters, **(sens.get("filters", {}) or {})},
                tuple(sens.get("covariates", covariates) or ()),
            )
        )
    return out


def _cost_spec(content: Mapping[str, Any], block: Mapping[str, Any]) -> CostConsequence:
    """The primary's method with the block's option overrides (a null removes an option), the
    block's covariates or the primary's, and the block's data steps or the primary's."""
    primary = _analyses(content)[0]
    options = {**primary.method.options, **(block.get("options", {}) or {})}
    options = {k: v for k, v in options.items() if v is not None}
    own = block.get("data")
    data = {"panel": content["data"]["panel"], **own} if own is not None else dict(content["data"])
    terms = block.get("terms") or [(content.get("reporting", {}) or {}).get("term")]
    covariates = block.get("covariates", primary.covariates) or ()
    analysis = Analysis(
        COST_CONSEQUENCE_ID,
        MethodSpec(primary.method.name, options),
        dict(data.get("filters", {}) or {}),
        tuple(covariates),
    )
    return CostConsequence(
        analysis,
        str(block["outcome"]),
        DataSpec.of(data),
        float(block["periods_per_year"]),
        int(block["price_year"]),
        tuple(str(t) for t in terms),
        str(block.get("estimand", "")).strip(),
        dict(block.get("options", {}) or {}),
    )


def _validate_cost_block(content: Mapping[str, Any], path: Path) -> None:
    """Schema of ``cost_consequence``; its merged method options are checked with the rest."""
    block = content["cost_consequence"]
    where = "cost_consequence"
    if not isinstance(block, dict):
        raise _fail(
            path,
            f"{where} must be a mapping of {', '.join(COST_REQUIRED)} and "
            f"optionally {', '.join(COST_OPTIONAL)}",
        )
    _check_fields(block, COST_REQUIRED, COST_OPTIONAL, path, f"{where}: ")
    if content["method"].get("name") == "cost_effectiveness":
        raise _fail(
            path,
            f"{where} does not apply to cost_effectiveness, whose "
            "incremental_cost row is already the cost result",
        )
    if not isinstance(block["outcome"], str) or not block["outcome"]:
        raise _fail(path, f"{where}.outcome must be a column name")
    ppy = block["periods_per_year"]
    if isinstance(ppy, bool) or not isinstance(ppy, int | float) or ppy <= 0:
        raise _fail(
            path,
            f"{where}.periods_per_year must be a positive number (12 for a "
            "monthly cost, 2 for a 6-month one, 1 for a 12-month one)",
        )
    year = block["price_year"]
    if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2030:
        raise _fail(path, f"{where}.price_year must be a year (e.g. 2018 for 2017/18 prices)")
    terms = block.get("terms")
    if terms is not None and (
        not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms)
    ):
        raise _fail(path, f"{where}.terms must be a non-empty list of term names")
    if terms is None and not (content.get("reporting", {}) or {}).get("term"):
        raise _fail(path, f"{where}.terms is needed when reporting.term is absent")
    if not isinstance(block.get("options", {}) or {}, dict):
        raise _fail(path, f"{where}.options must be a mapping")
    data = block.get("data")
    if data is not None and (not isinstance(data, dict) or set(data) - set(COST_DATA_KEYS)):
        raise _fail(
            path,
            f"{where}.data may hold only {', '.join(COST_DATA_KEYS)} (the panel is the protocol's)",
        )
    cov = block.get("covariates", [])
    if not isinstance(cov, list) or not all(isinstance(c, str) for c in cov):
        raise _fail(path, f"{where}.covariates must be a list of column names")
    if not isinstance(block.get("estimand", ""), str):
        raise _fail(path, f"{where}.estimand must be text")


def canonical_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form, so formatting and comments do not change the hash."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fail(path: Path, message: str) -> ProtocolError:
    return ProtocolError(f"{path}: {message}")


def _check_fields(
    block: Mapping[str, Any],
    required: Sequence[str],
    optional: Sequence[str],
    path: Path,
    where: str = "",
) -> None:
    """Every required field present and nothing outside required + optional (typos fail)."""
    missing = [k for k in required if k not in block]
    if missing:
        raise _fail(path, f"{where}missing required field(s): {', '.join(missing)}")
    unknown = sorted(set(block) - set(required) - set(optional))
    if unknown:
        raise _fail(
            path,
            f"{where}unknown field(s): {', '.join(unknown)}; allowed: "
            f"{', '.join([*required, *optional])}",
        )


def validate(content: Any, path: Path) -> None:
    """Check a parsed protocol against the schema; raise ProtocolError naming the field."""
    methods = sorted(METHODS)
    if not isinstance(content, dict):
        raise _fail(path, "a protocol must be a YAML mapping of fields")
    _check_fields(content, REQUIRED, OPTIONAL, path)
    if not str(content["id"]).replace("_", "").isalnum():
        raise _fail(path, f"id {content['id']!r} must be letters, digits and underscores")
    if path.stem != content["id"]:
        raise _fail(path, f"id {content['id']!r} must equal the file name {path.stem!r}")
    data = content["data"]
    panels = analysis_panels()
    if not isinstance(data, dict) or data.get("panel") not in panels:
        raise _fail(
            path,
            f"data.panel must be one of the dbt project's analysis panels "
            f"(marts tagged analysis_panel): {', '.join(panels)}",
        )
    if "level" in content and content["level"] not in LEVELS:
        raise _fail(path, f"level {content['level']!r} must be one of {', '.join(LEVELS)}")
    entries = [("method", content["method"])] + [
        (f"sensitivity[{i}].method", s.get("method"))
        for i, s in enumerate(content.get("sensitivity", []) or [])
        if isinstance(s, dict) and s.get("method") is not None
    ]
    for where, m in entries:
        if not isinstance(m, dict) or "name" not in m:
            raise _fail(path, f"{where} must be a mapping with a 'name'")
        if m["name"] not in methods:
            raise _fail(
                path,
                f"{where}.name {m['name']!r} is not a known method; known: {', '.join(methods)}",
            )
        if not isinstance(m.get("options", {}) or {}, dict):
            raise _fail(path, f"{where}.options must be a mapping")
    for i, s in enumerate(content.get("sensitivity", []) or []):
        if not isinstance(s, dict) or "id" not in s:
            raise _fail(path, f"sensitivity[{i}] must be a mapping with an 'id'")
        if s["id"] in ("primary", COST_CONSEQUENCE_ID):
            raise _fail(path, f"sensitivity[{i}].id {s['id']!r} is reserved")
    reporting = content.get("reporting", {}) or {}
    if not isinstance(reporting, dict) or set(reporting) - {"term", "transform", "unit"}:
        raise _fail(
            path,
            "reporting must be a mapping of term, transform and unit (quote a "
            "unit that holds a comma)",
        )
    if reporting.get("transform") not in (None, "exp"):
        raise _fail(path, "reporting.transform must be 'exp' or absent")
    family = content.get("multiplicity_family")
    if family is not None and not (
        isinstance(family, str)
        and family.replace("_", "").isalnum()
        and content.get("primary")
        and reporting.get("term")
    ):
        raise _fail(
            path,
            "multiplicity_family must be a name (letters, digits, underscores) "
            "on a primary protocol with a reporting.term: its primary analysis's "
            "p-value on that term is adjusted with the family's others",
        )
    cov = content.get("covariates", []) or []
    if not isinstance(cov, list) or not all(isinstance(c, str) for c in cov):
        raise _fail(path, "covariates must be a list of column names")
    analyses = _analyses(content)
    if content.get("cost_consequence") is not None:
        _validate_cost_block(content, path)
        analyses.append(_cost_spec(content, content["cost_consequence"]).analysis)
    for analysis in analyses:
        problems = check_options(analysis.method.name, analysis.method.options)
        if problems:
            raise _fail(path, f"analysis {analysis.analysis_id!r}: " + "; ".join(problems))
    _check_columns(content, set(panels[data["panel"]].columns), path)


def _check_columns(content: Mapping[str, Any], panel_columns: set[str], path: Path) -> None:
    """Every column the protocol names exists where it is used: the panel's documented
    columns (the dbt manifest), then those ``derive`` and ``aggregate`` make; the outcome,
    covariates, filters and column options (:mod:`analysis.columns`) of every analysis."""
    panel = content["data"]["panel"]
    made = _columns_made(DataSpec.of(content["data"]), panel_columns, panel, path, "data")
    fits = [(a, str(content["outcome"]), made) for a in _analyses(content)]
    block = content.get("cost_consequence")
    if block is not None:
        spec = _cost_spec(content, block)
        fits.append(
            (
                spec.analysis,
                spec.outcome,
                _columns_made(spec.data, panel_columns, panel, path, "cost_consequence.data"),
            )
        )
    for analysis, outcome, columns in fits:
        named = {
            "outcome": [outcome],
            "covariates": list(analysis.covariates),
            "filters": list(analysis.filters),
        }
        for option in column_options(METHODS[analysis.method.name]):
            value = analysis.method.options.get(option)
            if value is not None:
                named[f"option {option}"] = value if isinstance(value, list) else [value]
        for where, names in named.items():
            missing = [n for n in names if n not in columns]
            if missing:
                raise _fail(
                    path,
                    f"analysis {analysis.analysis_id!r}: {where} names "
                    f"{', '.join(map(repr, missing))}, not a column of {panel} "
                    f"(or made by the protocol's data block); columns: "
                    f"{', '.join(sorted(columns))}",
                )


def _columns_made(
    data: DataSpec, columns: set[str], panel: str, path: Path, where: str
) -> set[str]:
    """The columns after a data block's ``derive`` and ``aggregate`` steps (the same order as
    analysis.runner.prepare_panel), each step checked for the columns it reads."""
    available = set(columns)

    def derive(steps: Mapping[str, str] | None, at: str) -> None:
        for name, expression in (steps or {}).items():
            missing = sorted(_names_read(expression, path, f"{at}.{name}") - available)
            if missing:
                raise _fail(
                    path,
                    f"{at}.{name} reads {', '.join(map(repr, missing))}, not a "
                    f"column of {panel} at that step",
                )
            available.add(name)

    derive(data.derive, f"{where}.derive")
    aggregate = data.aggregate
    if aggregate:
        for key in ("by", "sum"):
            missing = [c for c in aggregate.get(key, []) if c not in available]
            if missing:
                raise _fail(
                    path,
                    f"{where}.aggregate.{key} names "
                    f"{', '.join(map(repr, missing))}, not a column of {panel}",
                )
        available = set(aggregate["by"]) | set(aggregate["sum"])
        derive(aggregate.get("derive"), f"{where}.aggregate.derive")
    return available


def panel_columns_of(data: DataSpec, column: str) -> set[str]:
    """The panel columns ``column`` is made from by a data block's steps (itself when the
    panel holds it): the link between a protocol's outcome and the measures it reports."""
    steps = [dict(data.derive), dict((data.aggregate or {}).get("derive", {}) or {})]
    wanted, found = {column}, set()
    while wanted:
        name = wanted.pop()
        expression = next((s[name] for s in reversed(steps) if name in s), None)
        if expression is None:
            found.add(name)
            continue
        for step in steps:  # a name is read from the step before the one making it
            step.pop(name, None)
        wanted |= _names_read(expression, Path(), name)
    return found


def _names_read(expression: str, path: Path, where: str) -> set[str]:
    """Column names a pandas ``eval`` expression reads (names that are not called)."""
    try:
        tree = ast.parse(str(expression), mode="eval")
    except SyntaxError as exc:
        raise _fail(path, f"{where}: not a valid expression ({exc.msg})") from None
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    return (
        {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        - called
        - {"True", "False", "None"}
    )


def load_protocol(path: Path) -> Protocol:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML: {exc}") from exc
    validate(content, path)
    return Protocol.of(content, path, canonical_hash(content))


def load_protocols(folder: Path) -> list[Protocol]:
    """Every ``*.yml`` in the folder, sorted by id; duplicate ids are an error."""
    protocols = [load_protocol(p) for p in sorted(folder.glob("*.yml"))]
    seen: dict[str, Path] = {}
    for p in protocols:
        if p.id in seen:
            raise _fail(p.path, f"duplicate protocol id {p.id!r} (also in {seen[p.id]})")
        seen[p.id] = p.path
    return protocols
