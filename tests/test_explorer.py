"""The results explorer (sicp.explorer): one offline HTML page over every estimate in the store.

One warehouse is used: a copy of the session's small world (``small_dbt_world``) with a results
store of this module's own, made from a few protocols: one on the ratio scale, one trial protocol
whose title is hostile markup, one made to fail and one made not applicable. The page is checked
as text (self-contained, every estimate embedded, counts suppressed, hostile text inert) and,
when Debian's chromium and chromium-driver are installed, in headless Chromium through Selenium.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from analysis.store import STATUS_FAILED, STATUS_NOT_APPLICABLE, read_protocol_runs, read_results
from sicp.disclosure import SUPPRESSED
from sicp.explorer import EXPLORER_FILE, write_explorer
from sicp.render import html_has_network_urls
from sicp.report_data import SYNTHETIC_BANNER, ReportInputs
from sicp.reports import EXPLORER, render_all
from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import BuiltWorld

RATIO_PROTOCOL = "its_salford_emergency_admissions"
HOSTILE_PROTOCOL = "twic_selfman"
FAILING = "twic_eq5d"  # its panel is read without its outcome column: failed
NOT_APPLICABLE = "contact_centre_ae"  # its launch month moved outside the data: not applicable
HOSTILE_TITLE = "Coaching </script><img src=x onerror=alert(1)> & <b>more</b>"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
DATA_SCRIPT = re.compile(r'<script type="application/json" id="explorer-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def store(small_dbt_world: BuiltWorld, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A copy of the small world's warehouse with its own protocols and results store."""
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("explorer")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(small_dbt_world.warehouse, warehouse)
    protocols = root / "protocols"
    protocols.mkdir()
    for pid in (RATIO_PROTOCOL, FAILING):
        shutil.copy(PROJECT_ROOT / "protocols" / f"{pid}.yml", protocols)
    edits = {
        HOSTILE_PROTOCOL: lambda c: c.update(title=HOSTILE_TITLE),
        NOT_APPLICABLE: lambda c: c["method"]["options"].update(interventions="2099-01"),
    }
    for pid, edit in edits.items():
        content = yaml.safe_load((PROJECT_ROOT / "protocols" / f"{pid}.yml").read_text())
        edit(content)
        (protocols / f"{pid}.yml").write_text(yaml.safe_dump(content, sort_keys=False))
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
    print(f"explorer store built in {time.perf_counter() - started:.1f}s")
    return paths


def _inputs(paths: Paths, input_dir: Path | None = None) -> ReportInputs:
    return ReportInputs(
        paths.results_dir, paths.warehouse, paths.protocols_dir, input_dir or paths.input_dir
    )


def _payload(page: str) -> dict[str, Any]:
    match = DATA_SCRIPT.search(page)
    assert match is not None, "the page embeds its data as JSON"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def page(store: Paths) -> Path:
    return write_explorer(_inputs(store), store.reports_dir / EXPLORER_FILE, threshold=5)


@pytest.fixture(scope="module")
def payload(page: Path) -> dict[str, Any]:
    return _payload(page.read_text(encoding="utf-8"))


def test_the_page_is_one_file_that_references_nothing_outside_it(page):
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert html_has_network_urls(text) == []
    assert re.findall(r"<(?:link|img|iframe|object|embed)\b", text) == []
    scripts = re.findall(r"<script\b([^>]*)>", text)
    assert scripts == [' type="application/json" id="explorer-data"', ""]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert csp is not None and "default-src 'none'" in csp.group(1)


