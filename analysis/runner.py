"""Run protocols: read the panel a protocol names, fit each of its analyses, store the rows.

A protocol's ``cost_consequence`` block is one more fit: the primary method on the block's cost
outcome, restated as GBP per person per year by :func:`analysis.economics.cost_consequence`
and stored under the analysis id ``cost_consequence`` with the same lineage columns.

Each protocol runs in isolation (:func:`attempt_protocol`): an error in one is recorded as its
status (``failed`` with the reason, or ``not_applicable`` when its calendar months lie outside
the data's) and the others still run. :func:`store_outcome` writes one protocol's tables,
estimate rows and status together, so tables, estimates and statuses never disagree.
:func:`rerun_reason` says whether a stored result is still what a run would give (``sicp
analyse`` keeps those unless ``--force``).

Plain Python with no Dagster imports; the Dagster asset factory and ``sicp analyse`` both call
:func:`attempt_protocol` and :func:`store_outcome`. Panels are read from the warehouse
read-only.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.calendar import (
    CalendarError,
    check_month_literals,
    month_rule,
)
from analysis.economics import cost_consequence
from analysis.methods import fit
from analysis.multiplicity import adjusted_p_values
from analysis.protocol import CostConsequence, DataSpec, Protocol, load_protocols
from analysis.results import EstimationResult
from analysis.store import (
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STORE_COLUMNS,
    append_run_log,
    code_version,
    read_protocol_runs,
    read_results,
    to_store_rows,
    write_multiplicity,
    write_protocol_runs,
    write_results,
)
from sicp.dbt_schema import MARTS_LAYER as MARTS_SCHEMA
from sicp.settings import PROJECT_ROOT

#: The mart of the delivery's programme milestones, which ``{milestone: name}`` resolves to.
MILESTONES_MART = "programme_milestones"


@dataclass
class ProtocolRun:
    protocol: Protocol
    results: dict[str, EstimationResult]
    rows: pd.DataFrame
    seconds: float


def apply_filters(df: pd.DataFrame, filters: Mapping[str, Any]) -> pd.DataFrame:
    """Keep rows matching every filter: a scalar (equal), a list (in) or {min, max} (range)."""
    keep = pd.Series(True, index=df.index)
    for column, rule in filters.items():
        if column not in df.columns:
            raise KeyError(f"filter on unknown column {column!r}; columns: {list(df.columns)}")
        values = df[column]
        if isinstance(rule, Mapping):
            if "min" in rule:
                keep &= values >= month_rule(rule["min"])
            if "max" in rule:
                keep &= values <= month_rule(rule["max"])
        elif isinstance(rule, list):
            keep &= values.isin([month_rule(r) for r in rule])
        else:
            keep &= values == month_rule(rule)
    return df.loc[keep].reset_index(drop=True)


def prepare_panel(panel: pd.DataFrame, data_spec: DataSpec) -> pd.DataFrame:
    """Apply a protocol's ``data`` block: ``derive`` new columns with pandas expressions, then
    ``aggregate`` (``by`` columns, ``sum`` columns), so series such as "Salford against the rest
    of Greater Manchester" are stated in the protocol rather than coded."""
    frame = panel.copy()
    for name, expression in data_spec.derive.items():
        check_month_literals(expression, frame, what=f"derive {name}:")
        frame[name] = frame.eval(expression)
    aggregate = data_spec.aggregate
    if aggregate:
        frame = frame.groupby(list(aggregate["by"]), as_index=False, sort=True)[
            list(aggregate["sum"])
        ].sum()
        for name, expression in (aggregate.get("derive", {}) or {}).items():
            frame[name] = frame.eval(expression)
    return frame


