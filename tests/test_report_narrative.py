"""The reports follow the data: their prose states what the marts hold, every primary protocol
without estimates is shown as "not estimated: <reason>", an empty results store still renders,
and a synthetic world is labelled as such.

One warehouse is used: a copy of the session's small world (``small_dbt_world``), on which a
few protocols are run into a results store of this module's own, one of them failing and one not
applicable. Both reports are rendered from it (HTML, and the evaluation report as PDF), then
again against an empty store with an input folder that is not a synthetic world.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from analysis.protocol import load_protocols
from analysis.runner import (
    attempt_protocol,
    built_from,
    input_fingerprint,
    read_panel,
    store_outcome,
)
from analysis.store import (
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STORE_COLUMNS,
    read_protocol_runs,
)
from sicp import report_figures as rf
from sicp.render import render_report
from sicp.report_data import (
    NO_ESTIMATES,
    SYNTHETIC_BANNER,
    effect_sentence,
    headline_rows,
    protocol_statuses,
    store_summary,
)
from sicp.reports import REPORTS, report_params
from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import BuiltWorld

#: Protocols run on the small world: two that fit, one made to fail, one made not applicable.
RUN_AS_IS = ("its_salford_emergency_admissions", "did_area_emergency_admissions", "twic_selfman")
FAILING = "twic_eq5d"  # run on a panel without its outcome column: status failed
NOT_APPLICABLE = "contact_centre_ae"  # its launch month moved outside the data: not applicable
REPORT_SOURCES = [PROJECT_ROOT / "reports" / f"{name}.qmd" for name in REPORTS]
REPORT_HELPERS = [
    PROJECT_ROOT / "sicp" / f"{name}.py"
    for name in ("report_data", "report_figures", "audit", "reports")
]


def _text(path: Path) -> str:
    """A rendered HTML file as plain text: the table of contents, styles and scripts dropped,
    tags dropped, entities and typographic quotes undone, whitespace collapsed (pandoc wraps
    long lines)."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(style|script|nav)\b.*?</\1>", " ", raw, flags=re.S)
    return _plain(html.unescape(re.sub(r"<[^>]+>", "", raw)))