def test_every_estimate_of_the_store_is_embedded_on_its_reporting_scale(store, payload):
    estimates = read_results(store.results_dir)
    estimated = [r for r in payload["rows"] if not r["note"]]
    assert len(estimated) == len(estimates)
    assert sorted((r["protocol_id"], r["analysis_id"], r["term"]) for r in estimated) == sorted(
        zip(estimates["protocol_id"], estimates["analysis_id"], estimates["term"], strict=True)
    )
    stored = estimates.set_index(["protocol_id", "analysis_id", "term"])
    for row in estimated:
        source = stored.loc[(row["protocol_id"], row["analysis_id"], row["term"])]
        ratio = row["kind"] == "ratio"
        assert ratio == (source["scale"] == "log")
        expected = math.exp(source["estimate"]) if ratio else source["estimate"]
        assert row["estimate"] == pytest.approx(expected)
        assert row["null"] == (1.0 if ratio else None if row["kind"] == "statistic" else 0.0)
        for key in ("input_fingerprint", "protocol_hash", "code_version"):
            assert row[key] == source[key]
    headline = next(
        r
        for r in estimated
        if r["protocol_id"] == RATIO_PROTOCOL
        and r["analysis_id"] == "primary"
        and r["term"] == "level_change"
    )
    assert headline["unit"] == "rate ratio" and headline["axis"].startswith("ratio|")
    differences = {r["axis"] for r in estimated if r["kind"] == "difference"}
    ratios = {r["axis"] for r in estimated if r["kind"] == "ratio"}
    assert differences and ratios and not differences & ratios
    runs = read_protocol_runs(store.results_dir).set_index("protocol_id")
    for pid, entry in payload["protocols"].items():
        assert entry["build_seq"] == str(runs.at[pid, "build_seq"])
        assert entry["status"] == runs.at[pid, "status"].replace("_", " ")


def test_a_protocol_without_estimates_is_a_row_with_its_reason(store, payload):
    runs = read_protocol_runs(store.results_dir).set_index("protocol_id")
    for pid, status in ((FAILING, STATUS_FAILED), (NOT_APPLICABLE, STATUS_NOT_APPLICABLE)):
        assert runs.at[pid, "status"] == status
        (row,) = [r for r in payload["rows"] if r["protocol_id"] == pid]
        assert row["estimate"] is None and row["ci_low"] is None
        assert row["note"].startswith("not estimated: ")
        assert runs.at[pid, "reason"] in row["note"]


