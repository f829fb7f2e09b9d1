"""Tests of the synthetic world generator (sicp.synth), mostly on the tiny ``small`` scenario,
and on ``symphony``, a second site with its own calendar, geography and roll-out."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml

from sicp.contract import AREA_INDICATORS, SOURCES, SURVEY_MISSING_CODES, UNIT_COST_ITEMS
from sicp.synth import generate_world, simulate_world
from sicp.synth.population import EMERGENCY_METHODS
from sicp.synth.practices import build_practices
from sicp.synth.scenario import check_scenario, load_scenario
from sicp.synth.timeline import Timeline, to_month

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SYNTH = Path(__file__).resolve().parents[1] / "sicp" / "synth"


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate_world("small", 7, out)
    return out


@pytest.fixture(scope="module")
def small_world():
    return simulate_world("small", 7)


def _read(root: Path, name: str) -> pd.DataFrame:
    src = SOURCES[name]
    paths = sorted((root / src.folder).glob(f"{src.stem}.{src.formats[0]}"))
    assert paths, f"no file for {name}"
    frames = []
    for p in paths:
        if p.suffix == ".sav":
            df, _ = pyreadstat.read_sav(str(p), user_missing=True)
        elif p.suffix == ".parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def test_same_seed_same_bytes_and_different_seed_differs(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world("small", 7, again)
    first, second = _hashes(small), _hashes(again)
    assert first == second
    other = tmp_path / "other"
    generate_world("small", 8, other)
    differ = [k for k, v in _hashes(other).items() if first.get(k) != v]
    assert "records/hospital_spells.parquet" in differ and "truth.json" in differ


def test_every_contract_file_written(small: Path) -> None:
    for name, src in SOURCES.items():
        if src.per_wave:
            assert len(list((small / src.folder).glob("survey_wave_*.sav"))) == 8
        else:
            assert (small / src.folder / f"{src.stem}.{src.formats[0]}").exists(), name
    assert (small / "truth.json").exists()


def _check_conforms(root: Path, name: str) -> None:
    """The file of source ``name`` under ``root`` has the contract's columns, nulls, values and
    key."""
    src = SOURCES[name]
    df = _read(root, name)
    assert tuple(df.columns) == src.column_names
    for col in src.columns:
        s = df[col.name]
        null = s == "" if src.formats[0] == "csv" else s.isna()
        if not col.nullable:
            assert not null.any(), f"{name}.{col.name} has nulls"
        values = s[~null]
        if col.dtype == "date":
            parsed = pd.to_datetime(values)
            values = pd.Series([d.date() for d in parsed])
        elif col.dtype == "int":
            num = pd.to_numeric(values)
            assert (num == np.round(num)).all()
            values = num.astype(int)
            if col.missing_codes:
                values = values[~values.isin(list(col.missing_codes))]
        elif col.dtype == "float":
            values = pd.to_numeric(values).astype(float)
        elif col.dtype == "bool":
            assert values.map(lambda v: str(v) in {"True", "False"}).all()
            continue
        bad = [v for v in values.unique() if col.check_value(v) is not None]
        assert not bad, f"{name}.{col.name}: {bad[:5]} ({col.check_value(bad[0])})"
    if src.primary_key:
        assert not df.duplicated(list(src.primary_key)).any(), f"{name} key not unique"
    for column, required in src.required_values:
        missing = set(required) - set(df[column])
        assert not missing, f"{name}.{column} lacks {sorted(missing)}"


@pytest.mark.parametrize("name", list(SOURCES))
def test_file_conforms_to_contract(small: Path, name: str) -> None:
    _check_conforms(small, name)


def test_parquet_types_follow_contract(small: Path) -> None:
    import pyarrow.parquet as pq

    kinds = {
        "str": "string",
        "int": "int64",
        "float": "double",
        "date": "date32[day]",
        "bool": "bool",
    }
    for _name, src in SOURCES.items():
        if src.formats[0] != "parquet":
            continue
        schema = pq.read_schema(small / src.folder / f"{src.stem}.parquet")
        assert [str(schema.field(c.name).type) for c in src.columns] == [
            kinds[c.dtype] for c in src.columns
        ]


def test_sav_labels_and_user_missing(small: Path) -> None:
    for name in ("recruitment", "survey_wave"):
        src = SOURCES[name]
        path = sorted((small / src.folder).glob(f"{src.stem}.sav"))[0]
        df, meta = pyreadstat.read_sav(str(path), user_missing=True)
        labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
        for col in src.columns:
            assert labels[col.name] == col.label
            if col.value_labels:
                got = meta.variable_value_labels[col.name]
                assert {int(k): v for k, v in got.items()} == col.value_labels
            if col.missing_codes:
                ranges = meta.missing_ranges[col.name]
                assert sorted(int(r["lo"]) for r in ranges) == sorted(col.missing_codes)
            if col.dtype == "date":
                assert meta.original_variable_types[col.name].startswith("DATE")
    wave = _read(small, "survey_wave")
    items = [c.name for c in SOURCES["survey_wave"].columns if c.missing_codes]
    codes = set(np.unique(wave[items].to_numpy()))
    assert set(SURVEY_MISSING_CODES) <= codes


def test_plausible_rates(small_world) -> None:
    w = small_world
    pm = w.truth["counts"]["person_months_65plus"]
    rate = w.truth["counts"]["emergency_admissions_total"] / pm * 12_000
    assert 150 < rate < 400
    deaths = len(w.frames["deaths"]) / (pm / 12)
    assert 0.03 < deaths < 0.09
    per_wave = w.frames["survey_wave"].groupby("wave").size()
    assert per_wave.loc[8] < per_wave.loc[6] < per_wave.loc[3]
    methods = w.frames["hospital_spells"]["admission_method"]
    assert methods.isin(EMERGENCY_METHODS).mean() > 0.5
    assert methods.isin(("11", "12", "13")).any() and methods.isin(("2A", "2B", "28")).any()


def test_default_world_plausible() -> None:
    w = simulate_world("default", 3)
    counts = w.truth["counts"]
    rate = counts["emergency_admissions_total"] / counts["person_months_65plus"] * 12_000
    assert 150 < rate < 400
    assert 40 <= len(w.frames["practices"]) <= 48
    assert 3_500 < len(w.frames["recruitment"]) < 5_500
    pop = w.frames["population"]
    assert 30_000 < pop["person_id"].nunique() < 70_000
    gp = len(w.frames["gp_contacts"]) / (counts["person_months_65plus"] / 12)
    assert 5 < gp < 11
    uptake = w.frames["coaching_uptake"]["accepted"].mean()
    assert 0.45 < uptake < 0.65
    e = w.truth["effects"]
    assert e["mdg_practice_att_em_ratio"]["value"] < 1
    assert 4 < e["twic_cace_selfman"]["value"] < 8


def test_records_are_internally_consistent(small_world) -> None:
    f = small_world.frames
    sp, deaths = f["hospital_spells"], f["deaths"].set_index("person_id")
    died_in = sp[sp["discharge_destination"] == "died"]
    assert len(died_in)
    assert (deaths.loc[died_in["person_id"], "place_of_death"] == "hospital").all()
    assert (
        deaths.loc[died_in["person_id"], "died_on"].to_numpy()
        == died_in["discharged_on"].to_numpy()
    ).all()
    last = pd.concat(
        [sp.groupby("person_id")["admitted_on"].max(), deaths["died_on"]], axis=1, join="inner"
    )
    assert (last["admitted_on"] <= last["died_on"]).all()
    ordered = sp.sort_values(["person_id", "admitted_on"])
    nxt = ordered.groupby("person_id")["admitted_on"].shift(-1)
    assert not (nxt < ordered["discharged_on"]).any()
    pop = f["population"]
    assert (pop["registered_to"].isna() | (pop["registered_to"] >= pop["registered_from"])).all()
    # re-admissions cluster in the 30 days after a discharge
    gap = (nxt - ordered["discharged_on"]).dt.days.dropna()
    assert (gap <= 30).mean() > 2 * (gap.between(31, 61)).mean()


def test_truth_matches_files(small_world) -> None:
    w = small_world
    sp = w.frames["hospital_spells"]
    em = sp[sp["admission_method"].isin(EMERGENCY_METHODS)]
    counts = w.truth["counts"]
    assert len(em) == counts["emergency_admissions_total"]
    by_year = em.groupby(em["admitted_on"].dt.year).size()
    assert {str(k): int(v) for k, v in by_year.items()} == {
        k: v for k, v in counts["emergency_admissions_by_year"].items() if v
    }
    prs = w.frames["practices"]
    window = w.truth["window"]
    months = pd.date_range(window["start"], window["end"], freq="MS")
    start = pd.to_datetime(prs["mdg_start_date"])
    exposed = sum(int((months >= s).sum()) for s in start.dropna())
    assert exposed == counts["exposed_practice_months"]
    # exposed 65+ person-months recomputed from the registration spells
    pop = w.frames["population"].merge(prs[["practice_code", "mdg_start_date"]], on="practice_code")
    total = 0
    for m in months:
        on = (pop["registered_from"] <= m) & (
            pop["registered_to"].isna() | (pop["registered_to"] >= m)
        )
        on &= (m.year - pop["birth_year"] >= 65) & (pop["mdg_start_date"] <= m)
        total += int(on.sum())
    assert total == counts["exposed_person_months_65plus"]


def _exposed_emergency(w) -> int:
    """Emergency admissions of registered 65+ in exposed practice-months, from the files."""
    sp = w.frames["hospital_spells"]
    sp = sp[sp["admission_method"].isin(EMERGENCY_METHODS)].copy()
    sp["month"] = sp["admitted_on"].dt.to_period("M").dt.to_timestamp()
    pop = w.frames["population"].merge(w.frames["practices"], on="practice_code")
    m = sp.merge(pop, on="person_id")
    on = (m["registered_from"] <= m["month"]) & (
        m["registered_to"].isna() | (m["registered_to"] >= m["month"])
    )
    on &= (m["month"].dt.year - m["birth_year"] >= 65) & (m["mdg_start_date"] <= m["month"])
    return int(on.sum())


@pytest.fixture(scope="module")
def small_null(tmp_path_factory: pytest.TempPathFactory):
    """The small world with the null scenario's effects (every effect switched off)."""
    null = yaml.safe_load((SCENARIOS / "null.yml").read_text())
    spec = tmp_path_factory.mktemp("null") / "small_null.yml"
    spec.write_text(
        yaml.safe_dump({"extends": "small", "name": "small_null", "effects": null["effects"]})
    )
    return simulate_world(spec, 7)


