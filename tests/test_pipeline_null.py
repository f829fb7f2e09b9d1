"""End to end on the null world: no protocol finds an effect."""

from __future__ import annotations

import math

import pytest

from sicp.settings import Paths
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
