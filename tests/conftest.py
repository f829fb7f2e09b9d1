"""Fixtures shared across test files."""

from __future__ import annotations

import pytest

from sicp.dbt_replay import CompiledProject, compile_project
from tests.worlds import BuiltWorld, build_dbt_world


@pytest.fixture(scope="session")
def small_dbt_world(tmp_path_factory: pytest.TempPathFactory) -> BuiltWorld:
    """The ``small`` world through ingest and ``dbt build``, built once per test process and
    shared by the dbt, contact-centre, calendar and validation-twin tests, which only read it.
    Seed 5 is a world in which withdrawn people made calls, which the contact-centre tests need
    to exclude."""
    return build_dbt_world(tmp_path_factory.mktemp("small_dbt"), "small", seed=5)


@pytest.fixture(scope="session")
def compiled_project(tmp_path_factory: pytest.TempPathFactory) -> CompiledProject:
    """The dbt project seeded and compiled once per test process (sicp.dbt_replay), for the
    tests that build marts of simulated worlds."""
    return compile_project(tmp_path_factory.mktemp("dbt_replay"))
