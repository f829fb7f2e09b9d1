"""Small-number suppression for every count a report shows.

Primary suppression hides counts from 1 to ``threshold - 1``; secondary suppression then hides
the next-smallest count in any line (a row, a column, or a column within a group) that adds up
to a shown total and has exactly one hidden cell, so that the total cannot give the hidden value
back by subtraction; figures leave out every value derived from a hidden count
(:func:`mask_derived`). Zeros are shown: they disclose nothing
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


def _lines(
    shape: tuple[int, int], along: Sequence[str], groups: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The lines of cells that add up to a shown total: each row (``along`` has "rows"),
    and each column, or each column within each group of rows (``along`` has "columns")."""
    n_rows, n_cols = shape
    lines = []
    if "rows" in along:
        lines += [(np.full(n_cols, i), np.arange(n_cols)) for i in range(n_rows)]
    if "columns" in along:
        keys = np.zeros(n_rows, dtype=int) if groups is None else pd.factorize(groups)[0]
        for key in np.unique(keys):
            members = np.where(keys == key)[0]
            lines += [(members, np.full(len(members), j)) for j in range(n_cols)]
    return lines


def _complete(
    mask: np.ndarray,
    values: np.ndarray,
    along: Sequence[str] = ("rows", "columns"),
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Add secondary suppressions until no line has a lone hidden cell: the next-smallest
    positive count of that line is hidden too, so its total cannot give the hidden one back."""
    mask = mask.copy()
    lines = _lines(mask.shape, along, groups)
    changed = True
    while changed:
        changed = False
        for rows, cols in lines:
            hidden = mask[rows, cols]
            if hidden.sum() != 1:
                continue
            candidates = np.where(~hidden & (values[rows, cols] > 0))[0]
            if len(candidates) == 0:
                continue
            k = candidates[np.argmin(values[rows, cols][candidates])]
            mask[rows[k], cols[k]] = True
            changed = True
    return mask


def suppression_mask(
    table: pd.DataFrame,
    count_columns: Sequence[str],
    threshold: int,
    totals: bool = True,
    along: Sequence[str] = ("rows", "columns"),
    groups: str | None = None,
) -> pd.DataFrame:
    """Boolean frame, True where a count must be hidden.

    With ``totals`` the counts are treated as adding up to shown totals along ``along``: across
    each row (its count columns sum to a total, as loaded + quarantined = read) and down each
    column (within each value of ``groups``, when the column's total is shown per group), so
    secondary suppression applies; without, only primary suppression does.
    """
    values = table[list(count_columns)].fillna(0).to_numpy(dtype=float)
    mask = primary_mask(values, threshold)
    if totals:
        keys = None if groups is None else table[groups].to_numpy()
        mask = _complete(mask, values, along, keys)
    return pd.DataFrame(mask, index=table.index, columns=list(count_columns))


def suppress_table(
    table: pd.DataFrame,
    count_columns: Sequence[str],
    threshold: int = DEFAULT_THRESHOLD,
    totals: bool = True,
    derived: dict[str, str] | None = None,
    along: Sequence[str] = ("rows", "columns"),
    groups: str | None = None,
) -> pd.DataFrame:
    """A display copy of ``table`` with suppressed counts replaced by ``[c]``.

    ``derived`` maps a column computed from a count (a rate, a share) to that count's column;
    it is hidden wherever its source count is, since a rate and a denominator give the count.
    """
    mask = suppression_mask(table, count_columns, threshold, totals, along, groups)
    shown = table.copy().astype(object)
    for col in count_columns:
        shown.loc[mask[col], col] = SUPPRESSED
    for col, source in (derived or {}).items():
        shown.loc[mask[source], col] = SUPPRESSED
    return shown


def mask_derived(
    table: pd.DataFrame,
    derived: dict[str, str],
    count_columns: Sequence[str],
    threshold: int = DEFAULT_THRESHOLD,
    totals: bool = True,
) -> pd.DataFrame:
    """A copy for a figure: each column of ``derived`` (a rate, say) set to NaN wherever the
    count it comes from (``derived[column]``) is hidden in the table beside it."""
    mask = suppression_mask(table, count_columns, threshold, totals)
    out = table.copy()
    for column, source in derived.items():
        out[column] = out[column].astype(float).where(~mask[source])
    return out


def suppress_value(value: float | int, threshold: int = DEFAULT_THRESHOLD) -> str:
    """A single count for running text or a figure label."""
    if pd.isna(value):
        return "–"
    return SUPPRESSED if 0 < value < threshold else f"{int(value):,}"
