"""Validate, pseudonymise and load each contract source into the warehouse's ``raw`` schema.

How a source is loaded (``ingest_source``):

1. Every file of the source is staged (see :mod:`sicp.ingest.files`); a file that cannot be
   read at all, or lacks a required contract column, fails the source before anything is
   written. An ``optional`` column the file leaves out is read as NULL on every row.
2. One SQL pass per file, generated from the contract, gives each row its typed values and,
   per column, the reason it breaks a rule (type, required value, allowed set, range, pattern,
   implausible date, unknown practice code, survey wave that does not match the file name).
   Survey user-missing codes (-9/-8/-7) become NULL with their reason kept. A practice code
   that practices.csv delivered but ingest quarantined is named as such, with that row's
   reason (``raw.quarantined_keys``), rather than as unknown.
3. Among the rows that pass, duplicate primary keys keep the first occurrence in file order
   (files sorted by relative path, then row number) and quarantine the rest, naming where the
   first occurrence is. The rule is the same within and across files, so the result does not
   depend on the order in which files arrived.
4. The rows that would load must hold every ``required_values`` entry of the contract (every
   unit-cost item, every area indicator); otherwise the source fails, naming the file(s), the
   column and the missing values, before anything is written.
5. In one transaction the source's rows, quarantine entries (and the keys of quarantined
   rows), missing-code reasons, labels and ingest-log rows are replaced. The whole source is
   rebuilt from its current files, so re-ingesting the same files changes nothing, a changed
   file replaces its previous load and a removed wave file disappears; a failed ingest leaves
   the previous load in place.

NHS numbers: a person-level file may carry ``nhs_number`` instead of ``person_id``. The number
is checked (Modulus 11) and replaced by HMAC-SHA256 under the secret ``SICP_PSEUDONYM_KEY``;
invalid numbers are quarantined with the value masked, so no raw number reaches any table.

Consent: loading ``recruitment`` appends to the consent ledger (``raw.consent_ledger``,
:mod:`sicp.ingest.consent`) the exclusions of every recruitment row with a readable
``person_id``, quarantined rows included, so a withdrawal is honoured even when the row carrying
it was rejected for another reason; a later delivery cannot take one back, only a logged
reinstatement can, and ``raw.consent_exclusions`` is rebuilt from the ledger. Scope ``all``: a withdrawal date is
recorded (readable or not). Scope ``records``: record-linkage consent is anything but a clear 1.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sicp.contract import NHS_NUMBER_COLUMN, RAW, SOURCES, Column, Source
from sicp.ingest import identifiers, journal, keys, sql
from sicp.ingest.consent import record_exclusions
from sicp.ingest.discovery import Delivery, documented_patterns, refusal, scan
from sicp.ingest.files import (
    IngestError,
    StagedFile,
    release,
    stage,
    wave_from_name,
)
from sicp.ingest.labels import check_labels
from sicp.ingest.manifest import (
    IngestRunError,
    append_run_log,
    finish,
    log_entry,
    record_fingerprint,
    record_loaded,
    run_log_path,
    unwritten,
)
from sicp.ingest.report import FileReport, IngestReport, ManifestRow, SourceReport
from sicp.ingest.sql import ident, literal
from sicp.ingest.tables import QUARANTINED_KEYS, ensure_raw_schema, qualified, source_table_ddl
from sicp.warehouse import (
    WarehouseInUse,
    connect_writer,
    duckdb_config,
    table_exists,
    transaction,
)

PSEUDONYM_KEY_ENV = "SICP_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 16
CONSENT_SOURCE = "recruitment"
PERSON = "person_id"


@dataclass(frozen=True)
class _File:
    """A staged file with what validation needs to know about it."""

    index: int
    staged: StagedFile
    uses_nhs_number: bool
    wave: int | None
    #: Optional contract columns the file leaves out: NULL on every row.
    absent: tuple[str, ...] = ()

    @property
    def columns(self) -> dict[str, str]:
        """The file's columns and types, an absent optional column as all-NULL text."""
        return {**self.staged.columns, **dict.fromkeys(self.absent, "VARCHAR")}


@dataclass(frozen=True)
class _Group:
    """Files with the same columns and types (say, all survey waves), checked in one query:
    DuckDB's cost here is planning the long generated query, not scanning the rows."""

    index: int
    files: tuple[_File, ...]

    @property
    def columns(self) -> dict[str, str]:
        return self.files[0].columns

    @property
    def uses_nhs_number(self) -> bool:
        return self.files[0].uses_nhs_number

    @property
    def checked(self) -> str:
        return f"_sicp_chk_{self.index}"

    def relation(self) -> str:
        absent = set(self.files[0].absent)
        columns = ", ".join(
            f"CAST(NULL AS VARCHAR) AS {ident(c)}" if c in absent else ident(c)
            for c in self.columns
        )
        return " UNION ALL ".join(
            f"SELECT {f.index} AS _file, {f.wave if f.wave is not None else 'NULL'} AS _file_wave, "
            f"_source_row, {columns} FROM {f.staged.relation}"
            for f in self.files
        )


def _groups(files: list[_File]) -> list[_Group]:
    by_signature: dict[tuple[object, ...], list[_File]] = {}
    for f in files:
        by_signature.setdefault((tuple(f.staged.columns.items()), f.absent), []).append(f)
    return [_Group(i, tuple(g)) for i, g in enumerate(by_signature.values())]