def read_panel(warehouse: Path, panel: str) -> pd.DataFrame:
    """The mart in a canonical row order: a rebuilt table may store its rows in another order,
    and floating-point sums in the estimators would then differ in the last bits."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f'SELECT * FROM {MARTS_SCHEMA}."{panel}" ORDER BY ALL').df()


def input_fingerprint(warehouse: Path) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT fingerprint FROM raw.input_fingerprint").fetchone()
    if row is None:
        raise RuntimeError(f"{warehouse}: raw.input_fingerprint is empty; run the ingest first")
    return str(row[0])


def check_price_year(data: pd.DataFrame, price_year: int) -> None:
    """A panel that carries its costs' ``price_year`` must agree with the protocol's stated one,
    so a change of dbt's var('cost_price_year') cannot silently relabel the results."""
    if "price_year" not in data.columns:
        return
    found = sorted({int(y) for y in data["price_year"].dropna().unique()})
    if found and found != [int(price_year)]:
        raise ValueError(
            f"the panel's costs are in price year(s) {found}, the protocol states {price_year}"
        )


def fit_cost_consequence(spec: CostConsequence, panel: pd.DataFrame) -> EstimationResult:
    """The cost block's fit on the panel, rescaled to GBP per person per year."""
    data = apply_filters(prepare_panel(panel, spec.data), spec.analysis.filters)
    check_price_year(data, spec.price_year)
    result = fit(
        spec.analysis.method, data, outcome=spec.outcome, covariates=list(spec.analysis.covariates)
    )
    return cost_consequence(
        result, periods_per_year=spec.periods_per_year, price_year=spec.price_year, terms=spec.terms
    )


def run_protocol(
    protocol: Protocol,
    panel: pd.DataFrame,
    *,
    fingerprint: str,
    version: str,
    analyses: Collection[str] | None = None,
) -> ProtocolRun:
    """Fit the primary, every sensitivity analysis and the cost consequence of one protocol
    (or, with ``analyses``, only the analyses of those ids: the Monte Carlo study fits the
    ones with a truth)."""
    started = time.perf_counter()
    results: dict[str, EstimationResult] = {}
    frames = []

    def store(analysis_id: str, method_name: str, outcome: str, result: EstimationResult) -> None:
        results[analysis_id] = result
        frames.append(
            to_store_rows(
                result.tidy,
                protocol_id=protocol.id,
                protocol_hash=protocol.hash,
                analysis_id=analysis_id,
                method_name=method_name,
                outcome=outcome,
                panel=protocol.panel,
                input_fingerprint=fingerprint,
                code_version=version,
            )
        )

    prepared = prepare_panel(panel, protocol.data)
    for analysis in protocol.analyses():
        if analyses is not None and analysis.analysis_id not in analyses:
            continue
        data = apply_filters(prepared, analysis.filters)
        store(
            analysis.analysis_id,
            analysis.method.name,
            protocol.outcome,
            fit(
                analysis.method,
                data,
                outcome=protocol.outcome,
                covariates=list(analysis.covariates),
            ),
        )
    cost = protocol.cost_consequence()
    if cost is not None and (analyses is None or cost.analysis.analysis_id in analyses):
        store(
            cost.analysis.analysis_id,
            cost.analysis.method.name,
            cost.outcome,
            fit_cost_consequence(cost, panel),
        )
    return ProtocolRun(
        protocol, results, pd.concat(frames, ignore_index=True), time.perf_counter() - started
    )


@dataclass(frozen=True)
class ProtocolOutcome:
    """What became of one protocol: its run when ``status`` is ok, else the reason."""

    protocol: Protocol
    status: str
    reason: str
    run: ProtocolRun | None
    seconds: float

    @property
    def rows(self) -> pd.DataFrame:
        return self.run.rows if self.run is not None else pd.DataFrame(columns=list(STORE_COLUMNS))


def with_milestones(protocol: Protocol, panel: Callable[[str], pd.DataFrame]) -> Protocol:
    """The protocol with its milestones replaced by the months the delivery declares (its hash,
    the identity of what was pre-specified, unchanged)."""
    if not protocol.uses_milestones():
        return protocol
    table = panel(MILESTONES_MART)
    months = dict(zip(table["milestone"], pd.to_datetime(table["month"]), strict=True))
    return protocol.with_milestones(months)


