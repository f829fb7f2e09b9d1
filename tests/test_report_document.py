"""The evaluation report as a document a reader can publish (issue 18, items 3, 4 and 6).

Every shipped protocol is run on a copy of the session's small world into a results store of
this module's own, and the evaluation report is rendered from it (HTML and PDF). The rendered
files are then read as a reader would: a title block with date, version and fingerprint, a
table of contents, an executive summary by component, terms in words, no pandas leftovers in
the tables (``<NA>``, index columns, ``32779.0``, ``1.5138e+06``), nothing printed on top of
anything else in the PDF, and figures drawn at a size that prints legibly. The helpers behind
them (number formats, pipe tables, the trial flow and baseline table, the grouped forest plot,
the references) are tested on their own below.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
import shutil
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pypdfium2 as pdfium
import pytest
from PIL import Image

from analysis.protocol import load_protocols
from analysis.runner import (
    attempt_protocol,
    built_from,
    input_fingerprint,
    read_panel,
    store_outcome,
)
from analysis.store import read_results
from sicp import report_figures as rf
from sicp.render import render_report
from sicp.report_data import (
    SYNTHETIC_BANNER,
    TERM_WORDS,
    ReportInputs,
    brief,
    cited_references,
    count,
    display_table,
    forest_rows,
    headline_rows,
    md_table,
    number,
    protocol_statuses,
    term_words,
    trial_baseline,
    trial_flow,
)
from sicp.reports import report_params
from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import BuiltWorld

matplotlib.use("Agg")

#: Store terms that are ordinary English words, which prose may use as such.
ORDINARY_WORDS = {
    "dose",
    "treatment",
    "simple",
    "group",
    "intercept",
    "time",
    "trend",
    "post",
    "cost",
}
#: Widest and tallest a figure may be drawn (inches) to print at no less than ~88% of its size
#: on the A4 page with 2 cm margins (17 cm text width).
MAX_FIGURE_INCHES = (7.6, 10.2)


def page_text(path: Path) -> str:
    """A rendered HTML file as plain text: the table of contents, styles and scripts dropped,
    tags removed, entities and typographic quotes undone, white space collapsed."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(style|script|nav)\b.*?</\1>", " ", raw, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').split())