def pseudonym_key(where: str, key: str | None = None) -> bytes:
    """The HMAC key: ``key`` if given, else ``SICP_PSEUDONYM_KEY``; a clear error if absent."""
    value = key if key is not None else os.environ.get(PSEUDONYM_KEY_ENV, "")
    if not value:
        raise IngestError(
            where,
            f"the file carries NHS numbers, which must be pseudonymised, but "
            f"{PSEUDONYM_KEY_ENV} is not set. Set it to the project's secret pseudonymisation "
            f"key (at least {MIN_KEY_LENGTH} characters; keep it out of the repository) and "
            f"ingest again",
        )
    problem = keys.weak_key_problem(value)  # short, white space, too few distinct characters
    if problem:
        raise IngestError(where, problem)
    return value.encode("utf-8")


def ingest_order() -> list[Source]:
    """Contract sources ordered so that a referenced source (practices) loads first."""
    pending = list(SOURCES.values())
    ordered: list[Source] = []
    while pending:
        done = {s.name for s in ordered}
        ready = [s for s in pending if referenced_sources(s) <= done]
        ordered.extend(ready)
        pending = [s for s in pending if s not in ready]
    return ordered


def referenced_sources(source: Source) -> set[str]:
    return {c.references[0] for c in source.columns if c.references}


def referenced_columns(source: Source) -> list[str]:
    """Columns of ``source`` that another source's values must exist in (its keys)."""
    wanted = {
        c.references[1]
        for s in SOURCES.values()
        for c in s.columns
        if c.references and c.references[0] == source.name
    }
    return [c for c in source.column_names if c in wanted]


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    input_dir: Path,
    source: Source,
    *,
    key: str | None = None,
    delivery: Delivery | None = None,
) -> SourceReport:
    """Load every file of ``source`` into ``raw.<source>`` (see the module docstring).

    ``delivery``: the input folder as :func:`sicp.ingest.discovery.scan` found it (scanned
    here when not given); a refused file named like the source fails it."""
    started = time.perf_counter()
    ensure_raw_schema(con)
    delivered = (delivery or scan(input_dir)).files_of(source)
    if not delivered:
        expected = " or ".join(documented_patterns(source))
        raise IngestError(
            source.name,
            f"no input file found; expected {expected} in {input_dir} "
            f"(names match case-insensitively)",
        )
    for ref in sorted(referenced_sources(source)):
        if not table_exists(con, RAW.schema, ref):
            raise IngestError(
                source.name,
                f"{ref} must be ingested first (its keys are checked against raw.{ref})",
            )
    warnings: list[str] = []
    files: list[_File] = []
    try:
        for index, found in enumerate(delivered):
            staged = stage(con, found.path, found.rel, f"{source.name}_{index}")
            try:
                uses_nhs_number, absent = _check_header(source, staged, warnings)
                _check_not_empty(con, source, staged, warnings)
            except Exception:
                release(con, staged)
                raise
            warnings.extend(staged.notes)
            files.append(
                _File(
                    index,
                    staged,
                    uses_nhs_number,
                    wave_from_name(staged.path) if source.per_wave else None,
                    absent,
                )
            )
        check_labels(input_dir, source, [f.staged for f in files])
        params = {}
        if any(f.uses_nhs_number for f in files):
            first = next(f for f in files if f.uses_nhs_number)
            params = sql.hmac_parameters(pseudonym_key(first.staged.path, key))
            keys.check_key(con, first.staged.path, params)
        groups = _groups(files)
        for g in groups:
            con.execute(_checked_table_sql(source, g), params if g.uses_nhs_number else None)
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {g.checked}" for g in groups)
        con.execute(f"CREATE OR REPLACE TEMP VIEW _sicp_chk AS {union}")
        _find_duplicates(con, source, files)
        _collect_quarantine(con, source, files)
        _check_required_values(con, source, files)
        reports = _file_reports(con, source, files)
        with transaction(con):
            _write_rows(con, source, files)
            _write_quarantine(con, source, files)
            _write_quarantined_keys(con, source, files)
            recoded = _write_missing_reasons(con, source, files)
            _write_labels(con, source, files, warnings)
            _write_log(con, source, reports)
            record_loaded(con, source, delivered, reports)  # manifest rows and fingerprint
            keys.record_key(con, source.name, params)
            if source.name == CONSENT_SOURCE:
                _write_consent_exclusions(con, source, files)
        summary = con.execute(
            f"SELECT column_name, regexp_replace(reason, ': first occurrence .*$', ''), count(*) "
            f"FROM {qualified(RAW.quarantine)} WHERE source_name = ? GROUP BY ALL "
            f"ORDER BY 3 DESC, 1, 2",
            [source.name],
        ).fetchall()
    finally:
        con.execute("DROP VIEW IF EXISTS _sicp_chk")
        con.execute("DROP TABLE IF EXISTS _sicp_dup")
        con.execute("DROP TABLE IF EXISTS _sicp_q")
        for g in _groups(files):
            con.execute(f"DROP TABLE IF EXISTS {g.checked}")
        for f in files:
            release(con, f.staged)
    return SourceReport(
        source_name=source.name,
        files=tuple(reports),
        warnings=tuple(warnings),
        quarantine_summary=tuple((c, r, int(n)) for c, r, n in summary),
        missing_codes_recoded=recoded,
        seconds=time.perf_counter() - started,
    )


