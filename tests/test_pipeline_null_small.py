"""End to end on the null world (no effects) and on a tiny world (small-cell suppression)."""

from __future__ import annotations

import math
import re
import shutil

import duckdb
import pytest

from sicp.settings import PROJECT_ROOT, Paths
from tests.worlds import build_world, truth_checks


@pytest.fixture(scope="module")
def null_world(tmp_path_factory) -> Paths:
    """The null scenario's zero effects on the lighter Monte Carlo population."""
    return build_world(tmp_path_factory.mktemp("null"), "mc_null", 42)


def test_the_null_world_shows_no_effect(null_world):
    for pid, analysis_id, row, value in truth_checks(null_world):
        assert value == 0.0, (pid, analysis_id, value)
        if not math.isnan(row["ci_low"]):
            assert row["ci_low"] <= 0.0 <= row["ci_high"], (pid, analysis_id, row.to_dict())



def test_small_cells_are_suppressed_in_the_rendered_audit(tmp_path):
    """On a small world many monthly counts fall below the threshold: none may be printed."""
    from sicp.reports import render_all

    threshold = 10
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    for pid in ("its_salford_emergency_admissions", "twic_selfman"):
        shutil.copy(PROJECT_ROOT / "protocols" / f"{pid}.yml", protocols)
    paths = build_world(tmp_path, "small", 7, protocols_dir=protocols)
    html_path = render_all(paths, formats=("html",), threshold=threshold,
                           names=("outcome_audit",))[0]
    html = html_path.read_text(encoding="utf-8")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        monthly = con.execute("""
            select strftime(month, '%Y-%m') as month, sum(deaths) as deaths,
                   sum(permanent_care_home_admissions) as care_home
            from marts.practice_month_panel group by 1 order by 1""").df()
    small = monthly[(monthly["deaths"] > 0) & (monthly["deaths"] < threshold)]
    assert len(small) > 0, "the small world should have small monthly death counts"
    table = html.split("Monthly counts", 1)[1]
    checked = 0
    for month in small["month"]:
        row = re.search(rf"<tr[^>]*>\s*<td[^>]*>{month}</td>(.*?)</tr>", table, re.S)
        assert row is not None, month
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        numbers = [int(c.replace(",", "")) for c in cells if c.replace(",", "").isdigit()]
        assert all(n == 0 or n >= threshold for n in numbers), (month, cells)
        assert "[c]" in cells
        checked += 1
    assert checked == len(small)
