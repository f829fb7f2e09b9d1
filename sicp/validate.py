"""Monte Carlo validation of the protocols' estimators (``sicp validate --reps N``).

Each replication simulates a fresh world (``sicp.synth.simulate_world``) with its own seed,
builds the analysis panels in memory and fits every protocol analysis that names a truth
(``truth:`` in the protocol). Across replications it reports, per analysis, the bias against
the world's realised truth, the empirical SE, the mean model SE, the 95% CI coverage and the
rejection rate at 5% (power on effect worlds, type I error on the ``null`` world).

The full pipeline (ingest + dbt) takes about a minute per world, so the panels are built here
by :func:`build_panels`, the *validation twin* of the dbt marts: a compact pandas mirror of
``practice_month_panel``, ``person_wave_panel``, ``twic_analysis_set``, ``area_month_panel``
and ``programme_milestones`` (what a protocol's ``{milestone: name}`` resolves to), restricted
to the columns the protocols use (:data:`PANEL_COLUMNS`).
Like the marts, it takes the study's calendar from the world's own data, never from constants:
the study window from the window-defining record extracts (:func:`study_window`, as
int_study_window), the area panel's periods from the indicators' own first month, the study
area from ``study_area``, the trial's baseline and follow-up waves from the randomisation and
return dates (:func:`trial_waves`, as int_trial_design). It reads the same dbt variables and
seeds as the marts, and tests/test_validate.py proves on a world built through the real
pipeline that its panels equal the marts on every one of those columns. When a mart's
definition changes, that test fails until this twin follows.

Replications depend on their seed alone, so a study can be *updated*: :func:`update_monte_carlo`
(``sicp validate --update --protocol ID ...``) reruns only the named protocols on the study's
replication seeds and replaces only their rows. When every selected protocol reads
``area_month_panel`` only, a replication simulates just the comparator areas
(``sicp.synth.world.simulate_area_world``), which have their own random stream.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import yaml

from analysis.methods import fit
from analysis.protocol import Protocol, load_protocols
from analysis.runner import MILESTONES_MART, apply_filters, prepare_panel, with_milestones
from sicp.contract import AGE_BANDS, SOURCES
from sicp.settings import PROJECT_ROOT
from sicp.synth.areas import milestones, study_area
from sicp.synth.scenario import load_scenario
from sicp.synth.world import World, simulate_area_world, simulate_world
from sicp.synth.write import conform

DBT_DIR = PROJECT_ROOT / "dbt"
PROTOCOLS_DIR = PROJECT_ROOT / "protocols"

#: The mart columns the protocols read (outcomes, method options, derive/aggregate/filters),
#: with the dtypes DuckDB gives them in pandas, plus the trial waves the twin derives (so the
#: test shows a wrong wave as such); the twin builds exactly these and the equality test
#: compares exactly these, dtypes included.
PANEL_COLUMNS: dict[str, dict[str, str]] = {
    "practice_month_panel": {
        "practice_code": "object", "month": "datetime64[us]", "period": "int32",
        "month_of_year": "int32", "start_period": "int64",
        "in_mdg_scope": "int32", "person_months_65plus": "int64",
        "emergency_admissions": "float64", "permanent_care_home_admissions": "float64",
        "emergency_admissions_per_1000": "float64", "ae_attendances_not_admitted": "float64"},
    "person_wave_panel": {
        "person_id": "object", "wave": "int64", "practice_code": "object",
        "neighbourhood": "object", "in_mdg_scope": "int32", "asset_dose": "float64",
        "eq5d_index": "float64", "pacic_score": "float64", "selfman_score": "float64",
        "wellbeing_score": "float64", "loneliness_score": "Int64"},
    "twic_analysis_set": {
        "person_id": "object", "stratum": "object", "offered": "int32",
        "baseline_wave": "int64", "followup_wave": "int64", "accepted": "int64",
        "eq5d_index_baseline": "float64", "eq5d_index_followup": "float64",
        "selfman_score_baseline": "float64", "selfman_score_followup": "float64",
        "emergency_admissions_12m": "Int64"},
    "area_month_panel": {
        "area_code": "object", "area_name": "object", "month": "datetime64[us]",
        "period": "int64", "month_of_year": "int32", "is_study_area": "int32",
        "population_65plus": "float64", "emergency_admissions_65plus": "float64",
        "emergency_admissions_per_1000": "float64"},
    MILESTONES_MART: {"milestone": "object", "month": "datetime64[us]"},
}

#: Sort keys (one row per key) of each panel.
PANEL_KEYS: dict[str, tuple[str, ...]] = {
    "practice_month_panel": ("practice_code", "period"),
    "person_wave_panel": ("person_id", "wave"),
    "twic_analysis_set": ("person_id",),
    "area_month_panel": ("area_code", "period"),
    MILESTONES_MART: ("milestone",),
}

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: practice_population age bands counted as 65+ (stg_practice_population__registered): all
#: but the first, 0-64.
OLDER_AGE_BANDS = AGE_BANDS[1:]

EQ5D_DIMENSIONS = ("mobility", "selfcare", "activities", "pain", "anxiety")

#: The extracts that set the study window and the date column each is dated by
#: (int_record_coverage's sources with defines_window true).
WINDOW_SOURCES = {"practice_population": "month", "hospital_spells": "admitted_on",
                  "ae_attendances": "arrived_on", "gp_contacts": "contact_on"}


@cache
def dbt_vars() -> dict[str, Any]:
    """The dbt project variables (age limit, TWIC follow-up, an optional stated window)."""
    return dict(yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())["vars"])


@cache
def _seed(name: str) -> pd.DataFrame:
    return pd.read_csv(DBT_DIR / "seeds" / f"{name}.csv", dtype={"admission_method": str})


# --- the validation twin of the marts ------------------------------------------------------


def _month(dates: pd.Series) -> pd.Series:
    """First day of each date's month (month_of)."""
    return dates.dt.to_period("M").dt.to_timestamp()