def ingest_all(input_dir: Path, warehouse: Path, *, key: str | None = None) -> IngestReport:
    """Ingest every contract source from ``input_dir`` into the DuckDB file ``warehouse``.

    Every entry of the input folder is accounted for first (:mod:`sicp.ingest.discovery`): a
    refused file (matching no source, a second file for one source or wave, a symbolic link)
    stops the ingest before anything is loaded. Sources that fail do not stop the others
    (unless they depend on a failed one); the problems are raised together at the end. Every
    run leaves the delivery manifest (``raw.delivery_manifest``) and a line in the run log
    (``ingest_log.jsonl`` next to the warehouse; :mod:`sicp.ingest.manifest`), and the input
    fingerprint always covers exactly the files ``raw.ingest_log`` holds. The run is all or
    nothing for the warehouse (:mod:`sicp.ingest.journal`): a warehouse in use by another
    process, a disk that fills up or any unexpected stop leave it as it was before the run,
    with a plain message; an interrupted run found at the start is rolled back first (the
    report says so). Failures raise :class:`IngestRunError`.
    """
    started = time.perf_counter()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    log = run_log_path(warehouse)
    delivery = scan(input_dir, ignore=_warehouse_files(warehouse, log))
    reports: list[SourceReport] = []
    problems: list[IngestError] = []
    outcomes: dict[str, tuple[str, str]] = {}
    writing = f"the warehouse {warehouse}"

    def finished(
        outcome: str,
        manifest: list[ManifestRow],
        fingerprint: str | None = None,
        n_files: int | None = None,
        recovered: bool = False,
    ) -> None:
        append_run_log(
            log,
            log_entry(
                outcome=outcome,
                input_dir=input_dir,
                warehouse=warehouse,
                manifest=manifest,
                fingerprint=fingerprint,
                n_files=n_files,
                problems=[str(p) for p in problems],
                seconds=time.perf_counter() - started,
                recovered=recovered,
            ),
        )

    def stopped(outcome: str, message: str, manifest: list[ManifestRow]) -> IngestRunError:
        problems.append(IngestError(str(warehouse), message))
        finished(outcome, manifest)
        return IngestRunError(
            message,
            str(warehouse),
            message,
            outcome=outcome,
            warehouse=warehouse,
            run_log=log,
            manifest=tuple(manifest),
        )

    restored: bool | None = None  # after a stopped run: whether the journal was rolled back
    recovered = False
    try:
        with connect_writer(warehouse) as con:
            recovered = journal.begin(con)
            try:
                if delivery.refused:
                    problems.append(refusal(delivery.refused))
                    outcomes = dict.fromkeys(
                        SOURCES,
                        (
                            "skipped",
                            "not ingested: the delivery has refused files (listed in "
                            "this manifest), so nothing was loaded; the previous load "
                            "stays",
                        ),
                    )
                for source in [] if delivery.refused else ingest_order():
                    blocked = sorted(referenced_sources(source) & set(outcomes))
                    if blocked:
                        reason = f"not ingested because {', '.join(blocked)} failed"
                        outcomes[source.name] = ("skipped", reason)
                        problems.append(IngestError(source.name, reason))
                        continue
                    names = ", ".join(f.rel for f in delivery.matched(source)) or "no file"
                    writing = f"raw.{source.name} (from {names})"
                    try:
                        reports.append(
                            ingest_source(con, input_dir, source, key=key, delivery=delivery)
                        )
                    except IngestError as exc:
                        outcomes[source.name] = ("failed", str(exc))
                        problems.append(exc)
                    except Exception as exc:
                        if _no_space(exc) or os.environ.get(DEBUG_ENV):
                            raise
                        error = _unexpected(source, names, exc)
                        outcomes[source.name] = ("failed", str(error))
                        problems.append(error)
                writing = "the delivery manifest (raw.delivery_manifest)"
                manifest = finish(
                    con, delivery, loaded={r.source_name for r in reports}, outcomes=outcomes
                )
                fingerprint, n_files = write_input_fingerprint(con)
                writing = "the end of the run (dropping the previous load)"
                journal.commit(con)
            except BaseException:
                restored = _roll_back(con)
                raise
    except WarehouseInUse as exc:
        raise stopped(
            "in_use",
            str(exc),
            unwritten(delivery, "not ingested: the warehouse was in use by another process"),
        ) from None
    except Exception as exc:
        if not _no_space(exc):
            raise
        state = (
            "the previous load is intact (the whole run was rolled back)"
            if restored is not False
            else "the previous load is kept aside in the warehouse and the next ingest puts it "
            "back before it loads anything (sicp build refuses the warehouse until then)"
        )
        message = (
            f"no space left while writing {writing}; {state}. Free space where the "
            f"warehouse is ({warehouse.parent}) and ingest again"
        )
        raise stopped(
            "no_space",
            message,
            unwritten(delivery, "not ingested: no space left on the device", reports),
        ) from None
    outcome = "ok" if not problems else "refused" if delivery.refused else "failed"
    finished(outcome, manifest, fingerprint, n_files, recovered)
    if problems:
        error = (
            problems[0]
            if len(problems) == 1
            else IngestError(
                str(input_dir),
                f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems),
            )
        )
        raise IngestRunError(
            str(error),
            error.where,
            error.problem,
            outcome=outcome,
            warehouse=warehouse,
            run_log=log,
            manifest=tuple(manifest),
        )
    contract_order = list(SOURCES)
    reports.sort(key=lambda r: contract_order.index(r.source_name))
    return IngestReport(
        tuple(reports),
        fingerprint,
        n_files,
        time.perf_counter() - started,
        manifest=tuple(manifest),
        warehouse=warehouse,
        run_log=log,
        recovered=recovered,
    )