def _tables(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    """Each HTML table as (header cells, body rows of cells), as plain text."""

    def cells(fragment: str, tag: str) -> list[str]:
        return [
            " ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
            for c in re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", fragment, re.S)
        ]

    out = []
    for table in re.findall(r"<table\b.*?</table>", path.read_text(encoding="utf-8"), re.S):
        head = re.search(r"<thead>(.*?)</thead>", table, re.S)
        body = re.findall(r"<tr\b[^>]*>(.*?)</tr>", table.split("</thead>")[-1], re.S)
        out.append((cells(head[1], "th") if head else [], [cells(r, "td") for r in body]))
    return out


def table_defects(path: Path) -> list[str]:
    """What a reader would call pandas' leftovers in the HTML's tables: ``<NA>``/``nan``
    cells, an unnamed or 0..N index column, counts with a decimal zero, scientific notation."""
    found = []
    for number_, (header, rows) in enumerate(_tables(path), 1):
        where = f"table {number_} ({' | '.join(header)[:60]})"
        first = [r[0] for r in rows if r]
        if header and header[0] == "":
            found.append(f"{where}: unnamed first column (an index)")
        if len(first) > 1 and first == [str(i) for i in range(len(first))]:
            found.append(f"{where}: a 0..N index column")
        for row in rows:
            for cell in row:
                if cell in ("<NA>", "nan", "NaN", "None", "NaT") or "<NA>" in cell:
                    found.append(f"{where}: missing value printed as {cell!r}")
                if re.search(r"\b\d+(?:\.\d+)?e[+-]?\d+\b", cell):
                    found.append(f"{where}: scientific notation in {cell!r}")
                if re.fullmatch(r"-?\d{4,}\.0", cell):
                    found.append(f"{where}: a count with a decimal zero, {cell!r}")
    return found


def overlapping_glyphs(pdf_path: Path, limit: int = 5) -> list[str]:
    """Characters of the PDF printed on top of other characters (not their neighbours in the
    text), or outside the page, page by page: text that collides when headers or long
    identifiers do not fit their cells."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    found: list[str] = []
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            width, height = page.get_size()
            text = page.get_textpage()
            boxes = []
            for i in range(text.count_chars()):
                char = text.get_text_range(i, 1)
                if not char.strip():
                    continue
                left, bottom, right, top = text.get_charbox(i)
                if right - left < 0.5 or top - bottom < 0.5:
                    continue
                if left < -1 or right > width + 1 or bottom < -1 or top > height + 1:
                    found.append(f"page {index + 1}: {char!r} outside the page")
                boxes.append((i, char, left, bottom, right, top))
            grid: dict[tuple[int, int], list[tuple]] = {}
            for box in boxes:
                key = (int(box[2] // 20), int(box[3] // 20))
                for other in (
                    grid.get((key[0] + dx, key[1] + dy), [])
                    for dx in (-1, 0, 1)
                    for dy in (-1, 0, 1)
                ):
                    for o in other:
                        if abs(o[0] - box[0]) <= 2:
                            continue
                        dx_ = min(box[4], o[4]) - max(box[2], o[2])
                        dy_ = min(box[5], o[5]) - max(box[3], o[3])
                        smaller = min(
                            (box[4] - box[2]) * (box[5] - box[3]), (o[4] - o[2]) * (o[5] - o[3])
                        )
                        if dx_ > 0 and dy_ > 0 and dx_ * dy_ > 0.3 * smaller:
                            found.append(f"page {index + 1}: {o[1]!r} and {box[1]!r} overlap")
                grid.setdefault(key, []).append(box)
            if len(found) >= limit:
                break
    finally:
        pdf.close()
    return found


def figure_sizes(html_path: Path) -> list[tuple[float, float, float]]:
    """(width in, height in, dpi) of every PNG embedded in the HTML, from its pHYs."""
    sizes = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html_path.read_text()):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        dpi = float(image.info.get("dpi", (72, 72))[0])
        sizes.append((image.width / dpi, image.height / dpi, dpi))
    return sizes


@pytest.fixture(scope="module")
def store(small_dbt_world: BuiltWorld, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A copy of the small world's warehouse with every shipped protocol run into it."""
    root = tmp_path_factory.mktemp("document")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(small_dbt_world.warehouse, warehouse)
    paths = Paths(
        input_dir=small_dbt_world.warehouse.parent / "raw",
        warehouse=warehouse,
        results_dir=root / "results",
        reports_dir=root / "reports",
        protocols_dir=PROJECT_ROOT / "protocols",
        dbt_dir=PROJECT_ROOT / "dbt",
    )
    fingerprint = input_fingerprint(warehouse)
    started = time.perf_counter()
    for protocol in load_protocols(paths.protocols_dir):
        outcome = attempt_protocol(
            protocol,
            lambda name: read_panel(warehouse, name),
            fingerprint=fingerprint,
            version="test-version",
        )
        store_outcome(
            outcome,
            warehouse,
            paths.results_dir,
            fingerprint=fingerprint,
            version="test-version",
            build_seq=built_from(warehouse),
        )
    print(f"every protocol on the small world in {time.perf_counter() - started:.1f}s")
    return paths


@pytest.fixture(scope="module")
def rendered(store: Paths) -> dict[str, Path]:
    started = time.perf_counter()
    files = render_report(
        PROJECT_ROOT / "reports" / "evaluation_report.qmd",
        store.reports_dir,
        params=report_params(store, 5),
        engine="offline",
    )
    print(f"evaluation report rendered in {time.perf_counter() - started:.1f}s")
    return {f.suffix: f for f in files}


@pytest.fixture(scope="module")
def inputs(store: Paths) -> ReportInputs:
    return ReportInputs(store.results_dir, store.warehouse, store.protocols_dir, store.input_dir)


def test_title_block_contents_version_fingerprint_and_banner(store, rendered):
    raw = rendered[".html"].read_text(encoding="utf-8")
    header = raw.split("</header>", 1)[0]
    assert f'<p class="date">{dt.date.today().isoformat()}</p>' in header
    toc = re.search(r'<nav id="TOC"[^>]*>(.*?)</nav>', raw, re.S)
    assert toc is not None
    entries = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", e)).split())
        for e in re.findall(r"<li>(.*?)</li>", toc[1], re.S)
    ]
    for section in ("Executive summary", "Methods and limitations", "Lineage", "References"):
        assert any(section in e for e in entries), section
    assert entries[0].startswith("1 "), entries[0]  # sections are numbered from 1
    text = page_text(rendered[".html"])
    fingerprint = input_fingerprint(store.warehouse)
    details = text.split("Executive summary", 1)[0]
    assert SYNTHETIC_BANNER in details
    assert "test-version" in details and fingerprint in details
    pdf = pdfium.PdfDocument(str(rendered[".pdf"]))
    try:
        first = " ".join(pdf[0].get_textpage().get_text_range().split())
    finally:
        pdf.close()
    assert "Contents" in first and "Executive summary" in first
    assert " ".join(SYNTHETIC_BANNER.split()) in first


