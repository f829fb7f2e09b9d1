"""Fixtures shared across test files."""

from __future__ import annotations

import pytest

from tests.worlds import BuiltWorld, build_dbt_world


@pytest.fixture(scope="session")
def small_dbt_world(tmp_path_factory: pytest.TempPathFactory) -> BuiltWorld:
    """The ``small`` world through ingest and ``dbt build``, built once per test process and
    shared by the dbt, contact-centre, calendar and validation-twin tests, which only read it.
    Seed 5 is a world in which withdrawn people made calls, which the contact-centre tests need
    to exclude."""
    return build_dbt_world(tmp_path_factory.mktemp("small_dbt"), "small", seed=5)