#: Set (to anything) to let an unexpected error in ingest show its traceback.
DEBUG_ENV = "SICP_DEBUG"


def _warehouse_files(warehouse: Path, log: Path) -> list[Path]:
    """The warehouse's own files, skipped if someone keeps the warehouse in the input folder."""
    temp = Path(duckdb_config(warehouse)["temp_directory"])
    return [warehouse, Path(f"{warehouse}.wal"), temp, log]


def _roll_back(con: duckdb.DuckDBPyConnection) -> bool:
    """Undo the run (:mod:`sicp.ingest.journal`); False when even that failed (the disk is
    still full, say): the journal stays for the next ingest to roll back."""
    try:
        journal.rollback(con)
    except (duckdb.Error, OSError):
        return False
    return True


def _no_space(exc: BaseException) -> bool:
    """A full disk, as the operating system or DuckDB reports it."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, duckdb.Error | OSError) and "no space left" in str(exc).lower()


def _unexpected(source: Source, names: str, exc: Exception) -> IngestError:
    """A failure ingest has no words for (DuckDB could not read a value, say): the source's
    files, the column where DuckDB names one, and DuckDB's first line, without a traceback."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    column = re.search(r"(?:source column|column) \"?([A-Za-z_][A-Za-z0-9_]*)\"?", text)
    where = f"column {column.group(1)}: " if column else ""
    if isinstance(exc, duckdb.Error):
        return IngestError(
            names,
            f"{where}the file cannot be read or checked ({first}); "
            f"nothing of {source.name} was loaded (a previous load stays)",
        )
    return IngestError(
        names,
        f"could not be ingested ({type(exc).__name__}: {first}); nothing "
        f"of {source.name} was loaded. This is a fault in sicp: run again "
        f"with {DEBUG_ENV}=1 for the details to report",
    )


def write_input_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    """Record the fingerprint of every file in ``raw.ingest_log`` (what the warehouse holds).

    Each source's load already keeps it current, in the same transaction
    (:func:`sicp.ingest.manifest.record_loaded`); this is for callers that write the log
    otherwise, and costs one small query."""
    ensure_raw_schema(con)
    with transaction(con):
        return record_fingerprint(con)


@dataclass(frozen=True)
class Reconciliation:
    """Per-file check that every row read is either in the raw table or in quarantine."""

    source_file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_in_table: int
    rows_in_quarantine: int

    @property
    def ok(self) -> bool:
        return (
            self.rows_read == self.rows_loaded + self.rows_quarantined
            and self.rows_loaded == self.rows_in_table
            and self.rows_quarantined == self.rows_in_quarantine
        )


def reconcile(con: duckdb.DuckDBPyConnection, source: Source) -> list[Reconciliation]:
    """Recount each file of ``source`` from the tables themselves and set it beside the log."""
    rows = con.execute(
        f"""
        SELECT l.source_file, l.rows_read, l.rows_loaded, l.rows_quarantined,
               (SELECT count(*) FROM {qualified(source.name)} t
                 WHERE t._source_file = l.source_file),
               (SELECT count(DISTINCT q.source_row) FROM {qualified(RAW.quarantine)} q
                 WHERE q.source_name = l.source_name AND q.source_file = l.source_file)
        FROM {qualified(RAW.ingest_log)} l WHERE l.source_name = ? ORDER BY l.source_file
        """,
        [source.name],
    ).fetchall()
    return [Reconciliation(*r) for r in rows]


def _check_header(
    source: Source, staged: StagedFile, warnings: list[str]
) -> tuple[bool, tuple[str, ...]]:
    """Fail on missing required contract columns, warn on unknown ones. Returns whether NHS
    numbers replace ``person_id`` and which optional columns the file leaves out."""
    present = set(staged.columns)
    uses_nhs = source.person_level and NHS_NUMBER_COLUMN in present
    if uses_nhs and PERSON in present:
        raise IngestError(
            staged.path, f"the file has both {PERSON} and {NHS_NUMBER_COLUMN}; provide one of them"
        )
    required = [
        c.name for c in source.columns if not c.optional and not (uses_nhs and c.name == PERSON)
    ]
    missing = [c for c in required if c not in present]
    if missing:
        optional = [c.name for c in source.columns if c.optional]
        needed = [c.name for c in source.columns if not c.optional]
        raise IngestError(
            staged.path,
            f"required column(s) missing: {', '.join(missing)}. The data contract for "
            f"{source.name} needs every one of: {', '.join(needed)} "
            f"(a column may be empty where the contract allows it, but it must be there)"
            + (f"; optional: {', '.join(optional)}" if optional else ""),
        )
    known = set(source.column_names) | ({NHS_NUMBER_COLUMN} if uses_nhs else set())
    unknown = [c for c in staged.columns if c not in known]
    if unknown:
        warnings.append(
            f"{staged.path}: column(s) not in the data contract ignored (not "
            f"loaded): {', '.join(unknown)}"
        )
    absent = tuple(c.name for c in source.columns if c.optional and c.name not in present)
    return uses_nhs, absent


