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

from analysis.protocol import COST_CONSEQUENCE_ID, Protocol, load_protocols
from analysis.store import (
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STORE_COLUMNS,
    read_protocol_runs,
    read_results,
)
from sicp.dbt_schema import load_manifest
from sicp.disclosure import primary_mask, suppress_value
from sicp.warehouse import build_node_results

#: Status of a protocol the results store has no record of (never run on this warehouse).
STATUS_NOT_RUN = "not_run"
#: What a report says where an estimate would be, before the reason.
NOT_ESTIMATED = "not estimated"
#: The file whose presence in the input folder marks a synthetic world (sicp synth writes it).
TRUTH_FILE = "truth.json"
SYNTHETIC_BANNER = ("Synthetic data: every number in this report comes from a simulated world, "
                    "not from patients.")
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
        return cls(Path(params["results_dir"]), Path(params["warehouse"]),
                   Path(params["protocols_dir"]), Path(input_dir) if input_dir else None)

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


def protocol_statuses(protocols: dict[str, Protocol], runs: pd.DataFrame,
                      estimates: pd.DataFrame) -> pd.DataFrame:
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
            reason = ("no run of this protocol is recorded in the results store "
                      "(run `sicp analyse`)")
        if status == STATUS_OK and pid not in with_rows:
            status, reason = STATUS_NOT_RUN, "the results store holds none of its estimates"
        rows.append({"protocol_id": pid, "status": status, "reason": reason})
    return pd.DataFrame(rows, columns=["protocol_id", "status", "reason"]).set_index(
        "protocol_id")


def not_estimated_note(statuses: pd.DataFrame | None, protocol_id: str) -> str | None:
    """``"not estimated: <reason>"`` for a protocol without estimates, None for one with."""
    if statuses is None or protocol_id not in statuses.index:
        return None
    status = statuses.at[protocol_id, "status"]
    if status == STATUS_OK:
        return None
    reason = statuses.at[protocol_id, "reason"] or {
        STATUS_FAILED: "the protocol failed", STATUS_NOT_APPLICABLE: "not applicable to this "
        "extract"}.get(status, "no estimate in the results store")
    return f"{NOT_ESTIMATED}: {reason}"


def brief(text: str, width: int = 140) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis) for a table cell."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def headline_rows(estimates: pd.DataFrame, protocols: dict[str, Protocol],
                  primary_only: bool = True, statuses: pd.DataFrame | None = None
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
        hit = estimates[(estimates["protocol_id"] == pid) & (estimates["analysis_id"] == "primary")
                        & (estimates["term"] == term)]
        row = hit.iloc[0] if len(hit) else None
        note = ""
        if row is None:
            note = (not_estimated_note(statuses, pid)
                    or f"{NOT_ESTIMATED}: the results store has no primary '{term}' estimate")
            shown = dict.fromkeys(("estimate", "ci_low", "ci_high"), math.nan)
        else:
            shown = transform(row, reporting.transform)
        rows.append({
            "protocol_id": pid,
            "label": protocol.outcome_label,
            "level": protocol.level,
            "component": protocol.component,
            "unit": reporting.unit,
            "null_value": 1.0 if reporting.transform == "exp" else 0.0,
            "p_value": math.nan if row is None else row["p_value"],
            "n_obs": pd.NA if row is None else row["n_obs"],
            "n_clusters": pd.NA if row is None else row["n_clusters"],
            **shown,
            "note": note,
        })
    columns = ["protocol_id", "label", "level", "component", "unit", "null_value", "p_value",
               "n_obs", "n_clusters", "estimate", "ci_low", "ci_high", "note"]
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


def effect_sentence(row: pd.Series, digits: int = 3) -> str:
    """A headline effect in words, with its interval and what the interval means (or, for a
    protocol without an estimate, why it has none)."""
    if row.get("note"):
        return f"**{row['label']}**: *{md_escape(row['note'])}*"
    est, low, high, null = row["estimate"], row["ci_low"], row["ci_high"], row["null_value"]
    fmt = f"{{:.{digits}g}}"
    interval = (f" (95% CI {fmt.format(low)} to {fmt.format(high)})"
                if not (math.isnan(low) or math.isnan(high)) else "")
    if math.isnan(low) or math.isnan(high):
        verdict = "no interval is available for this estimate"
    elif low > null:
        verdict = "the interval lies wholly above no effect"
    elif high < null:
        verdict = "the interval lies wholly below no effect"
    else:
        verdict = "the interval includes no effect"
    unit = f" {row['unit']}" if row.get("unit") else ""
    return f"**{row['label']}**: {fmt.format(est)}{unit}{interval}; {verdict}."


