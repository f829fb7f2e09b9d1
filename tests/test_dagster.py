"""The Dagster code location: definitions load, ingest assets materialise with metadata and
checks, failures name the file, the survey sensor fires on new waves, and warehouse writers
never collide under the multiprocess executor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from dagster_project.assets.dbt import sicp_dbt_assets
from dagster_project.assets.ingest import INGEST_ASSETS, LOSS_CHECK, RECONCILE_CHECK, raw_key
from dagster_project.assets.protocols import GROUP as RESULTS_GROUP
from dagster_project.definitions import build_definitions, defs
from dagster_project.resources import WAREHOUSE_POOL, Folder, Warehouse
from dagster_project.sensors import new_survey_wave
from sicp.contract import RAW, SOURCES
from sicp.settings import Paths
from sicp.warehouse import DBT_TARGET_ENV, dbt_args
from tests.ingest_helpers import tw

INSTANCE_YAML = Path(__file__).parents[1] / "dagster_project" / "dagster.yaml"


def resources(raw: Path, warehouse: Path) -> dict[str, object]:
    return {"input_folder": Folder(path=str(raw)), "warehouse": Warehouse(path=str(warehouse))}


def test_definitions_load_with_every_source_and_dbt_wired_to_raw():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert {raw_key(name) for name in SOURCES} <= keys
    raw_tables = {raw_key(t) for t in (RAW.quarantine, RAW.ingest_log, RAW.value_labels,
                                        RAW.variable_labels, RAW.missing_reasons,
                                        RAW.consent_exclusions, RAW.input_fingerprint)}
    assert raw_tables <= keys
    # Every raw table a dbt model reads is produced by an ingest asset (none is external).
    ingest_keys = {k for a in INGEST_ASSETS for k in a.keys}
    dbt_upstream = {d for k in sicp_dbt_assets.keys for d in graph.get(k).parent_keys
                    if d.path[0] == RAW.schema}
    assert dbt_upstream and dbt_upstream <= ingest_keys
    # Every asset that writes the warehouse shares the single-writer pool.
    for assets_def in [*INGEST_ASSETS, sicp_dbt_assets]:
        assert assets_def.op.pool == WAREHOUSE_POOL, assets_def.op.name
    assert yaml.safe_load(INSTANCE_YAML.read_text())["concurrency"]["pools"]["default_limit"] == 1


def test_dbt_target_follows_the_environment_in_dagster_and_the_cli(tmp_path, monkeypatch):
    """SICP_DBT_TARGET points both the Dagster dbt resource and `sicp build` at another
    profile output (a cluster); unset, dbt uses the profile's default (DuckDB)."""
    paths = Paths.from_env()
    monkeypatch.delenv(DBT_TARGET_ENV, raising=False)
    assert build_definitions(paths).resources["dbt"].target is None
    assert "--target" not in dbt_args(paths, "build")
    monkeypatch.setenv(DBT_TARGET_ENV, "spark")
    assert build_definitions(paths).resources["dbt"].target == "spark"
    args = dbt_args(paths, "build", "--select", "int_months")
    assert args[args.index("--target") + 1] == "spark" and args[-2:] == ["--select", "int_months"]


