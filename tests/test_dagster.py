"""The Dagster code location: definitions load, dbt models sit in their layer's group with
every dbt test as an asset check, ingest assets materialise with metadata and checks, failures
name the file, progress lines follow a run's events, the survey sensor fires on new waves (once
switched on), the instance lives beside the warehouse, and warehouse writers never collide
under the multiprocess executor."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from dagster_project.assets.dbt import attach_singular_tests, sicp_dbt_assets
from dagster_project.assets.ingest import INGEST_ASSETS, LOSS_CHECK, RECONCILE_CHECK, raw_key
from dagster_project.assets.protocols import GROUP as RESULTS_GROUP
from dagster_project.definitions import build_definitions, defs
from dagster_project.instance import INSTANCE_YAML, dagster_home, prepare_home, project_instance
from dagster_project.progress import RunProgress, pipeline_stages
from dagster_project.resources import WAREHOUSE_POOL, Folder, Warehouse
from dagster_project.sensors import new_survey_wave
from sicp.contract import RAW, SOURCES
from sicp.settings import DBT_DIR, Paths
from sicp.warehouse import DBT_TARGET_ENV, dbt_args
from tests.ingest_helpers import tw
from tests.worlds import world_paths


def resources(raw: Path, warehouse: Path) -> dict[str, object]:
    return {"input_folder": Folder(path=str(raw)), "warehouse": Warehouse(path=str(warehouse))}


def test_definitions_load_with_every_source_and_dbt_wired_to_raw():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert {raw_key(name) for name in SOURCES} <= keys
    raw_tables = {
        raw_key(t)
        for t in (
            RAW.quarantine,
            RAW.ingest_log,
            RAW.value_labels,
            RAW.variable_labels,
            RAW.missing_reasons,
            RAW.consent_exclusions,
            RAW.input_fingerprint,
        )
    }
    assert raw_tables <= keys
    # Every raw table a dbt model reads is produced by an ingest asset (none is external).
    ingest_keys = {k for a in INGEST_ASSETS for k in a.keys}
    dbt_upstream = {
        d for k in sicp_dbt_assets.keys for d in graph.get(k).parent_keys if d.path[0] == RAW.schema
    }
    assert dbt_upstream and dbt_upstream <= ingest_keys
    # Every asset that writes the warehouse shares the single-writer pool.
    for assets_def in [*INGEST_ASSETS, sicp_dbt_assets]:
        assert assets_def.op.pool == WAREHOUSE_POOL, assets_def.op.name
    assert yaml.safe_load(INSTANCE_YAML.read_text())["concurrency"]["pools"]["default_limit"] == 1


def test_dbt_models_are_grouped_by_layer_and_every_singular_test_is_an_asset_check():
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[dg.AssetKey]] = {}
    for key in sicp_dbt_assets.keys:
        groups.setdefault(graph.get(key).group_name, set()).add(key)
    assert set(groups) == {"staging", "intermediate", "marts", "data_quality", "seeds"}
    for layer in ("staging", "intermediate", "marts", "data_quality"):
        assert {k.path[0] for k in groups[layer]} == {layer}  # the model's schema is its layer
    assert {k.path[0] for k in groups["seeds"]} == {"reference"}
    checks = {spec.name: spec for spec in sicp_dbt_assets.check_specs}
    singular = {path.stem for path in (DBT_DIR / "tests").glob("*.sql")}
    assert len(singular) >= 10 and singular <= set(checks)
    consent = checks["assert_no_withdrawn_person_in_marts"]
    assert consent.asset_key.path[0] == "marts" and consent.blocking
    others = {d.asset_key for d in consent.additional_deps}
    assert raw_key(RAW.consent_exclusions) in others and len(others) >= 6
    assert checks["assert_no_critical_data_quality_findings"].blocking is False  # severity warn


def test_a_singular_test_of_several_models_is_attached_to_the_most_derived_one():
    def node(kind: str, name: str, *deps: str, ref: str | None = None) -> dict:
        meta = {"dagster": {"ref": {"name": ref}}} if ref else {}
        return {
            "resource_type": kind,
            "name": name,
            "package_name": "p",
            "config": {"meta": meta},
            "depends_on": {"nodes": list(deps)},
        }

    manifest = {
        "nodes": {
            "model.p.a": node("model", "a"),
            "model.p.b": node("model", "b", "model.p.a"),
            "model.p.c": node("model", "c"),
            "test.p.t": node("test", "t", "model.p.a", "model.p.b", "source.p.raw.x"),
            "test.p.tie": node("test", "tie", "model.p.c", "model.p.a"),
            "test.p.own": node("test", "own", "model.p.a", "model.p.b", ref="a"),
            "test.p.one": node("test", "one", "model.p.b"),
        },
        "parent_map": {"model.p.a": [], "model.p.b": ["model.p.a"], "model.p.c": []},
    }
    attached = attach_singular_tests(manifest)["nodes"]
    assert attached["test.p.t"]["config"]["meta"]["dagster"]["ref"] == {"name": "b", "package": "p"}
    assert attached["test.p.tie"]["config"]["meta"]["dagster"]["ref"]["name"] == "c"
    for kept in ("test.p.own", "test.p.one", "model.p.b"):  # own ref, one model, not a test
        assert attached[kept] is manifest["nodes"][kept]
    assert manifest["nodes"]["test.p.t"]["config"]["meta"] == {}  # the input is not changed


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
    metadata = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    recruitment = metadata[raw_key("recruitment")]
    assert recruitment["rows_read"].value == len(frames["recruitment"])
    assert recruitment["rows_loaded"].value == len(frames["recruitment"])
    assert recruitment["rows_quarantined"].value == 0
    assert recruitment["dagster/row_count"].value == len(frames["recruitment"])
    assert metadata[raw_key("survey_wave")]["rows_loaded"].value == sum(
        len(frames[f"survey_wave_{w:02d}"]) for w in tw.WAVES
    )
    with duckdb.connect(str(wh), read_only=True) as con:
        ((fingerprint, n_files),) = con.execute("SELECT * FROM raw.input_fingerprint").fetchall()
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
    failures = {
        e.step_key: e.event_specific_data.error.message
        for e in result.all_events
        if e.is_step_failure
    }
    assert set(failures) == {"raw_unit_costs"}
    assert "programme/unit_costs.csv: the file is empty (0 bytes)" in failures["raw_unit_costs"]
    meta = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }[raw_key("deaths")]
    assert (meta["rows_read"].value, meta["rows_loaded"].value, meta["rows_quarantined"].value) == (
        6,
        5,
        1,
    )
    assert "value not in the allowed set" in meta["quarantine"].value
    checks = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    loss = checks[(raw_key("deaths"), LOSS_CHECK)]
    assert not loss.passed and "16.7%" in loss.metadata["finding"].value
    assert checks[(raw_key("hospital_spells"), LOSS_CHECK)].passed


def test_progress_is_one_line_per_stage_counting_sources_rows_checks_and_failures(tmp_path):
    """Two listeners on one run: plain lines, and live ones rewritten in place that end as the
    same lines. The broken file fails its step; the other sources load, and a protocol that
    needs the broken source is not run, which its stage says."""
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    deaths = tw.frames()["deaths"]
    deaths.loc[2, "place_of_death"] = "garden"
    frames = tw.build(raw, edit={"deaths": deaths})
    tw.path_for(raw, "unit_costs").write_bytes(b"")

    @dg.asset(key=[RESULTS_GROUP, "priced"], deps=[raw_key("unit_costs")], group_name=RESULTS_GROUP)
    def priced() -> None:
        raise AssertionError("never runs: its input failed")

    ingest = dg.Definitions(assets=[*INGEST_ASSETS, priced], resources=resources(raw, wh))
    plain, live = io.StringIO(), io.StringIO()
    listeners = [
        RunProgress(pipeline_stages(ingest), plain),
        RunProgress(pipeline_stages(ingest), live, live=True),
    ]
    run_id = str(uuid.uuid4())
    with dg.instance_for_test() as instance:
        for listener in listeners:
            instance.add_event_listener(run_id, listener)
        ingest.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False
        )
    for listener in listeners:
        listener.finish()
    rows = sum(len(f) for name, f in frames.items() if name != "unit_costs") - 1
    n = len(SOURCES)
    assert re.fullmatch(
        rf"ingest     {n - 1}/{n} sources; {rows:,} rows loaded, 1 quarantined; "
        rf"checks 1 failed, {2 * (n - 1) - 1} passed; 1 step failed \(\d+\.\d s\)\n"
        r"protocols  0/1 protocols; not run\n",
        plain.getvalue(),
    ), plain.getvalue()
    assert "\r" in live.getvalue()
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in live.getvalue().split("\n")]
    assert shown == plain.getvalue().split("\n")


def test_a_step_waiting_for_the_warehouse_pool_says_why(tmp_path):
    """A run killed mid-step keeps its slot of the pool: the next run waits for it, and the
    progress says so (here the slot is freed once the message is out, and the run goes on)."""
    raw, wh = tmp_path / "raw", tmp_path / "wh.duckdb"
    tw.build(raw)
    [practices] = [a for a in INGEST_ASSETS if a.op.name == "raw_practices"]
    single = dg.Definitions(assets=[practices], resources=resources(raw, wh))
    out = io.StringIO()
    run_id = str(uuid.uuid4())
    with dg.instance_for_test(overrides=yaml.safe_load(INSTANCE_YAML.read_text())) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(WAREHOUSE_POOL, 1)
        assert storage.claim_concurrency_slot(WAREHOUSE_POOL, "killed-run", "its-step").is_claimed

        def free_once_said(_entry: dg.EventLogEntry) -> None:
            if "waiting" in out.getvalue():
                storage.free_concurrency_slots_for_run("killed-run")

        instance.add_event_listener(run_id, RunProgress(pipeline_stages(single), out))
        instance.add_event_listener(run_id, free_once_said)
        result = single.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, run_id=run_id
        )
    assert result.success
    waiting, done = out.getvalue().splitlines()
    assert waiting.startswith(f"ingest     waiting: another run holds the pool {WAREHOUSE_POOL}")
    assert "Deployment > Concurrency" in waiting
    assert done.startswith("ingest     1/1 sources;")


def test_sensor_requests_a_survey_refresh_when_a_new_wave_arrives(tmp_path):
    assert new_survey_wave.default_status == dg.DefaultSensorStatus.STOPPED  # until switched on
    raw = tmp_path / "raw"
    frames = tw.build(raw)
    context = dg.build_sensor_context(resources={"input_folder": Folder(path=str(raw))})
    first = new_survey_wave(context)
    assert isinstance(first, dg.RunRequest)
    assert isinstance(new_survey_wave(context), dg.SkipReason)  # nothing new since
    tw.write(
        frames["survey_wave_02"].assign(wave=3),
        raw / "cohort" / "survey_wave_03.sav",
        SOURCES["survey_wave"],
    )
    request = new_survey_wave(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["sicp/survey_files_changed"] == "cohort/survey_wave_03.sav"
    assert request.run_key != first.run_key
    assert isinstance(new_survey_wave(context), dg.SkipReason)
    target = new_survey_wave.job.selection.resolve(defs.resolve_asset_graph())
    assert raw_key("survey_wave") in target
    assert any(k.path[0] == "staging" for k in target)  # and what depends on it
    assert raw_key("recruitment") not in target


def test_the_instance_lives_beside_the_warehouse_with_the_project_settings(tmp_path, monkeypatch):
    """Not in the source tree: beside the warehouse, or $DAGSTER_HOME; created with the pool
    limit of dagster.yaml, and a dagster.yaml already there is the site's own and kept."""
    paths = world_paths(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert dagster_home(paths) == tmp_path / "dagster_home"
    with project_instance(paths) as instance:
        assert instance.event_log_storage.get_pool_config().default_pool_limit == 1
    assert (tmp_path / "dagster_home" / "dagster.yaml").read_text() == INSTANCE_YAML.read_text()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "site"))
    assert dagster_home(paths) == tmp_path / "site"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert prepare_home(dagster_home(paths)) == tmp_path / "site"
    assert (tmp_path / "site" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


# --- single writer under the multiprocess executor ---------------------------------------


#: Enough writers that, without the pool, several would run at once (max_concurrent 4).
_WRITERS = ("practices", "recruitment", "survey_wave", "deaths", "risk_scores")


def _multiprocess_job() -> dg.JobDefinition:
    """Rebuilt in each step's process from SICP_INPUT_DIR / SICP_WAREHOUSE (set by the test)."""
    selection = dg.AssetSelection.assets(
        *(a for a in INGEST_ASSETS if a.op.name in {f"raw_{n}" for n in _WRITERS})
    )
    return _job_with_multiprocess_executor("multiprocess_ingest", selection)


def _job_with_multiprocess_executor(name: str, selection: dg.AssetSelection) -> dg.JobDefinition:
    job = dg.define_asset_job(name, selection=selection, executor_def=_MULTIPROCESS)
    definitions = build_definitions(Paths.from_env())
    return dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def(name)


_MULTIPROCESS = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 4,
        "start_method": {"forkserver": {"preload_modules": ["dagster_project.definitions"]}},
    }
)


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