def _months_since(start: pd.Timestamp, dates: pd.Series) -> pd.Series:
    """Whole months from ``start``'s month to each date's month (datediff 'month'); NaN for
    NaT."""
    return (dates.dt.year - start.year) * 12 + (dates.dt.month - start.month)


@dataclass(frozen=True)
class StudyWindow:
    """The months of the study (int_study_window): ``start`` is period 1, ``n`` months."""

    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def n(self) -> int:
        return (self.end.year - self.start.year) * 12 + self.end.month - self.start.month + 1

    def index(self, dates: pd.Series) -> pd.Series:
        """Months since the window's start (0 = period 1) of each date's month."""
        return _months_since(self.start, dates)


def study_window(frames: Mapping[str, pd.DataFrame]) -> StudyWindow:
    """The months every window-defining extract covers (int_record_coverage,
    int_study_window): from the latest first month to the earliest last month, unless the dbt
    vars study_start_month / study_end_month state it."""
    # The month of the first (last) date is the first (last) month with rows.
    spans = [_month(frames[source][column].agg(["min", "max"]))
             for source, column in WINDOW_SOURCES.items()]
    stated = dbt_vars()
    start = stated.get("study_start_month") or max(span["min"] for span in spans)
    end = stated.get("study_end_month") or min(span["max"] for span in spans)
    return StudyWindow(pd.Timestamp(start), pd.Timestamp(end))


def _exclusions(recruitment: pd.DataFrame) -> tuple[set[str], set[str]]:
    """People dropped by consent (macros/consent.sql): withdrawn ('cohort' scope), and also
    those without record-linkage consent ('records' scope)."""
    withdrawn = set(recruitment.loc[recruitment["withdrawn_on"].notna(), "person_id"])
    no_linkage = set(recruitment.loc[recruitment["consent_linkage"].fillna(-1) != 1, "person_id"])
    return withdrawn, withdrawn | no_linkage


