"""Small-number suppression for every count a report shows.

Primary suppression hides counts from 1 to ``threshold - 1``; secondary suppression then hides
the next-smallest count in any row or column that has exactly one hidden cell, so that a shown
total cannot give the hidden value back by subtraction. Zeros are shown: they disclose nothing
about an individual. Suppressed cells print as ``[c]`` (the ONS convention for confidential).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SUPPRESSED = "[c]"
DEFAULT_THRESHOLD = 5


def primary_mask(values: np.ndarray, threshold: int) -> np.ndarray:
    return (values > 0) & (values < threshold)


def _complete(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Add secondary suppressions along rows and columns until no line has a lone hidden cell."""
    mask = mask.copy()
    changed = True
    while changed:
        changed = False
        for axis in (1, 0):
            lines = mask if axis == 1 else mask.T
            vals = values if axis == 1 else values.T
            for i in range(lines.shape[0]):
                if lines[i].sum() == 1:
                    candidates = np.where(~lines[i] & (vals[i] > 0))[0]
                    if len(candidates) == 0:
                        continue
                    j = candidates[np.argmin(vals[i][candidates])]
                    lines[i, j] = True
                    changed = True
    return mask


def suppression_mask(table: pd.DataFrame, count_columns: Sequence[str], threshold: int,
                     totals: bool = True) -> pd.DataFrame:
    """Boolean frame, True where a count must be hidden.

    With ``totals`` the table's rows and columns are treated as adding up to shown totals, so
    secondary suppression applies; without, only primary suppression does.
    """
    values = table[list(count_columns)].fillna(0).to_numpy(dtype=float)
    mask = primary_mask(values, threshold)
    if totals:
        mask = _complete(mask, values)
    return pd.DataFrame(mask, index=table.index, columns=list(count_columns))


def suppress_table(table: pd.DataFrame, count_columns: Sequence[str],
                   threshold: int = DEFAULT_THRESHOLD, totals: bool = True,
                   derived: dict[str, str] | None = None) -> pd.DataFrame:
    """A display copy of ``table`` with suppressed counts replaced by ``[c]``.

    ``derived`` maps a column computed from a count (a rate, a share) to that count's column;
    it is hidden wherever its source count is, since a rate and a denominator give the count.
    """
    mask = suppression_mask(table, count_columns, threshold, totals)
    shown = table.copy().astype(object)
    for col in count_columns:
        shown.loc[mask[col], col] = SUPPRESSED
    for col, source in (derived or {}).items():
        shown.loc[mask[source], col] = SUPPRESSED
    return shown


def suppress_value(value: float | int, threshold: int = DEFAULT_THRESHOLD) -> str:
    """A single count for running text or a figure label."""
    if pd.isna(value):
        return "–"
    return SUPPRESSED if 0 < value < threshold else f"{int(value):,}"
