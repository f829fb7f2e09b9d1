"""End to end on synthetic worlds: generate → Dagster (ingest, dbt, protocols) → store → reports.

The default world is built once per session (module fixture) and shared by the checks of
truth recovery, lineage, reproducibility and the rendered reports.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analysis.protocol import load_protocols
from analysis.store import read_results
from dagster_project.pipeline import fresh_synthetic_folder, run_pipeline
from sicp.render import html_has_network_urls
from sicp.report_data import headline_rows
from sicp.settings import Paths
from tests.test_report_document import overlapping_glyphs, table_defects
from tests.worlds import build_world, truth_checks


@pytest.fixture(scope="module")
def default_world(tmp_path_factory) -> Paths:
    return build_world(tmp_path_factory.mktemp("default"), "default", 42)


def test_every_protocol_recovers_its_truth_on_the_default_world(default_world):
    misses = []
    for pid, analysis_id, row, value in truth_checks(default_world):
        if math.isnan(row["ci_low"]):
            continue
        if not row["ci_low"] <= value <= row["ci_high"]:
            misses.append(
                f"{pid}/{analysis_id}: truth {value:.4g} outside "
                f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
            )
    assert not misses, "\n".join(misses)


def test_every_result_row_carries_its_lineage(default_world):
    store = read_results(default_world.results_dir)
    protocols = {p.id: p for p in load_protocols(default_world.protocols_dir)}
    assert set(store["protocol_id"]) == set(protocols)
    for pid, rows in store.groupby("protocol_id"):
        assert set(rows["protocol_hash"]) == {protocols[pid].hash}
    with duckdb.connect(str(default_world.warehouse), read_only=True) as con:
        fingerprint = con.execute("select fingerprint from raw.input_fingerprint").fetchone()[0]
        stored = con.execute("select count(*) from results.estimates").fetchone()[0]
    assert set(store["input_fingerprint"]) == {fingerprint}
    assert stored == len(store)
    assert store["code_version"].str.len().min() > 0


def test_rerunning_gives_identical_results(default_world):
    """Same inputs, same protocols: every stored value is identical after a full rerun
    (re-ingest, dbt rebuild, every protocol). ``code_version`` is left out of the comparison
    because ``git describe --dirty`` can change while other tests write in a checkout; the
    byte-identity of the parquet file itself is tested in tests/test_protocol_store.py."""
    before = read_results(default_world.results_dir).drop(columns="code_version")
    run_pipeline(default_world)
    after = read_results(default_world.results_dir).drop(columns="code_version")
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_demo_refuses_to_clear_a_folder_of_real_data(tmp_path):
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "recruitment.sav").write_bytes(b"real")
    with pytest.raises(RuntimeError, match="not a synthetic world"):
        fresh_synthetic_folder(tmp_path)


@pytest.fixture(scope="module")
def rendered(default_world) -> dict[str, Path]:
    from sicp.reports import render_all

    files = render_all(default_world, formats=("html", "pdf"))
    return {f.name: f for f in files}


def test_both_reports_render_to_html_and_pdf(rendered):
    assert set(rendered) == {
        "evaluation_report.html",
        "evaluation_report.pdf",
        "outcome_audit.html",
        "outcome_audit.pdf",
        "explorer.html",
    }
    for name, path in rendered.items():
        assert path.stat().st_size > 20_000, name


def _text(path: Path) -> str:
    """The HTML with runs of whitespace collapsed (pandoc wraps long lines)."""
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))


def test_evaluation_report_sections_figures_and_no_network(rendered):
    html = _text(rendered["evaluation_report.html"])
    for section in (
        "Executive summary",
        "The MDG roll-out",
        "The cohort",
        "Stepped-wedge",
        "Interrupted time series",
        "Difference-in-differences",
        "Synthetic control",
        "health-coaching trial",
        "Methods and limitations",
        "Lineage",
    ):
        assert section in html, section
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) >= 7
    assert all('alt="' in img and 'alt=""' not in img for img in images)
    assert all("data:image/png;base64" in img for img in images)
    assert html_has_network_urls(html) == []


def test_executive_summary_numbers_equal_the_results_store(default_world, rendered):
    html = _text(rendered["evaluation_report.html"])
    summary = html.split("Executive summary", 1)[1].split("forest", 1)[0]
    store = read_results(default_world.results_dir)
    protocols = {p.id: p for p in load_protocols(default_world.protocols_dir)}
    rows = headline_rows(store, protocols)
    assert len(rows) >= 4
    for row in rows.itertuples():
        assert f"{row.estimate:.3g}" in summary, row.protocol_id
        assert f"{row.ci_low:.3g} to {row.ci_high:.3g}" in summary, row.protocol_id


def test_outcome_audit_covers_every_measure(default_world, rendered):
    html = _text(rendered["outcome_audit.html"])
    with duckdb.connect(str(default_world.warehouse), read_only=True) as con:
        measures = con.execute("select measure from reference.outcome_measures").df()["measure"]
    for measure in measures:
        assert measure in html, measure
    assert "Reconciliation" in html and ">NO</td>" not in html
    # The tests of the build that made the marts (a Dagster run here, whose run_results.json
    # is in a per-run folder), read from the warehouse: every one named, every one passed.
    text = re.sub(r"<[^>]+>", " ", html)
    tallies = re.findall(r"in the build that made the marts:\s+(\d+) of (\d+) passed", text)
    assert len(tallies) >= 10 and all(a == b for a, b in tallies), tallies
    assert "not in the last build" not in html and "not_null_" in html.replace("\u200b", "")
    # Publication tables and pages (the evaluation report's checks, tests/test_report_document)
    assert table_defects(rendered["outcome_audit.html"]) == []
    assert overlapping_glyphs(rendered["outcome_audit.pdf"]) == []
    assert html_has_network_urls(html) == []


def test_pdf_first_page_is_not_blank(rendered):
    import numpy as np
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(rendered["evaluation_report.pdf"]))
    assert len(pdf) >= 3
    pixels = np.asarray(pdf[0].render(scale=1).to_pil().convert("L"), dtype=float)
    assert pixels.std() > 5


def test_exports_round_trip_values_types_and_labels(default_world, tmp_path):
    """The Stata file holds the mart's values (counts as integers, months as %td dates,
    missing values as missing) and its dbt descriptions as variable labels."""
    import pyreadstat

    from sicp.export import export_marts

    marts = ("practice_month_panel", "twic_analysis_set")
    written = export_marts(default_world.warehouse, tmp_path, marts=marts)
    assert {p.name for files in written.values() for p in files} == {
        f"{m}.{ext}" for m in marts for ext in ("parquet", "dta")
    }
    with duckdb.connect(str(default_world.warehouse), read_only=True) as con:
        for mart in marts:
            mart_df = con.execute(f"SELECT * FROM marts.{mart}").df()
            parquet = con.execute(f"SELECT * FROM '{tmp_path / mart}.parquet'").df()
            pd.testing.assert_frame_equal(parquet, mart_df)
            stata, meta = pyreadstat.read_dta(str(tmp_path / f"{mart}.dta"))
            assert list(stata.columns) == list(mart_df.columns)
            for column in mart_df.columns:
                ours, theirs = mart_df[column], stata[column]
                if pd.api.types.is_datetime64_any_dtype(ours):
                    assert meta.original_variable_types[column] == "%td"
                    assert pd.to_datetime(theirs).equals(ours.astype("datetime64[ns]")), column
                elif pd.api.types.is_numeric_dtype(ours):
                    assert ours.isna().equals(theirs.isna()), column
                    assert (
                        pd.to_numeric(ours[ours.notna()]).astype(float)
                        == pd.to_numeric(theirs[theirs.notna()]).astype(float)
                    ).all(), column
                else:
                    assert ours.fillna("").astype(str).equals(theirs.astype(str)), column
            assert meta.column_names_to_labels[
                "person_id" if mart == "twic_analysis_set" else "practice_code"
            ]
