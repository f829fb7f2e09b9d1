"""Issue 15, classes 4 and 5: direct identifiers never pass, the pseudonym key is checked, and
SPSS labels are compared with the contract. Each case asserts its outcome and that every file
reconciles (rows read = loaded + quarantined) with no valid row lost."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat
import pytest

from sicp.contract import SOURCES
from sicp.ingest import IngestError, ingest_all, ingest_source, keys, reconcile
from sicp.ingest import identifiers as ids
from sicp.ingest.labels import normalise
from tests.ingest_helpers import KEY, query, tw

OTHER_KEY = "another-secret-key-for-the-same-data"
NHS = "9434765919"  # an NHS Digital test number with a valid check digit
NHS_BAD_CHECK = "9434765918"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv(keys.REKEY_ENV, raising=False)
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, KEY)
    return tmp_path / "raw", tmp_path / "warehouse.duckdb"


def load(raw: Path, warehouse: Path, *names: str):
    """Ingest practices and the named sources only; returns the last source's report."""
    with duckdb.connect(str(warehouse)) as con:
        return [ingest_source(con, raw, SOURCES[n]) for n in dict.fromkeys(["practices", *names])][
            -1
        ]


def quarantine(warehouse: Path, source: str) -> list[tuple]:
    return query(
        warehouse,
        "SELECT source_file, source_row, column_name, offending_value, reason "
        "FROM raw.quarantine WHERE source_name = ? ORDER BY source_row",
        [source],
    )