def _check_not_empty(
    con: duckdb.DuckDBPyConnection, source: Source, staged: StagedFile, warnings: list[str]
) -> None:
    """A file with a header but no data row fails, naming it, unless the contract says the
    source may be empty (``Source.may_be_empty``): then it loads, with a warning."""
    if con.execute(f"SELECT 1 FROM {staged.relation} LIMIT 1").fetchall():
        return
    if source.may_be_empty:
        warnings.append(
            f"{staged.path}: no data rows (a valid delivery: {source.name} may be "
            f"empty in the data contract)"
        )
        return
    raise IngestError(
        staged.path,
        f"the file has no data rows (a header only); the data contract says "
        f"{source.name} cannot be empty, so this is most likely a failed or "
        f"partial export. Export it again (nothing of {source.name} was loaded; "
        f"a previous load stays in place)",
    )


def _column_sql(source: Source, column: Column, g: _Group) -> tuple[str, str, str]:
    """(inner, middle, outer) select items for one column: inner reads and types it, middle
    finds the problem, outer keeps the offending value as text for quarantine."""
    c = column.name
    v, n, x, p = (ident(f"_{kind}_{c}") for kind in ("v", "n", "x", "p"))
    if g.uses_nhs_number and c == PERSON:
        s = ident(f"_s_{c}")
        text = sql.nhs_number_text(ident(NHS_NUMBER_COLUMN), g.columns[NHS_NUMBER_COLUMN])
        inner = (f"{text} AS {s}",)
        middle = (
            f"CASE WHEN {sql.nhs_number_valid(s)} THEN {sql.hmac_sha256(s)} END AS {ident(c)}",
            f"CASE WHEN {s} IS NULL THEN 'missing NHS number' "
            f"WHEN NOT {sql.nhs_number_valid(s)} THEN 'invalid NHS number (not 10 digits, or "
            f"the Modulus 11 check digit does not match)' END AS {p}",
            # The raw number goes no further than this subquery: shown masked, never stored.
            f"CASE WHEN {s} IS NOT NULL THEN repeat('*', length({s})) END AS {x}",
        )
        outer = (f"CASE WHEN {p} IS NOT NULL THEN {x} END AS {ident('_o_' + c)}",)
        return ", ".join(inner), ", ".join(middle), ", ".join(outer)
    raw = ident(c)
    file_type = g.columns[c]
    # _i_: the kind of direct identifier the delivered value holds (sicp.ingest.identifiers);
    # such a value quarantines its row and is masked, before any other rule is looked at.
    i = ident(f"_i_{c}")
    found = identifiers.sql_found(raw, file_type, source.person_level, column.allowed)
    inner = (
        f"{sql.typed(column, raw, file_type)} AS {v}",
        f"{sql.present(raw, file_type)} AS {n}",
        f"{raw} AS {x}",
        f"{found} AS {i}",
    )
    codes = ", ".join(str(code) for code in column.missing_codes or {})
    whens = [
        f"WHEN NOT {n} THEN "
        + ("NULL" if column.nullable else "'missing value in a required column'"),
        f"WHEN {i} IS NOT NULL THEN {identifiers.sql_reason(c, i)}",
        f"WHEN {v} IS NULL THEN {literal(sql.type_reason(column))}",
    ]
    if codes:
        whens.append(f"WHEN {v} IN ({codes}) THEN NULL")
    whens += [f"WHEN {cond} THEN {literal(reason)}" for cond, reason in sql.rule_checks(column, v)]
    if column.references:
        ref_source, ref_column = column.references
        # A key the referenced file delivered but ingest quarantined there is named with that
        # row's reason (the real cause); only a key absent from the file is "unknown".
        cascaded = (
            f"(SELECT {literal(c + ' ')} || {v} || {literal(f' was quarantined in {ref_source} (')}"
            f" || arg_min(k.source_file || ' row ' || k.source_row || ': ' || k.reason, "
            f"(k.source_file, k.source_row)) || ')' "
            f"FROM {qualified(QUARANTINED_KEYS)} k WHERE k.source_name = {literal(ref_source)} "
            f"AND k.key_column = {literal(ref_column)} AND k.key_value = CAST({v} AS VARCHAR))"
        )
        whens.append(
            f"WHEN {v} NOT IN (SELECT {ident(ref_column)} FROM {qualified(ref_source)}) THEN "
            f"coalesce({cascaded}, {literal(f'unknown {c}: not in {ref_source}')})"
        )
    if source.per_wave and c == "wave":
        whens.append(
            f"WHEN {v} <> _file_wave THEN 'wave does not match the file name (wave ' "
            f"|| _file_wave || ')'"
        )
    middle = [f"CASE {' '.join(whens)} END AS {p}", x, i]
    # A value holding an identifier is not kept typed either (quarantined keys, consent and
    # the cascaded reasons of dependent rows read the typed values of quarantined rows).
    if codes:
        middle += [
            f"CASE WHEN {i} IS NOT NULL OR {v} IN ({codes}) THEN NULL ELSE {v} END AS {ident(c)}",
            f"CASE WHEN {v} IN ({codes}) THEN {v} END AS {ident('_m_' + c)}",
        ]
    else:
        middle.append(f"CASE WHEN {i} IS NULL THEN {v} END AS {ident(c)}")
    outer = (
        f"CASE WHEN {p} IS NOT NULL THEN CASE WHEN {i} IS NOT NULL THEN "
        f"{literal(identifiers.MASK)} ELSE {sql.as_text(x, file_type)} END END "
        f"AS {ident('_o_' + c)}",
    )
    return ", ".join(inner), ", ".join(middle), ", ".join(outer)


