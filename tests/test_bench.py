"""The benchmark harness (bench/run.py) on the small world, and its target arithmetic."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import duckdb
import yaml

from bench.run import Measurement, growth_exponents, main, merge, targets
from sicp import warehouse
from sicp.settings import PROJECT_ROOT


def _m(scenario: str, stage: str, seconds: float, rows: int, peak: int = 10**9) -> Measurement:
    return Measurement(scenario, stage, 1, seconds, seconds, seconds, peak, rows, 0.0)


def test_growth_exponent_is_one_for_linear_and_two_for_quadratic_stages() -> None:
    rows = [
        _m("default", "lin", 2.0, 1_000),
        _m("gm", "lin", 200.0, 100_000),
        _m("default", "quad", 1.0, 1_000),
        _m("gm", "quad", 10_000.0, 100_000),
        _m("default", "fixed", 1.0, 992),
        _m("gm", "fixed", 3.0, 995),
    ]
    exps = growth_exponents(rows)
    assert abs(exps["lin"] - 1.0) < 1e-12
    assert abs(exps["quad"] - 2.0) < 1e-12
    assert "fixed" not in exps  # the same panel at every scale: no growth to measure
    verdict = {t: ok for t, _, ok in targets(rows)}
    assert verdict["no stage super-linear in rows"] is False


def test_targets_read_the_default_end_to_end_and_the_gm_ingest_and_dbt_stages() -> None:
    rows = [
        _m("default", "generate", 100.0, 10),
        _m("default", "ingest", 150.0, 10),
        _m("default", "dbt_build", 60.0, 10),
        _m("default", "end_to_end", 310.0, 10),
        _m("gm", "ingest", 400.0, 1000, peak=5 * 10**9),
        _m("gm", "dbt_build", 400.0, 1000, peak=13 * 10**9),
    ]
    verdict = {t: (value, ok) for t, value, ok in targets(rows)}
    assert verdict["default world end to end (`sicp demo`, one process) < 5 min"] == (
        "310 s",
        False,
    )
    assert verdict["gm ingest + dbt build < 15 min"] == ("800 s", True)
    assert verdict["gm ingest/dbt peak RSS < 12 GB"][1] is False


def test_merge_replaces_remeasured_stages_in_place_and_appends_new_ones() -> None:
    earlier = [
        _m("default", "ingest", 1.0, 10),
        _m("default", "dbt_build", 2.0, 10),
        _m("mid", "ingest", 3.0, 100),
    ]
    new = [_m("default", "dbt_build", 5.0, 10), _m("gm", "ingest", 7.0, 1000)]
    merged = merge(earlier, new)
    assert [(m.scenario, m.stage, m.seconds) for m in merged] == [
        ("default", "ingest", 1.0),
        ("default", "dbt_build", 5.0),
        ("mid", "ingest", 3.0),
        ("gm", "ingest", 7.0),
    ]


def test_bench_measures_generate_and_ingest_on_the_small_world(tmp_path) -> None:
    out, table = tmp_path / "bench.md", tmp_path / "bench.csv"
    rows = main(
        [
            "--scenarios",
            "small",
            "--stages",
            "generate",
            "ingest",
            "--repeats",
            "2",
            "--short",
            "1e9",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--csv",
            str(table),
            "--estimators-csv",
            str(tmp_path / "none.csv"),
        ]
    )
    assert [m.stage for m in rows] == ["generate", "ingest"]
    for m in rows:
        assert m.runs == 2 and m.seconds_min <= m.seconds <= m.seconds_max
        assert m.peak_rss_bytes > 50 * 2**20  # a Python process with pandas and DuckDB loaded
    # generate counts the person-months it simulated: a 96-month history (2012-2019) for each
    # person simulated, at least everyone in the population file; ingest counts rows read
    population = tmp_path / "work" / "small" / "raw" / "records" / "population.parquet"
    people = duckdb.execute(
        "SELECT count(DISTINCT person_id) FROM read_parquet(?)", [str(population)]
    ).fetchone()[0]
    assert rows[0].rows % 96 == 0 and rows[0].rows >= 96 * people > 96 * 1_000
    assert rows[1].rows > 100_000
    with table.open() as fh:
        assert [r["stage"] for r in csv.DictReader(fh)] == ["generate", "ingest"]
    text = out.read_text()
    assert "| generate |" in text and "| default world end to end" not in text


def test_dbt_profile_uses_the_writer_settings_of_sicp_warehouse() -> None:
    """profiles.yml restates duckdb_config's defaults (YAML cannot import them): keep them equal."""
    profile = yaml.safe_load((PROJECT_ROOT / "dbt" / "profiles.yml").read_text())
    settings = profile["sicp"]["outputs"]["dev"]["config_options"]
    expected = {
        "memory_limit": (warehouse.MEMORY_LIMIT_ENV, warehouse.DEFAULT_MEMORY_LIMIT),
        "threads": (warehouse.THREADS_ENV, warehouse.DEFAULT_THREADS),
    }
    for name, (env, default) in expected.items():
        assert re.fullmatch(rf"\{{\{{ env_var\('{env}', '{default}'\) \}}\}}", settings[name]), name
    assert warehouse.TEMP_DIR_ENV in settings["temp_directory"]
    assert "~ '.tmp'" in settings["temp_directory"]


def test_writer_settings_reach_duckdb_and_follow_the_environment(
    tmp_path: Path, monkeypatch
) -> None:
    wh = tmp_path / "w.duckdb"
    monkeypatch.delenv(warehouse.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setenv(warehouse.THREADS_ENV, "1")
    with duckdb.connect(str(wh), config=warehouse.duckdb_config(wh)) as con:
        limit, threads, temp = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')"
        ).fetchone()
    assert (limit, threads, temp) == ("7.4 GiB", 1, f"{wh}.tmp")  # 8 GB in DuckDB's units
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "1GB")
    monkeypatch.setenv(warehouse.TEMP_DIR_ENV, str(tmp_path / "spill"))
    assert warehouse.duckdb_config(wh) == {
        "memory_limit": "1GB",
        "threads": "1",
        "temp_directory": str(tmp_path / "spill"),
    }