def everything(warehouse: Path) -> list[str]:
    """Every value of every raw table, as text."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'"
            ).fetchall()
        ]
        return [
            str(v)
            for t in tables
            for row in con.execute(f"SELECT * FROM raw.{t}").fetchall()
            for v in row
        ]


def assert_nowhere(warehouse: Path, *texts: str) -> None:
    """None of ``texts`` (nor its digits alone, where it has ten or more) is in any table."""
    values = everything(warehouse)
    for text in texts:
        digits = "".join(ch for ch in text if ch.isdigit())
        assert not any(text in v or (len(digits) >= 10 and digits in v) for v in values), text


def assert_reconciles(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        logged = [
            s for (s,) in con.execute("SELECT DISTINCT source_name FROM raw.ingest_log").fetchall()
        ]
        for name in logged:
            checks = reconcile(con, SOURCES[name])
            assert checks and all(c.ok for c in checks), checks


def assert_loaded(warehouse: Path, key: str, expected: pd.DataFrame) -> None:
    """raw.<source> holds exactly ``expected`` (contract columns, in file order)."""
    source = tw.source_of(key)
    columns = ", ".join(f'"{c}"' for c in source.column_names)
    rows = query(
        warehouse, f"SELECT {columns} FROM raw.{source.name} ORDER BY _source_file, _source_row"
    )
    want = [
        tuple(None if pd.isna(v) else v for v in r)
        for r in expected[list(source.column_names)].itertuples(index=False)
    ]
    assert rows == want


def rel(raw: Path, key: str) -> str:
    return tw.path_for(raw, key).relative_to(raw).as_posix()


def pseudonym(key: str, number: str) -> str:
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()


# --- 4. identifiers never pass ----------------------------------------------------------

NHS_FORMS = [
    "9434765919",
    "943 476 5919",
    "943-476-5919",
    "see 9434765919 on discharge",
    "ref:943 476 5919.",
    "nhs_9434765919",
]

#: (frame key, column): free text, identifiers and categories; CSV, parquet and SPSS.
TEXT_COLUMNS = [
    ("hospital_spells", "discharge_destination"),  # parquet, nullable free text
    ("ae_attendances", "disposal"),  # parquet
    ("hospital_spells", "spell_id"),  # parquet, an identifier column
    ("contact_centre_calls", "call_id"),  # CSV
    ("coaching_randomisation", "stratum"),  # CSV
    ("coaching_uptake", "person_id"),  # CSV: an NHS number as the pseudonym
    ("milestones", "description"),  # CSV, not person-level
    ("contact_centre_calls", "direction"),  # CSV, allowed set: rejected, then masked
]


@pytest.mark.parametrize("value", NHS_FORMS)
@pytest.mark.parametrize(("key", "column"), TEXT_COLUMNS)
def test_nhs_number_in_any_text_column_is_quarantined_masked(world, key, column, value):
    raw, wh = world
    frame = tw.frames()[key]
    edited = frame.astype({column: object})
    edited.loc[2, column] = value
    tw.build(raw, edit={key: edited})
    name = tw.source_of(key).name
    load(raw, wh, name)
    assert quarantine(wh, name) == [
        (
            rel(raw, key),
            3,
            column,
            ids.MASK,
            f"column {column} holds what looks like an NHS number (a direct identifier): the row "
            f"is quarantined and the value is not stored; remove direct identifiers from the extract",
        )
    ]
    assert_loaded(wh, key, frame.drop(index=2))
    assert_reconciles(wh)
    assert_nowhere(wh, value, NHS)


@pytest.mark.parametrize(
    ("key", "column", "value"),
    [
        ("survey_wave_01", "gp_visits_6m", 9434765919),  # SPSS double, no maximum
        ("survey_wave_01", "eq_vas", 9434765919),  # above the maximum too: still masked
        ("contact_centre_calls", "duration_min", "9434765919"),  # CSV text in a numeric column
        ("population", "birth_year", 9434765919),  # parquet integer
        ("practice_moves", "from_date", "943-476-5919"),  # CSV text in a date column
    ],
)
def test_nhs_number_in_a_numeric_or_date_column_is_quarantined_masked(world, key, column, value):
    raw, wh = world
    frame = tw.frames()[key]
    edited = frame.astype({column: object if isinstance(value, str) else "int64"})
    edited.loc[1, column] = value
    tw.build(raw, edit={key: edited})
    name = tw.source_of(key).name
    load(raw, wh, name)
    ((path, row, col, shown, reason),) = quarantine(wh, name)
    assert (path, row, col, shown) == (rel(raw, key), 2, column, ids.MASK)
    assert "looks like an NHS number" in reason
    assert_reconciles(wh)
    assert_nowhere(wh, NHS)


def test_nhs_number_as_a_key_is_not_kept_as_a_quarantined_key(world):
    """A practice code that is an NHS number: the practice row is quarantined, dependants
    naming the (now missing) practice follow it, and the number is stored nowhere, not in
    raw.quarantined_keys nor in a dependant's cascaded reason."""
    raw, wh = world
    frames = tw.frames()
    practices = frames["practices"].copy()
    practices.loc[1, "practice_code"] = NHS
    population = frames["practice_population"].copy()
    population.loc[0, "practice_code"] = NHS
    tw.build(raw, edit={"practices": practices, "practice_population": population})
    load(raw, wh, "practice_population")
    ((_, row, col, shown, reason),) = quarantine(wh, "practices")
    assert (row, col, shown) == (2, "practice_code", ids.MASK)
    assert "looks like an NHS number" in reason
    rejected = quarantine(wh, "practice_population")
    assert rejected[0][1:4] == (1, "practice_code", ids.MASK)
    assert query(wh, "SELECT count(*) FROM raw.quarantined_keys WHERE key_value = ?", [NHS]) == [
        (0,)
    ]
    assert_reconciles(wh)
    assert_nowhere(wh, NHS)


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("discharge_destination", "home; daughter jo.bloggs@example.org", "an email address"),
        ("discharge_destination", "home address M5 4WT", "a UK postcode"),
        ("discharge_destination", "home address m54wt", "a UK postcode"),  # no space
        ("discharge_destination", "to SW1A1AA", "a UK postcode"),
        ("discharge_destination", "call 0161 234 5678", "a UK telephone number"),
        ("discharge_destination", "mobile +44 7700 900123", "a UK telephone number"),
        ("spell_id", "07700900123", "a UK telephone number"),
    ],
)
def test_other_direct_identifiers_in_person_level_text_are_quarantined(world, column, value, kind):
    raw, wh = world
    frame = tw.frames()["hospital_spells"]
    edited = frame.copy()
    edited.loc[4, column] = value
    tw.build(raw, edit={"hospital_spells": edited})
    load(raw, wh, "hospital_spells")
    ((_, row, col, shown, reason),) = quarantine(wh, "hospital_spells")
    assert (row, col, shown) == (5, column, ids.MASK)
    assert reason.startswith(f"column {column} holds what looks like {kind}")
    assert_loaded(wh, "hospital_spells", frame.drop(index=4))
    assert_reconciles(wh)
    assert_nowhere(wh, value)


