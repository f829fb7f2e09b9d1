"""The input data contract, as code.

This module is the single declaration of every file a user drops into the input folder
(default ``data/raw/``). The synthetic generator writes to it, the ingest layer validates
against it, and ``docs/data-contract.md`` is rendered from it (``sicp contract``). Nothing else
in the project restates column lists, types, allowed values, labels or missing codes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

DType = Literal["str", "int", "float", "date", "bool"]

#: Sanity bounds for every date: a value outside them is a typing error. They are not the study
#: window, which is what the record extracts cover (dbt's int_study_window) and which the
#: contract does not fix.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2099, 12, 31)

#: SPSS user-missing codes used by every questionnaire item.
SURVEY_MISSING_CODES: dict[int, str] = {
    -9: "not answered",
    -8: "not applicable",
    -7: "unreadable",
}

AGE_BANDS: tuple[str, ...] = ("0-64", "65-74", "75-84", "85+")

#: HES admission method (ADMIMETH) codes accepted in ``hospital_spells``.
ADMISSION_METHODS: tuple[str, ...] = (
    "11",
    "12",
    "13",
    "21",
    "22",
    "23",
    "24",
    "25",
    "2A",
    "2B",
    "2C",
    "2D",
    "28",
    "31",
    "32",
    "81",
    "82",
    "83",
)

PLACES_OF_DEATH: tuple[str, ...] = ("home", "care_home", "hospital", "hospice", "other")

#: Column that real extracts may carry instead of ``person_id``; ingest pseudonymises it.
NHS_NUMBER_COLUMN = "nhs_number"


@dataclass(frozen=True)
class DirectIdentifier:
    """A kind of direct identifier that no delivered value may carry (outside ``nhs_number``):
    ingest scans every value and label for it (sicp.ingest.identifiers says how)."""

    kind: str
    label: str
    description: str
    #: Scanned only in person-level sources (elsewhere it is an organisation's, not a person's).
    person_level_only: bool = False


DIRECT_IDENTIFIERS: tuple[DirectIdentifier, ...] = (
    DirectIdentifier(
        "nhs_number",
        "an NHS number",
        "10 digits with a valid Modulus 11 check digit, unbroken or in 3-3-4 groups "
        "separated by spaces or hyphens (`943 476 5919`), alone or inside text",
    ),
    DirectIdentifier("email", "an email address", "`name@domain.tld`", person_level_only=True),
    DirectIdentifier(
        "uk_postcode",
        "a UK postcode",
        "a full postcode (`M5 4WT`; `M54WT` when its area is a real one)",
        person_level_only=True,
    ),
    DirectIdentifier(
        "uk_phone",
        "a UK telephone number",
        "11 digits starting 01, 02, 03 or 07, or +44 and 10 digits, with or without "
        "spaces or hyphens",
        person_level_only=True,
    ),
)

#: Value-label texts that mean the same as a contract label. Delivered labels are compared with
#: the contract's after lower-casing, collapsing white space and underscores, and dropping a
#: leading echo of the code (``1 = male``); then these synonyms (first = the contract's text).
LABEL_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("male", "m", "man"),
    ("female", "f", "woman"),
    ("yes", "y"),
    ("no", "n"),
    ("no problems", "no problem"),
    ("slight", "slight problems"),
    ("moderate", "moderate problems"),
    ("severe", "severe problems"),
    ("extreme/unable", "extreme", "unable", "extreme problems", "extreme problems/unable"),
    ("postal", "post", "by post", "paper"),
    ("online", "web", "internet"),
    ("telephone", "phone", "by telephone", "by phone"),
    ("not answered", "no answer"),
    ("not applicable", "n/a"),
)

#: Items ``unit_costs.csv`` must price: the utilisation the warehouse costs
#: (int_utilisation_events), each row of which is one of these.
UNIT_COST_ITEMS: tuple[str, ...] = (
    "emergency_admission",
    "elective_admission",
    "ae_attendance",
    "gp_contact",
    "mdg_discussion",
    "coaching_session",
    "contact_centre_call",
)

#: Indicators ``area_month_indicators.csv`` must deliver (one column each in area_month_panel).
AREA_INDICATORS: tuple[str, ...] = (
    "emergency_admissions_65plus",
    "ae_attendances_65plus",
    "care_home_admissions_65plus",
    "deaths_65plus",
    "deaths_at_home_65plus",
    "flu_vaccinated_65plus",
)

CONTACT_REASONS: tuple[str, ...] = ("advice", "navigation", "telecare", "coaching")

PRACTICE_CODE_PATTERN = r"^[A-Z][0-9]{5}$"
PERSON_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
AREA_CODE_PATTERN = r"^[EWSN][0-9]{8}$"


@dataclass(frozen=True)
class Column:
    """One column of an input file and every rule a value in it must satisfy."""

    name: str
    dtype: DType
    label: str
    nullable: bool = False
    allowed: tuple[str | int, ...] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    value_labels: dict[int, str] | None = None
    missing_codes: dict[int, str] | None = None
    #: Dates must fall inside these sanity bounds (see EARLIEST_DATE).
    window_start: dt.date | None = None
    window_end: dt.date | None = None
    #: The file may leave the column out (it is then empty for every row).
    optional: bool = False
    #: Another source whose key this column must reference (source name, column).
    references: tuple[str, str] | None = None

    def check_value(self, value: object) -> str | None:
        """Return the reason a non-null, correctly typed value breaks the rules, or None."""
        if self.allowed is not None and value not in self.allowed:
            return f"value not in the allowed set {list(self.allowed)}"
        if self.min is not None and value < self.min:  # type: ignore[operator]
            return f"value below the minimum {self.min}"
        if self.max is not None and value > self.max:  # type: ignore[operator]
            return f"value above the maximum {self.max}"
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            return f"value does not match the pattern {self.pattern}"
        if self.window_start is not None and value < self.window_start:  # type: ignore[operator]
            return f"implausible date: before {self.window_start.isoformat()}"
        if self.window_end is not None and value > self.window_end:  # type: ignore[operator]
            return f"implausible date: after {self.window_end.isoformat()}"
        return None


@dataclass(frozen=True)
class Source:
    """One input file (or family of files, such as the survey waves) of the contract."""

    name: str
    folder: str
    #: Glob of the file name inside ``folder``; the suffix is chosen among ``formats``.
    stem: str
    formats: tuple[str, ...]
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    #: Person-level files carry ``person_id`` (or ``nhs_number`` in real extracts).
    person_level: bool = False
    #: ``records`` sources need linkage consent; ``cohort``/``twic`` need only non-withdrawal.
    consent_scope: Literal["none", "cohort", "records"] = "none"
    #: Files that arrive one per survey wave carry the wave number in their name.
    per_wave: bool = False
    required: bool = True
    #: Values a delivery must contain in a column (``{column: values}``): the warehouse needs a
    #: row for each, so a delivery without one fails, naming the file, column and values.
    required_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: A file with a header and no data row is a valid delivery (nobody moved practice); for
    #: every other source it is a failed export and fails the source, naming the file.
    may_be_empty: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def file_patterns(self) -> tuple[str, ...]:
        """Glob patterns, relative to the input folder, that match this source's files."""
        return tuple(f"{self.folder}/{self.stem}.{fmt}" for fmt in self.formats)