def test_executive_summary_answers_each_primary_question_by_component(store, rendered):
    text = page_text(rendered[".html"])
    summary = text.split("Executive summary", 1)[1].split("Study window and data", 1)[0]
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    store_rows = read_results(store.results_dir)
    rows = headline_rows(store_rows, protocols)
    headings = [
        m.start()
        for m in re.finditer(
            r"Multidisciplinary groups \(MDGs\)|Telephone "
            r"health coaching|Community assets|The centre "
            r"of contact",
            summary,
        )
    ]
    assert len(headings) == 4, "one part per component"
    for row in rows.itertuples():
        question = " ".join(protocols[row.protocol_id].question.split())
        assert question in summary, row.protocol_id
        answer = summary.split(question, 1)[1][:600]
        assert answer.lstrip().startswith(row.label), row.protocol_id
        if not row.note:
            assert f"{number(row.ci_low)} to {number(row.ci_high)}" in answer, row.protocol_id
    assert "Conclusions" in summary


def test_no_raw_term_is_printed(store, rendered):
    """A term of the results store never reaches a reader as its name: tables and sentences
    print its words. Verbatim texts are left out: the protocols' own (the appendix) and the
    reasons a protocol was not estimated (an error message, whole or cut short in a cell)."""
    text = page_text(rendered[".html"])
    text = re.sub(r"The protocols .*? Lineage", " ", text, count=1)
    runs = pd.read_parquet(store.results_dir / "protocol_runs.parquet")
    for reason in runs.loc[runs["status"] != "ok", "reason"].dropna():
        reason = " ".join(str(reason).split())
        for shown in filter(None, (reason, brief(f"not estimated: {reason}"))):
            text = text.replace(shown, " ")
    terms = set(read_results(store.results_dir)["term"]) - ORDINARY_WORDS
    assert {"average_first_12", "icer", "inmb_20000", "itt", "cace"} <= terms
    printed = sorted(t for t in terms if re.search(rf"(?<![\w=\[]){re.escape(t)}(?![\w=\]])", text))
    assert not printed, f"raw terms in the report: {printed}"
    assert "incremental cost-effectiveness ratio (GBP per QALY)" in text
    assert re.search(r"GBP [\d,]+ per QALY gained", text)


def test_every_headline_and_summary_term_has_words(store):
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    stored = read_results(store.results_dir)
    summary = {
        "itt",
        "cace",
        "per_protocol",
        "as_treated",
        "att_post_mean",
        "simple",
        "level_change",
        "treatment",
        "icer",
        "incremental_cost",
        "incremental_qaly",
    }
    for row in stored.itertuples():
        protocol = protocols[row.protocol_id]
        if (
            row.term == protocol.reporting.term
            or row.term in summary
            or (row.term.startswith(("average_first_", "inmb_")))
        ):
            assert term_words(row.term, row.scale, protocol), (row.protocol_id, row.term)
    assert term_words("average_first_12", "log").endswith(
        "(geometric mean of the monthly rate ratios)"
    )
    assert term_words("inmb_20000") == (
        "incremental net monetary benefit at GBP 20,000 per QALY (GBP per person)"
    )
    assert term_words("no_such_term") is None
    assert all(not re.search(r"\w_\w", words) for words in TERM_WORDS.values())