@pytest.mark.parametrize(
    "value",
    [
        NHS_BAD_CHECK,  # 10 digits, wrong check digit
        "94347659190",  # 11 digits
        "H9434765919",  # spell-id style: letter and 10 digits
        "P81000-000123",  # person-id style
        "2017/18 prices, ward 3 bed 12",
        "0161234567",  # 10 digits starting 0, not an NHS number
        "B12 3CD",  # not a postcode (C is never in an inward code)
        "QX12AB",  # postcode-shaped code, but QX is no postcode area
        "east|ltc1to2",
    ],
)
def test_look_alikes_are_not_identifiers(world, value):
    raw, wh = world
    frame = tw.frames()["hospital_spells"]
    edited = frame.copy()
    edited.loc[1, "discharge_destination"] = value
    tw.build(raw, edit={"hospital_spells": edited})
    load(raw, wh, "hospital_spells")
    assert quarantine(wh, "hospital_spells") == []
    assert_loaded(wh, "hospital_spells", edited)
    assert_reconciles(wh)


def test_contact_details_of_an_organisation_are_not_personal(world):
    """Email, postcode and phone are scanned in person-level sources only; an NHS number is
    scanned everywhere."""
    raw, wh = world
    frame = tw.frames()["milestones"]
    edited = frame.copy()
    edited.loc[0, "description"] = "launch at Salford Civic Centre, M27 5AW; team@salford.gov.uk"
    tw.build(raw, edit={"milestones": edited})
    load(raw, wh, "milestones")
    assert quarantine(wh, "milestones") == []
    assert_loaded(wh, "milestones", edited)


def test_identifier_in_one_value_costs_only_its_row_and_reaches_no_mart_input(world):
    """The example of the issue: a valid NHS number typed into free text. Whole folder, then
    every raw table (raw sources, quarantine, labels, missing-code reasons) is free of it."""
    raw, wh = world
    frames = tw.frames()
    spells = frames["hospital_spells"].copy()
    spells.loc[3, "discharge_destination"] = "see 943 476 5919"
    wave = frames["survey_wave_01"].copy()
    wave.loc[0, "eq_pain"] = -9
    tw.build(raw, edit={"hospital_spells": spells, "survey_wave_01": wave})
    report = ingest_all(raw, wh)
    assert report.source("hospital_spells").rows_quarantined == 1
    assert sum(s.rows_quarantined for s in report.sources) == 1
    assert report.source("survey_wave").missing_codes_recoded == 1
    assert_reconciles(wh)
    assert_nowhere(wh, "943 476 5919", NHS)