def _practices(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    practices = frames["practices"][["practice_code", "mdg_start_date"]].copy()
    practices["mdg_start_month"] = _month(practices["mdg_start_date"])
    return practices


def _emergency_spells(frames: Mapping[str, pd.DataFrame], excluded: set[str]) -> pd.DataFrame:
    groups = _seed("admission_method_groups")
    emergency = set(groups.loc[groups["method_group"] == "emergency", "admission_method"])
    spells = frames["hospital_spells"]
    keep = spells["admission_method"].isin(emergency) & ~spells["person_id"].isin(excluded)
    return spells.loc[keep, ["person_id", "admitted_on"]]


def _person_month_spells(frames: Mapping[str, pd.DataFrame], excluded: set[str],
                         window: StudyWindow) -> pd.DataFrame:
    """Each registration spell as the range [lo, hi] of panel month indices in which it makes
    a 65+ person-month (int_person_months: in force on the 1st, aged 65+ that year, alive at
    the start of the month, practice known)."""
    reg = frames["population"]
    reg = reg.loc[~reg["person_id"].isin(excluded)].sort_values(
        ["person_id", "registered_from", "practice_code"], kind="mergesort")
    next_from = reg.groupby("person_id")["registered_from"].shift(-1)
    superseded = next_from.notna() & (reg["registered_to"].isna() | (next_from <= reg["registered_to"]))
    until = reg["registered_to"].where(~superseded, next_from - pd.Timedelta(days=1))
    first = reg["registered_from"]
    last = window.n - 1
    lo = window.index(first) + (first.dt.day > 1).astype(int)
    hi = window.index(until).fillna(last)
    # Aged older_age+ from the January of the year they reach it (age = year - birth year).
    turns = (reg["birth_year"] + dbt_vars()["older_age"] - window.start.year) * 12
    lo = np.maximum(lo, turns - (window.start.month - 1))
    deaths = frames["deaths"].loc[~frames["deaths"]["person_id"].isin(excluded)]
    died = reg["person_id"].map(deaths.set_index("person_id")["died_on"])
    hi = np.minimum(hi, window.index(died).fillna(last))
    out = pd.DataFrame({"person_id": reg["person_id"], "practice_code": reg["practice_code"],
                        "lo": np.maximum(lo, 0), "hi": np.minimum(hi, last)})
    out = out.loc[(out["lo"] <= out["hi"])
                  & out["practice_code"].isin(frames["practices"]["practice_code"])]
    return out.astype({"lo": "int64", "hi": "int64"})


def _events_by_practice_month(spells: pd.DataFrame, events: pd.DataFrame, date: str,
                              window: StudyWindow) -> pd.Series:
    """Events counted on the practice of the person-month they fall in (person_month_panel)."""
    ev = pd.DataFrame({"person_id": events["person_id"], "m": window.index(events[date])})
    ev = ev.merge(spells, on="person_id")
    ev = ev.loc[(ev["m"] >= ev["lo"]) & (ev["m"] <= ev["hi"])]
    return ev.groupby(["practice_code", "m"]).size()


def practice_month_panel(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Twin of marts.practice_month_panel (columns in PANEL_COLUMNS)."""
    _, excluded = _exclusions(frames["recruitment"])
    window = study_window(frames)
    n = window.n
    practices = _practices(frames)
    spells = _person_month_spells(frames, excluded, window)
    grid = pd.MultiIndex.from_product([practices["practice_code"], range(n)],
                                      names=["practice_code", "m"])
    codes = pd.Index(practices["practice_code"])
    diff = np.zeros((len(codes), n + 1), dtype=np.int64)
    rows = codes.get_indexer(spells["practice_code"])
    np.add.at(diff, (rows, spells["lo"].to_numpy()), 1)
    np.add.at(diff, (rows, spells["hi"].to_numpy() + 1), -1)
    person_months = np.cumsum(diff[:, :n], axis=1).ravel()
    homes = frames["care_home_admissions"]
    homes = homes.loc[homes["permanent"].astype(bool) & ~homes["person_id"].isin(excluded)]
    ae = frames["ae_attendances"]
    # int_utilisation_events: is_admitted only for disposal 'admitted' (a NULL disposal is not).
    ae = ae.loc[ae["disposal"].ne("admitted") & ~ae["person_id"].isin(excluded)]
    counts = {
        "emergency_admissions": _events_by_practice_month(
            spells, _emergency_spells(frames, excluded), "admitted_on", window),
        "permanent_care_home_admissions": _events_by_practice_month(
            spells, homes, "admitted_on", window),
        "ae_attendances_not_admitted": _events_by_practice_month(
            spells, ae, "arrived_on", window),
    }
    panel = grid.to_frame(index=False)
    panel["period"] = panel["m"] + 1
    panel["month"] = pd.date_range(window.start, periods=n, freq="MS")[panel["m"]]
    panel["month_of_year"] = panel["month"].dt.month
    start = panel["practice_code"].map(practices.set_index("practice_code")["mdg_start_month"])
    start_m = window.index(start)
    # A start before the window counts as period 1; 0 = never treated.
    panel["start_period"] = np.maximum(start_m + 1, 1).fillna(0).astype("int64")
    panel["in_mdg_scope"] = (start_m.notna() & (panel["m"] >= start_m)).astype("int64")
    panel["person_months_65plus"] = person_months
    for name, series in counts.items():
        panel[name] = series.reindex(grid, fill_value=0).to_numpy()
    panel["emergency_admissions_per_1000"] = (
        1000.0 * panel["emergency_admissions"] / panel["person_months_65plus"]
    ).where(panel["person_months_65plus"] > 0)
    return panel


def _decrement(levels: pd.Series, dimension: str) -> pd.Series:
    value_set = _seed("eq5d_5l_england_value_set")
    table = value_set.loc[value_set["dimension"] == dimension].set_index("level")["decrement"]
    return levels.map(table)


def _item_mean(items: pd.DataFrame, min_answered: int) -> pd.Series:
    answered = items.notna().sum(axis=1)
    return (items.fillna(0).sum(axis=1) / answered).where(answered >= min_answered)


def survey_scores(responses: pd.DataFrame) -> pd.DataFrame:
    """Instrument scores of each questionnaire (int_survey_wave__scores) from its raw items."""
    def items(prefix: str, n: int) -> pd.DataFrame:
        return responses[[f"{prefix}_{i:02d}" for i in range(1, n + 1)]]

    total = sum((_decrement(responses[f"eq_{d}"], d) for d in EQ5D_DIMENSIONS[1:]),
                start=_decrement(responses[f"eq_{EQ5D_DIMENSIONS[0]}"], EQ5D_DIMENSIONS[0]))
    raw_index = (1 - total) * 1000
    lonely = items("lonely", 3)
    return pd.DataFrame({
        "person_id": responses["person_id"],
        "wave": responses["wave"],
        # DuckDB round(): half away from zero.
        "eq5d_index": np.trunc(raw_index + np.copysign(0.5, raw_index)) / 1000,
        "pacic_score": _item_mean(items("pacic", 11), 6),
        "selfman_score": (_item_mean(items("selfman", 6), 4) - 1) / 3 * 100,
        "wellbeing_score": _item_mean(items("wellbeing", 5), 3),
        "loneliness_score": lonely.sum(axis=1).where(lonely.notna().all(axis=1)),
    })


def _responses(frames: Mapping[str, pd.DataFrame], withdrawn: set[str]) -> pd.DataFrame:
    """Returned questionnaires of people who did not withdraw, user-missing codes as NaN."""
    survey = frames["survey_wave"]
    survey = survey.loc[~survey["person_id"].isin(withdrawn)].copy()
    for column in SOURCES["survey_wave"].columns:
        if column.missing_codes and column.name in survey:
            survey[column.name] = survey[column.name].where(
                ~survey[column.name].isin(list(column.missing_codes)))
    return survey


def _practice_at(people: pd.DataFrame, date: str, frames: Mapping[str, pd.DataFrame],
                 recruitment: pd.DataFrame, withdrawn: set[str]) -> pd.Series:
    """Practice of each row's person on ``date`` (int_cohort_practice_spells: the latest change
    on or before the date, else the earliest change)."""
    moves = frames["practice_moves"]
    moves = moves.loc[~moves["person_id"].isin(withdrawn)
                      & moves["person_id"].isin(recruitment["person_id"])]
    changes = pd.concat([
        recruitment[["person_id", "practice_code"]].assign(
            from_date=recruitment["recruited_on"], is_move=0),
        moves[["person_id", "practice_code", "from_date"]].assign(is_move=1),
    ], ignore_index=True)
    located = people[["person_id", date]].reset_index().merge(changes, on="person_id")
    before = located["from_date"] <= located[date]
    located["rank_before"] = np.where(before, 0, 1)
    located["rank_date"] = np.where(before, -located["from_date"].astype("int64"),
                                    located["from_date"].astype("int64"))
    located = located.sort_values(["index", "rank_before", "rank_date"], kind="mergesort")
    return located.drop_duplicates("index").set_index("index")["practice_code"]


def _prior_funding(assets: pd.DataFrame) -> pd.Series:
    """Funding of each (neighbourhood, month) row's earlier months, summed by DuckDB with the
    mart's window: DuckDB adds a window frame in segment-tree order, which a pandas cumulative
    sum does not reproduce to the last bit."""
    with duckdb.connect() as con:
        con.register("assets", assets[["neighbourhood", "month", "funding_gbp"]])
        prior = con.execute(
            "select neighbourhood, month, coalesce(sum(funding_gbp) over ("
            "partition by neighbourhood order by month "
            "rows between unbounded preceding and 1 preceding), 0) as prior from assets").df()
    return prior.set_index(["neighbourhood", "month"])["prior"]


def neighbourhood_asset_doses(frames: Mapping[str, pd.DataFrame]) -> dict[tuple[str, Any], float]:
    """Community-asset dose by (neighbourhood, month) (int_neighbourhood_asset_months):
    cumulative funding to the end of the previous month per 1,000 registered 65+ in the
    neighbourhood that month, in GBP 10,000; NaN where the neighbourhood has no 65+ count."""
    registered = frames["practice_population"].merge(
        frames["practices"][["practice_code", "neighbourhood"]], on="practice_code")
    registered = registered.loc[registered["age_band"].isin(OLDER_AGE_BANDS)]
    registered = registered.assign(month=_month(registered["month"]))
    pop65 = registered.groupby(["neighbourhood", "month"])["registered"].sum()
    assets = frames["community_assets"]
    prior = _prior_funding(assets.assign(month=_month(assets["month"])))
    pop = pop65.reindex(prior.index).to_numpy(dtype="float64")
    dose = prior.to_numpy() / (pop / 1000.0) / 10000.0
    return dict(zip(prior.index, np.where(pop > 0, dose, np.nan), strict=True))


def person_wave_panel(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Twin of marts.person_wave_panel (columns in PANEL_COLUMNS)."""
    withdrawn, _ = _exclusions(frames["recruitment"])
    recruitment = frames["recruitment"].loc[~frames["recruitment"]["person_id"].isin(withdrawn)]
    responses = _responses(frames, withdrawn)
    responses = responses.loc[responses["person_id"].isin(recruitment["person_id"])]
    panel = responses[["person_id", "wave", "returned_on"]].copy()
    panel["practice_code"] = _practice_at(panel, "returned_on", frames, recruitment, withdrawn)
    start = panel["practice_code"].map(_practices(frames).set_index("practice_code")
                                       ["mdg_start_month"])
    returned_month = _month(panel["returned_on"])
    panel["in_mdg_scope"] = (start.notna() & (returned_month >= start)).astype("int64")
    panel["neighbourhood"] = panel["practice_code"].map(
        frames["practices"].set_index("practice_code")["neighbourhood"])
    doses = neighbourhood_asset_doses(frames)
    panel["asset_dose"] = pd.MultiIndex.from_arrays(
        [panel["neighbourhood"], returned_month]).map(doses.get)
    panel = panel.merge(survey_scores(responses), on=["person_id", "wave"])
    return panel


def trial_waves(responses: pd.DataFrame, randomisation: pd.DataFrame) -> tuple[int, int]:
    """The trial's (baseline, follow-up) survey waves (int_trial_design), from the consented
    questionnaires and randomisations: the baseline is the last wave whose first questionnaire
    came back before the first randomisation; the follow-up is the later wave whose month (of
    its first return) is closest to var twic_followup_months after the first randomisation's
    month, the later wave on a tie."""
    first_return = responses.groupby("wave")["returned_on"].min()
    first_randomised = randomisation["randomised_on"].min()
    before = first_return.index[first_return < first_randomised]
    if before.empty:
        raise ValueError("no survey wave came back before the first randomisation "
                         "(int_trial_design finds no baseline)")
    baseline = int(before.max())
    target = (pd.Timestamp(first_randomised).to_period("M").to_timestamp()
              + pd.DateOffset(months=int(dbt_vars()["twic_followup_months"])))
    later = first_return[first_return.index > baseline]
    if later.empty:
        raise ValueError(f"no survey wave after the baseline wave {baseline}")
    gap = _months_since(target, _month(later)).abs()
    return baseline, int(gap.index[gap == gap.min()].max())


def twic_analysis_set(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Twin of marts.twic_analysis_set (columns in PANEL_COLUMNS)."""
    withdrawn, excluded = _exclusions(frames["recruitment"])
    recruitment = frames["recruitment"].loc[~frames["recruitment"]["person_id"].isin(withdrawn)]
    randomised = frames["coaching_randomisation"]
    randomised = randomised.loc[~randomised["person_id"].isin(withdrawn)]
    trial = randomised.merge(recruitment[["person_id", "consent_linkage"]], on="person_id")
    uptake = frames["coaching_uptake"]
    uptake = uptake.loc[~uptake["person_id"].isin(withdrawn)].set_index("person_id")["accepted"]
    trial["offered"] = (trial["arm"] == "offer").astype("int64")
    trial["accepted"] = (trial["person_id"].map(uptake).fillna(0).astype("int64")
                         * trial["offered"])
    responses = _responses(frames, withdrawn)
    baseline, followup = trial_waves(responses, randomised)
    trial["baseline_wave"], trial["followup_wave"] = baseline, followup
    scores = survey_scores(responses)
    for suffix, wave in (("baseline", baseline), ("followup", followup)):
        at = scores.loc[scores["wave"] == wave].set_index("person_id")
        for score in ("eq5d_index", "selfman_score"):
            trial[f"{score}_{suffix}"] = trial["person_id"].map(at[score])
    spells = _emergency_spells(frames, excluded).merge(trial[["person_id", "randomised_on"]],
                                                       on="person_id")
    in_window = ((spells["admitted_on"] >= spells["randomised_on"])
                 & (spells["admitted_on"] < spells["randomised_on"] + pd.DateOffset(months=12)))
    admissions = spells.loc[in_window].groupby("person_id").size()
    trial["emergency_admissions_12m"] = (
        trial["person_id"].map(admissions).fillna(0).where(trial["consent_linkage"] == 1))
    return trial


def area_month_panel(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Twin of marts.area_month_panel (columns in PANEL_COLUMNS)."""
    ind = frames["area_month_indicators"].copy()
    ind["month"] = _month(ind["month"])
    keys = ["area_code", "month"]
    wide = ind.groupby(keys).agg(area_name=("area_name", "max"),
                                 population_65plus=("denominator", "max"))
    wide["emergency_admissions_65plus"] = (
        ind.loc[ind["indicator"] == "emergency_admissions_65plus"].groupby(keys)["numerator"]
        .sum().reindex(wide.index))
    wide = wide.reset_index()
    # The indicators' own calendar: period 1 is their first month, not the study window's.
    wide["period"] = _months_since(wide["month"].min(), wide["month"]) + 1
    wide["month_of_year"] = wide["month"].dt.month
    wide["is_study_area"] = wide["area_code"].isin(frames["study_area"]["area_code"]).astype(
        "int64")
    wide["emergency_admissions_per_1000"] = (
        1000.0 * wide["emergency_admissions_65plus"] / wide["population_65plus"]
    ).where(wide["population_65plus"] > 0)
    return wide


def programme_milestones(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Twin of marts.programme_milestones: the delivery's milestones and their months, which a
    protocol's ``{milestone: name}`` resolves to (analysis.runner.with_milestones)."""
    declared = frames["milestones"]
    return pd.DataFrame({"milestone": declared["milestone"], "month": _month(declared["month"])})


BUILDERS = {
    "practice_month_panel": practice_month_panel,
    "person_wave_panel": person_wave_panel,
    "twic_analysis_set": twic_analysis_set,
    "area_month_panel": area_month_panel,
    MILESTONES_MART: programme_milestones,
}


def build_panels(frames: Mapping[str, pd.DataFrame],
                 names: Sequence[str] = tuple(BUILDERS)) -> dict[str, pd.DataFrame]:
    """The named panels of a simulated world, sorted by their keys."""
    return {name: BUILDERS[name](frames)[list(PANEL_COLUMNS[name])]
            .astype(PANEL_COLUMNS[name]).sort_values(list(PANEL_KEYS[name]))
            .reset_index(drop=True) for name in names}


# --- the Monte Carlo study ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One protocol analysis with a truth: what is fitted and what it is compared with."""

    protocol_id: str
    analysis_id: str
    term: str
    effect: str
    log_scale: bool


def _targets(protocols: Sequence[Protocol]) -> list[Target]:
    return [Target(p.id, analysis_id, str(spec["term"]), str(spec["effect"]),
                   spec.get("transform") == "exp")
            for p in protocols for analysis_id, spec in p.truth.items()]


def truth_protocols(ids: Sequence[str] | None) -> list[Protocol]:
    """The protocols with a truth (all, or those named), read once by the parent process and
    handed to the replications: protocol files edited during a study do not change it."""
    protocols = [p for p in load_protocols(PROTOCOLS_DIR) if p.truth]
    if ids is not None:
        unknown = set(ids) - {p.id for p in protocols}
        if unknown:
            raise ValueError(f"no protocol with a truth named {sorted(unknown)}")
        protocols = [p for p in protocols if p.id in set(ids)]
    unsupported = {p.panel for p in protocols} - set(BUILDERS)
    if unsupported:
        raise ValueError(f"no validation twin for panels {sorted(unsupported)}")
    return protocols


def replication_seeds(seed: int, reps: int) -> list[int]:
    """Per-replication world seeds, a deterministic function of ``seed`` alone."""
    states = np.random.SeedSequence(seed).generate_state(reps, dtype=np.uint32)
    return [int(s) for s in states]


#: The panels an area-only world (:func:`area_world`) can build.
AREA_PANELS = frozenset({"area_month_panel", MILESTONES_MART})


def area_world(scenario: str, world_seed: int) -> World:
    """The comparator areas of a world (``simulate_area_world``) with the scenario's
    ``study_area`` and ``milestones`` frames: all the area protocols read."""
    world = simulate_area_world(scenario, world_seed)
    scn = load_scenario(scenario)
    declared = {"study_area": study_area(scn), "milestones": milestones(scn)}
    return World({**{k: conform(v, SOURCES[k]) for k, v in declared.items()}, **world.frames},
                 world.truth)


def _simulate(scenario: str, world_seed: int, panels: Sequence[str]) -> World:
    """The world a replication needs. Area panels come from the comparator areas alone, which
    have their own random stream, so when nothing else is read only they are simulated (a
    fraction of a second instead of seconds; same frame and truth as the whole world's)."""
    if set(panels) <= AREA_PANELS:
        return area_world(scenario, world_seed)
    return simulate_world(scenario, world_seed)


def run_replication(rep: int, world_seed: int, scenario: str,
                    protocols: Sequence[Protocol]) -> list[dict[str, Any]]:
    """Simulate one world and fit every truth-bearing analysis; one row per target.

    Mirrors analysis.runner.attempt_protocol (milestones resolved, prepare, filter, fit) but
    fits only the analyses named in ``truth:``, skipping sensitivity analyses such as
    permutation tests that have no truth to be checked against."""
    names = sorted({p.panel for p in protocols} | {MILESTONES_MART})
    world = _simulate(scenario, world_seed, names)
    panels = build_panels(world.frames, names)
    effects = world.truth["effects"]
    rows = []
    for protocol in protocols:
        resolved = with_milestones(protocol, panels.__getitem__)
        prepared = prepare_panel(panels[protocol.panel], resolved.raw["data"])
        analyses = {a.analysis_id: a for a in resolved.analyses()}
        for target in _targets([protocol]):
            analysis = analyses[target.analysis_id]
            truth = float(effects[target.effect]["value"])
            row: dict[str, Any] = {
                "rep": rep, "world_seed": world_seed, "protocol_id": protocol.id,
                "analysis_id": target.analysis_id, "term": target.term,
                "truth_key": target.effect,
                "truth": math.log(truth) if target.log_scale else truth,
                "estimate": math.nan, "std_error": math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "p_value": math.nan, "error": "",
            }
            try:
                result = fit(analysis.method, apply_filters(prepared, analysis.filters),
                             outcome=protocol.outcome, covariates=list(analysis.covariates))
                tidy = result.tidy.set_index("term").loc[target.term]
                row.update({k: float(tidy[k]) for k in
                            ("estimate", "std_error", "ci_low", "ci_high", "p_value")})
            except Exception as exc:  # noqa: BLE001 - a failed fit is a result to count
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
    return rows


def summarise(replications: pd.DataFrame) -> pd.DataFrame:
    """Per target: bias, empirical SE, mean model SE, coverage and rejection with MC errors."""
    out = []
    keys = ["protocol_id", "analysis_id", "term", "truth_key"]
    for key, group in replications.groupby(keys, sort=True):
        ok = group.loc[group["error"].eq("") & group["estimate"].notna()
                       & group["std_error"].notna()]
        n = len(ok)
        error = ok["estimate"] - ok["truth"]
        covered = (ok["ci_low"] <= ok["truth"]) & (ok["truth"] <= ok["ci_high"])
        coverage = float(covered.mean()) if n else math.nan
        rejection = float((ok["p_value"] < 0.05).mean()) if n else math.nan
        out.append({
            **dict(zip(keys, key, strict=True)),
            "reps": n,
            "failed": len(group) - n,
            "mean_truth": ok["truth"].mean(),
            "mean_estimate": ok["estimate"].mean(),
            "bias": error.mean(),
            "bias_mcse": error.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan,
            "empirical_se": ok["estimate"].std(ddof=1),
            "sd_error": error.std(ddof=1),
            "model_se": ok["std_error"].mean(),
            "coverage": coverage,
            "coverage_mcse": math.sqrt(coverage * (1 - coverage) / n) if n else math.nan,
            "rejection": rejection,
        })
    return pd.DataFrame(out)


def _markdown(summary: pd.DataFrame, *, reps: int, seed: int, scenario: str) -> str:
    """The committed table: settings and one line per target, no dates or timings."""
    lines = [
        "# Monte Carlo validation of the protocol estimators",
        "",
        f"Scenario `{scenario}`, {reps} replications, master seed {seed} (replication seeds "
        "from `numpy.random.SeedSequence(seed)`). Truth: the realised effect of each world "
        "(`truth.json`), on the log scale for ratio estimands. Bias = mean(estimate - truth); "
        "empirical SE = SD of the estimates; SD error = SD of estimate - truth; model SE = mean "
        "reported SE; coverage = share of 95% CIs containing the truth (MC SE in brackets); "
        "rejection = share with p < 0.05. Generated by `sicp validate`; rerunning with the "
        "same settings reproduces this file byte for byte.",
        "",
        "| protocol | analysis | term | reps | failed | truth | bias (MC SE) | empirical SE "
        "| SD error | model SE | coverage (MC SE) | rejection |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def g(x: float) -> str:
        return "NA" if pd.isna(x) else f"{x:.4g}"

    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.protocol_id} | {r.analysis_id} | {r.term} | {r.reps} | {r.failed} "
            f"| {g(r.mean_truth)} | {g(r.bias)} ({g(r.bias_mcse)}) | {g(r.empirical_se)} "
            f"| {g(r.sd_error)} | {g(r.model_se)} "
            f"| {g(100 * r.coverage)}% ({g(100 * r.coverage_mcse)}) | {g(100 * r.rejection)}% |")
    return "\n".join(lines) + "\n"


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per worker process (inherited by spawned workers): with as many workers
    as cores, threaded BLAS would only oversubscribe them."""
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _replicate(args: Sequence[tuple[int, int, str, list[Protocol]]],
               workers: int) -> Iterator[list[dict[str, Any]]]:
    """Replication rows in replication order, as they finish."""
    if workers <= 1:
        yield from (run_replication(*a) for a in args)
        return
    with _single_threaded_blas(), ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(run_replication, *zip(*args, strict=True))


def read_replications(path: Path) -> pd.DataFrame:
    """A replications.csv as written (an empty ``error`` is an empty string, not NaN)."""
    replications = pd.read_csv(path, keep_default_na=False, na_values=[""],
                               dtype={"error": str})
    replications["error"] = replications["error"].fillna("")
    return replications


def write_replications(frame: pd.DataFrame, path: Path, *, append: bool = False) -> None:
    """The one CSV format of replications (10 significant digits, which read back and
    rewritten give the same text)."""
    frame.to_csv(path, mode="a" if append else "w", header=not (append and path.exists()),
                 index=False, float_format="%.10g")


def write_tables(out: Path, *, seed: int, scenario: str) -> pd.DataFrame:
    """Summarise ``out/replications.csv`` into ``monte_carlo.csv`` and ``monte_carlo.md``.

    Also tables an interrupted study from the replications it completed; the Markdown states
    how many that was."""
    replications = read_replications(out / "replications.csv")
    summary = summarise(replications)
    summary.to_csv(out / "monte_carlo.csv", index=False, float_format="%.10g")
    (out / "monte_carlo.md").write_text(_markdown(
        summary, reps=int(replications["rep"].nunique()), seed=seed, scenario=scenario))
    return summary


def _run_into(path: Path, reps: Sequence[tuple[int, int]], scenario: str,
              protocols: list[Protocol], workers: int, *, resume: bool) -> None:
    """Run replications (rep, world seed) of ``protocols``, appending their rows to ``path``
    as each finishes, in replication order. The file is started afresh, or with ``resume``
    the replications it already holds (a stopped run's) are kept and not run again."""
    done: set[int] = set()
    if resume and path.exists():
        held = read_replications(path)
        seeds = dict(reps)
        if (set(held["protocol_id"]) != {p.id for p in protocols}
                or any(seeds.get(r) != s for r, s in zip(held["rep"], held["world_seed"],
                                                          strict=True))):
            raise ValueError(f"{path} holds other protocols or seeds; cannot resume it")
        done = set(held["rep"])
    else:
        path.unlink(missing_ok=True)
    args = [(rep, world_seed, scenario, protocols) for rep, world_seed in reps
            if rep not in done]
    for rows in _replicate(args, workers):
        write_replications(pd.DataFrame(rows), path, append=True)


def run_monte_carlo(reps: int, seed: int, out: Path, scenario: str = "mc",
                    protocols: list[str] | None = None, workers: int = 2,
                    resume: bool = False) -> pd.DataFrame:
    """Run ``reps`` replications on ``scenario`` with ``workers`` processes and return the
    summary. ``out/replications.csv`` (one row per replication and target) grows as
    replications finish, so an interrupted study keeps them (see :func:`write_tables`) and
    ``resume`` continues it; ``out/monte_carlo.csv`` and ``out/monte_carlo.md`` are the
    summary."""
    if reps < 2:
        raise ValueError("a Monte Carlo study needs at least 2 replications")
    selected = truth_protocols(protocols)
    out.mkdir(parents=True, exist_ok=True)
    _run_into(out / "replications.csv", list(enumerate(replication_seeds(seed, reps), start=1)),
              scenario, selected, workers, resume=resume)
    return write_tables(out, seed=seed, scenario=scenario)


def merge_replications(existing: pd.DataFrame, rerun: pd.DataFrame,
                       protocol_ids: Sequence[str]) -> pd.DataFrame:
    """``existing`` with every row of ``protocol_ids`` replaced by ``rerun``'s rows, which
    must cover the same replications; rows stay ordered by replication, then protocol (the
    order a full run writes them in)."""
    if set(rerun["protocol_id"]) - set(protocol_ids):
        raise ValueError("the rerun has rows of protocols it was not asked to replace")
    if set(rerun["rep"]) != set(existing["rep"]):
        raise ValueError("the rerun does not cover the study's replications")
    kept = existing.loc[~existing["protocol_id"].isin(protocol_ids)]
    merged = pd.concat([kept, rerun[list(existing.columns)]], ignore_index=True)
    return merged.sort_values(["rep", "protocol_id"], kind="stable").reset_index(drop=True)


def update_monte_carlo(seed: int, out: Path, protocols: list[str], scenario: str = "mc",
                       workers: int = 2, resume: bool = False) -> pd.DataFrame:
    """Rerun only ``protocols`` on the replications of the study in ``out`` (same scenario and
    master seed; its replication seeds are checked against ``seed``), replace their rows in
    ``out/replications.csv``, keep every other row as it is, and re-summarise.

    The rerun rows go to ``out/replications.update.csv`` as replications finish; the study's
    file is rewritten only when all are done; ``resume`` continues a stopped update from
    the replications that file holds."""
    path = out / "replications.csv"
    existing = read_replications(path)
    reps = int(existing["rep"].max())
    seeds = dict(enumerate(replication_seeds(seed, reps), start=1))
    recorded = existing.drop_duplicates("rep").set_index("rep")["world_seed"]
    if set(recorded.index) != set(seeds) or any(seeds[r] != s for r, s in recorded.items()):
        raise ValueError(f"{path} is not a study of replications 1-{reps} from master seed "
                         f"{seed}")
    selected = truth_protocols(protocols)
    ids = [p.id for p in selected]
    partial = out / "replications.update.csv"
    _run_into(partial, sorted(seeds.items()), scenario, selected, workers, resume=resume)
    write_replications(merge_replications(existing, read_replications(partial), ids), path)
    partial.unlink()
    return write_tables(out, seed=seed, scenario=scenario)