def _checked_table_sql(source: Source, g: _Group) -> str:
    """One row per input row: typed contract columns, ``_p_<col>`` problem, ``_o_<col>`` the
    offending value shown in quarantine, ``_m_<col>`` user-missing code, and ``_ok``."""
    parts = [_column_sql(source, col, g) for col in source.columns]
    kept = [ident(c.name) for c in source.columns]
    kept += [ident(f"_p_{c.name}") for c in source.columns]
    kept += [ident(f"_m_{c.name}") for c in source.columns if c.missing_codes]
    ok = " AND ".join(f"{ident('_p_' + c.name)} IS NULL" for c in source.columns)
    return f"""
        CREATE OR REPLACE TEMP TABLE {g.checked} AS
        SELECT _file, _source_row, {", ".join(kept)}, {", ".join(p[2] for p in parts)},
               {ok} AS _ok
        FROM (
            SELECT _file, _source_row, {", ".join(p[1] for p in parts)}
            FROM (SELECT _file, _file_wave, _source_row, {", ".join(p[0] for p in parts)}
                  FROM ({g.relation()}))
        )
        ORDER BY _file, _source_row
    """


def _file_case(files: list[_File], column: str = "_file", attribute: str = "path") -> str:
    """SQL mapping a file index to its relative path (or sha256)."""
    whens = " ".join(f"WHEN {f.index} THEN {literal(getattr(f.staged, attribute))}" for f in files)
    return f"CASE {column} {whens} END"


def _person_label(files: list[_File]) -> str:
    """The column quarantine names for person problems: ``nhs_number`` where it replaced
    ``person_id``."""
    nhs = [str(f.index) for f in files if f.uses_nhs_number]
    if not nhs:
        return literal(PERSON)
    return f"CASE WHEN _file IN ({', '.join(nhs)}) THEN {literal(NHS_NUMBER_COLUMN)} ELSE {literal(PERSON)} END"