@pytest.mark.parametrize(
    ("where", "labels"),
    [
        ("value", {"sex": {1: "male", 2: "female", 9: f"see {NHS}"}}),
        ("value", {"social_care_need": {0: "none", 1: "some", 2: "call 0161 234 5678"}}),
        ("variable", {"birth_year": f"Year of birth (checked against {NHS})"}),
    ],
)
def test_identifier_in_an_spss_label_fails_the_file_without_quoting_it(world, where, labels):
    raw, wh = world
    frames = tw.build(raw)
    load(raw, wh, "recruitment")
    before = query(wh, "SELECT * FROM raw.recruitment")
    recruitment = frames["recruitment"]
    if where == "value":
        write_sav(raw, "recruitment", recruitment, value_labels=labels)
    else:
        write_sav(raw, "recruitment", recruitment, column_labels=labels)
    (column,) = labels
    with pytest.raises(IngestError) as caught:
        load(raw, wh, "recruitment")
    message = str(caught.value)
    assert message.startswith("cohort/recruitment.sav: ")
    assert f"label of {column} holds what looks like" in message
    assert NHS not in message and "5678" not in message
    assert query(wh, "SELECT * FROM raw.recruitment") == before
    assert_reconciles(wh)
    assert_nowhere(wh, NHS, "0161 234 5678")


def test_sql_prefilter_and_python_rule_agree():
    """The SQL scan (prefilter + function) finds exactly what identifiers.find finds."""
    values = [
        *NHS_FORMS,
        NHS_BAD_CHECK,
        "94347659190",
        "H0000000001",
        "P87001-000001",
        "a@b.co",
        "M5 4WT",
        "m5 4wt",
        "M54WT",
        "0161 234 5678",
        "07700900123",
        "+44 (0)161 234 5678",
        "2017/18",
        "usual residence",
        "",
        "x_943-476-5919",
    ]
    con = duckdb.connect()
    ids.register(con)
    for person_level in (True, False):
        got = con.execute(
            f"SELECT x, {ids.sql_found('x', 'VARCHAR', person_level)} "
            f"FROM unnest(?::VARCHAR[]) t(x)",
            [values],
        ).fetchall()
        assert dict(got) == {v: ids.find(v, person_level) for v in values}


# --- 4. the pseudonym key ----------------------------------------------------------------


def nhs_world(raw: Path, numbers_from: int = 0) -> list[str]:
    """A tiny world whose recruitment and coaching_uptake carry NHS numbers."""
    frames = tw.frames()
    numbers = [tw.valid_nhs_number(i + numbers_from) for i in range(len(frames["recruitment"]))]
    edit = {
        k: frames[k].drop(columns=["person_id"]).assign(nhs_number=numbers[: len(frames[k])])
        for k in ("recruitment", "coaching_uptake")
    }
    tw.build(raw, edit=edit)
    return numbers


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (" " * 16, "empty or only white space"),
        ("\t" * 20, "empty or only white space"),
        (" leading-space-secret-key-0123", "begins or ends with white space"),
        ("trailing-space-secret-key-0123 ", "begins or ends with white space"),
        ("k" * 32, "fewer than 8 distinct characters"),
        ("abcabcabcabcabcabc", "fewer than 8 distinct characters"),
        ("shortkey123", "shorter than 16 characters"),
    ],
)
def test_weak_keys_are_refused(world, monkeypatch, key, problem):
    raw, wh = world
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, key)
    nhs_world(raw)
    with pytest.raises(IngestError, match=problem) as caught:
        load(raw, wh, "recruitment")
    assert key.strip() not in str(caught.value) or not key.strip()
    assert query(wh, "SELECT count(*) FROM raw.pseudonym_key_check") == [(0,)]


def test_first_pseudonymising_ingest_stores_a_check_value_never_the_key(world):
    raw, wh = world
    nhs_world(raw)
    ingest_all(raw, wh)
    expected = hmac.new(KEY.encode(), b"sicp-key-check", hashlib.sha256).hexdigest()
    assert query(wh, "SELECT * FROM raw.pseudonym_key_check ORDER BY 1") == [
        ("coaching_uptake", expected),
        ("recruitment", expected),
    ]
    assert not any(KEY in v for v in everything(wh))
    assert_reconciles(wh)