def test_tables_have_no_pandas_leftovers(rendered):
    defects = table_defects(rendered[".html"])
    assert not defects, "\n".join(defects)
    tables = _tables(rendered[".html"])
    assert len(tables) >= 10
    text = page_text(rendered[".html"])
    assert not re.search(r"\b\d\.\d+e[+-]\d+\b", text), "scientific notation in the text"
    assert "<NA>" not in text


def test_the_pdf_prints_nothing_on_top_of_anything_else(rendered):
    overlaps = overlapping_glyphs(rendered[".pdf"])
    assert not overlaps, "\n".join(overlaps)


def test_every_figure_is_drawn_to_print_legibly(rendered):
    sizes = figure_sizes(rendered[".html"])
    assert len(sizes) >= 10
    for i, (width, height, dpi) in enumerate(sizes, 1):
        assert dpi >= 99.5, (i, dpi)
        assert width <= MAX_FIGURE_INCHES[0] and height <= MAX_FIGURE_INCHES[1], (i, width, height)


def _smallest_font(fig) -> float:
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    return min(t.get_fontsize() for t in texts)


def test_trial_flow_adds_up_and_matches_the_analyses(store, inputs):
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    flow = trial_flow(inputs, protocols, 1).set_index("stage")
    as_int = (
        flow[["offer", "control", "total"]].replace("", "0").map(lambda v: int(v.replace(",", "")))
    )
    randomised = as_int.at["Randomised", "total"]
    assert as_int.at["Allocated", "offer"] + as_int.at["Allocated", "control"] == randomised
    excluded = as_int.loc[flow["kind"] == "excluded", "total"].sum()
    assert as_int.at["Recruited to the cohort", "total"] == excluded + randomised
    assert (
        as_int.at["Accepted the offer", "offer"] + as_int.at["Declined the offer", "offer"]
        == as_int.at["Allocated", "offer"]
    )
    stored = read_results(store.results_dir)
    for pid in ("twic_eq5d", "twic_selfman", "twic_cost_effectiveness"):
        primary = stored[(stored["protocol_id"] == pid) & (stored["analysis_id"] == "primary")]
        label = f"Analysed: {protocols[pid].outcome_label}"
        assert as_int.at[label, "total"] == int(primary["n_obs"].iloc[0]), pid
    fig = rf.consort_diagram(flow.reset_index())
    shown = " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    assert f"n = {count(randomised)}" in shown
    assert _smallest_font(fig) >= rf.MIN_FONT_PT


def test_trial_flow_and_baseline_suppress_small_counts(inputs, store):
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    threshold = 60
    flow = trial_flow(inputs, protocols, threshold)
    values = flow[["offer", "control", "total"]]
    for column in values:
        for cell in values[column]:
            if cell not in ("", "[c]"):
                assert int(cell.replace(",", "")) == 0 or int(cell.replace(",", "")) >= threshold, (
                    cell
                )
    arms = flow[flow["kind"] == "arm"]
    hidden = (arms[["offer", "control", "total"]] == "[c]").sum(axis=1)
    assert (hidden != 1).all(), "a stage with one hidden arm gives it back by subtraction"
    assert "[c]" in set(flow["offer"]) | set(flow["total"]), "the threshold should bite"
    baseline = trial_baseline(inputs, threshold)
    assert list(baseline.columns[1:]) == [
        c for c in baseline.columns[1:] if re.fullmatch(r"(offer|control) \(n = .+\)", c)
    ]
    for column in baseline.columns[1:]:
        for group in ("IMD decile", "Social care need", "Sex"):
            cells = baseline.loc[baseline["characteristic"].str.startswith(group), column]
            assert (cells == "[c]").sum() != 1, (group, column)
            for cell in cells[cells != "[c]"]:
                assert int(cell.split(" ")[0].replace(",", "")) >= threshold, cell


