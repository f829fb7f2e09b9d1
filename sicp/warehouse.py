"""Run the dbt project against the warehouse from Python (``sicp build``), and the DuckDB
settings every writer of the warehouse uses.

DuckDB's defaults suit an interactive session, not a batch build beside other work: it may use
80% of RAM (18.8 GiB on a 24 GiB machine), which the ``mid`` world's person-month models
exhausted. A writer gets a fixed memory limit instead and spills what does not fit to
a temporary directory next to the warehouse. The same defaults are written in
``dbt/profiles.yml`` (YAML cannot import them); ``tests/test_bench.py`` keeps the two equal.
See docs/scaling.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from sicp.settings import Paths

if TYPE_CHECKING:
    import duckdb

#: Environment variables that override the writer settings (ingest and dbt alike).
MEMORY_LIMIT_ENV = "SICP_DUCKDB_MEMORY_LIMIT"
THREADS_ENV = "SICP_DUCKDB_THREADS"
TEMP_DIR_ENV = "SICP_DUCKDB_TEMP_DIR"
#: Enough for the gm world's largest join with room for the Python process and other work.
DEFAULT_MEMORY_LIMIT = "8GB"
#: Two cores on the reference machine; DuckDB's own default is every core.
DEFAULT_THREADS = "2"


def duckdb_config(warehouse: Path) -> dict[str, str]:
    """Settings for a DuckDB connection that writes ``warehouse``.

    Insertion order stays preserved (DuckDB's default): ``sicp.export`` writes the marts in
    their stored row order, and the memory limit alone keeps the builds within budget.
    """
    return {
        "memory_limit": os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT),
        "threads": os.environ.get(THREADS_ENV, DEFAULT_THREADS),
        "temp_directory": os.environ.get(TEMP_DIR_ENV, f"{warehouse}.tmp"),
    }


class WarehouseInUse(RuntimeError):
    """Another process holds the warehouse file open (DuckDB allows one writing process, and a
    reader's lock keeps writers out too)."""

    def __init__(self, warehouse: Path, pid: int | None) -> None:
        holder = f" (pid {pid})" if pid is not None else ""
        super().__init__(
            f"the warehouse {warehouse} is in use by another process{holder}; "
            f"wait for it to finish and run again"
        )
        self.warehouse = warehouse
        self.pid = pid


_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")


def warehouse_in_use(warehouse: Path, exc: BaseException) -> WarehouseInUse | None:
    """What a DuckDB error opening ``warehouse`` means when another process holds its lock
    (with that process's pid where DuckDB names it); None for any other error."""
    message = str(exc)
    if "lock" not in message.lower():
        return None
    holder = _LOCK_HOLDER.search(message)
    return WarehouseInUse(warehouse, int(holder.group(1)) if holder else None)


@contextmanager
def connect_writer(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writing connection to ``warehouse`` with :func:`duckdb_config`, closed on exit.

    When another process holds the file, :class:`WarehouseInUse` says so (with its pid where
    DuckDB reports it) instead of DuckDB's lock error; nothing has been written then."""
    import duckdb

    try:
        con = duckdb.connect(str(warehouse), config=duckdb_config(warehouse))
    except duckdb.IOException as exc:
        in_use = warehouse_in_use(warehouse, exc)
        if in_use is None:
            raise
        raise in_use from None
    try:
        yield con
    finally:
        with suppress(duckdb.Error):
            con.close()


#: dbt target to build against (a profile output in dbt/profiles.yml, e.g. a Spark or Trino
#: cluster); unset means the profile's default, the DuckDB warehouse. docs/scaling.md.
DBT_TARGET_ENV = "SICP_DBT_TARGET"


def dbt_target() -> str | None:
    return os.environ.get(DBT_TARGET_ENV) or None


def dbt_args(paths: Paths, command: str, *extra: str) -> list[str]:
    target = ["--target", t] if (t := dbt_target()) else []
    return [
        command,
        "--project-dir",
        str(paths.dbt_dir),
        "--profiles-dir",
        str(paths.dbt_dir),
        *target,
        *extra,
    ]


def dbt_build(paths: Paths, select: str | None = None) -> int:
    """``dbt build`` (seeds, models, snapshots, tests), recorded in ``meta.dbt_builds`` and
    reported with the failed nodes by name; returns 0 on success, 1 on failure. dbt's colour
    codes only reach a terminal, never a pipe or a log file."""
    import json
    import sys

    from dbt.cli.main import dbtRunner

    os.environ["SICP_WAREHOUSE"] = str(paths.warehouse)
    extra = ([] if sys.stdout.isatty() else ["--no-use-colors"]) + (
        ["--select", select] if select else []
    )
    target = Path(os.environ.get("DBT_TARGET_PATH", paths.dbt_dir / "target"))
    run_results = target / "run_results.json"
    run_results.unlink(missing_ok=True)
    result = dbtRunner().invoke(dbt_args(paths, "build", *extra))
    if not run_results.exists():
        print(f"dbt build FAILED before running any node: {result.exception}")
        return 1
    summary = record_build(
        paths.warehouse,
        json.loads(run_results.read_text()),
        invoked_by="sicp build" + (f" --select {select}" if select else ""),
    )
    print(report_build(summary))
    return 0 if result.success and summary["success"] else 1


#: Every dbt build of the warehouse, newest last: whether it passed and which nodes failed.
#: ``sicp analyse`` refuses a warehouse whose last build failed (sicp/cli.py).
BUILD_LOG = "meta.dbt_builds"
_FAILED = ("error", "fail", "runtime error")


class BuildError(RuntimeError):
    """The warehouse's last dbt build failed (or none was recorded)."""


def build_summary(run_results: dict) -> dict[str, object]:
    """Counts and failed node names from a dbt ``run_results.json`` (as a dict)."""
    results = run_results.get("results", [])
    failed = sorted(
        r["unique_id"].split(".", 2)[-1] if r["unique_id"].count(".") >= 2 else r["unique_id"]
        for r in results
        if str(r.get("status")).lower() in _FAILED
    )
    skipped = sum(str(r.get("status")).lower() == "skipped" for r in results)
    return {
        "built_at": str(run_results.get("metadata", {}).get("generated_at", "")),
        "success": not failed and not skipped,
        "n_nodes": len(results),
        "n_failed": len(failed),
        "n_skipped": int(skipped),
        "failed_nodes": ", ".join(failed),
    }


def table_exists(con, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists in the connected warehouse."""
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows[0][0])


@contextmanager
def transaction(con) -> Iterator[None]:
    """Everything written in the block commits together or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _scalar(con, sql: str, schema: str, table: str, default: object) -> object:
    if not table_exists(con, schema, table):
        return default
    rows = con.execute(sql).fetchall()  # fetchall: no result left open on a shared connection
    return default if not rows or rows[0][0] is None else rows[0][0]


def inputs_state(con) -> tuple[str, int]:
    """What the warehouse's raw layer holds now: the input fingerprint and the consent
    ledger's latest sequence number (sicp.ingest.consent)."""
    fingerprint = _scalar(
        con, "SELECT fingerprint FROM raw.input_fingerprint", "raw", "input_fingerprint", ""
    )
    consent = _scalar(con, "SELECT max(seq) FROM raw.consent_ledger", "raw", "consent_ledger", 0)
    return str(fingerprint), int(consent)


_BUILD_COLUMNS = {
    "build_seq": "BIGINT",
    "built_at": "VARCHAR",
    "success": "BOOLEAN",
    "n_nodes": "BIGINT",
    "n_failed": "BIGINT",
    "n_skipped": "BIGINT",
    "failed_nodes": "VARCHAR",
    "invoked_by": "VARCHAR",
    "input_fingerprint": "VARCHAR",
    "consent_seq": "BIGINT",
}


def record_build(warehouse: Path, run_results: dict, invoked_by: str) -> dict[str, object]:
    """Append the build's summary, with the inputs it was built from, to ``meta.dbt_builds``."""
    import duckdb

    with duckdb.connect(str(warehouse), config=duckdb_config(warehouse)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS meta")
        body = ", ".join(f"{c} {t}" for c, t in _BUILD_COLUMNS.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {BUILD_LOG} ({body})")
        for column, dtype in _BUILD_COLUMNS.items():  # a log begun by an older version
            con.execute(f"ALTER TABLE {BUILD_LOG} ADD COLUMN IF NOT EXISTS {column} {dtype}")
        seq = (
            int(_scalar(con, f"SELECT max(build_seq) FROM {BUILD_LOG}", "meta", "dbt_builds", 0))
            + 1
        )
        fingerprint, consent = inputs_state(con)
        summary = {
            "build_seq": seq,
            **build_summary(run_results),
            "invoked_by": invoked_by,
            "input_fingerprint": fingerprint,
            "consent_seq": consent,
        }
        con.execute(
            f"INSERT INTO {BUILD_LOG} ({', '.join(summary)}) VALUES "
            f"({', '.join('?' for _ in summary)})",
            list(summary.values()),
        )
        body = ", ".join(f"{c} {t}" for c, t in _NODE_COLUMNS.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {NODE_RESULTS} ({body})")
        rows = [
            (
                seq,
                r["unique_id"],
                str(r.get("status", "")),
                r.get("failures"),
                (str(r.get("message") or "").strip().splitlines() or [""])[0],
            )
            for r in run_results.get("results", [])
        ]
        if rows:
            con.executemany(f"INSERT INTO {NODE_RESULTS} VALUES (?, ?, ?, ?, ?)", rows)
    return summary


#: Every node of every recorded build with its status (pass, fail, success, error, skipped,
#: warn) and failing-row count: the audit shows the tests of the build that made the marts,
#: whether the CLI or Dagster (with its per-run target folders) ran it.
NODE_RESULTS = "meta.dbt_node_results"
_NODE_COLUMNS = {
    "build_seq": "BIGINT",
    "unique_id": "VARCHAR",
    "status": "VARCHAR",
    "failures": "BIGINT",
    "message": "VARCHAR",
}


def build_node_results(warehouse: Path) -> tuple[dict[str, object], dict[str, dict]]:
    """The last build and each of its nodes (unique_id -> status, failures, message).

    Raises :class:`BuildError` when the warehouse records no build or no node results (a
    build recorded by an older version): a report must not show results it cannot find."""
    import duckdb

    build = last_build(warehouse)
    if build is None:
        raise BuildError(f"{warehouse} has no recorded dbt build; run `sicp build` first")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = (
            []
            if not table_exists(con, "meta", "dbt_node_results")
            else con.execute(
                f"SELECT unique_id, status, failures, message FROM {NODE_RESULTS} "
                f"WHERE build_seq = ?",
                [build["build_seq"]],
            ).fetchall()
        )
    if not rows:
        raise BuildError(
            f"{warehouse}: build {build['build_seq']} has no node results "
            f"recorded; run `sicp build` again"
        )
    return build, {
        uid: {"status": status, "failures": failures, "message": message}
        for uid, status, failures, message in rows
    }


def last_build(warehouse: Path) -> dict[str, object] | None:
    """The newest recorded build, or None when the warehouse has none."""
    import duckdb

    if not warehouse.exists():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not table_exists(con, "meta", "dbt_builds"):
            return None
        cur = con.execute(f"SELECT * FROM {BUILD_LOG} ORDER BY build_seq DESC LIMIT 1")
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
    return dict(zip(names, row, strict=True)) if row else None


def check_current(warehouse: Path, *, allow_failed: bool = False) -> dict[str, object]:
    """The last build, if its marts are what outputs may be made from: it passed (unless
    ``allow_failed``) and was built from the inputs and consent ledger the warehouse holds
    now. Otherwise :class:`BuildError` says what to do."""
    import duckdb

    build = last_build(warehouse)
    if build is None:
        raise BuildError(f"{warehouse} has no recorded dbt build; run `sicp build` first")
    if not build["success"] and not allow_failed:
        failed = build["failed_nodes"] or f"{build['n_skipped']} node(s) skipped"
        raise BuildError(
            f"the warehouse's last dbt build ({build['built_at']}, "
            f"{build['invoked_by']}) failed: {build['n_failed']} failed: {failed}. "
            "Fix the cause and run `sicp build` again, or pass "
            "--allow-failed-build to analyse it anyway"
        )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        fingerprint, consent = inputs_state(con)
    if consent != build["consent_seq"]:
        raise BuildError(
            f"the marts are stale: the consent ledger changed after the last build "
            f"(ledger entry {consent}, built from {build['consent_seq']}); people "
            "who withdrew may still be in them. Run `sicp build` first"
        )
    if fingerprint != build["input_fingerprint"]:
        raise BuildError(
            "the marts are stale: files were ingested after the last build; run `sicp build` first"
        )
    return build


def check_results_current(warehouse: Path, results_dir: Path) -> None:
    """The results store was computed from the warehouse's current build: a report from
    results older than the marts (say, before a withdrawal was built in) is refused."""
    from analysis.store import read_protocol_runs

    build = check_current(warehouse)
    runs = read_protocol_runs(results_dir)
    stale = sorted(
        runs.loc[
            runs["build_seq"].astype("Int64") != int(build["build_seq"]), "protocol_id"
        ].astype(str)
    )
    if stale:
        raise BuildError(
            f"the results of {len(stale)} protocol(s) ({', '.join(stale[:5])}"
            f"{', ...' if len(stale) > 5 else ''}) were computed before the "
            f"warehouse's last build; run `sicp analyse` first"
        )


def report_build(summary: dict[str, object]) -> str:
    if summary["success"]:
        return f"dbt build passed: {summary['n_nodes']} nodes"
    return (
        f"dbt build FAILED: {summary['n_failed']} of {summary['n_nodes']} nodes failed, "
        f"{summary['n_skipped']} skipped. Failed: {summary['failed_nodes'] or '-'}"
    )