def test_a_different_key_is_refused_and_the_warehouse_is_unchanged(world, monkeypatch):
    raw, wh = world
    numbers = nhs_world(raw)
    ingest_all(raw, wh)
    before = query(wh, "SELECT person_id FROM raw.recruitment ORDER BY _source_row")
    assert before[0] == (pseudonym(KEY, numbers[0]),)
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, OTHER_KEY)
    with pytest.raises(IngestError) as caught:
        ingest_all(raw, wh)
    message = str(caught.value)
    assert "SICP_PSEUDONYM_KEY differs from the key this warehouse was built with" in message
    assert "every person would get a new pseudonym" in message and "SICP_REKEY=1" in message
    assert OTHER_KEY not in message and KEY not in message
    assert query(wh, "SELECT person_id FROM raw.recruitment ORDER BY _source_row") == before
    assert_reconciles(wh)


def test_rekeying_rebuilds_every_pseudonymised_source_and_replaces_the_check(world, monkeypatch):
    raw, wh = world
    numbers = nhs_world(raw)
    ingest_all(raw, wh)
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, OTHER_KEY)
    monkeypatch.setenv(keys.REKEY_ENV, "1")
    ingest_all(raw, wh)
    for table in ("recruitment", "coaching_uptake"):
        assert query(wh, f"SELECT person_id FROM raw.{table} ORDER BY _source_row")[0] == (
            pseudonym(OTHER_KEY, numbers[0]),
        )
    new_check = hmac.new(OTHER_KEY.encode(), b"sicp-key-check", hashlib.sha256).hexdigest()
    assert {c for (c,) in query(wh, "SELECT key_check FROM raw.pseudonym_key_check")} == {new_check}
    assert_reconciles(wh)
    # The re-keying is done: the old key is now the one refused.
    monkeypatch.delenv(keys.REKEY_ENV)
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, KEY)
    with pytest.raises(IngestError, match="differs from the key this warehouse was built with"):
        ingest_all(raw, wh)


def test_an_unfinished_rekeying_is_visible_and_refused_with_either_key(world, monkeypatch):
    raw, wh = world
    nhs_world(raw)
    ingest_all(raw, wh)
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, OTHER_KEY)
    monkeypatch.setenv(keys.REKEY_ENV, "1")
    load(raw, wh, "recruitment")  # only one of the two pseudonymised sources
    with duckdb.connect(str(wh), read_only=True) as con:
        assert keys.mixed_keys(con) == [["coaching_uptake"], ["recruitment"]]
    monkeypatch.delenv(keys.REKEY_ENV)
    for key, other in ((KEY, "recruitment"), (OTHER_KEY, "coaching_uptake")):
        monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, key)
        with pytest.raises(IngestError, match=f"the pseudonyms of {other} came from another"):
            load(raw, wh, "recruitment", "coaching_uptake")
    assert_reconciles(wh)


def test_a_source_delivered_with_person_ids_drops_its_key_check(world):
    raw, wh = world
    nhs_world(raw)
    ingest_all(raw, wh)
    tw.write(
        tw.frames()["coaching_uptake"],
        tw.path_for(raw, "coaching_uptake"),
        SOURCES["coaching_uptake"],
    )
    load(raw, wh, "coaching_uptake")
    assert [s for (s,) in query(wh, "SELECT source_name FROM raw.pseudonym_key_check")] == [
        "recruitment"
    ]
    assert_reconciles(wh)


# --- 5. labels are checked ------------------------------------------------------------------


def write_sav(
    raw: Path,
    key: str,
    frame: pd.DataFrame,
    *,
    value_labels: dict[str, dict] | None = None,
    column_labels: dict[str, str] | None = None,
    missing: dict[str, list] | None = None,
) -> None:
    """Write ``key`` as .sav with the contract's labels, some of them replaced (a column set
    to None has no labels)."""
    source = tw.source_of(key)
    labels = {
        c.name: {**(c.value_labels or {}), **(c.missing_codes or {})}
        for c in source.columns
        if (c.value_labels or c.missing_codes) and c.name in frame
    }
    labels |= value_labels or {}
    labels = {c: v for c, v in labels.items() if v is not None}
    ranges = {
        c.name: list(c.missing_codes) for c in source.columns if c.missing_codes and c.name in frame
    }
    ranges |= missing or {}
    names = {c.name: c.label for c in source.columns} | (column_labels or {})
    sav = frame.copy()
    for c in source.columns:
        if c.dtype == "date" and c.name in sav:
            sav[c.name] = pd.to_datetime(sav[c.name])
    pyreadstat.write_sav(
        sav,
        str(tw.path_for(raw, key)),
        column_labels=[names.get(c, c) for c in sav.columns],
        variable_value_labels=labels,
        missing_ranges={c: v for c, v in ranges.items() if v},
    )


