"""Small-number suppression: primary and secondary, so totals cannot reveal a hidden count."""

from __future__ import annotations

import pandas as pd

from sicp.disclosure import SUPPRESSED, suppress_table, suppress_value, suppression_mask


def test_counts_below_threshold_are_hidden_and_zeros_shown():
    table = pd.DataFrame({"a": [0, 3, 12], "b": [7, 9, 4]})
    mask = suppression_mask(table, ["a", "b"], threshold=5, totals=False)
    assert mask.to_numpy().tolist() == [[False, False], [True, False], [False, True]]


def test_secondary_suppression_protects_row_and_column_totals():
    table = pd.DataFrame({"a": [3, 20, 30], "b": [40, 50, 60], "c": [70, 80, 90]})
    mask = suppression_mask(table, ["a", "b", "c"], threshold=5)
    for axis in (0, 1):
        hidden_per_line = mask.sum(axis=axis)
        assert ((hidden_per_line == 0) | (hidden_per_line >= 2)).all()
    assert mask.loc[0, "a"]


def test_no_hidden_value_can_be_recovered_from_shown_totals():
    table = pd.DataFrame({"x": [2, 15, 25], "y": [11, 4, 33]})
    shown = suppress_table(table, ["x", "y"], threshold=5)
    for col in ("x", "y"):
        visible = shown[col][shown[col] != SUPPRESSED]
        hidden = int((shown[col] == SUPPRESSED).sum())
        assert hidden != 1, "one hidden cell in a column is recoverable from its total"
        assert all(v >= 5 or v == 0 for v in visible)


def test_derived_rates_are_hidden_with_their_counts():
    table = pd.DataFrame({"n": [3, 50], "rate": [0.3, 5.0]})
    shown = suppress_table(table, ["n"], threshold=5, totals=False, derived={"rate": "n"})
    assert shown.loc[0, "rate"] == SUPPRESSED
    assert shown.loc[1, "rate"] == 5.0


def test_single_values_for_text():
    assert suppress_value(3) == SUPPRESSED
    assert suppress_value(0) == "0"
    assert suppress_value(1234) == "1,234"