def _find_duplicates(con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]) -> None:
    """``_sicp_dup``: rows (that passed every other rule) whose primary key was seen before."""
    pk = [ident(c) for c in source.primary_key]
    if not pk:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _sicp_dup "
            "(_file INTEGER, _source_row BIGINT, reason VARCHAR, key_text VARCHAR)"
        )
        return
    keys, window = ", ".join(pk), f"PARTITION BY {', '.join(pk)} ORDER BY _file, _source_row"
    key_text = "concat_ws(', ', " + ", ".join(f"CAST({k} AS VARCHAR)" for k in pk) + ")"
    label = ", ".join(source.primary_key)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _sicp_dup AS
        WITH dup_keys AS (
            SELECT {keys} FROM _sicp_chk WHERE _ok GROUP BY ALL HAVING count(*) > 1
        ), ranked AS (
            SELECT _file, _source_row, {key_text} AS key_text,
                   row_number() OVER w AS rn,
                   first_value(_file) OVER w AS first_file,
                   first_value(_source_row) OVER w AS first_row
            FROM _sicp_chk SEMI JOIN dup_keys USING ({keys})
            WHERE _ok
            WINDOW w AS ({window})
        )
        SELECT _file, _source_row,
               'duplicate primary key ({label}): first occurrence is '
                 || {_file_case(files, "first_file")} || ' row ' || first_row AS reason,
               key_text
        FROM ranked WHERE rn > 1
    """)


#: The rows that load: no problem in any column and not a later duplicate of a key.
_LOADED = "FROM _sicp_chk ANTI JOIN _sicp_dup USING (_file, _source_row) WHERE _ok"


def _file_reports(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]
) -> list[FileReport]:
    counts = dict.fromkeys(range(len(files)), (0, 0))
    counts |= {
        index: (read, bad)
        for index, read, bad in con.execute(
            "SELECT _file, count(*), count(*) FILTER (WHERE NOT _ok) FROM _sicp_chk GROUP BY _file"
        ).fetchall()
    }
    dups = dict(con.execute("SELECT _file, count(*) FROM _sicp_dup GROUP BY _file").fetchall())
    reports = []
    for f in files:
        read, bad = counts[f.index]
        quarantined = int(bad) + int(dups.get(f.index, 0))
        reports.append(
            FileReport(
                source.name,
                f.staged.path,
                f.staged.sha256,
                int(read),
                int(read) - quarantined,
                quarantined,
            )
        )
    return reports


def _write_rows(con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]) -> None:
    journal.keep_source_table(con, source.name)  # the previous load, until the run ends
    con.execute(source_table_ddl(source))
    columns = ", ".join(ident(c) for c in source.column_names)
    con.execute(
        f"INSERT INTO {qualified(source.name)} SELECT {columns}, {_file_case(files)}, "
        f"_source_row, {_file_case(files, attribute='sha256')} {_LOADED} "
        f"ORDER BY _file, _source_row"
    )


def _collect_quarantine(con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]) -> None:
    """``_sicp_q``: one row per offending value (and per later duplicate), in column order."""
    branches = []
    for position, column in enumerate(source.columns):
        label = _person_label(files) if column.name == PERSON else literal(column.name)
        p, o = ident(f"_p_{column.name}"), ident(f"_o_{column.name}")
        branches.append(
            f"SELECT _file, _source_row, {position} AS pos, {label} AS column_name, "
            f"{o} AS offending_value, {p} AS reason FROM _sicp_chk WHERE {p} IS NOT NULL"
        )
    branches.append(
        f"SELECT _file, _source_row, {len(source.columns)}, "
        f"{literal(', '.join(source.primary_key))}, key_text, reason FROM _sicp_dup"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _sicp_q AS "
        f"SELECT * FROM ({' UNION ALL '.join(branches)}) ORDER BY _file, _source_row, pos"
    )


def _check_required_values(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]
) -> None:
    """Fail the source (before anything is written) when the rows that would load lack a
    value the contract requires in a column, naming the file(s), column and values; a value
    that was delivered but quarantined is shown with that row's reason."""
    for column, values in source.required_values:
        c = ident(column)
        loaded = {
            v
            for (v,) in con.execute(
                f"SELECT DISTINCT CAST({c} AS VARCHAR) {_LOADED} AND {c} IS NOT NULL"
            ).fetchall()
        }
        missing = [v for v in values if v not in loaded]
        if not missing:
            continue
        rejected = dict(
            con.execute(
                f"""
            SELECT value, arg_min(
                       {_file_case(files)} || ' row ' || _source_row || ': ' || problems,
                       (_file, _source_row))
            FROM (
                SELECT CAST(k.{c} AS VARCHAR) AS value, _file, _source_row,
                       string_agg({_problem_text("q")}, '; ' ORDER BY q.pos) AS problems
                FROM _sicp_chk k JOIN _sicp_q q USING (_file, _source_row)
                WHERE CAST(k.{c} AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))
                GROUP BY 1, 2, 3
            ) GROUP BY value
        """,
                [missing],
            ).fetchall()
        )
        paths = ", ".join(f.staged.path for f in files)
        detail = "".join(
            f"; {v} was delivered but quarantined ({rejected[v]})" for v in missing if v in rejected
        )
        raise IngestError(
            paths,
            f"column {column} lacks required value(s) {', '.join(missing)}; the warehouse "
            f"needs a row for every one of: {', '.join(values)}{detail}. Nothing of "
            f"{source.name} was loaded (a previous load stays in place)",
        )


def _problem_text(q: str) -> str:
    """SQL: one quarantine entry of ``_sicp_q`` alias ``q`` as "column 'value': reason"."""
    quoted = f"' ''' || {q}.offending_value || ''''"
    return f"{q}.column_name || coalesce({quoted}, '') || ': ' || {q}.reason"


def _write_quarantine(con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]) -> None:
    table = qualified(RAW.quarantine)
    con.execute(f"DELETE FROM {table} WHERE source_name = ?", [source.name])
    con.execute(
        f"INSERT INTO {table} SELECT {literal(source.name)}, {_file_case(files)}, "
        f"_source_row, column_name, offending_value, reason "
        f"FROM _sicp_q ORDER BY _file, _source_row, pos"
    )


def _write_quarantined_keys(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]
) -> None:
    """The key values (those other sources reference) of every quarantined row, with the
    row's reasons, so a dependant row can name the real cause of its cascaded rejection."""
    table = qualified(QUARANTINED_KEYS)
    con.execute(f"DELETE FROM {table} WHERE source_name = ?", [source.name])
    for key in referenced_columns(source):
        k = ident(key)
        con.execute(f"""
            INSERT INTO {table}
            SELECT {literal(source.name)}, {literal(key)}, key_value, {_file_case(files)},
                   _source_row, problems
            FROM (
                SELECT _file, _source_row, CAST(c.{k} AS VARCHAR) AS key_value,
                       string_agg({_problem_text("q")}, '; ' ORDER BY q.pos) AS problems
                FROM _sicp_chk c JOIN _sicp_q q USING (_file, _source_row)
                WHERE c.{k} IS NOT NULL
                GROUP BY 1, 2, 3
            )
            ORDER BY _file, _source_row
        """)


