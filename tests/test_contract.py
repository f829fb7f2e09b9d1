"""The contract module is the one declaration of the input files; these guard its consistency."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sicp import contract
from sicp.contract_docs import DBT_SOURCES_YML, contract_markdown, dbt_sources_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_committed_contract_docs_match_the_code():
    committed = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    assert committed == contract_markdown(), "run `sicp contract --out docs/data-contract.md`"


def test_dbt_sources_are_generated_from_the_contract():
    committed = (ROOT / "dbt" / DBT_SOURCES_YML).read_text(encoding="utf-8")
    assert committed == dbt_sources_yaml(), (
        "run `sicp contract --dbt-sources --out dbt/models/staging/_sources.yml`"
    )
    for name in contract.SOURCES:
        assert f"      - name: {name}\n" in committed


def test_every_file_of_the_written_contract_is_declared():
    names = {
        "practices",
        "practice_population",
        "recruitment",
        "practice_moves",
        "survey_wave",
        "population",
        "hospital_spells",
        "ae_attendances",
        "gp_contacts",
        "care_home_admissions",
        "deaths",
        "flu_vaccinations",
        "risk_scores",
        "mdg_caseload",
        "coaching_randomisation",
        "coaching_uptake",
        "community_assets",
        "contact_centre_calls",
        "unit_costs",
        "area_month_indicators",
        "study_area",
        "milestones",
    }
    assert set(contract.SOURCES) == names


def test_primary_keys_and_references_name_real_columns():
    for src in contract.SOURCES.values():
        for key in src.primary_key:
            src.column(key)
        for col in src.columns:
            if col.references:
                target, column = col.references
                contract.source(target).column(column)


def test_person_level_sources_carry_person_id_and_a_consent_scope():
    for src in contract.SOURCES.values():
        if src.person_level:
            assert "person_id" in src.column_names, src.name
            assert src.consent_scope in ("cohort", "records"), src.name


def test_survey_items_carry_the_user_missing_codes():
    survey = contract.source("survey_wave")
    items = [c for c in survey.columns if c.name.startswith(("eq_", "pacic_", "selfman_"))]
    assert len(items) == 6 + 11 + 6
    assert all(c.missing_codes == contract.SURVEY_MISSING_CODES for c in items)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (contract.source("hospital_spells").column("admission_method"), "99", "allowed set"),
        (contract.source("survey_wave").column("eq_pain"), 6, "above the maximum"),
        (contract.source("practices").column("practice_code"), "P8700", "pattern"),
        (
            contract.source("deaths").column("died_on"),
            dt.date(2100, 1, 1),
            "implausible date: after 2099-12-31",
        ),
        (
            contract.source("deaths").column("died_on"),
            dt.date(1899, 12, 31),
            "implausible date: before 1900-01-01",
        ),
    ],
)
def test_check_value_names_the_broken_rule(column, value, reason):
    assert reason in column.check_value(value)


def test_no_neighbourhood_name_or_study_date_is_fixed_by_the_contract():
    """The neighbourhoods, MDGs and calendar are what the delivery declares (issue 14)."""
    assert contract.source("practices").column("neighbourhood").allowed is None
    assert contract.source("community_assets").column("neighbourhood").allowed is None
    assert contract.source("practices").column("mdg").optional
    for src in contract.SOURCES.values():
        for col in src.columns:
            if col.dtype == "date":
                assert (col.window_start, col.window_end) == (
                    contract.EARLIEST_DATE,
                    contract.LATEST_DATE,
                ), col.name
    assert dict(contract.source("unit_costs").required_values)["item"] == contract.UNIT_COST_ITEMS


def test_check_value_accepts_a_valid_value():
    assert contract.source("survey_wave").column("eq_pain").check_value(3) is None
    assert contract.source("deaths").column("died_on").check_value(dt.date(2015, 6, 1)) is None


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: practices"):
        contract.source("nonsense")
