"""What the reports read: the results store, protocol metadata, marts and dbt artefacts.

Reports compute nothing heavy: they call these readers, then arrange tables and figures.
Everything is opened read-only. Every fact the reports' prose states about the study (its area,
practices, neighbourhoods and MDGs, the roll-out, the study window, the cohort's waves, the
trial's design) is read from the marts here (:func:`study_facts`) and put into words by the
``*_paragraph`` functions, so the reports follow whatever extract they are run on.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.columns import column_options
from analysis.methods import METHODS
from analysis.protocol import COST_CONSEQUENCE_ID, Protocol, load_protocols
from analysis.runner import apply_filters, prepare_panel
from analysis.store import (
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STORE_COLUMNS,
    read_protocol_runs,
    read_results,
)
from sicp.dbt_schema import load_manifest
from sicp.disclosure import SUPPRESSED, primary_mask, suppress_value, suppression_mask
from sicp.warehouse import build_node_results

#: Status of a protocol the results store has no record of (never run on this warehouse).
STATUS_NOT_RUN = "not_run"
#: What a report says where an estimate would be, before the reason.
NOT_ESTIMATED = "not estimated"
#: The file whose presence in the input folder marks a synthetic world (sicp synth writes it).
TRUTH_FILE = "truth.json"
SYNTHETIC_BANNER = (
    "Synthetic data: every number in this report comes from a simulated world, not from patients."
)
NO_ESTIMATES = "No estimates: run `sicp analyse` first."


@dataclass(frozen=True)
class ReportInputs:
    results_dir: Path
    warehouse: Path
    protocols_dir: Path
    input_dir: Path | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReportInputs:
        input_dir = params.get("input_dir")
        return cls(
            Path(params["results_dir"]),
            Path(params["warehouse"]),
            Path(params["protocols_dir"]),
            Path(input_dir) if input_dir else None,
        )

    def estimates(self) -> pd.DataFrame:
        """Every stored estimate; an empty frame with the store's columns before any run."""
        if not (self.results_dir / "estimates.parquet").exists():
            return pd.DataFrame({c: pd.Series(dtype="string") for c in STORE_COLUMNS})
        return read_results(self.results_dir)

    def protocol_runs(self) -> pd.DataFrame:
        """Each protocol's last status (ok, failed, not_applicable) with the reason."""
        return read_protocol_runs(self.results_dir)

    def is_synthetic(self) -> bool:
        """True when the input folder is a synthetic world (it holds ``truth.json``)."""
        return self.input_dir is not None and (self.input_dir / TRUTH_FILE).is_file()

    def protocols(self, subset: str = "") -> dict[str, Protocol]:
        """Protocols by id; ``subset`` (comma-separated ids, as a report parameter) narrows them."""
        wanted = {s.strip() for s in subset.split(",") if s.strip()}
        protocols = {p.id: p for p in load_protocols(self.protocols_dir)}
        unknown = wanted - set(protocols)
        if unknown:
            raise KeyError(f"unknown protocol id(s) {sorted(unknown)}; known: {sorted(protocols)}")
        return {k: v for k, v in protocols.items() if not wanted or k in wanted}

    def table(self, protocol_id: str, analysis_id: str, name: str) -> pd.DataFrame | None:
        path = self.results_dir / "tables" / protocol_id / analysis_id / f"{name}.parquet"
        return pd.read_parquet(path) if path.exists() else None

    def query(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).df()

    def manifest(self) -> dict[str, Any]:
        """The dbt project's manifest (models, tests, lineage) as the code stands."""
        return load_manifest()

    def node_results(self) -> dict[str, dict[str, Any]]:
        """Each node of the build that made the warehouse's marts, with its status, read from
        the warehouse (sicp.warehouse.build_node_results); raises when none is recorded."""
        return build_node_results(self.warehouse)[1]


def details(row: pd.Series) -> dict[str, Any]:
    return json.loads(row["details"]) if isinstance(row.get("details"), str) else {}


def protocol_statuses(
    protocols: dict[str, Protocol], runs: pd.DataFrame, estimates: pd.DataFrame
) -> pd.DataFrame:
    """Each protocol's status and reason, indexed by protocol id: the results store's record
    (``protocol_runs``), else ``ok`` when the store holds its rows (a store written before
    statuses were recorded), else ``not_run``."""
    recorded = runs.drop_duplicates("protocol_id", keep="last").set_index("protocol_id")
    with_rows = set(estimates["protocol_id"].dropna()) if len(estimates) else set()
    rows = []
    for pid in sorted(protocols):
        if pid in recorded.index:
            status = str(recorded.at[pid, "status"])
            reason = recorded.at[pid, "reason"]
            reason = "" if pd.isna(reason) else str(reason)
        elif pid in with_rows:
            status, reason = STATUS_OK, ""
        else:
            status = STATUS_NOT_RUN
            reason = "no run of this protocol is recorded in the results store (run `sicp analyse`)"
        if status == STATUS_OK and pid not in with_rows:
            status, reason = STATUS_NOT_RUN, "the results store holds none of its estimates"
        rows.append({"protocol_id": pid, "status": status, "reason": reason})
    return pd.DataFrame(rows, columns=["protocol_id", "status", "reason"]).set_index("protocol_id")


def not_estimated_note(statuses: pd.DataFrame | None, protocol_id: str) -> str | None:
    """``"not estimated: <reason>"`` for a protocol without estimates, None for one with."""
    if statuses is None or protocol_id not in statuses.index:
        return None
    status = statuses.at[protocol_id, "status"]
    if status == STATUS_OK:
        return None
    reason = statuses.at[protocol_id, "reason"] or {
        STATUS_FAILED: "the protocol failed",
        STATUS_NOT_APPLICABLE: "not applicable to this extract",
    }.get(status, "no estimate in the results store")
    return f"{NOT_ESTIMATED}: {reason}"


def brief(text: str, width: int = 140) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis) for a table cell."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def headline_rows(
    estimates: pd.DataFrame,
    protocols: dict[str, Protocol],
    primary_only: bool = True,
    statuses: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per protocol: its reporting term from the primary analysis, on the shown scale.

    A protocol with no such estimate is kept, with NaN numbers and ``note`` saying why
    (``"not estimated: <reason>"``, from ``statuses`` when given), so no primary is ever
    silently left out of a list."""
    rows = []
    for pid, protocol in sorted(protocols.items()):
        if primary_only and not protocol.primary:
            continue
        reporting = protocol.reporting
        term = reporting.term
        hit = estimates[
            (estimates["protocol_id"] == pid)
            & (estimates["analysis_id"] == "primary")
            & (estimates["term"] == term)
        ]
        row = hit.iloc[0] if len(hit) else None
        note = ""
        if row is None:
            note = (
                not_estimated_note(statuses, pid)
                or f"{NOT_ESTIMATED}: the results store has no primary '{term}' estimate"
            )
            shown = dict.fromkeys(("estimate", "ci_low", "ci_high"), math.nan)
        else:
            shown = transform(row, reporting.transform)
        rows.append(
            {
                "protocol_id": pid,
                "label": protocol.outcome_label,
                "question": protocol.question,
                "outcome": protocol.outcome,
                "method": protocol.method.name,
                "level": protocol.level,
                "component": protocol.component,
                "unit": reporting.unit,
                "transform": reporting.transform or "",
                "term_words": term_words(term, "" if row is None else str(row["scale"]), protocol),
                "null_value": 1.0 if reporting.transform == "exp" else 0.0,
                "p_value": math.nan if row is None else row["p_value"],
                "n_obs": pd.NA if row is None else row["n_obs"],
                "n_clusters": pd.NA if row is None else row["n_clusters"],
                **shown,
                "note": note,
            }
        )
    columns = [
        "protocol_id",
        "label",
        "question",
        "outcome",
        "method",
        "level",
        "component",
        "unit",
        "transform",
        "term_words",
        "null_value",
        "p_value",
        "n_obs",
        "n_clusters",
        "estimate",
        "ci_low",
        "ci_high",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def transform(row: pd.Series, how: str | None) -> dict[str, float]:
    """Estimate and CI on the reporting scale (``exp`` turns log ratios into ratios)."""
    keys = ("estimate", "ci_low", "ci_high")
    values = {k: float(row[k]) for k in keys}
    if how == "exp":
        values = {k: math.exp(v) if not math.isnan(v) else v for k, v in values.items()}
    return values


def md_escape(text: object) -> str:
    """Text (an error message, say) that markdown prints as written."""
    return re.sub(r"([\\`*_\[\]<>#|$@~])", r"\\\1", str(text)).replace("\n", " ")


def lineage(
    estimates: pd.DataFrame, statuses: pd.DataFrame | None = None, runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Protocol hashes, input fingerprint and code version behind every stored estimate; with
    ``statuses`` (and the store's ``runs``) every reported protocol gets a row with its status,
    the ones without estimates too."""
    cols = ["protocol_id", "protocol_hash", "input_fingerprint", "code_version"]
    out = estimates[cols].drop_duplicates().sort_values("protocol_id").reset_index(drop=True)
    if statuses is None:
        return out
    recorded = (
        runs.drop_duplicates("protocol_id", keep="last").set_index("protocol_id")
        if runs is not None and len(runs)
        else None
    )
    missing = []
    for pid in statuses.index:
        if pid in set(out["protocol_id"]):
            continue
        row = {"protocol_id": pid, "protocol_hash": "", "input_fingerprint": "", "code_version": ""}
        if recorded is not None and pid in recorded.index:
            row.update(
                {c: str(recorded.at[pid, c]) for c in cols[1:] if not pd.isna(recorded.at[pid, c])}
            )
        missing.append(row)
    out = (
        pd.concat([out.astype(object), pd.DataFrame(missing, columns=cols)], ignore_index=True)
        if missing
        else out.astype(object)
    )
    out = out[out["protocol_id"].isin(statuses.index)].sort_values("protocol_id")
    out["status"] = [statuses.at[p, "status"].replace("_", " ") for p in out["protocol_id"]]
    return out.reset_index(drop=True)


def expand_details(rows: pd.DataFrame) -> pd.DataFrame:
    """Store rows with their ``details`` JSON spread into columns (event time, group, ...)."""
    extra = pd.DataFrame(
        [json.loads(d) if isinstance(d, str) else {} for d in rows["details"]], index=rows.index
    )
    return pd.concat([rows.drop(columns=["details"]), extra], axis=1)


def diagnostics(
    inputs: ReportInputs, protocol_id: str, analysis_id: str = "primary"
) -> dict[str, str]:
    table = inputs.table(protocol_id, analysis_id, "diagnostics")
    return {} if table is None else dict(zip(table["name"], table["value"], strict=True))