def test_null_scenario_switches_every_effect_off() -> None:
    null, default = load_scenario("null"), load_scenario("default")
    assert {k: v for k, v in null.items() if k not in ("effects", "name")} == {
        k: v for k, v in default.items() if k not in ("effects", "name")
    }

    def leaves(d: dict) -> list[tuple[str, float]]:
        out = []
        for k, v in d.items():
            out += leaves(v) if isinstance(v, dict) else [(k, v)]
        return out

    for key, value in leaves(null["effects"]):
        if key == "mdg_ramp_months":
            continue
        assert value == (1.0 if key.endswith("_rr") or "_rr_" in key else 0.0), key


def test_practice_att_recomputed_from_counterfactual(small_world, small_null) -> None:
    """The null world is the counterfactual: observed minus null reproduces the truth ATT."""
    obs, cf = small_world, small_null
    assert obs.frames["population"].equals(cf.frames["population"])
    counts = obs.truth["counts"]
    att = obs.truth["effects"]["mdg_practice_att_em_per_1000"]["value"]
    diff = _exposed_emergency(obs) - _exposed_emergency(cf)
    assert diff < 0
    assert diff == pytest.approx(att * counts["exposed_person_months_65plus"] / 1000, abs=1e-6)


def test_null_world_has_zero_realised_effects(small_null) -> None:
    for name, eff in small_null.truth["effects"].items():
        value = eff["value"]
        if name == "twic_acceptance_rate":
            continue
        if name.startswith("mdg_individual_emergency_rr_curve"):
            assert all(v["rate_ratio"] == pytest.approx(1.0) for v in value), name
        elif isinstance(value, list):
            for v in value:
                assert v["difference_per_1000"] == pytest.approx(0.0) and v["ratio"] == 1.0
        elif name.endswith("_ratio"):
            assert value == pytest.approx(1.0), name
        else:
            assert value == pytest.approx(0.0, abs=1e-12), name