def attempt_protocol(
    protocol: Protocol,
    panel: Callable[[str], pd.DataFrame],
    *,
    fingerprint: str,
    version: str,
    analyses: Collection[str] | None = None,
) -> ProtocolOutcome:
    """Run one protocol, turning any error into its status; ``panel`` reads a mart by name.
    The one path of every run: ``sicp analyse``, the Dagster protocol assets and the Monte
    Carlo study (which passes ``analyses``, see :func:`run_protocol`)."""
    started = time.perf_counter()
    try:
        resolved = with_milestones(protocol, panel)
        run = run_protocol(
            resolved,
            panel(protocol.panel),
            fingerprint=fingerprint,
            version=version,
            analyses=analyses,
        )
        run = replace(run, protocol=protocol)
    except CalendarError as exc:
        return ProtocolOutcome(
            protocol, STATUS_NOT_APPLICABLE, str(exc), None, time.perf_counter() - started
        )
    except Exception as exc:  # noqa: BLE001 - one protocol's error must not stop the others
        reason = f"{type(exc).__name__}: {exc}".strip()
        return ProtocolOutcome(protocol, STATUS_FAILED, reason, None, time.perf_counter() - started)
    return ProtocolOutcome(protocol, STATUS_OK, "", run, time.perf_counter() - started)


def write_tables(run: ProtocolRun, results_dir: Path) -> list[Path]:
    """Auxiliary tables (counterfactual series, weights, draws) and the diagnostics as parquet."""
    written = []
    for analysis_id, result in run.results.items():
        diagnostics = pd.DataFrame(
            {
                "name": list(result.diagnostics),
                "value": [str(v) for v in result.diagnostics.values()],
            }
        )
        for name, table in sorted({**result.tables, "diagnostics": diagnostics}.items()):
            path = results_dir / "tables" / run.protocol.id / analysis_id / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.reset_index(drop=True).to_parquet(path, index=False)
            written.append(path)
    return written


def built_from(warehouse: Path) -> int:
    """The sequence number of the warehouse's last dbt build (0 if none is recorded): which
    build of the marts a result was computed from."""
    from sicp.warehouse import last_build

    build = last_build(warehouse)
    return int(build["build_seq"]) if build else 0


def store_outcome(
    outcome: ProtocolOutcome,
    warehouse: Path,
    results_dir: Path,
    *,
    fingerprint: str,
    version: str,
    build_seq: int,
) -> None:
    """Replace the protocol's tables, estimate rows and status in the results store;
    ``build_seq`` is the build of the marts it was computed from (:func:`built_from`)."""
    protocol = outcome.protocol
    shutil.rmtree(results_dir / "tables" / protocol.id, ignore_errors=True)
    if outcome.run is not None:
        write_tables(outcome.run, results_dir)
    write_results(outcome.rows, warehouse, results_dir, protocol_ids=[protocol.id])
    write_protocol_runs(
        pd.DataFrame(
            [
                {
                    "protocol_id": protocol.id,
                    "protocol_hash": protocol.hash,
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "n_estimates": len(outcome.rows),
                    "input_fingerprint": fingerprint,
                    "code_version": version,
                    "build_seq": build_seq,
                }
            ]
        ),
        warehouse,
        results_dir,
    )
    append_run_log(
        results_dir,
        [
            {
                "protocol_id": protocol.id,
                "status": outcome.status,
                "seconds": round(outcome.seconds, 3),
                "rows": len(outcome.rows),
            }
        ],
    )
    if protocol.multiplicity_family:  # the family's adjusted p-values follow its new row
        family = {
            p.id: p
            for p in load_protocols(protocol.path.parent)
            if p.multiplicity_family == protocol.multiplicity_family
        }
        write_multiplicity(
            adjusted_p_values(read_results(results_dir), family), warehouse, results_dir
        )


@dataclass(frozen=True)
class Lineage:
    """What a result is computed from besides its protocol: the inputs, the build of the marts
    (which fixes the consent ledger they follow; ``sicp analyse`` refuses marts built before
    the ledger's last entry) and the code."""

    input_fingerprint: str
    build_seq: int
    code_version: str


def current_lineage(paths: Any) -> Lineage:
    """The lineage a run would stamp now (the code's version, wherever the protocols are)."""
    return Lineage(
        input_fingerprint(paths.warehouse), built_from(paths.warehouse), code_version(PROJECT_ROOT)
    )