def cost_consequence_rows(
    estimates: pd.DataFrame, protocols: dict[str, Protocol], statuses: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per primary protocol: its headline effect beside its cost consequence (GBP per
    person per year, from the same estimator on priced utilisation), or why it has none."""
    effects = headline_rows(estimates, protocols, statuses=statuses).set_index("protocol_id")
    rows = []
    for pid in effects.index:
        protocol = protocols[pid]
        effect = effects.loc[pid]
        row: dict[str, Any] = {
            "protocol_id": pid,
            "label": effect["label"],
            "unit": effect["unit"],
            **{f"effect_{k}": effect[k] for k in ("estimate", "ci_low", "ci_high")},
            "effect_note": effect["note"],
            "cost_estimate": math.nan,
            "cost_ci_low": math.nan,
            "cost_ci_high": math.nan,
            "cost_p_value": math.nan,
            "cost_n_obs": pd.NA,
            "cost_outcome": "",
            "cost_note": "",
        }
        spec = protocol.cost_consequence()
        if effect["note"]:
            row["cost_note"] = NOT_ESTIMATED
            rows.append(row)
            continue
        if spec is None:
            row["cost_note"] = (
                "its incremental cost is in the cost-effectiveness table"
                if protocol.method.name == "cost_effectiveness"
                else f"no priced utilisation in {protocol.panel}"
            )
            rows.append(row)
            continue
        hit = estimates[
            (estimates["protocol_id"] == pid)
            & (estimates["analysis_id"] == COST_CONSEQUENCE_ID)
            & (estimates["term"] == spec.terms[0])
        ]
        if hit.empty:
            row["cost_note"] = "declared but not in the results store"
        else:
            cost = hit.iloc[0]
            row.update(
                {f"cost_{k}": float(cost[k]) for k in ("estimate", "ci_low", "ci_high", "p_value")}
            )
            row.update(cost_n_obs=cost["n_obs"], cost_outcome=cost["outcome"])
        rows.append(row)
    return pd.DataFrame(rows)


def calls_by_reason(inputs: ReportInputs) -> pd.DataFrame:
    """Centre-of-contact calls by reason from the first month with a call (the launch): calls of
    the registered 65+, their person-months, calls per 1,000 aged 65+ per month, and calls of
    people outside that population (unattributed)."""
    return inputs.query("""
        with since as (
            select * from marts.contact_centre_calls_monthly
            where month >= (select min(month) from marts.contact_centre_calls_monthly
                            where calls > 0)
        )
        select
            reason,
            sum(case when neighbourhood is not null then calls else 0 end) as calls,
            sum(person_months_65plus) as person_months_65plus,
            1000.0 * sum(case when neighbourhood is not null then calls else 0 end)
                / sum(person_months_65plus) as calls_per_1000_65plus,
            sum(case when neighbourhood is null then calls else 0 end) as unattributed_calls
        from since
        group by reason
        order by reason
    """)


def calls_by_neighbourhood(inputs: ReportInputs, threshold: int) -> pd.DataFrame:
    """Calls (every reason) per 1,000 aged 65+ by neighbourhood and month; a month whose call
    count is below ``threshold`` (but not 0) has its rate hidden (NaN), since the rate and the
    neighbourhood's population would give the count back."""
    frame = inputs.query("""
        select neighbourhood, month, sum(calls) as calls,
               max(person_months_65plus) as person_months_65plus
        from marts.contact_centre_calls_monthly
        where neighbourhood is not null
        group by neighbourhood, month
        order by neighbourhood, month
    """)
    frame["calls_per_1000_65plus"] = 1000.0 * frame["calls"] / frame["person_months_65plus"]
    hidden = primary_mask(frame["calls"].to_numpy(float), threshold)
    frame.loc[hidden, "calls_per_1000_65plus"] = math.nan
    return frame


def calls_by_twic_arm(inputs: ReportInputs) -> pd.DataFrame:
    """Centre-of-contact calls of the trial's participants (record-linkage consent) in their
    registered 65+ person-months of the 12 months from the month of randomisation, by arm:
    coaching calls (offer and sessions) and every other call, per 1,000 person-months."""
    return inputs.query("""
        with arms as (
            select person_id, arm, cast(date_trunc('month', randomised_on) as date) as first_month
            from marts.twic_analysis_set
            where consent_linkage = 1
        ),
        months as (
            select a.arm, p.person_id, p.month
            from arms as a
            inner join intermediate.int_person_month_costs as p
                on p.person_id = a.person_id
               and p.month >= a.first_month
               and p.month < a.first_month + interval 12 month
        ),
        calls as (
            select m.arm,
                   sum(case when c.reason = 'coaching' then 1 else 0 end) as coaching_calls,
                   sum(case when c.reason <> 'coaching' then 1 else 0 end) as other_calls
            from months as m
            inner join staging.stg_contact_centre_calls__calls as c
                on c.person_id = m.person_id
               and cast(date_trunc('month', c.called_on) as date) = m.month
            group by m.arm
        )
        select m.arm, count(distinct m.person_id) as people, count(*) as person_months,
               coalesce(max(c.coaching_calls), 0) as coaching_calls,
               coalesce(max(c.other_calls), 0) as other_calls
        from months as m
        left join calls as c on c.arm = m.arm
        group by m.arm
        order by m.arm
    """).assign(
        coaching_per_1000=lambda d: 1000.0 * d["coaching_calls"] / d["person_months"],
        other_per_1000=lambda d: 1000.0 * d["other_calls"] / d["person_months"],
    )


# --- The study as the marts describe it -----------------------------------------------------


def month_text(value: object) -> str:
    """A month as the reports write it in prose, e.g. ``March 2014``."""
    return pd.Timestamp(value).strftime("%B %Y")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 practice``, ``3 practices``."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def listing(items: list[str] | tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class RolloutWave:
    """One roll-out wave: the MDGs that started in one month and their practices taking part."""

    wave: int
    start: pd.Timestamp
    practices: int
    mdgs: tuple[str, ...]


@dataclass(frozen=True)
class StudyFacts:
    """What the reports state about the study, each read from a mart (or the raw study area)."""

    site: str
    comparator_areas: int
    area_first_month: pd.Timestamp | None
    area_last_month: pd.Timestamp | None
    practices: int
    neighbourhoods: int
    mdgs: int
    taking_part: int
    never_treated: int
    waves: tuple[RolloutWave, ...]
    mdgs_not_started: tuple[str, ...]
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    window_months: int
    window_rule: str
    window_sources: tuple[str, ...]
    calendar: pd.DataFrame
    survey_waves: pd.DataFrame
    trial: dict[str, Any] | None
    milestones: pd.DataFrame


def _study_area_name(inputs: ReportInputs) -> str:
    for sql in (
        "select min(area_name) as name from marts.area_month_panel where is_study_area = 1",
        "select min(area_name) as name from raw.study_area",
    ):
        try:
            name = inputs.query(sql)["name"][0]
        except duckdb.Error:
            continue
        if isinstance(name, str) and name:
            return name
    return "the study area"


def study_facts(inputs: ReportInputs) -> StudyFacts:
    """The study's area, practices, roll-out, window, survey waves and trial design, from the
    marts ``practice_rollout``, ``study_calendar``, ``survey_waves``, ``trial_design`` and
    ``area_month_panel``."""
    practices = inputs.query("select * from marts.practice_rollout order by practice_code")
    started = practices[practices["rollout_wave"].notna()]
    waves = tuple(
        RolloutWave(
            int(wave),
            pd.Timestamp(part["mdg_first_month"].min()),
            len(part),
            tuple(sorted(part["mdg"].astype(str).unique())),
        )
        for wave, part in started.groupby("rollout_wave", sort=True)
    )
    calendar = inputs.query("select * from marts.study_calendar order by source_name")
    window = calendar.iloc[0] if len(calendar) else None
    areas = inputs.query("""
        select count(distinct case when is_study_area = 0 then area_code end) as comparators,
               min(month) as first_month, max(month) as last_month
        from marts.area_month_panel""").iloc[0]
    survey = inputs.query("select * from marts.survey_waves order by wave")
    trial = inputs.query("select * from marts.trial_design")
    try:
        milestones = inputs.query(
            "select milestone, month, description "
            "from marts.programme_milestones order by month, milestone"
        )
    except duckdb.Error:  # a warehouse built before the milestones mart
        milestones = pd.DataFrame(columns=["milestone", "month", "description"])
    not_started = practices.groupby("mdg")["mdg_first_month"].min()
    return StudyFacts(
        site=_study_area_name(inputs),
        comparator_areas=int(areas["comparators"] or 0),
        area_first_month=None
        if pd.isna(areas["first_month"])
        else pd.Timestamp(areas["first_month"]),
        area_last_month=None if pd.isna(areas["last_month"]) else pd.Timestamp(areas["last_month"]),
        practices=len(practices),
        neighbourhoods=int(practices["neighbourhood"].nunique()),
        mdgs=int(practices["mdg"].nunique()),
        taking_part=int((practices["never_treated"] == 0).sum()),
        never_treated=int((practices["never_treated"] == 1).sum()),
        waves=waves,
        mdgs_not_started=tuple(sorted(str(m) for m in not_started[not_started.isna()].index)),
        window_start=pd.Timestamp(window["study_start_month"]) if window is not None else pd.NaT,
        window_end=pd.Timestamp(window["study_end_month"]) if window is not None else pd.NaT,
        window_months=int(window["study_months"]) if window is not None else 0,
        window_rule=str(window["window_rule"]) if window is not None else "",
        window_sources=tuple(calendar.loc[calendar["defines_window"] == 1, "source_name"]),
        calendar=calendar,
        survey_waves=survey,
        trial=trial.iloc[0].to_dict() if len(trial) else None,
        milestones=milestones,
    )


def wave_spacing(survey_waves: pd.DataFrame) -> str:
    """How far apart the survey waves' months are, in words (``every 6 months``)."""
    months = pd.to_datetime(survey_waves["wave_month"]).sort_values()
    gaps = sorted(
        {
            (b.year - a.year) * 12 + b.month - a.month
            for a, b in zip(months.iloc[:-1], months.iloc[1:], strict=True)
        }
    )
    if not gaps:
        return ""
    if len(gaps) == 1:
        return f"every {plural(gaps[0], 'month')}"
    return f"{gaps[0]} to {gaps[-1]} months apart"


def intro_paragraph(facts: StudyFacts) -> str:
    """The executive summary's opening: what was evaluated, where, over which months."""
    rollout = (
        f"rolled out to {facts.taking_part:,} of {facts.site}'s "
        f"{plural(facts.practices, 'practice')} (in "
        f"{plural(facts.neighbourhoods, 'neighbourhood')}) in "
        f"{plural(len(facts.waves), 'wave')} from {month_text(facts.waves[0].start)}"
        if facts.waves
        else f"planned for {facts.site}'s practices"
    )
    comparators = (
        f", and {facts.site} against {plural(facts.comparator_areas, 'comparator area')}"
        if facts.comparator_areas
        else ""
    )
    return (
        f"This report sets out the pre-specified estimates of the evaluation of the "
        f"integrated care programme in {facts.site}: the multidisciplinary groups (MDGs) "
        f"{rollout}, the trial of telephone health coaching within the cohort{comparators}. "
        f"The study window runs from {month_text(facts.window_start)} to "
        f"{month_text(facts.window_end)}. Each estimate below comes from a protocol fixed "
        "before the analysis; the protocols, their versions and the data they read are "
        "listed at the end."
    )


def window_paragraph(facts: StudyFacts) -> str:
    """The study window and the extracts that set it (or that cover less of it)."""
    how = (
        "the months that every window-defining record extract covers "
        f"({listing([f'`{s}`' for s in facts.window_sources])})"
        if facts.window_rule == "from the extracts"
        else "as stated in the warehouse's configuration (dbt vars `study_start_month` / "
        "`study_end_month`), within the months the record extracts cover"
    )
    text = (
        f"The study window is {month_text(facts.window_start)} to "
        f"{month_text(facts.window_end)} ({plural(facts.window_months, 'month')}): {how}. "
        f"The monthly panels number their periods from {month_text(facts.window_start)} "
        "(period 1)."
    )
    partial = []
    for row in facts.calendar.itertuples():
        if row.defines_window == 1 or pd.isna(row.first_month):
            continue
        bits = []
        if pd.Timestamp(row.first_month) > facts.window_start:
            bits.append(f"from {month_text(row.first_month)}")
        if pd.Timestamp(row.last_month) < facts.window_end:
            bits.append(f"to {month_text(row.last_month)}")
        if bits:
            partial.append(f"`{row.source_name}` ({' '.join(bits)})")
    if partial:
        text += f" Extracts that cover only part of the window: {listing(partial)}."
    if facts.area_first_month is not None:
        text += (
            f" The published area indicators for {facts.site} and "
            f"{plural(facts.comparator_areas, 'comparator area')} run from "
            f"{month_text(facts.area_first_month)} to {month_text(facts.area_last_month)}."
        )
    if len(facts.milestones):
        dated = [
            f"`{m.milestone}`, {month_text(m.month)}"
            + (
                f" ({str(m.description).strip().rstrip('.')})"
                if isinstance(m.description, str) and m.description.strip()
                else ""
            )
            for m in facts.milestones.itertuples()
        ]
        text += (
            " The protocols' dates are the programme's milestones as the delivery declares "
            f"them: {'; '.join(dated)}."
        )
    return text


def rollout_paragraph(facts: StudyFacts) -> str:
    """Practices, neighbourhoods and MDGs, and each roll-out wave's start month and size."""
    text = (
        f"{facts.site} has {plural(facts.practices, 'practice')} in "
        f"{plural(facts.neighbourhoods, 'neighbourhood')}, served by "
        f"{plural(facts.mdgs, 'MDG')}. "
    )
    if not facts.waves:
        return text + "No practice has an MDG start month, so no roll-out can be analysed."
    waves = [
        f"wave {w.wave} in {month_text(w.start)} ({plural(w.practices, 'practice')}; "
        f"{'MDG' if len(w.mdgs) == 1 else 'MDGs'} {listing([f'*{m}*' for m in w.mdgs])})"
        for w in facts.waves
    ]
    text += (
        f"The MDGs started in {plural(len(facts.waves), 'wave')}, numbered by start month: "
        f"{'; '.join(waves)}. "
    )
    if facts.mdgs_not_started:
        names = listing([f"*{m}*" for m in facts.mdgs_not_started])
        text += f"{'MDG' if len(facts.mdgs_not_started) == 1 else 'MDGs'} {names} never started. "
    if facts.never_treated:
        text += (
            f"{plural(facts.taking_part, 'practice')} took part; the "
            f"{plural(facts.never_treated, 'practice')} that never did "
            f"{'is' if facts.never_treated == 1 else 'are'} the never-treated comparison "
            "of the staggered analyses."
        )
    else:
        text += (
            "Every practice took part, so the staggered analyses compare earlier with "
            "later starters only (there is no never-treated practice)."
        )
    return text


def rollout_table(inputs: ReportInputs) -> pd.DataFrame:
    """Practices by neighbourhood and MDG: how many took part, the wave and its start month."""
    frame = inputs.query("""
        select neighbourhood, mdg as "MDG", count(*) as practices,
               sum(1 - never_treated) as "taking part",
               min(rollout_wave) as wave, min(mdg_first_month) as "MDG start"
        from marts.practice_rollout
        group by neighbourhood, mdg
        order by neighbourhood, mdg
    """)
    frame["MDG start"] = [month_text(m) if not pd.isna(m) else "–" for m in frame["MDG start"]]
    frame["wave"] = [str(int(w)) if not pd.isna(w) else "none" for w in frame["wave"]]
    frame["taking part"] = frame["taking part"].astype("int64")
    return frame.set_index("neighbourhood")


def cohort_paragraph(inputs: ReportInputs, facts: StudyFacts, threshold: int) -> str:
    """Recruitment, withdrawals and the survey waves delivered."""
    recruited = int(
        inputs.query("select count(*) as n from staging.stg_recruitment__cohort_members")["n"][0]
    )
    withdrawn = int(
        inputs.query("select count(*) as n from raw.consent_exclusions where scope = 'all'")["n"][0]
    )
    text = (
        f"The cohort recruited {suppress_value(recruited + withdrawn, threshold)} people "
        f"aged 65+ with long-term conditions; {suppress_value(withdrawn, threshold)} later "
        "withdrew all consent and are excluded from every table and estimate."
    )
    waves = facts.survey_waves
    if len(waves):
        spacing = wave_spacing(waves)
        text += (
            f" {plural(len(waves), 'survey wave')} were delivered, from "
            f"{month_text(waves['wave_month'].iloc[0])} to "
            f"{month_text(waves['wave_month'].iloc[-1])}"
            + (f", {spacing}" if spacing and len(waves) > 1 else "")
            + "."
        )
    else:
        text += " No survey wave has been delivered."
    return text


def trial_paragraph(facts: StudyFacts, threshold: int) -> str:
    """Who was randomised when, and the baseline and follow-up waves the trial uses."""
    t = facts.trial
    if not t:
        return (
            "The warehouse holds no trial design (no survey wave before randomisation, or "
            "none after it), so the trial's waves are not stated."
        )
    realised = int(t["months_randomisation_to_followup"])
    planned = int(t["planned_followup_months"])
    gap = "as planned" if realised == planned else f"against the {plural(planned, 'month')} planned"
    return (
        f"{suppress_value(t['n_randomised'], threshold)} cohort members were randomised "
        f"between {month_text(t['first_randomised_on'])} and "
        f"{month_text(t['last_randomised_on'])}. The baseline is survey wave "
        f"{int(t['baseline_wave'])} ({month_text(t['baseline_wave_month'])}), the last wave "
        f"returned before randomisation began; the follow-up is wave "
        f"{int(t['followup_wave'])} ({month_text(t['followup_wave_month'])}), "
        f"{plural(realised, 'month')} after the first randomisation month ({gap}) and "
        f"{plural(int(t['months_baseline_to_followup']), 'month')} after the baseline."
    )


def calendar_table(facts: StudyFacts) -> pd.DataFrame:
    """Each record or programme extract's months, and whether it sets the study window."""
    cal = facts.calendar
    return pd.DataFrame(
        {
            "extract": cal["source_name"],
            "sets the window": ["yes" if d == 1 else "no" for d in cal["defines_window"]],
            "first month": [month_text(m) if not pd.isna(m) else "–" for m in cal["first_month"]],
            "last month": [month_text(m) if not pd.isna(m) else "–" for m in cal["last_month"]],
            "months with rows": cal["months_with_rows"].astype("Int64"),
            "empty months inside": cal["empty_months_inside"].astype("Int64"),
        }
    ).set_index("extract")


def price_years(protocols: dict[str, Protocol]) -> list[int]:
    """The price years the protocols' cost consequences state (2018 = 2017/18 prices)."""
    years = {
        spec.price_year for p in protocols.values() if (spec := p.cost_consequence()) is not None
    }
    return sorted(years)


def price_year_text(protocols: dict[str, Protocol]) -> str:
    """``2017/18 prices`` (financial year ending in the price year), or a neutral phrase."""
    years = price_years(protocols)
    if not years:
        return "the protocols' stated prices"
    return " and ".join(f"{y - 1}/{y % 100:02d}" for y in years) + " prices"


def exposure_months(protocols: dict[str, Protocol]) -> str:
    """How many months an exposure-time model averages, from its reporting term."""
    found = sorted(
        {
            int(m[1])
            for p in protocols.values()
            if (m := re.fullmatch(r"average_first_(\d+)", p.reporting.term))
        }
    )
    return listing([str(n) for n in found]) if found else "first"


def period_months(inputs: ReportInputs, panel: str) -> dict[float, pd.Timestamp]:
    """Period number to calendar month in a monthly mart (periods count from its first month)."""
    frame = inputs.query(f'select distinct period, month from marts."{panel}"')
    return {float(p): pd.Timestamp(m) for p, m in zip(frame["period"], frame["month"], strict=True)}


def last_build_text(inputs: ReportInputs) -> str:
    """The warehouse's last recorded dbt build, in a sentence."""
    from sicp.warehouse import last_build

    build = last_build(inputs.warehouse)
    if build is None:
        return "The warehouse records no dbt build."
    when = str(build["built_at"]).replace("T", " ").rstrip("Z")[:19]
    if build["success"]:
        return (
            f"The warehouse's last dbt build ({when} UTC, `{build['invoked_by']}`) passed: "
            f"{build['n_nodes']} nodes."
        )
    failed = build["failed_nodes"] or f"{build['n_skipped']} node(s) skipped"
    return (
        f"**The warehouse's last dbt build ({when} UTC, `{build['invoked_by']}`) failed**: "
        f"{build['n_failed']} of {build['n_nodes']} nodes failed ({failed}); the marts may "
        "be stale."
    )


def banner(text: str) -> str:
    """A boxed notice at the top of a report, as raw HTML and raw typst (pandoc keeps the one of
    the output format and drops the other)."""
    typst_text = re.sub(r"([\\#*_`$@<>\[\]~])", r"\\\1", text)
    return (
        "```{=html}\n"
        '<div class="sicp-banner" role="note" style="border: 2px solid #b45309; '
        "background: #fff7e6; color: #3d2a00; padding: 0.7em 1em; margin: 1em 0 1.5em; "
        f'border-radius: 4px; font-weight: 600;">{html.escape(text)}</div>\n'
        "```\n\n"
        "```{=typst}\n"
        '#block(width: 100%, inset: 8pt, radius: 3pt, stroke: 1.5pt + rgb("#b45309"), '
        f'fill: rgb("#fff7e6"))[*{typst_text}*]\n'
        "```\n"
    )


def report_banner(inputs: ReportInputs) -> str:
    """The synthetic-data banner when the input folder is a synthetic world, else nothing."""
    return banner(SYNTHETIC_BANNER) if inputs.is_synthetic() else ""


def store_summary(statuses: pd.DataFrame, n_estimates: int) -> str:
    """A line for an empty store or for protocols that produced nothing, else ``""``."""
    not_ok = statuses[statuses["status"] != STATUS_OK]
    if n_estimates == 0:
        recorded = not_ok[not_ok["status"] != STATUS_NOT_RUN]
        if recorded.empty:
            return f"**{NO_ESTIMATES}** The results store has no estimate rows."
        lines = "\n".join(
            f"- `{pid}`: {row.status.replace('_', ' ')}: {md_escape(row.reason)}"
            for pid, row in recorded.iterrows()
        )
        return (
            f"**No estimates**: every protocol run on this warehouse failed or was not "
            f"applicable:\n\n{lines}"
        )
    if not_ok.empty:
        return ""
    counts = not_ok["status"].str.replace("_", " ").value_counts().sort_index()
    return (
        f"{plural(len(not_ok), 'protocol')} of {len(statuses)} "
        f"{'has' if len(not_ok) == 1 else 'have'} no estimates "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}); each is marked "
        f'"{NOT_ESTIMATED}" with its reason where its results would be.'
    )