def test_consent_rules(small: Path) -> None:
    rec = _read(small, "recruitment")
    refused = set(rec.loc[rec["consent_linkage"] == 0, "person_id"])
    assert refused
    for name, src in SOURCES.items():
        if src.consent_scope == "records":
            ids = set(_read(small, name)["person_id"])
            assert not ids & refused, name
    rand = _read(small, "coaching_randomisation")
    uptake = _read(small, "coaching_uptake")
    controls = set(rand.loc[rand["arm"] == "control", "person_id"])
    assert not controls & set(uptake["person_id"])
    assert set(uptake["person_id"]) == set(rand.loc[rand["arm"] == "offer", "person_id"])
    trial = set(rec.loc[rec["consent_trials"].astype(int) == 1, "person_id"])
    assert set(rand["person_id"]) <= trial
    calls = _read(small, "contact_centre_calls")
    assert not controls & set(calls.loc[calls["reason"] == "coaching", "person_id"])
    assert rec["withdrawn_on"].notna().any() or len(rec) < 500


def test_truth_json_is_sorted_and_documented(small: Path) -> None:
    text = (small / "truth.json").read_text()
    truth = json.loads(text)
    assert text == json.dumps(truth, indent=2, sort_keys=True) + "\n"
    assert truth["parameters"]["name"] == truth["scenario"] == "small"
    for eff in truth["effects"].values():
        assert set(eff) >= {"value", "scale", "unit", "population", "description"}
    assert re.search(r"at least 6", truth["definitions"]["scoring"]["pacic"])