def _plain(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').split())


def _between(text: str, start: str, end: str) -> str:
    assert start in text, start
    part = text.split(start, 1)[1]
    assert end in part, end
    return part.split(end, 1)[0]


def _query(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).df()


def _render(paths: Paths, out: Path, formats: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    params = report_params(paths, 5)
    written: dict[str, Path] = {}
    for name in REPORTS:
        for path in render_report(
            PROJECT_ROOT / "reports" / f"{name}.qmd",
            out,
            params=params,
            formats=formats.get(name, ("html",)),
            engine="offline",
        ):
            written[path.name] = path
    return written


@pytest.fixture(scope="module")
def store(small_dbt_world: BuiltWorld, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A copy of the small world's warehouse with its own results store and protocols."""
    root = tmp_path_factory.mktemp("narrative")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(small_dbt_world.warehouse, warehouse)
    protocols = root / "protocols"
    protocols.mkdir()
    for pid in (*RUN_AS_IS, FAILING):
        shutil.copy(PROJECT_ROOT / "protocols" / f"{pid}.yml", protocols)
    moved = yaml.safe_load((PROJECT_ROOT / "protocols" / f"{NOT_APPLICABLE}.yml").read_text())
    moved["method"]["options"]["interventions"] = "2099-01"
    (protocols / f"{NOT_APPLICABLE}.yml").write_text(yaml.safe_dump(moved, sort_keys=False))
    paths = Paths(
        input_dir=small_dbt_world.warehouse.parent / "raw",
        warehouse=warehouse,
        results_dir=root / "results",
        reports_dir=root / "reports",
        protocols_dir=protocols,
        dbt_dir=PROJECT_ROOT / "dbt",
    )
    fingerprint = input_fingerprint(warehouse)
    for protocol in load_protocols(protocols):
        # the failing protocol reads its panel without its outcome column
        drop = (protocol.panel, protocol.outcome) if protocol.id == FAILING else (None, None)

        def panel(name: str, drop: tuple[str | None, str | None] = drop) -> pd.DataFrame:
            frame = read_panel(warehouse, name)
            return frame.drop(columns=[drop[1]]) if name == drop[0] else frame

        outcome = attempt_protocol(protocol, panel, fingerprint=fingerprint, version="test")
        store_outcome(
            outcome,
            warehouse,
            paths.results_dir,
            fingerprint=fingerprint,
            version="test",
            build_seq=built_from(warehouse),
        )
    return paths


@pytest.fixture(scope="module")
def runs(store: Paths) -> pd.DataFrame:
    return read_protocol_runs(store.results_dir).set_index("protocol_id")


@pytest.fixture(scope="module")
def rendered(store: Paths, small_dbt_world: BuiltWorld) -> dict[str, Path]:
    """Both reports on the store above (a synthetic world: truth.json is in its input)."""
    started = time.perf_counter()
    files = _render(store, store.reports_dir, {"evaluation_report": ("html", "pdf")})
    print(f"reports on the small world's store rendered in {time.perf_counter() - started:.1f}s")
    return files


@pytest.fixture(scope="module")
def rendered_empty(
    store: Paths, small_dbt_world: BuiltWorld, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Both reports with no results store, from an input folder without truth.json."""
    root = tmp_path_factory.mktemp("narrative_empty")
    (root / "input").mkdir()
    paths = Paths(
        input_dir=root / "input",
        warehouse=store.warehouse,
        results_dir=root / "results",
        reports_dir=root / "reports",
        protocols_dir=store.protocols_dir,
        dbt_dir=store.dbt_dir,
    )
    started = time.perf_counter()
    files = _render(paths, paths.reports_dir, {})
    print(f"reports on an empty store rendered in {time.perf_counter() - started:.1f}s")
    return files


def test_the_store_holds_the_statuses_the_reports_are_checked_against(runs):
    assert set(runs.loc[list(RUN_AS_IS), "status"]) == {STATUS_OK}
    assert runs.at[FAILING, "status"] == STATUS_FAILED
    assert runs.at[NOT_APPLICABLE, "status"] == STATUS_NOT_APPLICABLE
    assert "2099-01" in runs.at[NOT_APPLICABLE, "reason"]


def test_the_narrative_states_what_the_marts_hold(store, rendered):
    text = _text(rendered["evaluation_report.html"])
    wh = store.warehouse
    counts = (
        _query(
            wh,
            """select count(*) as practices,
                                  count(distinct neighbourhood) as neighbourhoods,
                                  count(distinct mdg) as mdgs,
                                  sum(1 - never_treated) as taking_part
                           from marts.practice_rollout""",
        )
        .iloc[0]
        .astype(int)
    )
    assert min(counts) > 1, "the small world should have several of each"
    rollout = _between(text, "The MDG roll-out", "Figure 2")
    assert (
        f"has {counts['practices']} practices in {counts['neighbourhoods']} "
        f"neighbourhoods, served by {counts['mdgs']} MDGs"
    ) in rollout
    assert f"{counts['taking_part']} practices took part" in rollout
    waves = _query(
        wh,
        """select rollout_wave, min(mdg_first_month) as start, count(*) as n
                          from marts.practice_rollout where rollout_wave is not null
                          group by rollout_wave order by rollout_wave""",
    )
    assert len(waves) > 1
    assert f"started in {len(waves)} waves" in rollout
    for w in waves.itertuples():
        practices = f"{w.n} practice" + ("s" if w.n != 1 else "")
        assert f"wave {w.rollout_wave} in {w.start:%B %Y} ({practices};" in rollout, w

    window = _query(wh, "select * from marts.study_calendar").iloc[0]
    setting = _query(wh, "select source_name from marts.study_calendar where defines_window = 1")[
        "source_name"
    ]
    paragraph = _between(text, "Study window and data", "The MDG roll-out")
    assert (
        f"The study window is {window['study_start_month']:%B %Y} to "
        f"{window['study_end_month']:%B %Y} ({window['study_months']} months)"
    ) in paragraph
    assert len(setting) and all(source in paragraph for source in setting)
    milestones = _query(wh, "select milestone, month from marts.programme_milestones")
    for m in milestones.itertuples():
        assert f"{m.milestone}, {m.month:%B %Y}" in paragraph

    site = _query(
        wh, "select distinct area_name from marts.area_month_panel where is_study_area = 1"
    )["area_name"]
    comparators = _query(
        wh,
        "select count(distinct area_code) as n from marts.area_month_panel where is_study_area = 0",
    )["n"][0]
    assert len(site) == 1
    assert f"integrated care programme in {site[0]}" in text
    assert f"{site[0]} against {comparators} comparator areas" in text

    survey = _query(wh, "select * from marts.survey_waves order by wave")
    assert (
        f"{len(survey)} survey waves were delivered, from "
        f"{survey['wave_month'].iloc[0]:%B %Y} to {survey['wave_month'].iloc[-1]:%B %Y}"
    ) in _between(text, "The cohort", "Figure 3")
    trial = _query(wh, "select * from marts.trial_design").iloc[0]
    trial_text = _between(text, "The health-coaching trial within the cohort", "Table")
    assert (
        f"The baseline is survey wave {trial['baseline_wave']} "
        f"({trial['baseline_wave_month']:%B %Y})"
    ) in trial_text
    assert (
        f"the follow-up is wave {trial['followup_wave']} "
        f"({trial['followup_wave_month']:%B %Y}), "
        f"{trial['months_randomisation_to_followup']} months after the first randomisation "
        "month"
    ) in trial_text
    assert f"{trial['n_randomised']:,} cohort members were randomised" in trial_text


def test_a_primary_without_estimates_is_shown_as_not_estimated_with_its_reason(
    store, runs, rendered
):
    text = _text(rendered["evaluation_report.html"])
    summary = _between(text, "Executive summary", "Study window and data")
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    for pid in (FAILING, NOT_APPLICABLE):
        assert protocols[pid].primary
        label = protocols[pid].outcome_label
        note = _plain(f"{label}: not estimated: {runs.at[pid, 'reason']}")
        assert note in summary, pid
        # and the protocol's own section says the same instead of a table
        assert text.count(_plain(f"not estimated: {runs.at[pid, 'reason']}")) >= 2, pid
    for protocol in protocols.values():  # no primary is left out of the summary
        if protocol.primary:
            assert protocol.outcome_label in summary, protocol.id
    trial_table = _between(text, "Health coaching: ITT, CACE", "Community assets")
    failing_row = _between(trial_table, protocols[FAILING].outcome_label, "Self-management")
    assert "not estimated: KeyError" in failing_row
    costs = _between(text, "Primary effects and their cost consequences", "Methods and")
    assert costs.count("not estimated:") == 2
    assert "have no estimates (1 failed, 1 not applicable)" in summary

    audit = _text(rendered["outcome_audit.html"])
    lineage = audit.split("Lineage of the estimates", 1)[1]
    assert f"{FAILING}: failed: " in lineage
    assert f"{NOT_APPLICABLE}: not applicable: " in lineage


def test_an_empty_store_renders_with_a_message(rendered_empty):
    message = _plain(NO_ESTIMATES.replace("`", ""))
    for name in ("evaluation_report.html", "outcome_audit.html"):
        text = _text(rendered_empty[name])
        assert message in text, name
        assert "Traceback" not in text, name
    evaluation = _text(rendered_empty["evaluation_report.html"])
    assert "not estimated: no run of this protocol is recorded" in evaluation


def test_the_synthetic_banner_is_shown_for_a_synthetic_world_only(store, rendered, rendered_empty):
    import pypdfium2 as pdfium

    assert (store.input_dir / "truth.json").is_file()
    for name in ("evaluation_report.html", "outcome_audit.html"):
        text = _text(rendered[name])
        assert SYNTHETIC_BANNER in text, name
        assert text.index(SYNTHETIC_BANNER) < text.index(
            "Executive summary" if "evaluation" in name else "Inputs and data quality"
        )
        assert "Synthetic data" not in _text(rendered_empty[name]), name
    pdf = pdfium.PdfDocument(str(rendered["evaluation_report.pdf"]))
    try:
        first_page = _plain(pdf[0].get_textpage().get_text_range())
    finally:
        pdf.close()
    assert _plain(SYNTHETIC_BANNER) in first_page


def test_report_sources_state_no_site_facts():
    """Facts of the site (its name, months, years, counts, wave numbers) come from the marts;
    the .qmd sources and report helpers hold none of them, nor the retired calendar idioms."""
    retired = ("is_salford", "mdg_rollout", "(period - 1) % 12", "2012-01-01", "period 27")
    for path in REPORT_SOURCES + REPORT_HELPERS:
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"salford", source, re.I), f"{path.name} names the site"
        assert not re.search(r"\b20[0-3]\d-(0[1-9]|1[0-2])\b", source), f"{path.name}: a month"
        for idiom in retired:
            assert idiom not in source, (path.name, idiom)
    for path in REPORT_SOURCES:
        source = path.read_text(encoding="utf-8")
        years = re.findall(r"\b(?:19|20)\d\d\b", source)
        assert not years, f"{path.name} holds year(s) {years}"
        months = re.findall(
            r"\b(?:January|February|March|April|May|June|July|August|September"
            r"|October|November|December)\b",
            source,
        )
        assert not months, f"{path.name} names month(s) {months}"
        assert not re.search(
            r"\babout \d+ practices\b|\b(three|four) waves\b|\bwave [0-9]\b", source
        ), path.name


def test_statuses_notes_and_summary_without_rendering():
    """The readers behind the reports: a failed, a not-applicable and a never-run primary each
    get their note; the forest plot keeps their rows and prints the note."""
    protocols = {p.id: p for p in load_protocols(PROJECT_ROOT / "protocols")}
    chosen = {pid: protocols[pid] for pid in ("twic_eq5d", "contact_centre_ae", "twic_selfman")}
    runs = pd.DataFrame(
        [
            {"protocol_id": "twic_eq5d", "status": STATUS_FAILED, "reason": "ValueError: boom"},
            {
                "protocol_id": "contact_centre_ae",
                "status": STATUS_NOT_APPLICABLE,
                "reason": "interventions 2099-01 lies outside the data's calendar",
            },
        ]
    )
    empty = pd.DataFrame({c: pd.Series(dtype="string") for c in STORE_COLUMNS})
    statuses = protocol_statuses(chosen, runs, empty)
    assert statuses.loc["twic_selfman", "status"] == "not_run"
    rows = headline_rows(empty, chosen, statuses=statuses).set_index("protocol_id")
    assert rows.loc["twic_eq5d", "note"] == "not estimated: ValueError: boom"
    assert rows.loc["contact_centre_ae", "note"].startswith("not estimated: interventions 2099")
    assert rows.loc["twic_selfman", "note"].startswith("not estimated: no run")
    assert "*not estimated: ValueError: boom*" in effect_sentence(rows.loc["twic_eq5d"])
    summary = store_summary(statuses, 0)
    assert summary.startswith("**No estimates**") and "`twic_eq5d`: failed" in summary
    assert NO_ESTIMATES in store_summary(protocol_statuses(chosen, runs.head(0), empty), 0)

    fig = rf.forest_plot(rows.reset_index())
    notes = [t.get_text() for ax in fig.axes for t in ax.texts if "not estimated" in t.get_text()]
    assert len(notes) == 3
