"""Calendar months in protocols, resolved against the data's own calendar.

Protocols name time points as calendar months (``intervention: 2014-03``), never as period
numbers: a panel's periods are numbered from the first month its data cover, so the same
period number means another month in another extract. The runner maps each month to the
value of the estimator's time column in the rows being fitted (which carry ``month``), and a
month the data do not cover is a :class:`CalendarError`: the protocol's question cannot be
asked of this extract, which the results store records as "not applicable" with the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: How a protocol writes a month: ``YYYY-MM`` (a YAML date ``YYYY-MM-01`` is accepted too).
MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: The column of every monthly panel that holds the month (first day).
MONTH_COLUMN = "month"


class CalendarError(ValueError):
    """A protocol's month lies outside the calendar of the data it is fitted on."""


#: A milestone named inside a ``derive`` expression: ``month >= milestone('mdg_launch')``.
MILESTONE_CALL = re.compile(r"milestone\(\s*'([a-z][a-z0-9_]*)'\s*\)")


def is_milestone(value: object) -> bool:
    """A time point written as ``{milestone: <name>}``: the month the delivery declares for it
    (``programme/milestones.csv``), so one protocol asks its question at each site's date."""
    return (
        isinstance(value, Mapping)
        and set(value) == {"milestone"}
        and isinstance(value["milestone"], str)
    )


def uses_milestones(content: object) -> bool:
    if is_milestone(content):
        return True
    if isinstance(content, Mapping):
        return any(uses_milestones(v) for v in content.values())
    if isinstance(content, list):
        return any(uses_milestones(v) for v in content)
    return isinstance(content, str) and MILESTONE_CALL.search(content) is not None


def resolve_milestones(content: Any, milestones: Mapping[str, pd.Timestamp]) -> Any:
    """``content`` (a parsed protocol) with every milestone replaced by its month: a
    ``{milestone: name}`` by ``YYYY-MM``, ``milestone('name')`` in an expression by the quoted
    first day of the month. A milestone the delivery does not declare is a CalendarError."""

    def month_of(name: str) -> pd.Timestamp:
        if name not in milestones:
            declared = ", ".join(sorted(milestones)) or "none"
            raise CalendarError(
                f"milestone {name!r} is not declared in the delivery's "
                f"programme/milestones.csv (declared: {declared})"
            )
        return pd.Timestamp(milestones[name])

    if is_milestone(content):
        return month_label(month_of(content["milestone"]))
    if isinstance(content, Mapping):
        return {k: resolve_milestones(v, milestones) for k, v in content.items()}
    if isinstance(content, list):
        return [resolve_milestones(v, milestones) for v in content]
    if isinstance(content, str):
        return MILESTONE_CALL.sub(
            lambda m: f"'{month_of(m.group(1)).strftime('%Y-%m-%d')}'", content
        )
    return content


def is_month(value: object) -> bool:
    """A calendar month as a protocol may write it: ``"2014-03"`` or a first-of-month date."""
    if isinstance(value, dt.date):
        return value.day == 1
    return isinstance(value, str) and MONTH_PATTERN.match(value) is not None


def to_month(value: object) -> pd.Timestamp:
    if not is_month(value):
        raise ValueError(f"{value!r} is not a calendar month; write it as YYYY-MM (e.g. 2014-03)")
    return pd.Timestamp(f"{value}-01" if isinstance(value, str) else value)


def month_label(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).strftime("%Y-%m")


def check_inside(data: pd.DataFrame, month: object, *, what: str) -> pd.Timestamp:
    """``month`` as a Timestamp, if the data have months on both sides of it (a time point at
    the edge of the calendar leaves nothing before or after it); else a CalendarError."""
    if MONTH_COLUMN not in data.columns:
        raise ValueError(
            f"{what} is a calendar month, so the data need a {MONTH_COLUMN!r} "
            f"column (keep it in data.aggregate.by)"
        )
    target = to_month(month)
    months = pd.to_datetime(data[MONTH_COLUMN])
    first, last = months.min(), months.max()
    if not first < target <= last:
        edge = (
            "is the calendar's first month, with no month before it"
            if target == first
            else "lies outside the data's calendar"
        )
        raise CalendarError(
            f"{what} {month_label(target)} {edge} ({month_label(first)} to {month_label(last)})"
        )
    return target


def resolve_month(data: pd.DataFrame, month: object, time: str, *, what: str) -> float:
    """The value of ``time`` in the rows of ``month`` (:func:`check_inside` first)."""
    target = check_inside(data, month, what=what)
    values = data.loc[pd.to_datetime(data[MONTH_COLUMN]) == target, time].unique()
    if len(values) != 1:
        raise CalendarError(
            f"{what} {month_label(target)} has no single {time!r} value in the "
            f"data (found {len(values)})"
        )
    return float(values[0])


def resolve_options(
    options: Mapping[str, Any], time_points: Mapping[str, str], data: pd.DataFrame
) -> dict[str, Any]:
    """``options`` with each time-point option's month(s) replaced by the time column's value.

    ``time_points`` maps an option to the option that names its time column (for
    ``its_segmented``, ``{"interventions": "time"}``)."""
    out = dict(options)
    for option, time_option in time_points.items():
        if option not in out:
            continue
        time = out[time_option]
        value = out[option]
        months = value if isinstance(value, list) else [value]
        resolved = [resolve_month(data, m, time, what=option) for m in months]
        out[option] = resolved if isinstance(value, list) else resolved[0]
    return out


#: A month written inside a ``derive`` expression, as pandas compares it with a date column.
MONTH_LITERAL = re.compile(r"'(\d{4}-\d{2}-01)'")


def check_month_literals(expression: str, data: pd.DataFrame, *, what: str) -> None:
    """Each month quoted in ``expression`` lies inside the data's calendar (with a month before
    it), so a derived before/after indicator cannot silently come out constant."""
    for literal in MONTH_LITERAL.findall(expression):
        check_inside(data, literal[:7], what=what)


def month_rule(rule: object) -> object:
    """A filter bound or value on a month column, as a Timestamp when written as a month."""
    return to_month(rule) if is_month(rule) else rule