@pytest.mark.parametrize(
    ("key", "column", "delivered", "expected_text"),
    [
        (
            "recruitment",
            "consent_linkage",
            {0: "yes", 1: "no"},
            'consent_linkage: expected 0 = "no", 1 = "yes"; delivered 0 = "yes", 1 = "no"',
        ),
        (
            "recruitment",
            "sex",
            {1: "female", 2: "male"},
            'sex: expected 1 = "male", 2 = "female"; delivered 1 = "female", 2 = "male"',
        ),
        (
            "recruitment",
            "sex",
            {1: "male", 2: "female", 3: "Female"},
            'delivered 1 = "male", 2 = "female", 3 = "Female"',
        ),
        (
            "recruitment",
            "social_care_need",
            {0: "substantial", 1: "some", 2: "none"},
            "social_care_need: expected",
        ),
        ("recruitment", "sex", {1: "male", 2: "female", -9: "refused"}, '-9 = "refused"'),
        ("survey_wave_01", "eq_pain", {1: "extreme/unable", 5: "no problems"}, "eq_pain: expected"),
        (
            "survey_wave_01",
            "pacic_03",
            {-9: "unreadable", -7: "not answered"},
            "pacic_03: expected",
        ),
        (
            "survey_wave_01",
            "has_care_plan",
            {0: "yes", 1: "no", -9: "not answered"},
            "has_care_plan: expected",
        ),
    ],
)
def test_labels_that_change_meaning_fail_the_file(world, key, column, delivered, expected_text):
    raw, wh = world
    frames = tw.build(raw)
    name = tw.source_of(key).name
    load(raw, wh, name)
    before = query(wh, f"SELECT * FROM raw.{name} ORDER BY ALL")
    write_sav(raw, key, frames[key], value_labels={column: delivered})
    with pytest.raises(IngestError) as caught:
        load(raw, wh, name)
    message = str(caught.value)
    assert message.startswith(f"{rel(raw, key)}: labels do not match the data contract")
    assert expected_text in message
    assert f"nothing of {name} was loaded (a previous load stays in place)" in message
    assert query(wh, f"SELECT * FROM raw.{name} ORDER BY ALL") == before
    assert_reconciles(wh)


@pytest.mark.parametrize(
    ("key", "labels"),
    [
        ("recruitment", {"consent_linkage": {0: "No ", 1: " YES"}}),  # case, spaces
        ("recruitment", {"consent_linkage": {0: "0 = no", 1: "1 = yes"}}),  # code echo
        ("recruitment", {"sex": {1: "M", 2: "F"}}),  # synonym
        (
            "recruitment",
            {
                "sex": {
                    1: "male",
                    2: "female",
                    -9: "Not answered",  # missing code
                    99: "other",
                }
            },
        ),  # unknown code
        ("survey_wave_01", {"eq_mobility": {1: "No problem", 5: "Unable"}}),  # synonyms, partial
        ("survey_wave_01", {"mode": {1: "by post", 2: "web", 3: "phone"}}),
    ],
)
def test_labels_with_the_same_meaning_are_accepted(world, key, labels):
    raw, wh = world
    frames = tw.build(raw)
    same = [k for k in frames if tw.source_of(k) is tw.source_of(key)]  # every wave file
    for k in same:
        write_sav(raw, k, frames[k], value_labels=labels)
    report = load(raw, wh, tw.source_of(key).name)
    assert report.rows_quarantined == 0
    assert_reconciles(wh)
    ((column, delivered),) = labels.items()
    stored = dict(
        query(wh, "SELECT value, label FROM raw.value_labels WHERE column_name = ?", [column])
    )
    assert stored == {str(k): v.rstrip() for k, v in delivered.items()}  # SPSS pads labels