@pytest.mark.slow
def test_gm_scale_world(tmp_path: Path) -> None:
    """Greater-Manchester scale: millions of people, tens of millions of record rows."""
    summary = generate_world("gm", 1, tmp_path)
    files = summary["files"]
    assert len(_read(tmp_path, "practices")) > 400
    assert sum(v for k, v in files.items() if k.startswith("records/")) > 20_000_000
    assert files["records/population.parquet"] > 2_500_000


# ---------------------------------------------------------------------------- other scenarios

ALL_SCENARIOS = sorted(p.stem for p in SCENARIOS.glob("*.yml"))


def _neighbourhoods(scn: dict) -> set[str]:
    return {hood for entry in scn["rollout"] for hood in entry["practices"]}


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_every_scenario_loads_and_fits_together(name: str) -> None:
    """Each scenario loads, and its dates and geography pass the generator's checks (the
    practice table is built, the simulation is not run: gm and mid are big)."""
    scn = load_scenario(name)
    assert scn["name"] == name
    tl = Timeline(to_month(scn["calendar"]["start"]), to_month(scn["calendar"]["end"]))
    check_scenario(scn, tl, build_practices(scn, tl, np.random.default_rng(0)))
    assert set(UNIT_COST_ITEMS) <= {row["item"] for row in scn["unit_costs"]}
    codes = {a["code"] for a in scn["comparators"]["areas"]}
    assert scn["comparators"]["study_area"] in codes