def lineage(estimates: pd.DataFrame, statuses: pd.DataFrame | None = None,
            runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Protocol hashes, input fingerprint and code version behind every stored estimate; with
    ``statuses`` (and the store's ``runs``) every reported protocol gets a row with its status,
    the ones without estimates too."""
    cols = ["protocol_id", "protocol_hash", "input_fingerprint", "code_version"]
    out = estimates[cols].drop_duplicates().sort_values("protocol_id").reset_index(drop=True)
    if statuses is None:
        return out
    recorded = (runs.drop_duplicates("protocol_id", keep="last").set_index("protocol_id")
                if runs is not None and len(runs) else None)
    missing = []
    for pid in statuses.index:
        if pid in set(out["protocol_id"]):
            continue
        row = {"protocol_id": pid, "protocol_hash": "", "input_fingerprint": "",
               "code_version": ""}
        if recorded is not None and pid in recorded.index:
            row.update({c: str(recorded.at[pid, c]) for c in cols[1:]
                        if not pd.isna(recorded.at[pid, c])})
        missing.append(row)
    out = pd.concat([out.astype(object), pd.DataFrame(missing, columns=cols)],
                    ignore_index=True) if missing else out.astype(object)
    out = out[out["protocol_id"].isin(statuses.index)].sort_values("protocol_id")
    out["status"] = [statuses.at[p, "status"].replace("_", " ") for p in out["protocol_id"]]
    return out.reset_index(drop=True)


def expand_details(rows: pd.DataFrame) -> pd.DataFrame:
    """Store rows with their ``details`` JSON spread into columns (event time, group, ...)."""
    extra = pd.DataFrame([json.loads(d) if isinstance(d, str) else {} for d in rows["details"]],
                         index=rows.index)
    return pd.concat([rows.drop(columns=["details"]), extra], axis=1)


def diagnostics(inputs: ReportInputs, protocol_id: str, analysis_id: str = "primary"
                ) -> dict[str, str]:
    table = inputs.table(protocol_id, analysis_id, "diagnostics")
    return {} if table is None else dict(zip(table["name"], table["value"], strict=True))


def cost_consequence_rows(estimates: pd.DataFrame, protocols: dict[str, Protocol],
                          statuses: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per primary protocol: its headline effect beside its cost consequence (GBP per
    person per year, from the same estimator on priced utilisation), or why it has none."""
    effects = headline_rows(estimates, protocols, statuses=statuses).set_index("protocol_id")
    rows = []
    for pid in effects.index:
        protocol = protocols[pid]
        effect = effects.loc[pid]
        row: dict[str, Any] = {
            "protocol_id": pid, "label": effect["label"], "unit": effect["unit"],
            **{f"effect_{k}": effect[k] for k in ("estimate", "ci_low", "ci_high")},
            "effect_note": effect["note"],
            "cost_estimate": math.nan, "cost_ci_low": math.nan, "cost_ci_high": math.nan,
            "cost_p_value": math.nan, "cost_n_obs": pd.NA, "cost_outcome": "", "cost_note": ""}
        spec = protocol.cost_consequence()
        if effect["note"]:
            row["cost_note"] = NOT_ESTIMATED
            rows.append(row)
            continue
        if spec is None:
            row["cost_note"] = ("its incremental cost is in the cost-effectiveness table"
                                if protocol.method.name == "cost_effectiveness"
                                else f"no priced utilisation in {protocol.panel}")
            rows.append(row)
            continue
        hit = estimates[(estimates["protocol_id"] == pid)
                        & (estimates["analysis_id"] == COST_CONSEQUENCE_ID)
                        & (estimates["term"] == spec.terms[0])]
        if hit.empty:
            row["cost_note"] = "declared but not in the results store"
        else:
            cost = hit.iloc[0]
            row.update({f"cost_{k}": float(cost[k]) for k in
                        ("estimate", "ci_low", "ci_high", "p_value")})
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
        other_per_1000=lambda d: 1000.0 * d["other_calls"] / d["person_months"])


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
    for sql in ("select min(area_name) as name from marts.area_month_panel "
                "where is_study_area = 1",
                "select min(area_name) as name from raw.study_area"):
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
        RolloutWave(int(wave), pd.Timestamp(part["mdg_first_month"].min()), len(part),
                    tuple(sorted(part["mdg"].astype(str).unique())))
        for wave, part in started.groupby("rollout_wave", sort=True))
    calendar = inputs.query("select * from marts.study_calendar order by source_name")
    window = calendar.iloc[0] if len(calendar) else None
    areas = inputs.query("""
        select count(distinct case when is_study_area = 0 then area_code end) as comparators,
               min(month) as first_month, max(month) as last_month
        from marts.area_month_panel""").iloc[0]
    survey = inputs.query("select * from marts.survey_waves order by wave")
    trial = inputs.query("select * from marts.trial_design")
    try:
        milestones = inputs.query("select milestone, month, description "
                                  "from marts.programme_milestones order by month, milestone")
    except duckdb.Error:  # a warehouse built before the milestones mart
        milestones = pd.DataFrame(columns=["milestone", "month", "description"])
    not_started = practices.groupby("mdg")["mdg_first_month"].min()
    return StudyFacts(
        site=_study_area_name(inputs),
        comparator_areas=int(areas["comparators"] or 0),
        area_first_month=None if pd.isna(areas["first_month"]) else
        pd.Timestamp(areas["first_month"]),
        area_last_month=None if pd.isna(areas["last_month"]) else
        pd.Timestamp(areas["last_month"]),
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
    gaps = sorted({(b.year - a.year) * 12 + b.month - a.month
                   for a, b in zip(months.iloc[:-1], months.iloc[1:], strict=True)})
    if not gaps:
        return ""
    if len(gaps) == 1:
        return f"every {plural(gaps[0], 'month')}"
    return f"{gaps[0]} to {gaps[-1]} months apart"


def intro_paragraph(facts: StudyFacts) -> str:
    """The executive summary's opening: what was evaluated, where, over which months."""
    rollout = (f"rolled out to {facts.taking_part:,} of {facts.site}'s "
               f"{plural(facts.practices, 'practice')} (in "
               f"{plural(facts.neighbourhoods, 'neighbourhood')}) in "
               f"{plural(len(facts.waves), 'wave')} from {month_text(facts.waves[0].start)}"
               if facts.waves else f"planned for {facts.site}'s practices")
    comparators = (f", and {facts.site} against {plural(facts.comparator_areas, 'comparator area')}"
                   if facts.comparator_areas else "")
    return (f"This report sets out the pre-specified estimates of the evaluation of the "
            f"integrated care programme in {facts.site}: the multidisciplinary groups (MDGs) "
            f"{rollout}, the trial of telephone health coaching within the cohort{comparators}. "
            f"The study window runs from {month_text(facts.window_start)} to "
            f"{month_text(facts.window_end)}. Each estimate below comes from a protocol fixed "
            "before the analysis; the protocols, their versions and the data they read are "
            "listed at the end.")


def window_paragraph(facts: StudyFacts) -> str:
    """The study window and the extracts that set it (or that cover less of it)."""
    how = ("the months that every window-defining record extract covers "
           f"({listing([f'`{s}`' for s in facts.window_sources])})"
           if facts.window_rule == "from the extracts" else
           "as stated in the warehouse's configuration (dbt vars `study_start_month` / "
           "`study_end_month`), within the months the record extracts cover")
    text = (f"The study window is {month_text(facts.window_start)} to "
            f"{month_text(facts.window_end)} ({plural(facts.window_months, 'month')}): {how}. "
            f"The monthly panels number their periods from {month_text(facts.window_start)} "
            "(period 1).")
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
        text += (f" The published area indicators for {facts.site} and "
                 f"{plural(facts.comparator_areas, 'comparator area')} run from "
                 f"{month_text(facts.area_first_month)} to {month_text(facts.area_last_month)}.")
    if len(facts.milestones):
        dated = [f"`{m.milestone}`, {month_text(m.month)}"
                 + (f" ({str(m.description).strip().rstrip('.')})"
                    if isinstance(m.description, str) and m.description.strip() else "")
                 for m in facts.milestones.itertuples()]
        text += (" The protocols' dates are the programme's milestones as the delivery declares "
                 f"them: {'; '.join(dated)}.")
    return text


def rollout_paragraph(facts: StudyFacts) -> str:
    """Practices, neighbourhoods and MDGs, and each roll-out wave's start month and size."""
    text = (f"{facts.site} has {plural(facts.practices, 'practice')} in "
            f"{plural(facts.neighbourhoods, 'neighbourhood')}, served by "
            f"{plural(facts.mdgs, 'MDG')}. ")
    if not facts.waves:
        return text + "No practice has an MDG start month, so no roll-out can be analysed."
    waves = [f"wave {w.wave} in {month_text(w.start)} ({plural(w.practices, 'practice')}; "
             f"{'MDG' if len(w.mdgs) == 1 else 'MDGs'} {listing([f'*{m}*' for m in w.mdgs])})"
             for w in facts.waves]
    text += (f"The MDGs started in {plural(len(facts.waves), 'wave')}, numbered by start month: "
             f"{'; '.join(waves)}. ")
    if facts.mdgs_not_started:
        names = listing([f"*{m}*" for m in facts.mdgs_not_started])
        text += (f"{'MDG' if len(facts.mdgs_not_started) == 1 else 'MDGs'} {names} never "
                 "started. ")
    if facts.never_treated:
        text += (f"{plural(facts.taking_part, 'practice')} took part; the "
                 f"{plural(facts.never_treated, 'practice')} that never did "
                 f"{'is' if facts.never_treated == 1 else 'are'} the never-treated comparison "
                 "of the staggered analyses.")
    else:
        text += ("Every practice took part, so the staggered analyses compare earlier with "
                 "later starters only (there is no never-treated practice).")
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
    recruited = int(inputs.query(
        "select count(*) as n from staging.stg_recruitment__cohort_members")["n"][0])
    withdrawn = int(inputs.query(
        "select count(*) as n from raw.consent_exclusions where scope = 'all'")["n"][0])
    text = (f"The cohort recruited {suppress_value(recruited + withdrawn, threshold)} people "
            f"aged 65+ with long-term conditions; {suppress_value(withdrawn, threshold)} later "
            "withdrew all consent and are excluded from every table and estimate.")
    waves = facts.survey_waves
    if len(waves):
        spacing = wave_spacing(waves)
        text += (f" {plural(len(waves), 'survey wave')} were delivered, from "
                 f"{month_text(waves['wave_month'].iloc[0])} to "
                 f"{month_text(waves['wave_month'].iloc[-1])}"
                 + (f", {spacing}" if spacing and len(waves) > 1 else "") + ".")
    else:
        text += " No survey wave has been delivered."
    return text


def trial_paragraph(facts: StudyFacts, threshold: int) -> str:
    """Who was randomised when, and the baseline and follow-up waves the trial uses."""
    t = facts.trial
    if not t:
        return ("The warehouse holds no trial design (no survey wave before randomisation, or "
                "none after it), so the trial's waves are not stated.")
    realised = int(t["months_randomisation_to_followup"])
    planned = int(t["planned_followup_months"])
    gap = ("as planned" if realised == planned else
           f"against the {plural(planned, 'month')} planned")
    return (f"{suppress_value(t['n_randomised'], threshold)} cohort members were randomised "
            f"between {month_text(t['first_randomised_on'])} and "
            f"{month_text(t['last_randomised_on'])}. The baseline is survey wave "
            f"{int(t['baseline_wave'])} ({month_text(t['baseline_wave_month'])}), the last wave "
            f"returned before randomisation began; the follow-up is wave "
            f"{int(t['followup_wave'])} ({month_text(t['followup_wave_month'])}), "
            f"{plural(realised, 'month')} after the first randomisation month ({gap}) and "
            f"{plural(int(t['months_baseline_to_followup']), 'month')} after the baseline.")


def limitations_paragraph(facts: StudyFacts) -> str:
    comparison = (f", {plural(facts.comparator_areas + 1, 'area')} in the comparator analyses"
                  if facts.comparator_areas else "")
    return (
        "Limitations. The MDG roll-out was not randomised: the stepped-wedge and difference-in-"
        "differences estimates assume that, without MDGs, practices' outcomes would have "
        "followed the period effects common to all practices. Few clusters "
        f"({plural(facts.practices, 'practice')} in "
        f"{plural(facts.neighbourhoods, 'neighbourhood')}{comparison}) make large-sample "
        "standard errors optimistic, so small-sample corrections and permutation inference are "
        "reported. Survey outcomes are subject to attrition that is higher among frailer "
        "people. The comparator analyses use published area indicators and cannot separate "
        f"the MDGs from other changes in {facts.site} at the same time.")


def calendar_table(facts: StudyFacts) -> pd.DataFrame:
    """Each record or programme extract's months, and whether it sets the study window."""
    cal = facts.calendar
    return pd.DataFrame({
        "extract": cal["source_name"],
        "sets the window": ["yes" if d == 1 else "no" for d in cal["defines_window"]],
        "first month": [month_text(m) if not pd.isna(m) else "–" for m in cal["first_month"]],
        "last month": [month_text(m) if not pd.isna(m) else "–" for m in cal["last_month"]],
        "months with rows": cal["months_with_rows"].astype("Int64"),
        "empty months inside": cal["empty_months_inside"].astype("Int64"),
    }).set_index("extract")


def price_years(protocols: dict[str, Protocol]) -> list[int]:
    """The price years the protocols' cost consequences state (2018 = 2017/18 prices)."""
    years = {spec.price_year for p in protocols.values()
             if (spec := p.cost_consequence()) is not None}
    return sorted(years)


def price_year_text(protocols: dict[str, Protocol]) -> str:
    """``2017/18 prices`` (financial year ending in the price year), or a neutral phrase."""
    years = price_years(protocols)
    if not years:
        return "the protocols' stated prices"
    return " and ".join(f"{y - 1}/{y % 100:02d}" for y in years) + " prices"


def exposure_months(protocols: dict[str, Protocol]) -> str:
    """How many months an exposure-time model averages, from its reporting term."""
    found = sorted({int(m[1]) for p in protocols.values()
                    if (m := re.fullmatch(r"average_first_(\d+)",
                                          p.reporting.term))})
    return listing([str(n) for n in found]) if found else "first"


def period_months(inputs: ReportInputs, panel: str) -> dict[float, pd.Timestamp]:
    """Period number to calendar month in a monthly mart (periods count from its first month)."""
    frame = inputs.query(f'select distinct period, month from marts."{panel}"')
    return {float(p): pd.Timestamp(m) for p, m in zip(frame["period"], frame["month"],
                                                      strict=True)}


def last_build_text(inputs: ReportInputs) -> str:
    """The warehouse's last recorded dbt build, in a sentence."""
    from sicp.warehouse import last_build

    build = last_build(inputs.warehouse)
    if build is None:
        return "The warehouse records no dbt build."
    when = str(build["built_at"]).replace("T", " ").rstrip("Z")[:19]
    if build["success"]:
        return (f"The warehouse's last dbt build ({when} UTC, `{build['invoked_by']}`) passed: "
                f"{build['n_nodes']} nodes.")
    failed = build["failed_nodes"] or f"{build['n_skipped']} node(s) skipped"
    return (f"**The warehouse's last dbt build ({when} UTC, `{build['invoked_by']}`) failed**: "
            f"{build['n_failed']} of {build['n_nodes']} nodes failed ({failed}); the marts may "
            "be stale.")


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
        "```\n")


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
        lines = "\n".join(f"- `{pid}`: {row.status.replace('_', ' ')}: {md_escape(row.reason)}"
                          for pid, row in recorded.iterrows())
        return (f"**No estimates**: every protocol run on this warehouse failed or was not "
                f"applicable:\n\n{lines}")
    if not_ok.empty:
        return ""
    counts = not_ok["status"].str.replace("_", " ").value_counts().sort_index()
    return (f"{plural(len(not_ok), 'protocol')} of {len(statuses)} "
            f"{'has' if len(not_ok) == 1 else 'have'} no estimates "
            f"({', '.join(f'{n} {s}' for s, n in counts.items())}); each is marked "
            f"\"{NOT_ESTIMATED}\" with its reason where its results would be.")
