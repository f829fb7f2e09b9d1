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


def test_a_hidden_part_hides_its_complement_when_the_row_total_is_shown():
    """'read 60, loaded 57, quarantined [c]' gave the hidden 3 back; now loaded is hidden too."""
    from sicp.disclosure import SUPPRESSED, suppress_table

    log = pd.DataFrame(
        {
            "file": ["a.csv", "b.csv"],
            "rows_read": [60, 500],
            "rows_loaded": [57, 500],
            "rows_quarantined": [3, 0],
        }
    )
    shown = suppress_table(log, ["rows_loaded", "rows_quarantined"], threshold=5, along=("rows",))
    assert shown.loc[0, "rows_quarantined"] == SUPPRESSED
    assert shown.loc[0, "rows_loaded"] == SUPPRESSED
    assert shown.loc[1, "rows_loaded"] == 500 and shown.loc[1, "rows_quarantined"] == 0


def test_complementary_suppression_within_groups():
    """Reasons of one source add up to its shown total: a lone hidden reason hides the
    smallest other reason of the same source, and no other source's."""
    from sicp.disclosure import SUPPRESSED, suppress_table

    q = pd.DataFrame(
        {
            "source_name": ["deaths", "deaths", "deaths", "spells", "spells"],
            "reason": ["r1", "r2", "r3", "r1", "r2"],
            "rows": [2, 40, 9, 30, 7],
        }
    )
    shown = suppress_table(q, ["rows"], threshold=5, along=("columns",), groups="source_name")
    assert list(shown["rows"]) == [SUPPRESSED, 40, SUPPRESSED, 30, 7]


def test_figures_leave_out_values_derived_from_hidden_counts():
    from sicp.disclosure import mask_derived

    monthly = pd.DataFrame(
        {
            "month": ["2016-01", "2016-02", "2016-03"],
            "events": [12, 3, 20],
            "person_months": [1000, 1000, 1000],
        }
    )
    monthly["rate"] = 1000 * monthly["events"] / monthly["person_months"]
    from sicp.disclosure import SUPPRESSED, suppress_table

    out = mask_derived(monthly, {"rate": "events"}, ["events", "person_months"], threshold=5)
    table = suppress_table(monthly, ["events", "person_months"], threshold=5)
    # the figure hides exactly the rates whose count the table beside it hides (the 3, and
    # the 12 hidden with it so the column total cannot give the 3 back)
    assert out["rate"].isna().tolist() == (table["events"] == SUPPRESSED).tolist()
    assert out["rate"].isna().tolist() == [True, True, False]
    only_primary = mask_derived(monthly, {"rate": "events"}, ["events"], threshold=5, totals=False)
    assert only_primary["rate"].isna().tolist() == [False, True, False]
