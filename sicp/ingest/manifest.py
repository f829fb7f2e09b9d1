"""The delivery manifest and the run log: every delivered file accounted for.

``raw.delivery_manifest`` has one row per file of the last ingest's delivery (file, source,
size, SHA-256, rows read / loaded / quarantined, status and reason), plus one row per file the
warehouse still holds from an earlier ingest. The statuses are :data:`STATUSES`.

A source's ``ok`` rows are written in the same transaction as its rows, its ``raw.ingest_log``
entries and the input fingerprint (:func:`record_loaded`), so whatever stops a run, the ``ok``
and ``previous`` rows are exactly the files of ``raw.ingest_log``, which are exactly the files
the input fingerprint is computed over. The other statuses describe the last run and are
rewritten at its end (:func:`finish`). Like every ``raw`` table, the manifest holds no
wall-clock time: ingesting the same delivery twice leaves it unchanged.

The run log (``ingest_log.jsonl`` next to the warehouse file) is the history: one JSON line
per ``sicp ingest`` with the time, the outcome, the fingerprint, the number of files, the rows
read, loaded and quarantined, the problems and every manifest row. It is also written when the
warehouse could not be (in use by another process, a full disk).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

import duckdb

from sicp.contract import RAW, Source
from sicp.ingest.discovery import EXTRA, MATCHED, REFUSED, DeliveredFile, Delivery
from sicp.ingest.files import IngestError, input_fingerprint, sha256_file
from sicp.ingest.report import FileReport, ManifestRow, SourceReport
from sicp.ingest.sql import ident
from sicp.ingest.tables import qualified
from sicp.warehouse import transaction

DELIVERY_MANIFEST = "delivery_manifest"
RUN_LOG = "ingest_log.jsonl"

MANIFEST_COLUMNS: dict[str, str] = {
    "file": "VARCHAR",
    "source": "VARCHAR",
    "size_bytes": "BIGINT",
    "sha256": "VARCHAR",
    "rows_read": "BIGINT",
    "rows_loaded": "BIGINT",
    "rows_quarantined": "BIGINT",
    "status": "VARCHAR",
    "reason": "VARCHAR",
}

#: What each status of the delivery manifest means, in the order the manifest lists them.
STATUSES: dict[str, str] = {
    "ok": "loaded by this ingest",
    "previous": "held in the warehouse from an earlier ingest: its source was not loaded by "
    "this one (it failed, or the run stopped), so the previous load stays",
    "failed": "its source failed in this ingest (the reason says why); nothing of that source "
    "was loaded",
    "skipped": "not attempted: a source it depends on failed, or the delivery had refused files",
    "refused": "stopped the ingest before anything was loaded: it matches no source, is a "
    "second file for one source or wave, a symbolic link, or lies outside the input "
    "folder",
    "extra": "an allowed extra file (README, checksums, the synthetic world's truth.json); "
    "never read",
}


def run_log_path(warehouse: Path) -> Path:
    return Path(warehouse).parent / RUN_LOG


def ensure_manifest(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW.schema)}")
    body = ", ".join(f"{ident(c)} {t}" for c, t in MANIFEST_COLUMNS.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {qualified(DELIVERY_MANIFEST)} ({body})")


def record_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    """Set ``raw.input_fingerprint`` from the files ``raw.ingest_log`` holds (call inside a
    transaction)."""
    files = con.execute(
        f"SELECT source_file, file_sha256 FROM {qualified(RAW.ingest_log)}"
    ).fetchall()
    fingerprint = input_fingerprint(files)
    con.execute(f"DELETE FROM {qualified(RAW.input_fingerprint)}")
    con.execute(
        f"INSERT INTO {qualified(RAW.input_fingerprint)} VALUES (?, ?)", [fingerprint, len(files)]
    )
    return fingerprint, len(files)


def record_loaded(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    delivered: list[DeliveredFile],
    reports: list[FileReport],
) -> None:
    """Inside the transaction that loads ``source``: its manifest rows become the files just
    loaded (status ok), and the input fingerprint follows ``raw.ingest_log``."""
    ensure_manifest(con)
    table = qualified(DELIVERY_MANIFEST)
    con.execute(f"DELETE FROM {table} WHERE source = ?", [source.name])
    sizes = {f.rel: f.size_bytes for f in delivered}
    con.executemany(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, 'ok', NULL)",
        [
            (
                r.source_file,
                source.name,
                sizes.get(r.source_file),
                r.file_sha256,
                r.rows_read,
                r.rows_loaded,
                r.rows_quarantined,
            )
            for r in reports
        ],
    )
    record_fingerprint(con)


def _row(f: DeliveredFile, status: str, reason: str | None, *, digest: bool = True) -> tuple:
    sha = None
    if digest and f.regular:
        try:
            sha = sha256_file(f.path)
        except OSError:  # unreadable (permissions, vanished): the reason already says so
            sha = None
    return (f.rel, f.source, f.size_bytes, sha, None, None, None, status, reason)


def _previous_reason(source: str) -> str:
    return f"held from an earlier ingest: {source} was not loaded by this one"


def finish(
    con: duckdb.DuckDBPyConnection,
    delivery: Delivery,
    *,
    loaded: set[str] | None,
    outcomes: dict[str, tuple[str, str]],
) -> list[ManifestRow]:
    """End of a run: rows for this run's failed, skipped, refused and extra files, and the ok
    rows of every source not loaded by this run become ``previous``. ``outcomes`` maps a
    source to its (status, reason); ``loaded=None`` (the Dagster catalogue, which runs only
    once every source asset succeeded) leaves the ok rows as they are."""
    ensure_manifest(con)
    table = qualified(DELIVERY_MANIFEST)
    rows = []
    for f in delivery.files:
        if f.outcome == EXTRA:
            rows.append(_row(f, "extra", f.reason))
        elif f.outcome == REFUSED:
            rows.append(_row(f, "refused", f.reason))
        elif f.outcome == MATCHED and f.source in outcomes:
            rows.append(_row(f, *outcomes[f.source]))
    order = (
        "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STATUSES)) + " END"
    )
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE status NOT IN ('ok', 'previous')")
        if loaded is not None:
            for (name,) in con.execute(
                f"SELECT DISTINCT source FROM {table} WHERE status = 'ok'"
            ).fetchall():
                if name not in loaded:
                    con.execute(
                        f"UPDATE {table} SET status = 'previous', reason = ? "
                        f"WHERE status = 'ok' AND source = ?",
                        [_previous_reason(name), name],
                    )
        if rows:
            con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # One canonical storage order, so the same delivery always leaves the same table.
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table} "
            f"ORDER BY file, {order}, sha256 NULLS LAST, source NULLS LAST"
        )
    return read_manifest(con)


def read_manifest(con: duckdb.DuckDBPyConnection) -> list[ManifestRow]:
    ensure_manifest(con)
    return [
        ManifestRow(*r)
        for r in con.execute(
            f"SELECT {', '.join(ident(c) for c in MANIFEST_COLUMNS)} "
            f"FROM {qualified(DELIVERY_MANIFEST)}"
        ).fetchall()
    ]


def unwritten(
    delivery: Delivery, reason: str, reports: Iterable[SourceReport] = ()
) -> list[ManifestRow]:
    """The manifest of a run that could not write it (for the run log only): the files of the
    sources in ``reports`` loaded, every other matched file skipped with ``reason``. File
    contents are not read."""
    loaded = {f.source_file: f for r in reports for f in r.files}
    rows = []
    for f in delivery.files:
        if f.rel in loaded:
            r = loaded[f.rel]
            rows.append(
                ManifestRow(
                    f.rel,
                    f.source,
                    f.size_bytes,
                    r.file_sha256,
                    r.rows_read,
                    r.rows_loaded,
                    r.rows_quarantined,
                    "ok",
                    None,
                )
            )
            continue
        status = {EXTRA: "extra", REFUSED: "refused"}.get(f.outcome, "skipped")
        rows.append(
            ManifestRow(*_row(f, status, reason if status == "skipped" else f.reason, digest=False))
        )
    return rows


class IngestRunError(IngestError):
    """An ingest run that did not load everything, with where its manifest and log are.

    The message is the problem(s) in plain words (``outcome``: failed, refused, in_use or
    no_space); ``manifest`` is what the run recorded in ``raw.delivery_manifest`` (or, when
    the warehouse could not be written, only in the run log)."""

    def __init__(
        self,
        message: str,
        where: str,
        problem: str,
        *,
        outcome: str,
        warehouse: Path,
        run_log: Path,
        manifest: tuple[ManifestRow, ...],
    ) -> None:
        Exception.__init__(self, message)
        self.where, self.problem = where, problem
        self.outcome, self.warehouse, self.run_log = outcome, warehouse, run_log
        self.manifest = manifest


def log_entry(
    *,
    outcome: str,
    input_dir: Path,
    warehouse: Path,
    manifest: Iterable[ManifestRow],
    fingerprint: str | None,
    n_files: int | None,
    problems: Iterable[str],
    seconds: float,
    recovered: bool = False,
) -> dict[str, object]:
    """One line of the run log; ``recovered``: an interrupted run was rolled back first."""
    rows = list(manifest)
    ok = [r for r in rows if r.status == "ok"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "outcome": outcome,
        "input_dir": str(input_dir),
        "warehouse": str(warehouse),
        "fingerprint": fingerprint,
        "n_files": n_files,
        "rows_read": sum(r.rows_read or 0 for r in ok),
        "rows_loaded": sum(r.rows_loaded or 0 for r in ok),
        "rows_quarantined": sum(r.rows_quarantined or 0 for r in ok),
        "files_by_status": counts,
        "seconds": round(seconds, 3),
        "rolled_back_interrupted_run": recovered,
        "problems": list(problems),
        "files": [
            {
                "file": r.file,
                "source": r.source,
                "size_bytes": r.size_bytes,
                "sha256": r.sha256,
                "rows_read": r.rows_read,
                "rows_loaded": r.rows_loaded,
                "rows_quarantined": r.rows_quarantined,
                "status": r.status,
                "reason": r.reason,
            }
            for r in rows
        ],
    }


def append_run_log(path: Path, entry: dict[str, object]) -> bool:
    """Append ``entry`` as one JSON line; False when the log cannot be written (a full disk:
    the ingest's own message says what happened)."""
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
    except OSError:
        return False
    return True