# --- Numbers and tables as a reader sees them -----------------------------------------------

#: What a table cell shows where there is no value (never pandas' ``<NA>`` or ``nan``).
NO_VALUE = "–"
#: A display cell that holds a number (right-aligned): digits with separators, a sign, a
#: percentage, an interval, a p-value bound, a dash or a suppressed count.
_NUMERIC_CELL = re.compile(
    r"^(?:[-–<>]?\s?[\d,]*\.?\d+%?(?:\s\(.*\))?|–|\[c\]|"
    r"-?[\d,.]+ to -?[\d,.]+|)$"
)


def _missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def number(value: object, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits as ``%g`` writes it, but never in scientific
    notation (``1,513,827`` not ``1.51e+06``, ``0.000123`` not ``1.23e-04``); text (``[c]``)
    passes through and a missing value is a dash."""
    if isinstance(value, str):
        return value
    if _missing(value):
        return NO_VALUE
    v = float(value)  # type: ignore[arg-type]
    text = f"{v:.{digits}g}"
    if "e" not in text:
        return text if abs(v) < 10_000 else f"{float(text):,.0f}"
    if v == 0 or abs(v) >= 1:
        return f"{float(text):,.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(v)))
    return f"{v:.{decimals}f}".rstrip("0").rstrip(".")


def count(value: object) -> str:
    """A count as an integer with thousands separators (``32,779``, never ``32779.0``)."""
    if isinstance(value, str):
        return value
    return NO_VALUE if _missing(value) else f"{round(float(value)):,}"  # type: ignore[arg-type]


def fixed(value: object, decimals: int = 1) -> str:
    """A number with ``decimals`` decimals and thousands separators (GBP, rates)."""
    if isinstance(value, str):
        return value
    return NO_VALUE if _missing(value) else f"{float(value):,.{decimals}f}"  # type: ignore[arg-type]


def p_value(value: object) -> str:
    """A p-value: ``<0.001`` below a thousandth, else three decimals."""
    if _missing(value):
        return NO_VALUE
    v = float(value)  # type: ignore[arg-type]
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def interval(estimate: object, low: object, high: object, digits: int = 3) -> str:
    """``estimate (low to high)``, or a dash without an estimate."""
    if _missing(estimate):
        return NO_VALUE
    if _missing(low) or _missing(high):
        return number(estimate, digits)
    return f"{number(estimate, digits)} ({number(low, digits)} to {number(high, digits)})"


def display_table(frame: pd.DataFrame, formats: dict[str, Any] | None = None) -> pd.DataFrame:
    """A display-ready copy of ``frame``: every cell text, each column through its formatter in
    ``formats`` (a function of the value), missing values as a dash, and no index (a named
    index becomes the first column, a default 0..N one is dropped)."""
    formats = formats or {}
    out = (
        frame.reset_index()
        if any(n is not None for n in frame.index.names)
        else frame.reset_index(drop=True)
    )
    shown = pd.DataFrame(index=out.index)
    for column in out.columns:
        convert = formats.get(column)
        shown[str(column)] = [
            NO_VALUE if _missing(v) else str(convert(v) if convert else v) for v in out[column]
        ]
    return shown


def md_table(frame: pd.DataFrame, widest: int = 44, line: int = 110) -> str:
    """A display-ready frame as a pandoc pipe table: no index, every cell printed as written
    (escaped), numbers right-aligned. Pandoc sizes the columns by the dashes of the rule: a
    number column gets its longest cell (numbers never wrap; its header may), a text column its
    longest up to ``widest`` characters, and when they add up to more than ``line`` characters
    (about the typst page's width at the table font) the text columns share what is left
    (never less than 20 characters each), so they wrap instead of crowding the numbers."""
    cells = [[md_escape(v) for v in row] for row in frame.astype(str).itertuples(index=False)]
    header = [md_escape(c) for c in frame.columns]
    right = [
        bool(cells) and all(_NUMERIC_CELL.match(str(r[j]).replace("\\", "")) for r in cells)
        for j in range(len(header))
    ]
    # a number column's header may wrap between words, down to 12 characters a line
    heads = [
        max(min(len(h), 12), *(len(w) for w in h.split())) if r else len(h)
        for h, r in zip(header, right, strict=True)
    ]
    longest = [max([heads[j], 3, *(len(r[j]) for r in cells)]) for j in range(len(header))]
    widths = [n + 2 if r else min(widest, n) + 2 for n, r in zip(longest, right, strict=True)]
    fixed_width = sum(w for w, r in zip(widths, right, strict=True) if r)
    text_width = sum(widths) - fixed_width
    if sum(widths) > line and text_width:
        share = max(line - fixed_width, 0) / text_width
        widths = [
            w if r else max(min(w, 20), round(w * share))
            for w, r in zip(widths, right, strict=True)
        ]
    rule = [
        "-" * (w - 1) + ":" if r else ":" + "-" * (w - 1)
        for w, r in zip(widths, right, strict=True)
    ]

    def row(values: list[str]) -> str:
        return "| " + " | ".join(values) + " |"

    return "\n".join([row(header), row(rule), *(row(r) for r in cells)]) + "\n"


# --- Terms in words -------------------------------------------------------------------------

#: The estimators' term names in words: every table and sentence of the reports prints these,
#: never the store's term names (tests/test_report_document.py fails on a raw term in a
#: rendered report). Terms with a number in them are in :data:`_TERM_PATTERNS`.
TERM_WORDS: dict[str, str] = {
    "itt": "intention-to-treat effect of the offer (ANCOVA)",
    "cace": "complier-average causal effect of accepting (offer as instrument)",
    "per_protocol": "per-protocol contrast, accepters against controls (biased by self-selection)",
    "as_treated": "as-treated contrast, accepters against everyone else (biased by self-selection)",
    "treatment": "effect of being in scope (immediate-effect model)",
    "simple": "average effect on the treated over every post-start period (simple "
    "aggregation of the group-time effects)",
    "group_overall": "average effect on the treated, each roll-out cohort weighted by its size "
    "(group aggregation)",
    "calendar_overall": "average effect over calendar periods (calendar aggregation)",
    "dynamic_overall": "average effect over the periods since start (event-time aggregation)",
    "level_change": "change in level at the intervention",
    "slope_change": "change in trend after the intervention",
    "group_x_level_change": "study area's level change relative to the comparator areas'",
    "group_x_slope_change": "study area's trend change relative to the comparator areas'",
    "dose": "change per unit of cumulative investment (dose-response slope)",
    "att_post_mean": "mean gap between the study area and its synthetic control after the start",
    "did_foil": "difference-in-differences against the equally weighted comparator areas",
    "pretrend_wald": "joint test that every lead is zero (pre-trends)",
    "pretest_wald": "joint test that every pre-start group-time effect is zero (pre-trends)",
    "exposure_time_heterogeneity": "test that the effect is the same at every exposure time",
    "icer": "incremental cost-effectiveness ratio (GBP per QALY)",
    "incremental_cost": "incremental cost (GBP per person)",
    "incremental_qaly": "incremental QALYs (QALYs per person)",
}
_TERM_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"inmb_(\d+)"),
        "incremental net monetary benefit at GBP {0:,} per QALY (GBP per person)",
    ),
    (re.compile(r"exposure_time=(\d+)"), "effect in {period} {0} of exposure"),
    (re.compile(r"exposure_time>=(\d+)"), "effect from {period} {0} of exposure on"),
    (re.compile(r"event_(-?\d+)|event\[e=(-?\d+)\]"), "effect {0} {period}s from the start"),
)
#: Methods whose treatment indicator (a panel column or one the protocol derives) is the
#: reported term, in words.
_INDICATOR_WORDS = {
    "did_twfe": "difference-in-differences effect (two-way fixed effects)",
    "sw_gee": "effect of being in scope (immediate-effect model)",
}


def _period_word(protocol: Protocol | None) -> str:
    """``wave`` for a protocol whose periods are survey waves, else ``month``."""
    options = protocol.method.options if protocol is not None else {}
    return "survey wave" if options.get("period") == "wave" else "month"


def term_words(term: str, scale: str = "", protocol: Protocol | None = None) -> str | None:
    """A store term in words, or None when it has none (the caller then shows the term, and
    the report test names it). ``scale`` (the store's) tells a log-scale average of
    exposure-time effects (a geometric mean of rate ratios) from a linear one; ``protocol``
    supplies the period unit and its own treatment indicators."""
    if term in TERM_WORDS:
        return TERM_WORDS[term]
    period = _period_word(protocol)
    average = re.fullmatch(r"average_first_(\d+)", term)
    if average:
        how = (
            "geometric mean of the monthly rate ratios"
            if scale == "log"
            else f"mean of the effects in each {period}"
        )
        return f"average effect over the first {average[1]} {period}s of exposure ({how})"
    for pattern, words in _TERM_PATTERNS:
        match = pattern.fullmatch(term)
        if match:
            value = int(next(g for g in match.groups() if g is not None))
            return words.format(value, period=period)
    if protocol is not None:
        for analysis in protocol.analyses():
            if analysis.method.options.get("treatment") == term:
                return _INDICATOR_WORDS.get(
                    analysis.method.name, "effect of the exposure indicator"
                )
    return None


def analysis_words(analysis_id: str) -> str:
    """An analysis id as a reader names it (``practice_fixed_effects_mdg_clustered`` ->
    ``practice fixed effects, MDG clustered``)."""
    if analysis_id == "primary":
        return "primary"
    words = analysis_id.replace("_mdg_clustered", ", MDG clustered").replace("_", " ")
    return re.sub(r"\b(mdg|twfe|cace|itt)\b", lambda m: m[1].upper(), words)


#: Components of the programme, in the order the report presents them, with their names.
COMPONENT_WORDS = {
    "mdg": "Multidisciplinary groups (MDGs)",
    "coaching": "Telephone health coaching (trial within the cohort)",
    "community_assets": "Community assets",
    "contact_centre": "The centre of contact",
}


def component_words(component: str) -> str:
    return COMPONENT_WORDS.get(
        component, component.replace("_", " ").capitalize() or "Other analyses"
    )


def component_order(components: list[str] | set[str]) -> list[str]:
    """The programme's components in the report's order, unknown ones after, by name."""
    known = [c for c in COMPONENT_WORDS if c in components]
    return known + sorted(set(components) - set(known))


#: Method names in words, for the sections and the methods appendix.
METHOD_WORDS = {
    "sw_lmm": "Hussey–Hughes linear mixed model",
    "sw_gee": "stepped-wedge GEE (immediate effect)",
    "sw_exposure_time": "stepped-wedge exposure-time model",
    "sw_permutation": "stepped-wedge permutation test",
    "its_segmented": "segmented interrupted time series",
    "its_controlled": "controlled interrupted time series",
    "did_twfe": "difference-in-differences (two-way fixed effects)",
    "did_event_study": "event study (two-way fixed effects with leads and lags)",
    "did_group_time": "group-time ATTs (Callaway & Sant'Anna)",
    "synthetic_control": "synthetic control",
    "dose_response_did": "dose-response difference-in-differences (wild cluster bootstrap)",
    "trial_itt": "intention-to-treat ANCOVA",
    "trial_cace": "complier-average causal effect (two-stage least squares)",
    "trial_per_protocol": "per-protocol contrast",
    "trial_as_treated": "as-treated contrast",
    "cost_effectiveness": "trial-based cost-effectiveness analysis (bootstrap)",
    "trial_itt_ipw": "intention-to-treat ANCOVA weighted for missing follow-up (missing at "
    "random), with a delta-adjusted tipping point",
}


def method_words(name: str) -> str:
    return METHOD_WORDS.get(name, name.replace("_", " "))


# --- The executive summary ------------------------------------------------------------------

#: Units written before the number (``rate ratio 0.93``); every other unit follows it.
_LEADING_UNITS = ("rate ratio", "ratio of rate ratios", "odds ratio", "mean difference")


def effect_sentence(row: pd.Series, p_adjusted: float | None = None) -> str:
    """A headline effect answered in a sentence: the estimate with its unit and interval, the
    change in per cent for a ratio, whether the interval includes no effect and what the
    estimate is (its term in words); for a protocol without an estimate, why it has none.
    ``p_adjusted`` is its Holm-adjusted p-value when it belongs to a family."""
    if row.get("note"):
        return f"**{row['label']}**: *{md_escape(row['note'])}*"
    est, low, high, null = row["estimate"], row["ci_low"], row["ci_high"], row["null_value"]
    unit = str(row.get("unit") or "")
    measure = f"{unit} {number(est)}" if unit in _LEADING_UNITS else f"{number(est)} {unit}".strip()
    has_ci = not (math.isnan(low) or math.isnan(high))
    ci = f" (95% CI {number(low)} to {number(high)})" if has_ci else ""
    change = ""
    if row.get("transform") == "exp" and est > 0:
        change = f", {abs(est - 1) * 100:.1f}% {'lower' if est < 1 else 'higher'}"
    if not has_ci:
        verdict = "no interval is available for this estimate"
    elif low > null:
        verdict = "the interval lies wholly above no effect"
    elif high < null:
        verdict = "the interval lies wholly below no effect"
    else:
        verdict = "the interval includes no effect"
    words = row.get("term_words")
    what = f" The estimate is the {md_escape(words)}." if words else ""
    holm = ""
    if p_adjusted is not None and not _missing(p_adjusted):
        holm = f" Holm-adjusted p {_p_phrase(p_adjusted)} over its family of primary outcomes."
    return f"**{row['label']}**: {measure}{ci}{change}; {verdict}.{what}{holm}"


def _excludes_null(row: Any) -> str | None:
    """``lower`` / ``higher`` when the row's interval excludes no effect, else None."""
    if row.note or _missing(row.ci_low) or _missing(row.ci_high):
        return None
    if row.ci_high < row.null_value:
        return "lower"
    return "higher" if row.ci_low > row.null_value else None


def summary_by_component(headlines: pd.DataFrame, adjusted: dict[str, float] | None = None) -> str:
    """The executive summary's findings: for each component of the programme (in the report's
    order), each primary question with its answer (:func:`effect_sentence`), then what the
    component's primary outcomes show together."""
    adjusted = adjusted or {}
    parts = []
    for component in component_order(set(headlines["component"])):
        rows = headlines[headlines["component"] == component]
        rows = rows.assign(_order=[design_rank(m) for m in rows["method"]]).sort_values(
            ["_order", "protocol_id"]
        )
        lines = [
            f"- *{md_escape(r['question'])}* {effect_sentence(r, adjusted.get(r['protocol_id']))}"
            for _, r in rows.iterrows()
        ]
        estimated = [r for r in rows.itertuples() if not r.note]
        excluding = [(r.label, d) for r in estimated if (d := _excludes_null(r))]
        named = listing([f"{md_escape(label)} ({d})" for label, d in excluding])
        if not estimated:
            close = "None of its primary outcomes has an estimate in this run."
        elif len(estimated) == 1:
            close = "Its one primary outcome with an estimate has a 95% interval that " + (
                f"excludes no effect ({excluding[0][1]})." if excluding else "includes no effect."
            )
        elif not excluding:
            close = (
                f"All {len(estimated)} primary outcomes with an estimate have 95% intervals "
                "that include no effect."
            )
        elif len(excluding) == len(estimated):
            close = (
                f"All {len(estimated)} primary outcomes with an estimate have 95% intervals "
                f"that exclude no effect: {named}."
            )
        else:
            close = (
                f"Of {len(estimated)} primary outcomes with an estimate, {len(excluding)} "
                f"{'has an interval that excludes' if len(excluding) == 1 else 'have intervals that exclude'}"
                f" no effect: {named}; the others are compatible with no effect."
            )
        significant = [pid for pid in rows["protocol_id"] if adjusted.get(pid, 1.0) < 0.05]
        if any(pid in adjusted for pid in rows["protocol_id"]):
            close += (
                f" After Holm adjustment within the declared family, "
                f"{plural(len(significant), 'outcome')} "
                f"{'keeps' if len(significant) == 1 else 'keep'} p < 0.05."
            )
        parts.append(f"### {component_words(component)}\n\n" + "\n".join(lines) + f"\n\n{close}\n")
    return "\n".join(parts)


def holm_adjusted(multiplicity: pd.DataFrame) -> dict[str, float]:
    """Each family member's Holm-adjusted p-value (members without one are left out)."""
    frame = multiplicity.dropna(subset=["p_adjusted"])
    return {
        str(p): float(v) for p, v in zip(frame["protocol_id"], frame["p_adjusted"], strict=True)
    }


def forest_rows(headlines: pd.DataFrame) -> pd.DataFrame:
    """Headline rows for the grouped forest plot: the component's name and the scale each row
    is drawn on (one axis per scale: ratios share a log axis, a difference shares one only
    with the same unit of the same outcome)."""
    out = headlines.copy()
    out["component_label"] = [component_words(c) for c in out["component"]]
    out["scale"] = [
        "ratio (log scale)" if t == "exp" else f"{u} | {o}"
        for t, u, o in zip(out["transform"], out["unit"], out["outcome"], strict=True)
    ]
    out["axis_label"] = [
        "ratio (log scale)" if t == "exp" else str(u)
        for t, u in zip(out["transform"], out["unit"], strict=True)
    ]
    order = {c: i for i, c in enumerate(component_order(set(out["component"])))}
    return (
        out.assign(_c=out["component"].map(order))
        .sort_values(["_c", "scale", "protocol_id"], kind="mergesort")
        .drop(columns="_c")
        .reset_index(drop=True)
    )


# --- The trial within the cohort: flow and baseline ------------------------------------------

ARMS = ("offer", "control")


def _trial_analysed(panel: pd.DataFrame, protocol: Protocol) -> pd.Series:
    """People by arm in the complete cases the protocol's primary analysis fits: the rows
    with every column it names (outcome, the method's column options, covariates)."""
    analysis = protocol.analyses()[0]
    frame = apply_filters(prepare_panel(panel, protocol.data), analysis.filters)
    options = analysis.method.options
    named = [protocol.outcome, *analysis.covariates]
    for option in column_options(METHODS[analysis.method.name]):
        value = options.get(option)
        named += value if isinstance(value, list) else [value] if value else []
    complete = frame.dropna(subset=list(dict.fromkeys(named)))
    return complete.groupby("arm").size()


def trial_flow(
    inputs: ReportInputs, protocols: dict[str, Protocol], threshold: int
) -> pd.DataFrame:
    """CONSORT-style flow of the trial within the cohort: the cohort recruited, who left
    before randomisation and why, each arm's offer, acceptance, questionnaires and the
    complete cases each trial protocol analyses. Counts from 1 to ``threshold - 1`` are
    ``[c]``, with secondary suppression along each line that adds up to a shown count (the
    cohort's exclusions and the randomised, an arm's accepters and decliners, the arms of a
    stage); a stage's total is the sum of its arms."""
    remaining = inputs.query(
        "select count(*) as n, sum(case when consent_trials = 1 then 1 "
        "else 0 end) as trials "
        "from staging.stg_recruitment__cohort_members"
    ).iloc[0]
    withdrawn = int(
        inputs.query("select count(*) as n from raw.consent_exclusions where scope = 'all'")["n"][0]
    )
    panel = inputs.query("select * from marts.twic_analysis_set")
    returned = inputs.query("""
        select t.arm,
               count(distinct case when w.wave = t.baseline_wave then t.person_id end) as baseline,
               count(distinct case when w.wave = t.followup_wave then t.person_id end) as followup
        from marts.twic_analysis_set as t
        left join marts.person_wave_panel as w on w.person_id = t.person_id
        group by t.arm""").set_index("arm")
    design = inputs.query("select baseline_wave, followup_wave from marts.trial_design")
    by_arm = panel.groupby("arm")
    randomised = by_arm.size()
    accepted = by_arm["accepted"].sum()
    linked = by_arm["consent_linkage"].sum()
    waves = (
        (f" (wave {int(design['baseline_wave'][0])})", f" (wave {int(design['followup_wave'][0])})")
        if len(design)
        else ("", "")
    )
    n_trials = int(remaining["trials"] or 0)
    rows: list[dict[str, Any]] = [
        {
            "stage": "Recruited to the cohort",
            "kind": "cohort",
            "total": int(remaining["n"]) + withdrawn,
        },
        {"stage": "Withdrew all consent", "kind": "excluded", "total": withdrawn},
        {
            "stage": "Did not consent to be approached for trials",
            "kind": "excluded",
            "total": int(remaining["n"]) - n_trials,
        },
        {
            "stage": "Consented, not randomised in this trial",
            "kind": "excluded",
            "total": n_trials - len(panel),
        },
        {"stage": "Randomised", "kind": "cohort", "total": len(panel)},
        {"stage": "Allocated", "kind": "arm", **{a: randomised.get(a, 0) for a in ARMS}},
        {"stage": "Accepted the offer", "kind": "arm", "offer": accepted.get("offer", 0)},
        {
            "stage": "Declined the offer",
            "kind": "arm",
            "offer": randomised.get("offer", 0) - accepted.get("offer", 0),
        },
        {
            "stage": "Baseline questionnaire returned" + waves[0],
            "kind": "arm",
            **{a: returned["baseline"].get(a, 0) for a in ARMS},
        },
        {
            "stage": "Follow-up questionnaire returned" + waves[1],
            "kind": "arm",
            **{a: returned["followup"].get(a, 0) for a in ARMS},
        },
        {
            "stage": "Consented to record linkage (costs, admissions)",
            "kind": "arm",
            **{a: linked.get(a, 0) for a in ARMS},
        },
    ]
    for pid in sorted(protocols):
        protocol = protocols[pid]
        if protocol.panel == "twic_analysis_set" and protocol.primary:
            analysed = _trial_analysed(panel, protocol)
            rows.append(
                {
                    "stage": f"Analysed: {protocol.outcome_label}",
                    "kind": "arm",
                    **{a: analysed.get(a, 0) for a in ARMS},
                }
            )
    frame = pd.DataFrame(rows, columns=["stage", "kind", *ARMS, "total"])
    arms = frame["kind"] == "arm"
    frame.loc[arms, "total"] = frame.loc[arms, list(ARMS)].sum(axis=1, min_count=1)
    # one line for the cohort's partition and for the offer arm's accepters and decliners,
    # one per later stage
    frame["group"] = ["cohort" if i < 8 else f"stage {i}" for i in range(len(frame))]
    columns = [*ARMS, "total"]
    mask = suppression_mask(frame, columns, threshold, along=("rows", "columns"), groups="group")
    for column in columns:
        frame[column] = [
            SUPPRESSED if hidden else ("" if _missing(v) else count(v))
            for v, hidden in zip(frame[column], mask[column], strict=True)
        ]
    return frame.drop(columns="group")


def _mean_sd(values: pd.Series, threshold: int, digits: int = 1) -> str:
    values = values.dropna()
    if len(values) < threshold:
        return SUPPRESSED if len(values) else NO_VALUE
    return f"{values.mean():,.{digits}f} ({values.std():,.{digits}f})"


#: Baseline scores of the trial's participants: (column, words, decimals).
_BASELINE_SCORES = (
    ("eq5d_index_baseline", "EQ-5D-5L index", 3),
    ("selfman_score_baseline", "Self-management score (0-100)", 1),
    ("pacic_score_baseline", "PACIC short form (item mean, 1-5)", 2),
    ("wellbeing_score_baseline", "Capability wellbeing (item mean, 1-4)", 2),
)


def trial_baseline(inputs: ReportInputs, threshold: int) -> pd.DataFrame:
    """Baseline characteristics of the trial's participants by arm, display-ready: mean (SD)
    for age, long-term conditions and baseline scores (with how many answered), n (%) for
    sex, IMD decile groups, social care need and record-linkage consent. A count from 1 to
    ``threshold - 1`` and its percentage are ``[c]`` (with secondary suppression within each
    characteristic whose groups add up to the arm); a mean of fewer people is ``[c]``."""
    frame = inputs.query("""
        select t.*, r.sex_label, r.social_care_need_label
        from marts.twic_analysis_set as t
        left join staging.stg_recruitment__cohort_members as r on r.person_id = t.person_id""")
    arms = [a for a in ARMS if (frame["arm"] == a).any()]
    size = {a: int((frame["arm"] == a).sum()) for a in arms}
    imd_groups = pd.cut(
        frame["imd_decile"],
        [0, 2, 4, 6, 8, 10],
        labels=["1-2 (most deprived)", "3-4", "5-6", "7-8", "9-10 (least deprived)"],
    )
    frame["imd_group"] = imd_groups.astype(object).where(imd_groups.notna(), "not recorded")
    frame["linkage"] = frame["consent_linkage"].map({1: "yes", 0: "no"}).fillna("not recorded")
    categorical = (
        ("Sex", "sex_label"),
        ("IMD decile", "imd_group"),
        ("Social care need", "social_care_need_label"),
        ("Consent to record linkage", "linkage"),
    )
    counts = []
    for title, column in categorical:
        values = frame[column].fillna("not recorded").astype(str)
        levels = (
            list(imd_groups.cat.categories) + ["not recorded"]
            if column == "imd_group"
            else sorted(values.unique())
        )
        for level in levels:
            if not (values == level).any():
                continue
            counts.append(
                {
                    "characteristic": f"{title}: {level}",
                    "group": title,
                    **{a: int(((frame["arm"] == a) & (values == level)).sum()) for a in arms},
                }
            )
    table = pd.DataFrame(counts, columns=["characteristic", "group", *arms])
    mask = suppression_mask(table, arms, threshold, along=("columns",), groups="group")
    rows = [
        {
            "characteristic": "Age at recruitment, years: mean (SD)",
            **{
                a: _mean_sd(frame.loc[frame["arm"] == a, "age_at_recruitment"], threshold)
                for a in arms
            },
        },
        {
            "characteristic": "Long-term conditions, number: mean (SD)",
            **{a: _mean_sd(frame.loc[frame["arm"] == a, "n_ltc"], threshold) for a in arms},
        },
    ]
    for i, r in table.iterrows():
        rows.append(
            {
                "characteristic": f"{r['characteristic']}, n (%)",
                **{
                    a: SUPPRESSED if mask.at[i, a] else f"{r[a]:,} ({100 * r[a] / size[a]:.1f}%)"
                    for a in arms
                },
            }
        )
    for column, words, digits in _BASELINE_SCORES:
        if column not in frame:
            continue
        rows.append(
            {
                "characteristic": f"Baseline {words}: mean (SD)",
                **{
                    a: _mean_sd(frame.loc[frame["arm"] == a, column], threshold, digits)
                    for a in arms
                },
            }
        )
        rows.append(
            {
                "characteristic": f"Baseline {words}: answered, n",
                **{
                    a: suppress_value(
                        int(frame.loc[frame["arm"] == a, column].notna().sum()), threshold
                    )
                    for a in arms
                },
            }
        )
    header = {a: f"{a} (n = {suppress_value(size[a], threshold)})" for a in arms}
    return pd.DataFrame(rows, columns=["characteristic", *arms]).rename(columns=header)


# --- Designs: missing data, multiplicity and limitations ------------------------------------

#: The evaluation's designs, in the report's order, each with the methods that make it.
DESIGNS: dict[str, tuple[str, ...]] = {
    "Stepped wedge (the MDG roll-out)": ("sw_lmm", "sw_gee", "sw_exposure_time", "sw_permutation"),
    "Staggered adoption (difference-in-differences across practices)": (
        "did_group_time",
        "did_event_study",
    ),
    "Interrupted time series and area comparisons": (
        "its_segmented",
        "its_controlled",
        "synthetic_control",
    ),
    "Trial within the cohort (health coaching)": (
        "trial_itt",
        "trial_cace",
        "trial_per_protocol",
        "trial_as_treated",
    ),
    "Dose-response (community assets)": ("dose_response_did",),
    "Economics (cost consequences and cost-effectiveness)": ("cost_effectiveness",),
}


def design_of(protocol: Protocol) -> str:
    """The design a protocol's primary analysis belongs to (a two-way fixed-effects DiD is an
    area comparison at area level, a staggered one across practices)."""
    name = protocol.method.name
    if name == "did_twfe":
        return (
            next(iter(d for d in DESIGNS if "area" in d))
            if protocol.level == "external"
            else next(iter(d for d in DESIGNS if "Staggered" in d))
        )
    return next((d for d, methods in DESIGNS.items() if name in methods), "Other designs")


def design_rank(method: str) -> int:
    """Where a method's design comes in the report's order (unknown ones last)."""
    ranks = {m: i for i, methods in enumerate(DESIGNS.values()) for m in methods}
    return ranks.get(method, ranks.get("did_group_time", 0) if method == "did_twfe" else 99)


def _multiplicity_text(members: list[Protocol]) -> str:
    """How the design's p-values are read: each declared family (Holm), the primary protocols
    outside every family and the secondary ones, all unadjusted."""
    families: dict[str, list[str]] = {}
    outside, secondary = [], []
    for p in sorted(members, key=lambda p: p.id):
        if p.multiplicity_family:
            families.setdefault(p.multiplicity_family, []).append(p.outcome_label)
        elif p.primary:
            outside.append(p.outcome_label)
        else:
            secondary.append(p.outcome_label)
    bits = [
        f"the primary p-values of {listing([md_escape(x) for x in labels])} are "
        f"Holm-adjusted within the family *{analysis_words(name)}*, whose other members "
        "may be of other designs"
        for name, labels in sorted(families.items())
    ]
    if outside:
        bits.append(
            f"{listing([md_escape(x) for x in outside])} "
            f"{'is a primary outcome' if len(outside) == 1 else 'are primary outcomes'} "
            "outside every declared family, so "
            f"{'its p-value is' if len(outside) == 1 else 'their p-values are'} "
            "unadjusted (a second design for a question a family already asks reads as "
            "triangulation, not as one more test)"
        )
    if secondary:
        bits.append(
            f"{listing([md_escape(x) for x in secondary])} "
            f"{'is a secondary outcome' if len(secondary) == 1 else 'are secondary outcomes'}"
            ", unadjusted and exploratory"
        )
    text = "; ".join(bits)
    return (
        "**Multiplicity.** " + text[:1].upper() + text[1:] + ". Sensitivity analyses are never "
        "adjusted: they test the primary's assumptions, not further hypotheses."
    )


def _design_texts(facts: StudyFacts) -> dict[str, tuple[str, str]]:
    """(missing data, limitations) of each design, as the current analyses stand."""
    trial = facts.trial or {}
    followup = (
        f" The follow-up questionnaire came {plural(int(trial['months_randomisation_to_followup']), 'month')} "
        f"after the first randomisation month, against the {plural(int(trial['planned_followup_months']), 'month')} planned."
        if trial
        and int(trial["months_randomisation_to_followup"]) != int(trial["planned_followup_months"])
        else ""
    )
    clusters = (
        f"{plural(facts.practices, 'practice')} in "
        f"{plural(facts.neighbourhoods, 'neighbourhood')}, served by "
        f"{plural(facts.mdgs, 'MDG')}"
    )
    return {
        "Stepped wedge (the MDG roll-out)": (
            "Practice-month counts come from record extracts that cover every month of the "
            "window (a gap inside an extract fails the build), so the count models have no "
            "missing outcomes; practice-months without registered people aged 65+ drop out. "
            "The survey models use every questionnaire returned (available cases, no "
            "imputation): the mixed models are unbiased if questionnaires are missing at random "
            "given practice, person, wave and exposure.",
            "The roll-out was not randomised: the estimates assume that, without MDGs, "
            "practices' outcomes would have followed the period effects common to all "
            f"practices. There are few clusters ({clusters}), so the GEE standard errors carry "
            "small-sample corrections with a t reference on clusters minus two degrees of "
            "freedom and permutation tests are reported beside them; the survey mixed models' "
            "standard errors are model-based. Questionnaires are lost to attrition, which is "
            "higher among frailer people.",
        ),
        "Staggered adoption (difference-in-differences across practices)": (
            "The practice-quarter panel sums complete monthly record extracts, so there are no "
            "missing outcomes; no imputation is done.",
            "The group-time effects compare each roll-out cohort with practices that never "
            "took part (or had not yet started) and assume parallel trends without MDGs and no "
            "anticipation; a passed pre-trend test is not evidence of parallel trends. Summing "
            "months to quarters counts a practice that starts within a quarter as treated for "
            "all of it, which the partial-first-quarter sensitivity analysis undoes. Two-way "
            "fixed effects are shown only as the familiar benchmark: with staggered starts "
            "and growing effects they weight the comparisons badly.",
        ),
        "Interrupted time series and area comparisons": (
            "The series are published monthly area indicators and the practices' record "
            "extracts over the months they cover (stated under the study window); no month is "
            "imputed.",
            "A single series cannot separate the programme from anything else that changed in "
            f"{facts.site} at the same time (other services, coding or policy changes); the "
            "segmented models assume the pre-existing trend and seasonality would have "
            "continued, with residual autocorrelation modelled in the standard errors. With one "
            "treated area, the area difference-in-differences takes its inference from the "
            "study-area-minus-comparators series (a random walk plus noise) and the synthetic "
            "control from placebo areas, whose smallest attainable p-value is one over the "
            "number of areas.",
        ),
        "Trial within the cohort (health coaching)": (
            "Complete cases: each analysis fits the randomised participants with the outcome at "
            "follow-up, its baseline value and the stratum (the numbers analysed are in the "
            "trial flow). This is unbiased if, given the baseline value and the stratum, "
            "missing follow-up questionnaires are unrelated to the outcome; no multiple "
            "imputation is done yet, so the analyses are not of every person randomised.",
            "Only those offered coaching were contacted; outcomes are self-reported by people "
            "who know whether they were coached. The CACE assumes the offer changes outcomes "
            "only through acceptance (exclusion restriction) and that no control was coached "
            "(one-sided non-compliance); the per-protocol and as-treated contrasts are biased by "
            "self-selection and are shown only to make that visible." + followup,
        ),
        "Dose-response (community assets)": (
            "Every questionnaire returned is used (available cases, no imputation); with person "
            "and wave fixed effects, a person with one questionnaire adds nothing to the "
            "slope.",
            f"Investment varies by neighbourhood and there are only "
            f"{plural(facts.neighbourhoods, 'neighbourhood')}, so inference is the wild cluster "
            "restricted bootstrap (Webb weights) rather than cluster-robust standard errors. "
            "The slope assumes parallel trends in the outcome without investment and a linear "
            "dose response the same in every neighbourhood; investment was not allocated at "
            "random.",
        ),
        "Economics (cost consequences and cost-effectiveness)": (
            "Costs need record-linkage consent and QALYs need EQ-5D-5L at both the baseline and "
            "the follow-up questionnaire; the cost-effectiveness analysis uses the complete "
            "cases of both, with no imputation (the number analysed is in the trial flow).",
            "Costs are the priced utilisation the protocols list (admissions, A&E attendances, "
            "GP contacts and, where stated, MDG discussions, contact-centre calls and coaching "
            "sessions) at one price year; the programme's own set-up and running costs are not "
            "included. The horizon is the trial's 12 months, so nothing is discounted. The cost "
            "consequences of count models are fitted with their linear analogue on costs.",
        ),
    }


def design_statements(protocols: dict[str, Protocol], facts: StudyFacts) -> str:
    """Missing data, multiplicity and limitations for each design the run's protocols use, as
    the analyses stand (what they assume, not methods they do not apply)."""
    by_design: dict[str, list[Protocol]] = {}
    for protocol in protocols.values():
        by_design.setdefault(design_of(protocol), []).append(protocol)
    economics = "Economics (cost consequences and cost-effectiveness)"
    if any(p.cost_consequence() is not None for p in protocols.values()):
        by_design.setdefault(economics, [])
    texts = _design_texts(facts)
    parts = []
    for design in [*DESIGNS, "Other designs"]:
        if design not in by_design:
            continue
        members = by_design[design]
        missing, limits = texts.get(
            design, ("As stated in each protocol.", "As stated in each protocol.")
        )
        multiplicity = (
            _multiplicity_text(members)
            if members
            else "**Multiplicity.** The cost consequences restate the primary effects "
            "in GBP and are not tested as further hypotheses."
        )
        parts.append(
            f"### {design}\n\n**Missing data.** {missing}\n\n{multiplicity}\n\n"
            f"**Limitations.** {limits}\n"
        )
    return "\n".join(parts)


# --- References -----------------------------------------------------------------------------

#: The methods' papers: the key, how the text cites it and the reference.
REFERENCES: dict[str, tuple[str, str]] = {
    "conley2011": (
        "Conley & Taber 2011",
        'Conley TG, Taber CR. Inference with "difference in differences" with a small number '
        "of policy changes. Review of Economics and Statistics 2011;93(1):113-125.",
    ),
    "cro2020": (
        "Cro et al. 2020",
        "Cro S, Morris TP, Kenward MG, Carpenter JR. Sensitivity analysis for clinical trials "
        "with missing continuous outcome data using controlled multiple imputation: a "
        "practical guide. Statistics in Medicine 2020;39(21):2815-2842.",
    ),
    "ferman2019": (
        "Ferman & Pinto 2019",
        "Ferman B, Pinto C. Inference in differences-in-differences with few treated groups "
        "and heteroskedasticity. Review of Economics and Statistics 2019;101(3):452-467.",
    ),
    "seaman2013": (
        "Seaman & White 2013",
        "Seaman SR, White IR. Review of inverse probability weighting for dealing with "
        "missing data. Statistical Methods in Medical Research 2013;22(3):278-295.",
    ),
    "abadie2010": (
        "Abadie et al. 2010",
        "Abadie A, Diamond A, Hainmueller J. Synthetic control "
        "methods for comparative case studies: estimating the effect of California's "
        "tobacco control program. Journal of the American Statistical Association "
        "2010;105(490):493-505.",
    ),
    "angrist1996": (
        "Angrist, Imbens & Rubin 1996",
        "Angrist JD, Imbens GW, Rubin DB. "
        "Identification of causal effects using instrumental variables. Journal of "
        "the American Statistical Association 1996;91(434):444-455.",
    ),
    "bell2002": (
        "Bell & McCaffrey 2002",
        "Bell RM, McCaffrey DF. Bias reduction in standard "
        "errors for linear regression with multi-stage samples. Survey Methodology "
        "2002;28(2):169-181.",
    ),
    "briggs1997": (
        "Briggs, Wonderling & Mooney 1997",
        "Briggs AH, Wonderling DE, Mooney CZ. "
        "Pulling cost-effectiveness analysis up by its bootstraps: a non-parametric "
        "approach to confidence interval estimation. Health Economics "
        "1997;6(4):327-340.",
    ),
    "callaway2021": (
        "Callaway & Sant'Anna 2021",
        "Callaway B, Sant'Anna PHC. "
        "Difference-in-differences with multiple time periods. Journal of "
        "Econometrics 2021;225(2):200-230.",
    ),
    "cameron2008": (
        "Cameron, Gelbach & Miller 2008",
        "Cameron AC, Gelbach JB, Miller DL. "
        "Bootstrap-based improvements for inference with clustered errors. Review "
        "of Economics and Statistics 2008;90(3):414-427.",
    ),
    "devlin2018": (
        "Devlin et al. 2018",
        "Devlin NJ, Shah KK, Feng Y, Mulhern B, van Hout B. "
        "Valuing health-related quality of life: an EQ-5D-5L value set for England. "
        "Health Economics 2018;27(1):7-22.",
    ),
    "fenwick2001": (
        "Fenwick, Claxton & Sculpher 2001",
        "Fenwick E, Claxton K, Sculpher M. "
        "Representing uncertainty: the role of cost-effectiveness acceptability "
        "curves. Health Economics 2001;10(8):779-787.",
    ),
    "glick2014": (
        "Glick et al. 2014",
        "Glick HA, Doshi JA, Sonnad SS, Polsky D. Economic "
        "Evaluation in Clinical Trials. 2nd edition. Oxford: Oxford University Press; "
        "2014.",
    ),
    "goodmanbacon2021": (
        "Goodman-Bacon 2021",
        "Goodman-Bacon A. Difference-in-differences with "
        "variation in treatment timing. Journal of Econometrics "
        "2021;225(2):254-277.",
    ),
    "hemming2018": (
        "Hemming et al. 2018",
        "Hemming K, Taljaard M, McKenzie JE, et al. Reporting "
        "of stepped wedge cluster randomised trials: extension of the CONSORT 2010 "
        "statement with explanation and elaboration. BMJ 2018;363:k1614.",
    ),
    "holm1979": (
        "Holm 1979",
        "Holm S. A simple sequentially rejective multiple test procedure. "
        "Scandinavian Journal of Statistics 1979;6(2):65-70.",
    ),
    "hussey2007": (
        "Hussey & Hughes 2007",
        "Hussey MA, Hughes JP. Design and analysis of "
        "stepped wedge cluster randomized trials. Contemporary Clinical Trials "
        "2007;28(2):182-191.",
    ),
    "kauermann2001": (
        "Kauermann & Carroll 2001",
        "Kauermann G, Carroll RJ. A note on the "
        "efficiency of sandwich covariance matrix estimation. Journal of the "
        "American Statistical Association 2001;96(456):1387-1396.",
    ),
    "kenny2022": (
        "Kenny et al. 2022",
        "Kenny A, Voldal EC, Xia F, Heagerty PJ, Hughes JP. "
        "Analysis of stepped wedge cluster randomized trials in the presence of a "
        "time-varying treatment effect. Statistics in Medicine 2022;41(22):4311-4339.",
    ),
    "liang1986": (
        "Liang & Zeger 1986",
        "Liang KY, Zeger SL. Longitudinal data analysis using "
        "generalized linear models. Biometrika 1986;73(1):13-22.",
    ),
    "lopezbernal2017": (
        "Lopez Bernal et al. 2017",
        "Lopez Bernal J, Cummins S, Gasparrini A. "
        "Interrupted time series regression for the evaluation of public health "
        "interventions: a tutorial. International Journal of Epidemiology "
        "2017;46(1):348-355.",
    ),
    "mackinnon2017": (
        "MacKinnon & Webb 2017",
        "MacKinnon JG, Webb MD. Wild bootstrap inference "
        "for wildly different cluster sizes. Journal of Applied Econometrics "
        "2017;32(2):233-254.",
    ),
    "manca2005": (
        "Manca et al. 2005",
        "Manca A, Hawkins N, Sculpher MJ. Estimating mean QALYs "
        "in trial-based cost-effectiveness analysis: the importance of controlling "
        "for baseline utility. Health Economics 2005;14(5):487-496.",
    ),
    "mancl2001": (
        "Mancl & DeRouen 2001",
        "Mancl LA, DeRouen TA. A covariance estimator for GEE "
        "with improved small-sample properties. Biometrics 2001;57(1):126-134.",
    ),
    "newey1987": (
        "Newey & West 1987",
        "Newey WK, West KD. A simple, positive semi-definite, "
        "heteroskedasticity and autocorrelation consistent covariance matrix. "
        "Econometrica 1987;55(3):703-708.",
    ),
    "zeger1988": (
        "Zeger 1988",
        "Zeger SL. A regression model for time series of counts. Biometrika 1988;75(4):621-629.",
    ),
    "relton2010": (
        "Relton et al. 2010",
        "Relton C, Torgerson D, O'Cathain A, Nicholl J. "
        'Rethinking pragmatic randomised controlled trials: introducing the "cohort '
        'multiple randomised controlled trial" design. BMJ 2010;340:c1066.',
    ),
}
#: The papers behind each method (the estimators' docstrings name them).
METHOD_REFERENCES: dict[str, tuple[str, ...]] = {
    "sw_lmm": ("hussey2007", "hemming2018"),
    "sw_gee": ("liang1986", "hemming2018"),
    "sw_exposure_time": ("kenny2022", "hussey2007", "liang1986", "hemming2018"),
    "sw_permutation": ("hemming2018",),
    "its_segmented": ("lopezbernal2017",),
    "its_controlled": ("lopezbernal2017",),
    "did_twfe": ("goodmanbacon2021",),
    "did_event_study": ("goodmanbacon2021",),
    "did_group_time": ("callaway2021", "goodmanbacon2021"),
    "synthetic_control": ("abadie2010",),
    "dose_response_did": ("cameron2008", "mackinnon2017"),
    "trial_itt": ("relton2010",),
    "trial_cace": ("angrist1996", "relton2010"),
    "trial_per_protocol": ("relton2010",),
    "trial_as_treated": ("relton2010",),
    "cost_effectiveness": ("glick2014", "manca2005", "briggs1997", "fenwick2001"),
    "trial_itt_ipw": ("seaman2013", "cro2020", "relton2010"),
}


#: Papers behind a method's standard-error option: (method prefix, option value) -> key; a
#: missing option is the estimator's default.
_SE_REFERENCES = {
    ("sw_", "mancl-derouen"): "mancl2001",
    ("sw_", "kauermann-carroll"): "kauermann2001",
    ("its_", "ar1"): "zeger1988",
    ("its_", "hac"): "newey1987",
    ("did_", "placebo"): "conley2011",
    ("did_", "ferman_pinto"): "ferman2019",
}
_SE_DEFAULTS = {
    "sw_gee": "mancl-derouen",
    "sw_exposure_time": "mancl-derouen",
    "its_segmented": "ar1",
    "its_controlled": "ar1",
}


def _analysis_references(name: str, options: dict[str, Any]) -> set[str]:
    """The papers of one analysis: its method's, and its standard error's."""
    keys = set(METHOD_REFERENCES.get(name, ()))
    se = options.get("se_type", _SE_DEFAULTS.get(name))
    keys.update(
        key
        for (prefix, value), key in _SE_REFERENCES.items()
        if name.startswith(prefix) and se == value
    )
    return keys


def cited_references(protocols: dict[str, Protocol]) -> list[str]:
    """The references of the methods the run's protocols use (every analysis, the cost
    consequences too), of the EQ-5D-5L value set when an outcome scores it, of Holm's
    procedure when a family is declared and of any paper a protocol's text cites, in the
    order of their first authors."""
    keys: set[str] = set()
    for protocol in protocols.values():
        analyses = protocol.analyses()
        cost = protocol.cost_consequence()
        for analysis in analyses + ([cost.analysis] if cost is not None else []):
            keys |= _analysis_references(analysis.method.name, dict(analysis.method.options))
        text = " ".join(
            (
                protocol.question,
                protocol.estimand,
                protocol.notes,
                protocol.outcome_label,
                protocol.population,
            )
        )
        if "eq5d" in protocol.outcome or "qaly" in protocol.outcome or "EQ-5D" in text:
            keys.add("devlin2018")
        if protocol.multiplicity_family:
            keys.add("holm1979")
        for key, (cite, _) in REFERENCES.items():
            authors = cite.rsplit(" ", 1)[0]
            if authors in text:
                keys.add(key)
    return [REFERENCES[k][1] for k in sorted(keys, key=lambda k: REFERENCES[k][1])]


# --- The title block ------------------------------------------------------------------------


def report_identity(
    inputs: ReportInputs,
    estimates: pd.DataFrame,
    runs: pd.DataFrame,
    protocols: dict[str, Protocol],
) -> pd.DataFrame:
    """What the report is of, for the table under its title: the code version(s) and input
    fingerprint(s) its estimates cite (with the warehouse's current fingerprint when they
    differ), the protocols and the warehouse's last build."""
    from sicp.warehouse import last_build

    cited = pd.concat(
        [
            estimates[["code_version", "input_fingerprint"]],
            runs[["code_version", "input_fingerprint"]] if len(runs) else None,
        ]
    )
    versions = sorted({str(v) for v in cited["code_version"].dropna()})
    prints = sorted({str(v) for v in cited["input_fingerprint"].dropna()})
    try:
        current = inputs.query("select fingerprint from raw.input_fingerprint")["fingerprint"]
        current_print = str(current.iloc[0]) if len(current) else ""
    except duckdb.Error:
        current_print = ""
    build = last_build(inputs.warehouse)
    rows = [
        ("Code version of the estimates (git describe)", ", ".join(versions) or "no estimates yet"),
        (
            "Input fingerprint of the estimates (SHA-256 over every input file)",
            ", ".join(prints) or "no estimates yet",
        ),
    ]
    if current_print and prints and prints != [current_print]:
        rows.append(
            (
                "Input fingerprint of the warehouse now (the estimates are of other inputs)",
                current_print,
            )
        )
    rows.append(
        (
            "Pre-specified protocols reported",
            f"{len(protocols)} "
            f"({sum(p.primary for p in protocols.values())} with primary outcomes)",
        )
    )
    if build is not None:
        when = str(build["built_at"]).replace("T", " ").rstrip("Z")[:16]
        rows.append(
            ("Warehouse build", f"{when} UTC, {'passed' if build['success'] else 'FAILED'}")
        )
    return pd.DataFrame(rows, columns=["item", "value"])


def residual_diagnostics(diagnostics: dict[str, str]) -> str:
    """A time series' residual checks in words: Pearson dispersion, the Durbin–Watson
    statistic and the Ljung–Box p-values by lag (``""`` when it has none)."""
    found = []
    for key, value in diagnostics.items():
        lag = re.fullmatch(r"ljung_box_p_lag(\d+)", key)
        words = {
            "dispersion_pearson": "Pearson dispersion",
            "ar1_dispersion": "dispersion under the AR(1) working model",
            "durbin_watson": "Durbin–Watson statistic",
        }.get(key)
        if lag:
            found.append(
                f"Ljung–Box test of residual autocorrelation to lag {lag[1]}, "
                f"p {_p_phrase(float(value))}"
            )
        elif words:
            found.append(f"{words} {number(float(value))}")
    return "; ".join(found)


def _p_phrase(p: float) -> str:
    shown = p_value(p)
    return shown.replace("<", "< ") if shown.startswith("<") else f"= {shown}"