def test_a_file_without_any_labels_is_accepted(world):
    raw, wh = world
    frames = tw.build(raw)
    recruitment = frames["recruitment"]
    sav = recruitment.copy()
    for column in ("recruited_on", "withdrawn_on"):
        sav[column] = pd.to_datetime(sav[column])
    pyreadstat.write_sav(sav, str(tw.path_for(raw, "recruitment")))  # plain numbers
    report = load(raw, wh, "recruitment")
    assert report.rows_quarantined == 0
    assert query(wh, "SELECT count(*) FROM raw.value_labels") == [(0,)]
    assert_loaded(wh, "recruitment", recruitment)
    assert_reconciles(wh)


@pytest.mark.parametrize(
    ("column", "missing", "fails"),
    [
        ("has_care_plan", [0], True),  # a valid answer declared missing
        ("eq_pain", [{"lo": -9, "hi": 1}], True),  # a range reaching into the answers
        ("eq_pain", [{"lo": -9, "hi": -7}], False),  # the contract's codes as a range
        ("eq_pain", [-9, -99], False),  # an extra code outside the answers
    ],
)
def test_user_missing_codes_that_hide_answers_fail_the_file(world, column, missing, fails):
    raw, wh = world
    frames = tw.build(raw)
    write_sav(raw, "survey_wave_01", frames["survey_wave_01"], missing={column: missing})
    if fails:
        with pytest.raises(
            IngestError,
            match=rf"{column}: the file declares .* user-missing, "
            rf"which hides valid answers",
        ):
            load(raw, wh, "survey_wave")
        assert query(
            wh, "SELECT count(*) FROM raw.ingest_log WHERE source_name = 'survey_wave'"
        ) == [(0,)]
    else:
        assert load(raw, wh, "survey_wave").rows_quarantined == 0
    assert_reconciles(wh)


@pytest.mark.parametrize(
    ("label", "code", "expected"),
    [
        ("  No  problems ", 1, "no problems"),
        ("1 = Male", 1, "male"),
        ("2 = Male", 1, "2 = male"),
        ("-9: Not_answered", -9, "not answered"),
        ("F", 2, "female"),
        ("Extreme problems.", 5, "extreme/unable"),
    ],
)
def test_label_normalisation(label, code, expected):
    assert normalise(label, code) == expected


def test_rekeying_is_refused_while_the_consent_ledger_holds_old_pseudonyms(world, monkeypatch):
    """A withdrawal recorded under the old key would match nobody under a new one."""
    raw, wh = world
    frames = tw.frames()
    numbers = [tw.valid_nhs_number(i) for i in range(len(frames["recruitment"]))]
    recruitment = frames["recruitment"].drop(columns=["person_id"]).assign(nhs_number=numbers)
    recruitment.loc[1, "withdrawn_on"] = "2016-05-01"
    uptake = (
        frames["coaching_uptake"]
        .drop(columns=["person_id"])
        .assign(nhs_number=numbers[: len(frames["coaching_uptake"])])
    )
    tw.build(raw, edit={"recruitment": recruitment, "coaching_uptake": uptake})
    ingest_all(raw, wh)
    before = query(wh, "SELECT person_id, scope FROM raw.consent_exclusions")
    assert before == [(pseudonym(KEY, numbers[1]), "all")]
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, OTHER_KEY)
    monkeypatch.setenv(keys.REKEY_ENV, "1")
    with pytest.raises(IngestError, match="re-keying is refused: the consent ledger holds 1 entry"):
        ingest_all(raw, wh)
    assert query(wh, "SELECT person_id, scope FROM raw.consent_exclusions") == before