def _write_missing_reasons(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]
) -> int:
    """Record why each user-missing code became NULL; returns how many were recoded."""
    table = qualified(RAW.missing_reasons)
    log = qualified(RAW.ingest_log)
    con.execute(
        f"DELETE FROM {table} WHERE source_file IN "
        f"(SELECT source_file FROM {log} WHERE source_name = ?) OR source_file IN "
        f"(SELECT unnest(?::VARCHAR[]))",
        [source.name, [f.staged.path for f in files]],
    )
    coded = [c for c in source.columns if c.missing_codes]
    if not coded:
        return 0
    wave = ident("wave") if "wave" in source.column_names else "CAST(NULL AS BIGINT)"
    person = ident(PERSON) if PERSON in source.column_names else "CAST(NULL AS VARCHAR)"
    codes = {code: text for c in coded for code, text in (c.missing_codes or {}).items()}
    reason = (
        "CASE code "
        + " ".join(f"WHEN {code} THEN {literal(text)}" for code, text in codes.items())
        + " END"
    )
    items = ", ".join(f"{ident('_m_' + c.name)} AS {ident(c.name)}" for c in coded)
    order = "[" + ", ".join(literal(c.name) for c in coded) + "]"
    con.execute(f"""
        INSERT INTO {table}
        SELECT {_file_case(files)}, _source_row, person_id, wave, column_name, code, {reason}
        FROM (UNPIVOT (SELECT _file, _source_row, {person} AS person_id, {wave} AS wave, {items}
                       {_LOADED})
              ON {", ".join(ident(c.name) for c in coded)} INTO NAME column_name VALUE code)
        ORDER BY _file, _source_row, list_position({order}, column_name)
    """)
    return int(
        con.execute(
            f"SELECT count(*) FROM {table} WHERE source_file IN (SELECT unnest(?::VARCHAR[]))",
            [[f.staged.path for f in files]],
        ).fetchall()[0][0]
    )


def _write_labels(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File], warnings: list[str]
) -> None:
    """Value and variable labels from the files' own metadata (SPSS); a later file's label
    wins a conflict, with a warning."""
    values: dict[tuple[str, str], str] = {}
    variables: dict[str, str] = {}
    for f in files:
        for column, labels in f.staged.value_labels.items():
            if column not in source.column_names:
                continue
            for value, label in labels.items():
                old = values.get((column, value))
                if old is not None and old != label:
                    warnings.append(
                        f"{f.staged.path}: value label of {column}={value} changed "
                        f"from {old!r} to {label!r}; the later file's label is kept"
                    )
                values[(column, value)] = label
        for column, label in f.staged.variable_labels.items():
            if column in source.column_names:
                variables[column] = label
    order = {name: i for i, name in enumerate(source.column_names)}
    value_rows = sorted(
        ((c, v, lab) for (c, v), lab in values.items()),
        key=lambda r: (order[r[0]], _numeric_first(r[1])),
    )
    for table, rows in (
        (RAW.value_labels, value_rows),
        (RAW.variable_labels, sorted(variables.items(), key=lambda r: order[r[0]])),
    ):
        con.execute(f"DELETE FROM {qualified(table)} WHERE source_name = ?", [source.name])
        if rows:
            con.executemany(
                f"INSERT INTO {qualified(table)} VALUES (?{', ?' * len(rows[0])})",
                [(source.name, *r) for r in rows],
            )


def _numeric_first(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _write_log(con: duckdb.DuckDBPyConnection, source: Source, reports: list[FileReport]) -> None:
    table = qualified(RAW.ingest_log)
    con.execute(f"DELETE FROM {table} WHERE source_name = ?", [source.name])
    con.executemany(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                r.source_name,
                r.source_file,
                r.file_sha256,
                r.rows_read,
                r.rows_loaded,
                r.rows_quarantined,
            )
            for r in reports
        ],
    )


def _write_consent_exclusions(
    con: duckdb.DuckDBPyConnection, source: Source, files: list[_File]
) -> None:
    """Append this delivery's exclusions to the consent ledger (sicp.ingest.consent), which
    rebuilds ``raw.consent_exclusions``: what a delivery once said is kept."""
    withdrawn, linkage = source.column("withdrawn_on"), source.column("consent_linkage")
    person_ok = f"{ident(PERSON)} IS NOT NULL AND {ident('_p_' + PERSON)} IS NULL"
    w, pw = ident(withdrawn.name), ident(f"_p_{withdrawn.name}")
    lk, plk = ident(linkage.name), ident(f"_p_{linkage.name}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _sicp_consent AS
        SELECT person_id, scope, reason, min(source_file) AS source_file,
               min(file_sha256) AS file_sha256 FROM (
            SELECT {ident(PERSON)} AS person_id, 'all' AS scope,
                   CASE WHEN min({w}) IS NOT NULL
                        THEN 'withdrew all consent on ' || strftime(min({w}), '%Y-%m-%d')
                        ELSE 'withdrawal recorded with an unreadable date' END AS reason,
                   min({_file_case(files)}) AS source_file,
                   min({_file_case(files, attribute="sha256")}) AS file_sha256
            FROM _sicp_chk WHERE {person_ok} AND ({w} IS NOT NULL OR {pw} IS NOT NULL)
            GROUP BY {ident(PERSON)}
            UNION ALL
            SELECT {ident(PERSON)}, 'records', 'no consent to record linkage',
                   min({_file_case(files)}), min({_file_case(files, attribute="sha256")})
            FROM _sicp_chk WHERE {person_ok}
            GROUP BY {ident(PERSON)}
            HAVING bool_or(coalesce({lk}, -1) <> 1 OR {plk} IS NOT NULL)
        ) GROUP BY person_id, scope, reason
    """)
    record_exclusions(con, "_sicp_consent")
    con.execute("DROP TABLE IF EXISTS _sicp_consent")