def test_ingest_assets_materialise_with_metadata_and_checks(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    frames = tw.build(raw)
    result = dg.materialize(INGEST_ASSETS, resources=resources(raw, wh))
    assert result.success
    metadata = {e.asset_key: e.materialization.metadata
                for e in result.get_asset_materialization_events()}
    recruitment = metadata[raw_key("recruitment")]
    assert recruitment["rows_read"].value == len(frames["recruitment"])
    assert recruitment["rows_loaded"].value == len(frames["recruitment"])
    assert recruitment["rows_quarantined"].value == 0
    assert recruitment["dagster/row_count"].value == len(frames["recruitment"])
    assert metadata[raw_key("survey_wave")]["rows_loaded"].value == sum(
        len(frames[f"survey_wave_{w:02d}"]) for w in tw.WAVES)
    with duckdb.connect(str(wh), read_only=True) as con:
        (fingerprint, n_files), = con.execute("SELECT * FROM raw.input_fingerprint").fetchall()
    assert metadata[raw_key(RAW.input_fingerprint)]["fingerprint"].value == fingerprint
    assert n_files == len(frames)
    checks = {(e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        **{(raw_key(name), RECONCILE_CHECK): True for name in SOURCES},
        **{(raw_key(name), LOSS_CHECK): True for name in SOURCES},
        (raw_key(RAW.input_fingerprint), "matches_input_folder"): True,
    }


def test_quarantined_rows_show_in_metadata_and_a_broken_file_fails_its_asset(tmp_path):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    deaths = tw.frames()["deaths"]
    deaths.loc[2, "place_of_death"] = "garden"
    tw.build(raw, edit={"deaths": deaths})
    tw.path_for(raw, "unit_costs").write_bytes(b"")
    result = dg.materialize(INGEST_ASSETS, resources=resources(raw, wh), raise_on_error=False)
    assert not result.success
    failures = {e.step_key: e.event_specific_data.error.message for e in result.all_events
                if e.is_step_failure}
    assert set(failures) == {"raw_unit_costs"}
    assert "programme/unit_costs.csv: the file is empty (0 bytes)" in failures["raw_unit_costs"]
    meta = {e.asset_key: e.materialization.metadata
            for e in result.get_asset_materialization_events()}[raw_key("deaths")]
    assert (meta["rows_read"].value, meta["rows_loaded"].value,
            meta["rows_quarantined"].value) == (6, 5, 1)
    assert "value not in the allowed set" in meta["quarantine"].value
    checks = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    loss = checks[(raw_key("deaths"), LOSS_CHECK)]
    assert not loss.passed and "16.7%" in loss.metadata["finding"].value
    assert checks[(raw_key("hospital_spells"), LOSS_CHECK)].passed


def test_sensor_requests_a_survey_refresh_when_a_new_wave_arrives(tmp_path):
    raw = tmp_path / "raw"
    frames = tw.build(raw)
    context = dg.build_sensor_context(resources={"input_folder": Folder(path=str(raw))})
    first = new_survey_wave(context)
    assert isinstance(first, dg.RunRequest)
    assert isinstance(new_survey_wave(context), dg.SkipReason)   # nothing new since
    tw.write(frames["survey_wave_02"].assign(wave=3), raw / "cohort" / "survey_wave_03.sav",
             SOURCES["survey_wave"])
    request = new_survey_wave(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["sicp/survey_files_changed"] == "cohort/survey_wave_03.sav"
    assert request.run_key != first.run_key
    assert isinstance(new_survey_wave(context), dg.SkipReason)
    target = new_survey_wave.job.selection.resolve(defs.resolve_asset_graph())
    assert raw_key("survey_wave") in target
    assert any(k.path[0] == "staging" for k in target)   # and what depends on it
    assert raw_key("recruitment") not in target


# --- single writer under the multiprocess executor ---------------------------------------


#: Enough writers that, without the pool, several would run at once (max_concurrent 4).
_WRITERS = ("practices", "recruitment", "survey_wave", "deaths", "risk_scores")


def _multiprocess_job() -> dg.JobDefinition:
    """Rebuilt in each step's process from SICP_INPUT_DIR / SICP_WAREHOUSE (set by the test)."""
    selection = dg.AssetSelection.assets(*(a for a in INGEST_ASSETS
                                           if a.op.name in {f"raw_{n}" for n in _WRITERS}))
    return _job_with_multiprocess_executor("multiprocess_ingest", selection)


def _job_with_multiprocess_executor(name: str, selection: dg.AssetSelection) -> dg.JobDefinition:
    job = dg.define_asset_job(name, selection=selection, executor_def=_MULTIPROCESS)
    definitions = build_definitions(Paths.from_env())
    return dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def(name)


_MULTIPROCESS = dg.multiprocess_executor.configured({
    "max_concurrent": 4,
    "start_method": {"forkserver": {"preload_modules": ["dagster_project.definitions"]}},
})


def test_multiprocess_run_never_has_two_warehouse_writers_at_once(tmp_path, monkeypatch):
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    tw.build(raw)
    monkeypatch.setenv("SICP_INPUT_DIR", str(raw))
    monkeypatch.setenv("SICP_WAREHOUSE", str(wh))
    overrides = yaml.safe_load(INSTANCE_YAML.read_text())
    with dg.instance_for_test(overrides=overrides) as instance:
        result = dg.execute_job(dg.reconstructable(_multiprocess_job), instance=instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        spans: dict[str, list[float]] = {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                spans.setdefault(event.step_key, []).append(record.timestamp)
    assert set(spans) == {f"raw_{n}" for n in _WRITERS}
    intervals = sorted((start, end) for start, end in spans.values())
    for (_, end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert next_start >= end, "two warehouse writers ran at the same time"
    with duckdb.connect(str(wh), read_only=True) as con:
        logged = con.execute("SELECT DISTINCT source_name FROM raw.ingest_log").fetchall()
    assert {n for (n,) in logged} == set(_WRITERS)


@pytest.mark.slow
def test_everything_materialises_under_the_multiprocess_executor(tmp_path, monkeypatch):
    """Ingest and every dbt model on the small synthetic world, multiprocess, pool limit 1."""
    from sicp.synth import generate_world

    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    generate_world("small", 3, raw)
    monkeypatch.setenv("SICP_INPUT_DIR", str(raw))
    monkeypatch.setenv("SICP_WAREHOUSE", str(wh))
    monkeypatch.setenv("SICP_RESULTS_DIR", str(tmp_path / "results"))
    overrides = yaml.safe_load(INSTANCE_YAML.read_text())
    with dg.instance_for_test(overrides=overrides) as instance:
        result = dg.execute_job(dg.reconstructable(_multiprocess_everything_job), instance=instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]


def _multiprocess_everything_job() -> dg.JobDefinition:
    """Every asset that ingest and dbt own; the protocol (results) assets are tested with the
    estimators."""
    selection = dg.AssetSelection.all() - dg.AssetSelection.groups(RESULTS_GROUP)
    return _job_with_multiprocess_executor("multiprocess_everything", selection)
