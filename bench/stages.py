"""One pipeline stage, run in a child process so its peak memory can be measured on its own.

``python -m bench.stages STAGE ROOT --result FILE [--scenario S] [--seed N] [--protocol ID]``
runs the stage against the world under ROOT (laid out as in tests/test_pipeline.py) and writes
to FILE the seconds of the work itself (imports excluded) and the rows the stage processed;
stages whose work is not a row count of their own write null and :func:`rows_after` counts
them in the parent (dbt keeps its DuckDB connection open until the process ends).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from sicp.settings import PROJECT_ROOT, Paths

#: Schemas dbt materialises as tables (staging and data_quality are views).
DBT_TABLE_SCHEMAS = ("intermediate", "marts")


def world_paths(root: Path) -> Paths:
    """The layout of one benchmark world: input files, warehouse, results, reports."""
    return Paths(
        input_dir=root / "raw",
        warehouse=root / "warehouse.duckdb",
        results_dir=root / "results",
        reports_dir=root / "reports",
        protocols_dir=PROJECT_ROOT / "protocols",
        dbt_dir=PROJECT_ROOT / "dbt",
    )


def _table_rows(warehouse: Path, schemas: tuple[str, ...]) -> int:
    """Rows in every base table of ``schemas`` (what a dbt build wrote)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema IN "
            f"({', '.join('?' for _ in schemas)})",
            list(schemas),
        ).fetchall()
        return sum(
            int(con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]) for s, t in tables
        )


def generate(paths: Paths, scenario: str, seed: int, protocol: str | None) -> int:
    """Rows here are the person-months simulated, the generator's unit of work: every person
    is simulated month by month whatever records result, and the gm world's younger people
    have far fewer records each (the rows written are ingest's rows)."""
    from dagster_project.pipeline import fresh_synthetic_folder
    from sicp.synth import generate_world

    fresh_synthetic_folder(paths.input_dir)
    return int(generate_world(scenario, seed, paths.input_dir)["simulated_person_months"])


def ingest(paths: Paths, scenario: str, seed: int, protocol: str | None) -> int:
    from sicp.ingest import ingest_all

    # A fresh warehouse each repetition, so every run does the same work.
    paths.warehouse.unlink(missing_ok=True)
    report = ingest_all(paths.input_dir, paths.warehouse)
    return sum(s.rows_read for s in report.sources)


def dbt_build(paths: Paths, scenario: str, seed: int, protocol: str | None) -> None:
    from sicp.warehouse import dbt_build as build

    if build(paths) != 0:
        raise RuntimeError("dbt build failed; see the log above")


def run_one_protocol(paths: Paths, scenario: str, seed: int, protocol: str | None) -> None:
    from analysis.runner import run_all_protocols

    if protocol is None:
        raise ValueError("the protocol stage needs --protocol")
    run_all_protocols(paths, only=[protocol])


def reports(paths: Paths, scenario: str, seed: int, protocol: str | None) -> None:
    from sicp.reports import render_all

    if paths.reports_dir.exists():
        shutil.rmtree(paths.reports_dir)
    render_all(paths)


def end_to_end(paths: Paths, scenario: str, seed: int, protocol: str | None) -> None:
    """What ``make demo`` runs after install (``sicp demo``): generate, one Dagster run of
    ingest, dbt build and every protocol, the exports and both reports in HTML and PDF."""
    from dagster_project.pipeline import run_demo

    run_demo(paths, scenario=scenario, seed=seed)


def rows_after(stage: str, paths: Paths, protocol: str | None) -> int:
    """Rows a stage processed, counted by the parent once the child has closed the warehouse."""
    if stage == "dbt_build":
        return _table_rows(paths.warehouse, DBT_TABLE_SCHEMAS)
    if stage == "end_to_end":
        return _table_rows(paths.warehouse, ("raw",))
    if stage == "protocol":
        from analysis.protocol import load_protocols

        panel = next(p.panel for p in load_protocols(paths.protocols_dir) if p.id == protocol)
        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            return int(con.execute(f'SELECT count(*) FROM marts."{panel}"').fetchone()[0])
    if stage == "reports":
        from analysis.store import read_results

        return len(read_results(paths.results_dir))
    raise ValueError(stage)


STAGES: dict[str, Callable[[Paths, str, int, str | None], int | None]] = {
    "generate": generate,
    "ingest": ingest,
    "dbt_build": dbt_build,
    "protocol": run_one_protocol,
    "reports": reports,
    "end_to_end": end_to_end,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("root", type=Path)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--protocol")
    parser.add_argument("--result", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    paths = world_paths(args.root.resolve())
    started = time.perf_counter()
    rows = STAGES[args.stage](paths, args.scenario, args.seed, args.protocol)
    seconds = time.perf_counter() - started
    args.result.write_text(json.dumps({"seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