def _values(node: Any) -> Iterator[Any]:
    """Every leaf value of a JSON document."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    else:
        yield node


def test_counts_below_the_threshold_never_leave_the_platform(store, tmp_path):
    """With the threshold at the largest n, every smaller n is ``[c]`` and appears nowhere in
    the embedded data, neither as a number nor as text."""
    estimates = read_results(store.results_dir)
    threshold = int(estimates["n_obs"].max())
    page = write_explorer(_inputs(store), tmp_path / EXPLORER_FILE, threshold)
    rows = [r for r in _payload(page.read_text(encoding="utf-8"))["rows"] if not r["note"]]
    hidden = {
        int(n)
        for col in ("n_obs", "n_clusters")
        for n in estimates[col].dropna()
        if 0 < n < threshold
    }
    assert hidden, "the threshold should hide some counts"
    stored = estimates.set_index(["protocol_id", "analysis_id", "term"])
    for row in rows:
        source = stored.loc[(row["protocol_id"], row["analysis_id"], row["term"])]
        for col in ("n_obs", "n_clusters"):
            n = source[col]
            assert row[col] == (
                "–" if pd.isna(n) else SUPPRESSED if n < threshold else f"{int(n):,}"
            )
    assert any(r["n_obs"] == f"{threshold:,}" for r in rows)
    leaked = [
        v
        for v in _values(rows)
        if not isinstance(v, bool)
        and (
            (isinstance(v, int | float) and v in hidden)
            or (isinstance(v, str) and v.replace(",", "") in {str(n) for n in hidden})
        )
    ]
    assert leaked == []


def test_hostile_text_in_a_protocol_is_inert(page, payload):
    text = page.read_text(encoding="utf-8")
    assert "<img" not in text and "<b>" not in text
    assert text.count("</script>") == 2
    assert payload["protocols"][HOSTILE_PROTOCOL]["title"] == HOSTILE_TITLE
    script = text.rsplit("<script>", 1)[1]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_a_synthetic_world_is_marked_and_a_real_one_is_not(store, page, tmp_path):
    assert SYNTHETIC_BANNER in page.read_text(encoding="utf-8")
    real = write_explorer(_inputs(store, tmp_path), tmp_path / EXPLORER_FILE, threshold=5)
    assert SYNTHETIC_BANNER not in real.read_text(encoding="utf-8")


def test_the_same_store_gives_the_same_page(store, page, tmp_path):
    again = write_explorer(_inputs(store), tmp_path / EXPLORER_FILE, threshold=5)
    assert again.read_bytes() == page.read_bytes()


def test_render_all_writes_the_explorer_beside_the_html_reports(store, tmp_path):
    paths = Paths(
        input_dir=store.input_dir,
        warehouse=store.warehouse,
        results_dir=store.results_dir,
        reports_dir=tmp_path / "reports",
        protocols_dir=store.protocols_dir,
        dbt_dir=store.dbt_dir,
    )
    assert render_all(paths, formats=("pdf",), names=(EXPLORER,)) == []
    (written,) = render_all(
        paths, formats=("html",), names=(EXPLORER,), protocol_ids=(HOSTILE_PROTOCOL,)
    )
    assert written == paths.reports_dir / EXPLORER_FILE
    rows = _payload(written.read_text(encoding="utf-8"))["rows"]
    assert rows and {r["protocol_id"] for r in rows} == {HOSTILE_PROTOCOL}


# --- In a real browser ------------------------------------------------------------------------

WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through its own chromedriver (both paths given, so Selenium
    Manager never looks for or downloads a browser or a driver)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_the_explorer_filters_plots_and_explains_in_a_browser(browser, page, payload):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    rows = payload["rows"]
    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.get(page.resolve().as_uri())
    wait.until(lambda d: d.find_element(By.ID, "count").text.startswith(f"{len(rows)} of"))

    def shown() -> tuple[list[int], list[int]]:
        table = [
            int(tr.get_attribute("data-row"))
            for tr in browser.find_elements(By.CSS_SELECTOR, "#estimates tbody tr.estimate-row")
        ]
        marks = [
            int(g.get_attribute("data-row"))
            for g in browser.find_elements(By.CSS_SELECTOR, "#forest svg g.forest-row")
        ]
        return table, marks

    table, marks = shown()
    assert table == list(range(len(rows)))
    assert sorted(marks) == [i for i, r in enumerate(rows) if r["estimate"] is not None]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#forest circle.estimate")) == len(marks)
    for panel in browser.find_elements(By.CSS_SELECTOR, "#forest svg.forest-panel"):
        members = [
            int(g.get_attribute("data-row"))
            for g in panel.find_elements(By.CSS_SELECTOR, "g.forest-row")
        ]
        assert {rows[i]["kind"] for i in members} == {panel.get_attribute("data-kind")}
        assert len({rows[i]["axis"] for i in members}) == 1

    component = payload["protocols"][HOSTILE_PROTOCOL]["component"]
    Select(browser.find_element(By.ID, "filter-component")).select_by_value(component)
    expected = [
        i
        for i, r in enumerate(rows)
        if payload["protocols"][r["protocol_id"]]["component"] == component
    ]
    assert {rows[i]["protocol_id"] for i in expected} == {HOSTILE_PROTOCOL, FAILING}
    wait.until(lambda d: d.find_element(By.ID, "count").text.startswith(f"{len(expected)} of"))
    table, marks = shown()
    assert table == expected
    assert sorted(marks) == [i for i in expected if rows[i]["estimate"] is not None]
    (failed,) = [i for i in expected if rows[i]["protocol_id"] == FAILING]
    note = browser.find_element(By.CSS_SELECTOR, f'tr[data-row="{failed}"] td.not-estimated')
    assert note.text == rows[failed]["note"] and note.text.startswith("not estimated: ")

    first = next(i for i in expected if rows[i]["protocol_id"] == HOSTILE_PROTOCOL)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-row="{first}"] button.toggle').click()
    details = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, f'tr.details-row[data-row="{first}"]')
    )
    field = {
        dd.get_attribute("data-field"): dd.text
        for dd in details.find_elements(By.CSS_SELECTOR, "dd")
    }
    assert field["Input fingerprint"] == rows[first]["input_fingerprint"]
    assert field["Protocol hash"] == rows[first]["protocol_hash"]
    assert field["Title"] == HOSTILE_TITLE
    assert field["Run status"] == "ok"
    assert browser.execute_script("return document.querySelectorAll('img, b').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises

    search = browser.find_element(By.ID, "filter-search")
    search.send_keys("cace")
    wait.until(lambda d: d.find_element(By.ID, "count").text.startswith("1 of"))
    (only,) = shown()[0]
    assert rows[only]["analysis_id"] == "cace"

    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []
