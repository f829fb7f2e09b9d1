"""Monthly calendar of the simulation: month indices, their first days and lengths.

Everything in the simulation happens on a grid of months; events get a day inside their month
at the end. Registration changes happen on the first day of a month, so "registered on the first
day of month t" is the one rule that defines a person-month (stated in truth.json).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np


def to_month(value: str | dt.date) -> np.datetime64:
    return np.datetime64(str(value)[:7], "M")


@dataclass(frozen=True)
class Timeline:
    """Months ``start``..``end`` inclusive."""

    start: np.datetime64
    end: np.datetime64

    @property
    def n(self) -> int:
        return int((self.end - self.start).astype(int)) + 1

    @property
    def months(self) -> np.ndarray:
        return self.start + np.arange(self.n)

    @property
    def first_day(self) -> np.ndarray:
        return self.months.astype("datetime64[D]")

    @property
    def last_day(self) -> np.datetime64:
        """The last day of the last month: the end of the simulated (records) window."""
        return (self.end + 1).astype("datetime64[D]") - np.timedelta64(1, "D")

    @property
    def days(self) -> np.ndarray:
        return ((self.months + 1).astype("datetime64[D]") - self.first_day).astype(int)

    @property
    def calendar_month(self) -> np.ndarray:
        """1..12 for each month index."""
        return self.months.astype(int) % 12 + 1

    @property
    def year(self) -> np.ndarray:
        return self.months.astype("datetime64[Y]").astype(int) + 1970

    def index(self, value: str | dt.date) -> int:
        """Month index of a date (may fall outside 0..n-1)."""
        return int((to_month(value) - self.start).astype(int))

    def day_of(self, month_index: np.ndarray, fraction: np.ndarray) -> np.ndarray:
        """A day inside each month: ``fraction`` in [0, 1) scales the month's length."""
        idx = np.asarray(month_index)
        offset = np.floor(np.asarray(fraction) * self.days[idx]).astype(int)
        return self.first_day[idx] + offset.astype("timedelta64[D]")


def wave_field_day(first_wave: str | dt.date, wave: int) -> np.datetime64:
    """The day questionnaires of ``wave`` (1, 2, ...) go out: every six months from
    ``first_wave``, on the same day of the month."""
    first = np.datetime64(str(first_wave), "D")
    month = first.astype("datetime64[M]")
    return (month + 6 * (wave - 1)).astype("datetime64[D]") + (
        first - month.astype("datetime64[D]")
    )


#: Days from a wave's fieldwork day to its earliest possible return.
FIRST_RETURN_DAYS = 7