def _person(label: str = "Pseudonymous person identifier") -> Column:
    return Column("person_id", "str", label, pattern=PERSON_ID_PATTERN)


def _practice(label: str = "GP practice (ODS-style code)", nullable: bool = False) -> Column:
    return Column(
        "practice_code",
        "str",
        label,
        nullable=nullable,
        pattern=PRACTICE_CODE_PATTERN,
        references=("practices", "practice_code"),
    )


def _date(name: str, label: str, nullable: bool = False) -> Column:
    return Column(
        name, "date", label, nullable=nullable, window_start=EARLIEST_DATE, window_end=LATEST_DATE
    )


def _items(prefix: str, n: int, low: int, high: int, label: str) -> tuple[Column, ...]:
    return tuple(
        Column(
            f"{prefix}_{i:02d}",
            "int",
            f"{label}, item {i}",
            nullable=True,
            min=low,
            max=high,
            missing_codes=SURVEY_MISSING_CODES,
        )
        for i in range(1, n + 1)
    )


def _survey_item(name: str, label: str, low: int, high: int | None) -> Column:
    return Column(
        name,
        "int",
        label,
        nullable=True,
        min=low,
        max=high,
        missing_codes=SURVEY_MISSING_CODES,
    )


_EQ5D_LEVELS = {1: "no problems", 2: "slight", 3: "moderate", 4: "severe", 5: "extreme/unable"}