def test_forest_plot_groups_by_component_with_one_axis_per_scale(store):
    protocols = {p.id: p for p in load_protocols(store.protocols_dir)}
    stored = read_results(store.results_dir)
    runs = pd.read_parquet(store.results_dir / "protocol_runs.parquet")
    rows = forest_rows(
        headline_rows(stored, protocols, statuses=protocol_statuses(protocols, runs, stored))
    )
    fig = rf.forest_by_component(rows)
    scales = rows.groupby(["component_label", "scale"], sort=False).size()
    assert len(fig.axes) == len(scales)
    for ax, ((_, scale), n) in zip(fig.axes, scales.items(), strict=True):
        assert len(ax.get_yticks()) == n
        assert ax.get_xscale() == ("log" if scale.startswith("ratio") else "linear")
    headers = [t.get_text() for t in fig.texts]
    assert headers == list(dict.fromkeys(rows["component_label"]))
    assert _smallest_font(fig) >= rf.MIN_FONT_PT
    assert fig.get_size_inches()[0] <= MAX_FIGURE_INCHES[0]
    assert fig.get_size_inches()[1] <= MAX_FIGURE_INCHES[1]
    rollout = rf.rollout_by_neighbourhood(read_panel(store.warehouse, "practice_month_panel"))
    assert _smallest_font(rollout) >= rf.MIN_FONT_PT


def test_numbers_are_written_for_readers():
    assert number(1513827.0) == "1,510,000"
    assert number(0.000123) == "0.000123"
    assert number(-1.47) == "-1.47" and number(1.0) == "1" and number(0.00294) == "0.00294"
    assert number(float("nan")) == "–" and number("[c]") == "[c]"
    assert count(32779.0) == "32,779" and count(pd.NA) == "–"
    for v in (0.927, -0.0757, 0.0119, 3.9, 0.00234):
        assert number(v) == f"{v:.3g}"  # as %g writes it whenever %g has no exponent


def test_display_tables_drop_the_index_and_print_what_is_missing_as_a_dash():
    frame = pd.DataFrame(
        {"n": [32779.0, np.nan], "label": ["a|b", "*x*"]},
        index=pd.Index(["in", "out"], name="exposure"),
    )
    shown = display_table(frame, {"n": count})
    assert list(shown.columns) == ["exposure", "n", "label"]
    assert shown["n"].tolist() == ["32,779", "–"]
    unnamed = display_table(frame.reset_index(drop=True))
    assert list(unnamed.columns) == ["n", "label"]
    table = md_table(shown)
    lines = table.splitlines()
    assert lines[0].startswith("| exposure | n | label |")
    assert re.fullmatch(r"\| :-+ \| -+: \| :-+ \|", lines[1])
    assert r"a\|b" in table and r"\*x\*" in table  # printed as written
    wide = md_table(pd.DataFrame({"text": ["word " * 40], "ci": ["0.927 (0.803 to 1.07)"]}))
    rule = wide.splitlines()[1].split("|")[1:-1]
    assert len(rule[1].strip()) >= len("0.927 (0.803 to 1.07)")  # numbers never squeezed


def test_references_are_those_of_the_methods_used():
    protocols = {p.id: p for p in load_protocols(PROJECT_ROOT / "protocols")}
    trial = cited_references({"twic_eq5d": protocols["twic_eq5d"]})
    assert any(r.startswith("Relton C") for r in trial)
    assert any(r.startswith("Angrist JD") for r in trial)
    assert any(r.startswith("Devlin NJ") for r in trial)
    assert not any(r.startswith(("Abadie A", "Hussey MA", "Callaway B")) for r in trial)
    everything = cited_references(protocols)
    for first_author in (
        "Hussey MA",
        "Callaway B",
        "Abadie A",
        "Lopez Bernal J",
        "Glick HA",
        "Mancl LA",
        "Bell RM",
    ):
        assert any(r.startswith(first_author) for r in everything), first_author
    assert not any(r.startswith("Newey WK") for r in everything), "no protocol uses HAC SEs"
