"""Build marts for a simulated world with the warehouse's own definitions, fast.

The Monte Carlo study (sicp.validate) needs the analysis panels of hundreds of worlds. Running
``sicp ingest`` and ``dbt build`` per world costs about a minute, most of it dbt's own work per
node and the tests; a second implementation of the marts would be quicker but would write every
definition twice. This module replays the project instead:

1. once per study, :func:`compile_project` runs ``dbt seed`` into a template warehouse and
   ``dbt compile`` (so every model's SQL, with its refs, vars and macros resolved, is in the
   manifest);
2. per world, :func:`build_marts` writes the world's files as a delivery would arrive, loads
   the sources the requested marts read with ``sicp.ingest`` itself (the same checks, consent
   ledger and missing-code rules), copies the seeds from the template, runs each compiled model
   upstream of the marts in dependency order as the view or table dbt would make, and reads
   the marts back in the analysis runner's row order.

So the marts are dbt's SQL on ingest's tables; only the tests are not run (the pipeline's own
build runs them). tests/test_dbt_replay.py shows the replayed marts equal a real
``dbt build`` of the same world.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from sicp.dbt_schema import MARTS_LAYER
from sicp.settings import DBT_DIR
from sicp.warehouse import DBT_TARGET_ENV, connect_writer

#: The replayed warehouse's file name: compiled SQL names its catalogue by the file's stem.
WAREHOUSE_FILE = "warehouse.duckdb"


@dataclass(frozen=True)
class CompiledProject:
    """The project's seeds (in ``template``) and compiled models, ready to replay."""

    template: Path
    #: unique_id -> {name, schema, materialized, sql, depends_on} for every model and seed.
    nodes: Mapping[str, Mapping[str, Any]]

    def upstream(self, marts: Sequence[str]) -> list[str]:
        """The models and seeds the marts are built from, each after what it reads."""
        wanted = [f"model.sicp.{m}" for m in marts]
        unknown = [w for w in wanted if w not in self.nodes]
        if unknown:
            raise ValueError(f"no such marts in the dbt project: {unknown}")
        order: list[str] = []
        seen: set[str] = set()

        def visit(uid: str) -> None:
            if uid in seen:
                return
            seen.add(uid)
            for dep in self.nodes[uid]["depends_on"]:
                if dep in self.nodes:
                    visit(dep)
            order.append(uid)

        for uid in wanted:
            visit(uid)
        return order

    def sources(self, marts: Sequence[str]) -> set[str]:
        """The raw tables the marts read (``source.sicp.raw.<table>``)."""
        return {
            dep.rsplit(".", 1)[-1]
            for uid in self.upstream(marts)
            for dep in self.nodes[uid]["depends_on"]
            if dep.startswith("source.")
        }


def _dbt(*args: str, env: Mapping[str, str]) -> None:
    dbt = str(Path(sys.executable).parent / "dbt")
    done = subprocess.run(
        [dbt, *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--quiet"],
        env=dict(env),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise RuntimeError(f"dbt {args[0]} failed:\n{tail}")


def compile_project(work: Path) -> CompiledProject:
    """``dbt seed`` into ``work/template`` and ``dbt compile``; the models' SQL as replayable
    nodes. Uses the DuckDB target whatever ``SICP_DBT_TARGET`` says."""
    template = work / "template" / WAREHOUSE_FILE
    template.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != DBT_TARGET_ENV}
    env |= {
        "SICP_WAREHOUSE": str(template),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    _dbt("seed", env=env)
    _dbt("compile", "--select", "resource_type:model", env=env)
    manifest = json.loads((work / "target" / "manifest.json").read_text(encoding="utf-8"))
    nodes = {
        uid: {
            "name": n["name"],
            "schema": n["schema"],
            "materialized": n["config"]["materialized"],
            "sql": n.get("compiled_code", ""),
            "depends_on": tuple(n["depends_on"].get("nodes", [])),
        }
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] in ("model", "seed")
    }
    missing = [uid for uid, n in nodes.items() if n["materialized"] != "seed" and not n["sql"]]
    if missing:
        raise RuntimeError(f"dbt compile left models without SQL: {missing[:5]}")
    return CompiledProject(template, nodes)


def build_marts(
    project: CompiledProject,
    frames: Mapping[str, pd.DataFrame],
    marts: Sequence[str],
    *,
    workdir: Path | None = None,
) -> dict[str, pd.DataFrame]:
    """The named marts of a world given as its frames (``sicp.synth.simulate_world``)."""
    from sicp.ingest.discovery import scan
    from sicp.ingest.load import ingest_order, ingest_source, referenced_sources
    from sicp.synth.world import write_frames

    with tempfile.TemporaryDirectory(prefix="sicp-replay-", dir=workdir) as tmp:
        raw, warehouse = Path(tmp) / "raw", Path(tmp) / WAREHOUSE_FILE
        needed = loaded_sources(project.sources(marts))
        for source in ingest_order():  # what the needed sources' keys are checked against
            if source.name in needed:
                needed |= referenced_sources(source)
        write_frames({k: v for k, v in frames.items() if k in needed}, raw)
        with connect_writer(warehouse) as con:
            delivery = scan(raw)
            for source in ingest_order():
                if source.name in needed:
                    ingest_source(con, raw, source, delivery=delivery)
            _replay(con, project, project.upstream(marts))
            return {
                m: con.execute(f'SELECT * FROM {MARTS_LAYER}."{m}" ORDER BY ALL').df()
                for m in marts
            }


def loaded_sources(tables: set[str]) -> set[str]:
    """The contract sources to ingest so that the raw ``tables`` hold what a full ingest
    would: a source table itself, and for an ingest bookkeeping table the sources whose load
    writes it (the consent tables come from recruitment; labels from the files that carry
    them, the .sav sources; missing-code reasons from the sources with user-missing codes).
    Without this a mart reading ``raw.consent_exclusions`` but not ``raw.recruitment`` would
    be built with nobody excluded."""
    from sicp.contract import RAW, SOURCES
    from sicp.ingest.load import CONSENT_SOURCE

    writers = {
        RAW.consent_exclusions: {CONSENT_SOURCE},
        RAW.consent_ledger: {CONSENT_SOURCE},
        RAW.value_labels: {n for n, s in SOURCES.items() if "sav" in s.formats},
        RAW.variable_labels: {n for n, s in SOURCES.items() if "sav" in s.formats},
        RAW.missing_reasons: {
            n for n, s in SOURCES.items() if any(c.missing_codes for c in s.columns)
        },
    }
    found = {t for t in tables if t in SOURCES}
    for table in tables - found:
        found |= writers.get(table, set())
    return found


def _replay(con: duckdb.DuckDBPyConnection, project: CompiledProject, order: Sequence[str]) -> None:
    """Seeds copied from the template, then each model as dbt materialises it."""
    con.execute(f"ATTACH '{project.template}' AS seeds (READ_ONLY)")
    try:
        for uid in order:
            node = project.nodes[uid]
            schema, name = node["schema"], node["name"]
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            target = f'"{schema}"."{name}"'
            if node["materialized"] == "seed":
                con.execute(f'CREATE TABLE {target} AS SELECT * FROM seeds."{schema}"."{name}"')
            elif node["materialized"] == "view":
                con.execute(f"CREATE VIEW {target} AS {node['sql']}")
            elif node["materialized"] == "table":
                con.execute(f"CREATE TABLE {target} AS {node['sql']}")
            else:
                raise ValueError(f"{uid}: cannot replay materialisation {node['materialized']!r}")
    finally:
        con.execute("DETACH seeds")