SOURCES: dict[str, Source] = {}


def _register(*sources: Source) -> None:
    for s in sources:
        SOURCES[s.name] = s


_register(
    Source(
        name="practices",
        folder="reference",
        stem="practices",
        formats=("csv",),
        description="One row per GP practice, with its neighbourhood, MDG and MDG start. The "
        "neighbourhoods, MDGs and roll-out are whatever this file declares.",
        primary_key=("practice_code",),
        columns=(
            Column(
                "practice_code",
                "str",
                "GP practice (ODS-style code)",
                pattern=PRACTICE_CODE_PATTERN,
            ),
            Column("practice_name", "str", "Practice name"),
            Column("neighbourhood", "str", "Neighbourhood (any non-empty name)"),
            _date(
                "mdg_start_date",
                "First month the practice's patients were in scope of an "
                "MDG; empty means the practice never took part",
                nullable=True,
            ),
            Column(
                "mdg",
                "str",
                "MDG the practice belongs to, where it is not its "
                "neighbourhood's own (two neighbourhoods sharing one MDG, a practice with "
                "an MDG of its own); empty or absent = the neighbourhood's name",
                nullable=True,
                optional=True,
            ),
        ),
    ),
    Source(
        name="practice_population",
        folder="reference",
        stem="practice_population",
        formats=("csv",),
        description="Registered population by practice, month (first day) and age band.",
        primary_key=("practice_code", "month", "age_band"),
        columns=(
            _practice(),
            _date("month", "Month (first day)"),
            Column("age_band", "str", "Age band", allowed=AGE_BANDS),
            Column("registered", "int", "Registered patients", min=0),
        ),
    ),
    Source(
        name="study_area",
        folder="reference",
        stem="study_area",
        formats=("csv",),
        description="The area (or areas) the programme ran in, among those of "
        "area_month_indicators: the treated unit of the area-level comparisons.",
        primary_key=("area_code",),
        columns=(
            Column("area_code", "str", "ONS local authority code", pattern=AREA_CODE_PATTERN),
            Column("area_name", "str", "Area name"),
        ),
    ),
    Source(
        name="recruitment",
        folder="cohort",
        stem="recruitment",
        formats=("sav",),
        description="One row per cohort member at recruitment (SPSS, labelled).",
        primary_key=("person_id",),
        person_level=True,
        consent_scope="cohort",
        columns=(
            _person(),
            _practice("Practice at recruitment"),
            _date("recruited_on", "Date recruited"),
            Column(
                "birth_year",
                "int",
                "Year of birth",
                min=EARLIEST_DATE.year - 20,
                max=LATEST_DATE.year,
            ),
            Column("sex", "int", "Sex", allowed=(1, 2), value_labels={1: "male", 2: "female"}),
            Column(
                "imd_decile",
                "int",
                "Index of Multiple Deprivation decile (1 = most deprived)",
                min=1,
                max=10,
            ),
            Column("n_ltc", "int", "Number of long-term conditions", min=0, max=30),
            Column(
                "social_care_need",
                "int",
                "Social care need",
                allowed=(0, 1, 2),
                value_labels={0: "none", 1: "some", 2: "substantial"},
            ),
            Column(
                "consent_linkage",
                "int",
                "Consent to record linkage",
                allowed=(0, 1),
                value_labels={0: "no", 1: "yes"},
            ),
            Column(
                "consent_trials",
                "int",
                "Consent to be approached for trials",
                allowed=(0, 1),
                value_labels={0: "no", 1: "yes"},
            ),
            _date("withdrawn_on", "Date all consent was withdrawn", nullable=True),
        ),
    ),
    Source(
        name="practice_moves",
        folder="cohort",
        stem="practice_moves",
        formats=("csv",),
        description="Changes of practice after recruitment.",
        primary_key=("person_id", "from_date"),
        person_level=True,
        consent_scope="cohort",
        may_be_empty=True,
        columns=(_person(), _practice("New practice"), _date("from_date", "Registered from")),
    ),
    Source(
        name="survey_wave",
        folder="cohort",
        stem="survey_wave_[0-9][0-9]",
        formats=("sav",),
        description="One row per returned six-monthly questionnaire; one file per wave. "
        "User-missing codes: -9 not answered, -8 not applicable, -7 unreadable.",
        primary_key=("person_id", "wave"),
        person_level=True,
        consent_scope="cohort",
        per_wave=True,
        columns=(
            _person(),
            Column("wave", "int", "Survey wave", min=1, max=40),
            _date("returned_on", "Date questionnaire returned"),
            Column(
                "mode",
                "int",
                "Mode of completion",
                allowed=(1, 2, 3),
                value_labels={1: "postal", 2: "online", 3: "telephone"},
            ),
            *(
                Column(
                    f"eq_{d}",
                    "int",
                    f"EQ-5D-5L {d}",
                    nullable=True,
                    min=1,
                    max=5,
                    value_labels=_EQ5D_LEVELS,
                    missing_codes=SURVEY_MISSING_CODES,
                )
                for d in ("mobility", "selfcare", "activities", "pain", "anxiety")
            ),
            _survey_item("eq_vas", "EQ-5D visual analogue scale (0-100)", 0, 100),
            *_items("pacic", 11, 1, 5, "Patient Assessment of Chronic Illness Care"),
            *_items("selfman", 6, 1, 4, "Self-management / activation"),
            *_items("wellbeing", 5, 1, 4, "Capability wellbeing (ICECAP-O style)"),
            *_items("lonely", 3, 1, 3, "Loneliness (3-item scale)"),
            _survey_item("satisfied_care", "Satisfaction with care and support", 1, 5),
            _survey_item("supported_selfcare", "Feel supported to manage my condition", 1, 4),
            Column(
                "has_care_plan",
                "int",
                "Has a care plan",
                nullable=True,
                allowed=(0, 1),
                value_labels={0: "no", 1: "yes"},
                missing_codes=SURVEY_MISSING_CODES,
            ),
            _survey_item("gp_visits_6m", "GP visits in the last 6 months", 0, None),
            _survey_item("ae_visits_6m", "A&E visits in the last 6 months", 0, None),
            _survey_item(
                "nights_in_hospital_6m", "Nights in hospital in the last 6 months", 0, None
            ),
        ),
    ),
    Source(
        name="population",
        folder="records",
        stem="population",
        formats=("parquet", "csv"),
        description="Registered population (65+, or all ages where the extract has them), "
        "with registration spells.",
        primary_key=("person_id", "registered_from"),
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _practice(),
            Column(
                "birth_year",
                "int",
                "Year of birth",
                min=EARLIEST_DATE.year - 20,
                max=LATEST_DATE.year,
            ),
            Column("sex", "int", "Sex (1 male, 2 female)", allowed=(1, 2)),
            Column("imd_decile", "int", "IMD decile (1 = most deprived)", min=1, max=10),
            _date("registered_from", "Registered from"),
            _date("registered_to", "Registered to (empty = still registered)", nullable=True),
        ),
    ),
    Source(
        name="hospital_spells",
        folder="records",
        stem="hospital_spells",
        formats=("parquet", "csv"),
        description="Hospital spells (admissions) with HES admission method and diagnosis.",
        primary_key=("spell_id",),
        person_level=True,
        consent_scope="records",
        columns=(
            Column("spell_id", "str", "Spell identifier"),
            _person(),
            _date("admitted_on", "Admission date"),
            _date("discharged_on", "Discharge date (empty = not yet discharged)", nullable=True),
            Column(
                "admission_method",
                "str",
                "HES admission method (ADMIMETH)",
                allowed=ADMISSION_METHODS,
            ),
            Column(
                "primary_diagnosis",
                "str",
                "Primary diagnosis (ICD-10)",
                pattern=r"^[A-Z][0-9]{2}(\.[0-9X]{1,2})?$",
            ),
            Column("discharge_destination", "str", "Discharge destination", nullable=True),
        ),
    ),
    Source(
        name="ae_attendances",
        folder="records",
        stem="ae_attendances",
        formats=("parquet", "csv"),
        description="A&E attendances.",
        primary_key=("attendance_id",),
        person_level=True,
        consent_scope="records",
        columns=(
            Column("attendance_id", "str", "Attendance identifier"),
            _person(),
            _date("arrived_on", "Arrival date"),
            Column("disposal", "str", "Attendance disposal", nullable=True),
        ),
    ),
    Source(
        name="gp_contacts",
        folder="records",
        stem="gp_contacts",
        formats=("parquet", "csv"),
        description="GP contacts.",
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _date("contact_on", "Contact date"),
            Column("contact_type", "str", "Contact type", allowed=("surgery", "home", "telephone")),
        ),
    ),
    Source(
        name="care_home_admissions",
        folder="records",
        stem="care_home_admissions",
        formats=("parquet", "csv"),
        description="Admissions to residential and nursing homes.",
        primary_key=("person_id", "admitted_on"),
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _date("admitted_on", "Admission date"),
            Column("home_type", "str", "Home type", allowed=("residential", "nursing")),
            Column("permanent", "bool", "Permanent admission"),
        ),
    ),
    Source(
        name="deaths",
        folder="records",
        stem="deaths",
        formats=("parquet", "csv"),
        description="Deaths and place of death.",
        primary_key=("person_id",),
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _date("died_on", "Date of death"),
            Column("place_of_death", "str", "Place of death", allowed=PLACES_OF_DEATH),
        ),
    ),
    Source(
        name="flu_vaccinations",
        folder="records",
        stem="flu_vaccinations",
        formats=("parquet", "csv"),
        description="Seasonal influenza vaccinations.",
        primary_key=("person_id", "vaccinated_on"),
        person_level=True,
        consent_scope="records",
        columns=(_person(), _date("vaccinated_on", "Vaccination date")),
    ),
    Source(
        name="risk_scores",
        folder="records",
        stem="risk_scores",
        formats=("parquet", "csv"),
        description="Quarterly risk stratification (4 tiers of each practice's 65+ register).",
        primary_key=("person_id", "quarter_start"),
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _date("quarter_start", "Quarter (first day)"),
            Column("risk_score", "float", "Predicted risk (0-1)", min=0.0, max=1.0),
            Column("risk_tier", "int", "Risk tier (4 = highest)", allowed=(1, 2, 3, 4)),
        ),
    ),
    Source(
        name="mdg_caseload",
        folder="records",
        stem="mdg_caseload",
        formats=("parquet", "csv"),
        description="People the MDG took on: discussion date and whether a care plan was agreed.",
        primary_key=("person_id", "discussed_on"),
        person_level=True,
        consent_scope="records",
        columns=(
            _person(),
            _date("discussed_on", "Date discussed at the MDG"),
            Column("care_plan_agreed", "bool", "Shared care plan agreed"),
        ),
    ),
    Source(
        name="coaching_randomisation",
        folder="twic",
        stem="coaching_randomisation",
        formats=("csv",),
        description="Randomisation of consenting cohort members to the offer of telephone "
        "health coaching.",
        primary_key=("person_id",),
        person_level=True,
        consent_scope="cohort",
        columns=(
            _person(),
            _date("randomised_on", "Date randomised"),
            Column("stratum", "str", "Randomisation stratum"),
            Column("arm", "str", "Arm", allowed=("offer", "control")),
        ),
    ),
    Source(
        name="coaching_uptake",
        folder="twic",
        stem="coaching_uptake",
        formats=("csv",),
        description="Acceptance of the coaching offer and sessions completed.",
        primary_key=("person_id",),
        person_level=True,
        consent_scope="cohort",
        may_be_empty=True,
        columns=(
            _person(),
            Column("accepted", "int", "Accepted the offer", allowed=(0, 1)),
            Column("sessions_completed", "int", "Coaching sessions completed", min=0, max=50),
        ),
    ),
    Source(
        name="community_assets",
        folder="programme",
        stem="community_assets",
        formats=("csv",),
        description="Community-asset investment by neighbourhood and month.",
        primary_key=("neighbourhood", "month"),
        columns=(
            Column("neighbourhood", "str", "Neighbourhood (as named in practices.csv)"),
            _date("month", "Month (first day)"),
            Column("groups_funded", "int", "Voluntary groups funded", min=0),
            Column("funding_gbp", "float", "Funding in the month (GBP)", min=0.0),
            Column("attendances", "int", "Attendances at funded groups", min=0),
        ),
    ),
    Source(
        name="contact_centre_calls",
        folder="programme",
        stem="contact_centre_calls",
        formats=("csv",),
        description="Calls to and from the centre of contact.",
        primary_key=("call_id",),
        person_level=True,
        consent_scope="records",
        columns=(
            Column("call_id", "str", "Call identifier"),
            _person(),
            _date("called_on", "Call date"),
            Column("direction", "str", "Direction", allowed=("inbound", "outbound")),
            Column("reason", "str", "Reason", allowed=CONTACT_REASONS),
            Column("duration_min", "float", "Duration (minutes)", min=0.0, max=600.0),
        ),
    ),
    Source(
        name="milestones",
        folder="programme",
        stem="milestones",
        formats=("csv",),
        description="The programme's dated milestones (its launch, a service opening), one "
        "row each: protocols may name a milestone instead of a month, so the "
        "same protocol asks its question at each site's own date.",
        primary_key=("milestone",),
        columns=(
            Column(
                "milestone",
                "str",
                "Milestone name (lower case, digits, underscores)",
                pattern=r"^[a-z][a-z0-9_]{0,63}$",
            ),
            _date("month", "First month the milestone was in effect (first day)"),
            Column(
                "description", "str", "What happened, and the source of the date", nullable=True
            ),
        ),
    ),
    Source(
        name="unit_costs",
        folder="programme",
        stem="unit_costs",
        formats=("csv",),
        description="Unit costs for pricing utilisation, each in a stated price year; one row "
        "for each priced item.",
        primary_key=("item",),
        required_values=(("item", UNIT_COST_ITEMS),),
        columns=(
            Column("item", "str", "Item priced"),
            Column("unit", "str", "Unit"),
            Column("cost_gbp", "float", "Unit cost (GBP)", min=0.0),
            Column("price_year", "int", "Price year", min=2000, max=2030),
            Column("source", "str", "Source of the unit cost"),
        ),
    ),
    Source(
        name="area_month_indicators",
        folder="comparators",
        stem="area_month_indicators",
        formats=("csv",),
        description="Routinely published indicators for the study area and its comparator "
        "areas, long format, with the 65+ population as denominator.",
        primary_key=("area_code", "month", "indicator"),
        required_values=(("indicator", AREA_INDICATORS),),
        columns=(
            Column("area_code", "str", "ONS local authority code", pattern=AREA_CODE_PATTERN),
            Column("area_name", "str", "Area name"),
            _date("month", "Month (first day)"),
            Column("indicator", "str", "Indicator", allowed=AREA_INDICATORS),
            Column("numerator", "float", "Numerator", min=0.0),
            Column("denominator", "float", "Denominator (65+ population)", min=0.0),
        ),
    ),
)

