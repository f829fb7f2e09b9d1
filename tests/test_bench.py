"""The benchmark harness (bench/run.py) on the small world, and its target arithmetic."""

from __future__ import annotations

import csv

from bench.run import Measurement, growth_exponents, main, targets


def _m(scenario: str, stage: str, seconds: float, rows: int, peak: int = 10**9) -> Measurement:
    return Measurement(scenario, stage, 1, seconds, seconds, seconds, peak, rows, 0.0)


def test_growth_exponent_is_one_for_linear_and_two_for_quadratic_stages() -> None:
    rows = [_m("default", "lin", 2.0, 1_000), _m("gm", "lin", 200.0, 100_000),
            _m("default", "quad", 1.0, 1_000), _m("gm", "quad", 10_000.0, 100_000)]
    exps = growth_exponents(rows)
    assert abs(exps["lin"] - 1.0) < 1e-12
    assert abs(exps["quad"] - 2.0) < 1e-12
    verdict = {t: ok for t, _, ok in targets(rows)}
    assert verdict["no stage super-linear in rows"] is False


def test_targets_read_the_default_total_and_the_gm_ingest_and_dbt_stages() -> None:
    rows = [_m("default", "generate", 100.0, 10), _m("default", "ingest", 150.0, 10),
            _m("default", "dbt_build", 60.0, 10),
            _m("gm", "ingest", 400.0, 1000, peak=5 * 10**9),
            _m("gm", "dbt_build", 400.0, 1000, peak=13 * 10**9)]
    verdict = {t: (value, ok) for t, value, ok in targets(rows)}
    assert verdict["default end to end < 5 min"] == ("310 s", False)
    assert verdict["gm ingest + dbt build < 15 min"] == ("800 s", True)
    assert verdict["gm ingest/dbt peak RSS < 12 GB"][1] is False


def test_bench_measures_generate_and_ingest_on_the_small_world(tmp_path) -> None:
    out, table = tmp_path / "bench.md", tmp_path / "bench.csv"
    rows = main(["--scenarios", "small", "--stages", "generate", "ingest", "--repeats", "2",
                 "--short", "1e9", "--workdir", str(tmp_path / "work"), "--out", str(out),
                 "--csv", str(table), "--estimators-csv", str(tmp_path / "none.csv")])
    assert [m.stage for m in rows] == ["generate", "ingest"]
    for m in rows:
        assert m.runs == 2 and m.seconds_min <= m.seconds <= m.seconds_max
        assert m.peak_rss_bytes > 50 * 2**20  # a Python process with pandas and DuckDB loaded
    # ingest reads every row the generator wrote
    assert rows[0].rows == rows[1].rows > 100_000
    with table.open() as fh:
        assert [r["stage"] for r in csv.DictReader(fh)] == ["generate", "ingest"]
    text = out.read_text()
    assert "| generate |" in text and "default end to end" not in text
