"""Calendar months and milestones in protocols, resolved against the data's calendar."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.calendar import (
    CalendarError,
    check_month_literals,
    resolve_milestones,
    resolve_month,
    resolve_options,
    uses_milestones,
)
from analysis.methods import TIME_POINT_OPTIONS, check_options
from analysis.protocol import load_protocols
from analysis.runner import apply_filters

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"


def _panel(start: str = "2015-04-01", months: int = 24) -> pd.DataFrame:
    month = pd.date_range(start, periods=months, freq="MS")
    return pd.DataFrame({"month": month, "period": range(1, months + 1)})


def test_a_month_resolves_to_the_period_the_data_give_it() -> None:
    panel = _panel()
    assert resolve_month(panel, "2016-01", "period", what="interventions") == 10.0
    shifted = _panel("2014-01-01", 48)
    assert resolve_month(shifted, "2016-01", "period", what="interventions") == 25.0


@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2014-03", "interventions 2014-03 lies outside the data's calendar (2015-04 to 2017-03)"),
        ("2017-04", "interventions 2017-04 lies outside the data's calendar"),
        ("2015-04", "interventions 2015-04 is the calendar's first month, with no month before it"),
    ],
)
def test_a_month_outside_the_calendar_is_a_calendar_error(month: str, message: str) -> None:
    with pytest.raises(CalendarError, match=re.escape(message)):
        resolve_month(_panel(), month, "period", what="interventions")


def test_options_resolve_scalars_and_lists() -> None:
    options = {"time": "period", "interventions": ["2015-10", "2016-04"], "family": "poisson"}
    got = resolve_options(options, {"interventions": "time"}, _panel())
    assert got == {"time": "period", "interventions": [7.0, 13.0], "family": "poisson"}
    assert options["interventions"] == ["2015-10", "2016-04"]  # not mutated


def test_period_numbers_are_refused_when_a_protocol_loads() -> None:
    problems = check_options("its_segmented", {"time": "period", "interventions": 27})
    assert any("name the calendar month (e.g. 2014-03)" in p for p in problems)
    assert not check_options("its_segmented", {"time": "period", "interventions": "2014-03"})
    assert not check_options(
        "its_segmented", {"time": "period", "interventions": {"milestone": "mdg_launch"}}
    )


def test_milestones_resolve_to_the_months_the_delivery_declares() -> None:
    content = {
        "method": {"options": {"interventions": {"milestone": "mdg_launch"}}},
        "data": {"derive": {"post": "is_study_area * (month >= milestone('mdg_launch'))"}},
    }
    assert uses_milestones(content)
    got = resolve_milestones(content, {"mdg_launch": pd.Timestamp("2016-10-01")})
    assert got["method"]["options"]["interventions"] == "2016-10"
    assert got["data"]["derive"]["post"] == "is_study_area * (month >= '2016-10-01')"
    with pytest.raises(
        CalendarError,
        match="milestone 'mdg_launch' is not declared .*"
        r"\(declared: contact_centre_launch\)",
    ):
        resolve_milestones(content, {"contact_centre_launch": pd.Timestamp("2017-04-01")})


def test_a_month_in_a_derive_expression_is_checked_against_the_data() -> None:
    check_month_literals("x * (month >= '2016-01-01')", _panel(), what="derive post:")
    with pytest.raises(CalendarError, match="derive post: 2014-03 lies outside"):
        check_month_literals("x * (month >= '2014-03-01')", _panel(), what="derive post:")


def test_filters_take_months() -> None:
    kept = apply_filters(_panel(), {"month": {"min": "2016-01", "max": "2016-03"}})
    assert list(kept["period"]) == [10, 11, 12]


def test_shipped_protocols_hold_no_period_numbers() -> None:
    """Time points are months or milestones, and no derive or filter compares a period with a
    number: the period a month gets depends on the extract."""
    for protocol in load_protocols(PROTOCOLS):
        text = protocol.path.read_text()
        assert not re.search(r"(?<![a-z_])period\s*[<>=!]=?\s*\d", text), protocol.id
        content = yaml.safe_load(text)
        for analysis in protocol.analyses():
            for option in TIME_POINT_OPTIONS.get(analysis.method.name, {}):
                value = analysis.method.options.get(option)
                assert value is None or not isinstance(value, int), (protocol.id, option)
        assert "is_salford" not in text, protocol.id
        assert content["id"] == protocol.id