#: DuckDB type of each contract dtype, for the ``raw`` schema.
DUCKDB_TYPES: dict[DType, str] = {
    "str": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "bool": "BOOLEAN",
}

#: Lineage columns the ingest layer adds to every ``raw.<source>`` table.
LINEAGE_COLUMNS: dict[str, str] = {
    "_source_file": "VARCHAR",  # path relative to the input folder
    "_source_row": "BIGINT",  # 1-based data row number in that file
    "_file_sha256": "VARCHAR",
}


@dataclass(frozen=True)
class RawLayout:
    """Names of the tables the ingest layer writes; dbt declares these as its sources."""

    schema: str = "raw"
    quarantine: str = "quarantine"
    ingest_log: str = "ingest_log"
    value_labels: str = "value_labels"
    variable_labels: str = "variable_labels"
    missing_reasons: str = "survey_missing_reasons"
    consent_exclusions: str = "consent_exclusions"
    consent_ledger: str = "consent_ledger"
    input_fingerprint: str = "input_fingerprint"
    vocabulary: str = "contract_vocabulary"


RAW = RawLayout()

#: The ingest bookkeeping tables dbt reads (declared with the sources in dbt's _sources.yml,
#: which sicp.contract_docs.dbt_sources_yaml generates), with what each holds.
DBT_BOOKKEEPING_SOURCES: dict[str, str] = {
    RAW.value_labels: "Value labels of labelled columns (SPSS/Stata labels and contract labels): "
    "source_name, column_name, value, label.",
    RAW.variable_labels: "Variable labels of every column: source_name, column_name, label.",
    RAW.vocabulary: "The data contract's controlled vocabularies (sicp/contract.py), written by "
    "ingest: source_name, column_name, value and whether a delivery must "
    "contain it. The warehouse reads reasons and priced items from here instead "
    "of restating them.",
    RAW.quarantine: "Rows rejected by ingest, one row per offending value: source_name, "
    "source_file, source_row, column_name, offending_value, reason.",
    RAW.ingest_log: "One row per file ingested, with row counts.",
    RAW.consent_exclusions: "People to exclude: scope 'all' (withdrew all consent; exclude "
    "everywhere) or 'records' (no record-linkage consent; exclude from "
    "record sources).",
    RAW.input_fingerprint: "Fingerprint of the whole input folder at the last ingest "
    "(fingerprint, n_files).",
    RAW.missing_reasons: "Which SPSS user-missing code (-9 not answered, -8 not applicable, -7 "
    "unreadable) each survey value carried before ingest set it to NULL.",
}


def source(name: str) -> Source:
    """Look a source up by name, with a clear error listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def vocabulary_rows() -> list[tuple[str, str, str, bool]]:
    """The controlled vocabularies of the contract as rows (source, column, value, required):
    every allowed value of a text column and every required value, so the warehouse reads them
    from here (``raw.contract_vocabulary``) instead of restating them."""
    rows: dict[tuple[str, str, str], bool] = {}
    for src in SOURCES.values():
        required = dict(src.required_values)
        for col in src.columns:
            if col.allowed is not None and col.dtype == "str":
                for value in col.allowed:
                    rows[(src.name, col.name, str(value))] = str(value) in required.get(
                        col.name, ()
                    )
            for value in required.get(col.name, ()):
                rows[(src.name, col.name, value)] = True
    return [(s, c, v, r) for (s, c, v), r in rows.items()]


def survey_wave_filename(wave: int) -> str:
    return f"survey_wave_{wave:02d}.sav"