def test_check_scenario_names_what_does_not_fit(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text(
        yaml.safe_dump({"extends": "symphony", "name": "bad", "twic": {"followup_wave": 4}})
    )
    with pytest.raises(ValueError, match=r"scenario 'bad': twic.baseline_wave/followup_wave.*3/5"):
        simulate_world(spec, 1)
    spec.write_text(
        yaml.safe_dump(
            {"extends": "symphony", "name": "bad", "comparators": {"study_area": "E08000006"}}
        )
    )
    with pytest.raises(ValueError, match=r"comparators.study_area E08000006"):
        simulate_world(spec, 1)


@pytest.fixture(scope="module")
def symphony(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("symphony")
    began = time.perf_counter()
    summary = generate_world("symphony", 1, out)
    return out, summary, time.perf_counter() - began


def test_symphony_generates_fast(symphony) -> None:
    out, summary, seconds = symphony
    assert seconds < 30, f"symphony took {seconds:.1f} s"
    pop = pd.read_csv(out / "reference" / "practice_population.csv")
    first = pop[(pop["age_band"] != "0-64") & (pop["month"] == pop["month"].min())]
    assert 6_000 <= first["registered"].sum() <= 9_000  # sized so every protocol fits
    assert 16 <= len(_read(out, "practices")) <= 20


@pytest.mark.parametrize("name", list(SOURCES))
def test_symphony_file_conforms_to_contract(symphony, name: str) -> None:
    _check_conforms(symphony[0], name)


def test_symphony_geography_is_its_own(symphony) -> None:
    out = symphony[0]
    prs = _read(out, "practices")
    assert "mdg" in prs.columns
    hoods = set(prs["neighbourhood"])
    assert len(hoods) == 5
    assert not hoods & _neighbourhoods(load_scenario("default"))
    mdg = prs["mdg"].where(prs["mdg"] != "", prs["neighbourhood"])
    # one MDG shared by two neighbourhoods, five neighbourhoods in four MDGs
    assert mdg.nunique() == 4
    assert (prs.groupby(mdg)["neighbourhood"].nunique() == 2).sum() == 1
    starts = prs["mdg_start_date"].replace("", None)
    assert set(starts.dropna()) == {"2016-10-01", "2017-10-01"}
    by_hood = starts.notna().groupby(prs["neighbourhood"])
    assert (by_hood.sum() == 0).sum() == 1  # one neighbourhood never takes part
    assert ((by_hood.sum() > 0) & (by_hood.sum() < by_hood.size())).any()  # never-treated
    assert not prs["practice_name"].str.contains("Care Home").any()
    area = _read(out, "study_area")
    codes = set(_read(out, "area_month_indicators")["area_code"])
    assert len(area) == 1 and area["area_code"].iloc[0] in codes
    assert area["area_code"].iloc[0] != "E08000006"
    assert len(codes) == 8
    assets = set(_read(out, "community_assets")["neighbourhood"])
    assert assets == hoods
    truth = json.loads((out / "truth.json").read_text())
    effect = truth["effects"]["comparator_salford_att_emergency_ratio"]
    assert effect["area_code"] == area["area_code"].iloc[0]
    assert area["area_name"].iloc[0] in effect["population"]


def test_symphony_records_window(symphony) -> None:
    """Every dated record falls in 2015-04..2021-03, and the busiest files span it."""
    out = symphony[0]
    lo, hi = pd.Timestamp("2015-04-01"), pd.Timestamp("2021-03-31")
    for name, src in SOURCES.items():
        if src.folder != "records":
            continue
        df = _read(out, name)
        for col in src.columns:
            if col.dtype != "date" or col.name == "registered_from":
                continue
            d = pd.to_datetime(df[col.name]).dropna()
            assert d.between(lo, hi).all(), f"{name}.{col.name}"
    for name, col in (("hospital_spells", "admitted_on"), ("gp_contacts", "contact_on")):
        months = pd.to_datetime(_read(out, name)[col]).dt.to_period("M")
        assert (str(months.min()), str(months.max())) == ("2015-04", "2021-03"), name
    pp = pd.to_datetime(_read(out, "practice_population")["month"])
    assert (pp.min(), pp.max()) == (lo, pd.Timestamp("2021-03-01"))


def test_symphony_waves_and_trial_dates(symphony) -> None:
    """Five waves; the trial's baseline and follow-up waves follow from the written dates by
    the warehouse's rule: baseline = the last wave whose first questionnaire was returned
    before the earliest randomisation date; follow-up = the wave whose first-return month is
    closest to 12 months after the earliest randomisation month."""
    out = symphony[0]
    files = sorted((out / "cohort").glob("survey_wave_*.sav"))
    assert [p.name for p in files] == [f"survey_wave_{w:02d}.sav" for w in range(1, 6)]
    first_return = {}
    for path in files:
        df, _ = pyreadstat.read_sav(str(path))
        assert df["wave"].nunique() == 1
        first_return[int(df["wave"].iloc[0])] = pd.Timestamp(df["returned_on"].min())
    rand = pd.to_datetime(_read(out, "coaching_randomisation")["randomised_on"]).min()
    baseline = max(w for w, d in first_return.items() if d < rand)
    target = rand.to_period("M") + 12
    dist = {w: abs((d.to_period("M") - target).n) for w, d in first_return.items()}
    best = min(dist.values())
    assert list(dist.values()).count(best) == 1
    followup = min(dist, key=dist.get)
    assert (baseline, followup) == (3, 5)
    truth = json.loads((out / "truth.json").read_text())
    tw = truth["parameters"]["twic"]
    assert (tw["baseline_wave"], tw["followup_wave"]) == (baseline, followup)
    rec = _read(out, "recruitment")
    assert pd.to_datetime(rec["recruited_on"]).min() < first_return[1]


def test_symphony_truth_has_every_effect_of_default(symphony, small: Path) -> None:
    """The same truth keys whatever the scenario (the protocols refer to them)."""
    truth = json.loads((symphony[0] / "truth.json").read_text())
    reference = json.loads((small / "truth.json").read_text())
    assert set(truth["effects"]) == set(reference["effects"])
    assert set(truth["counts"]) == set(reference["counts"])
    assert truth["window"] == {"start": "2015-04-01", "end": "2021-03-01"}
    assert set(truth["counts"]["emergency_admissions_by_year"]) == {
        str(y) for y in range(2015, 2022)
    }


def test_default_practices_carry_their_mdg(small: Path) -> None:
    prs = _read(small, "practices")
    mdg = dict(zip(prs["practice_name"], prs["mdg"], strict=True))
    assert mdg["Care Homes Medical Practice"] == "Care Homes Practice"
    shared = prs[prs["neighbourhood"].isin(["Little Hulton & Walkden", "Worsley & Boothstown"])]
    assert set(shared["mdg"]) == {"Little Hulton + Walkden and Worsley & Boothstown"}
    assert set(prs.loc[prs["neighbourhood"] == "Eccles", "mdg"]) == {"", "Care Homes Practice"}
    assert _read(small, "study_area").to_dict("records") == [
        {"area_code": "E08000006", "area_name": "Salford"}
    ]


def test_area_indicators_and_unit_costs_cover_the_contract(small_world) -> None:
    assert set(small_world.frames["area_month_indicators"]["indicator"]) == set(AREA_INDICATORS)
    assert set(UNIT_COST_ITEMS) <= set(small_world.frames["unit_costs"]["item"])


def _code_literals(path: Path) -> list[object]:
    """Every constant in a module's code: docstrings (a string statement on its own, first in
    a module, class or function) and comments are left out, as they describe rather than
    decide."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("module", sorted(p.name for p in SYNTH.glob("*.py")))
def test_no_site_fact_in_generator_code(module: str) -> None:
    """Salford's geography and calendar live in scenarios/*.yml, not in sicp/synth. The check
    on the name is case-sensitive: the truth keys ``comparator_salford_att_*``, which the
    protocols refer to, are identifiers kept for every scenario, not a fact of the site."""
    for value in _code_literals(SYNTH / module):
        if isinstance(value, str):
            assert "E08000006" not in value and "Salford" not in value, (module, value)
            assert not re.search(r"(?<!\d)(2012|2019)(?!\d)", value), (module, value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            assert value not in (2012, 2019), (module, value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["null", "mc", "mc_null", "mc_ch5"])
def test_default_sized_scenarios_generate(name: str) -> None:
    world = simulate_world(name, 2)
    assert world.truth["scenario"] == name
    assert len(world.frames["study_area"]) == 1