def _same(stored: object, now: object) -> bool:
    return stored is not None and not pd.isna(stored) and stored == now


def rerun_reason(
    protocol: Protocol, now: Lineage, stored: Mapping[str, Any] | None, estimates: pd.DataFrame
) -> str | None:
    """Why ``protocol`` must run again, or None when its stored result is what a run would
    store now. ``stored`` is its ``protocol_runs`` row, ``estimates`` its rows of the estimates
    store. Kept only if the row has the protocol's hash and ``now``'s input fingerprint, build
    and code version, and the estimates are the row's: as many, with the same stamps. A failed
    protocol always runs again, since its error may have been the machine's; not applicable
    is a settled answer, like ok."""
    if stored is None:
        return "no stored result"
    if stored["status"] == STATUS_FAILED:
        return "it failed at its last run"
    checks = (
        ("protocol_hash", protocol.hash, "the protocol changed"),
        ("input_fingerprint", now.input_fingerprint, "the inputs changed"),
        (
            "build_seq",
            now.build_seq,
            f"the marts were rebuilt (build {stored.get('build_seq')} -> {now.build_seq})",
        ),
        (
            "code_version",
            now.code_version,
            f"the code changed ({stored.get('code_version')} -> {now.code_version})",
        ),
    )
    for key, value, what in checks:
        if not _same(stored.get(key), value):
            return what
    stamps = {
        "protocol_hash": protocol.hash,
        "input_fingerprint": now.input_fingerprint,
        "code_version": now.code_version,
    }
    if not _same(stored.get("n_estimates"), len(estimates)) or any(
        estimates[column].astype(str).ne(value).any() for column, value in stamps.items()
    ):
        return "the estimates store does not hold its last run's rows"
    return None


def rerun_reasons(
    protocols: Iterable[Protocol], now: Lineage, results_dir: Path
) -> dict[str, str | None]:
    """:func:`rerun_reason` of each protocol against the results store in ``results_dir``."""
    runs = {str(r["protocol_id"]): r for r in read_protocol_runs(results_dir).to_dict("records")}
    stored_estimates = (
        read_results(results_dir)
        if (results_dir / "estimates.parquet").exists()
        else pd.DataFrame(columns=list(STORE_COLUMNS))
    )
    return {
        p.id: rerun_reason(
            p, now, runs.get(p.id), stored_estimates[stored_estimates["protocol_id"] == p.id]
        )
        for p in protocols
    }


def unknown_protocols(protocols: Iterable[Protocol], wanted: Iterable[str]) -> list[str]:
    known = {p.id for p in protocols}
    return sorted(set(wanted) - known)


def run_all_protocols(
    paths: Any,
    only: Iterable[str] | None = None,
    on_done: Callable[[ProtocolOutcome], None] | None = None,
) -> list[ProtocolOutcome]:
    """Run protocols (all, or the ids in ``only``), each in isolation, into the results store;
    ``on_done`` hears of each as it is stored (the CLI's progress lines)."""
    protocols = load_protocols(paths.protocols_dir)
    wanted = set(only) if only else None
    if wanted is not None and (unknown := unknown_protocols(protocols, wanted)):
        raise ValueError(
            f"unknown protocol(s): {', '.join(unknown)}; known: "
            f"{', '.join(p.id for p in protocols)}"
        )
    now = current_lineage(paths)
    fingerprint, version, build_seq = now.input_fingerprint, now.code_version, now.build_seq
    panels: dict[str, pd.DataFrame] = {}

    def panel(name: str) -> pd.DataFrame:
        if name not in panels:
            panels[name] = read_panel(paths.warehouse, name)
        return panels[name]

    outcomes = []
    for protocol in protocols:
        if wanted is not None and protocol.id not in wanted:
            continue
        outcome = attempt_protocol(protocol, panel, fingerprint=fingerprint, version=version)
        store_outcome(
            outcome,
            paths.warehouse,
            paths.results_dir,
            fingerprint=fingerprint,
            version=version,
            build_seq=build_seq,
        )
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
