"""Finding, fingerprinting and reading input files into DuckDB, with plain-words failures.

A file that cannot be read at all (empty, truncated, wrong type, wrong encoding, missing a
required column) raises :class:`IngestError` naming the file and the problem; everything that
can be read is staged as a DuckDB relation for row-level validation in SQL.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat

from sicp.contract import Source
from sicp.ingest.sql import ident

_SAV_SIGNATURES = (b"$FL2", b"$FL3")
_PARQUET_MAGIC = b"PAR1"
_WAVE_IN_NAME = re.compile(r"_(\d+)$")


class IngestError(Exception):
    """A file (or the input folder) cannot be ingested; the message says which and why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class StagedFile:
    """One input file made readable by DuckDB, before validation.

    ``relation`` is a SQL table expression with the file's own columns plus ``_source_row``
    (1-based data row number); ``columns`` maps each file column to its DuckDB type.
    """

    path: str
    sha256: str
    relation: str
    columns: dict[str, str]
    cleanup: tuple[str, ...] = ()
    value_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    variable_labels: dict[str, str] = field(default_factory=dict)
    #: What staging changed that the report should say (timezone-aware timestamps read as
    #: dates, a file with no data rows where the source may be empty).
    notes: tuple[str, ...] = ()


def discover(input_dir: Path, source: Source) -> list[Path]:
    """The source's files in the input folder, sorted by relative path.

    Names match case-insensitively (see :mod:`sicp.ingest.discovery`). A file named like the
    source that is refused (a type the contract does not accept, say ``recruitment.csv`` where
    only ``.sav`` is expected; a second file for a single-file source; a symbolic link) is an
    error naming it rather than being silently ignored or loaded twice.
    """
    from sicp.ingest.discovery import scan

    return [f.path for f in scan(input_dir).files_of(source)]


def contract_files(input_dir: Path, sources: Iterable[Source]) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file of ``sources`` in the input folder."""
    from sicp.ingest.discovery import scan

    delivery = scan(input_dir)
    return [(f.rel, sha256_file(f.path)) for source in sources for f in delivery.files_of(source)]


def relative(path: Path, input_dir: Path) -> str:
    return path.relative_to(input_dir).as_posix()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_fingerprint(files: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over the sorted ``relative path<TAB>file sha256`` lines, one per file.

    It depends on file names and contents only (not on timestamps or load order), so the
    same input folder always gives the same fingerprint.
    """
    lines = "".join(f"{path}\t{sha}\n" for path, sha in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def wave_from_name(path: str) -> int | None:
    """The wave number in a per-wave file name such as ``cohort/survey_wave_03.sav``."""
    match = _WAVE_IN_NAME.search(Path(path).stem)
    return int(match.group(1)) if match else None


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def stage(con: duckdb.DuckDBPyConnection, path: Path, rel: str, tag: str) -> StagedFile:
    """Make ``path`` readable in DuckDB; ``tag`` keeps temporary object names unique.

    A file the operating system will not let ingest read (permissions, a vanished file) is an
    :class:`IngestError` naming it; a full disk is left to the caller (it is not the file's
    fault)."""
    try:
        if path.stat().st_size == 0:
            raise IngestError(rel, "the file is empty (0 bytes)")
        sha = sha256_file(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _stage_csv(con, path, rel, sha, tag)
        if suffix == ".parquet":
            return _stage_parquet(con, path, rel, sha)
        if suffix == ".sav":
            return _stage_sav(con, path, rel, sha, tag)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise IngestError(rel, f"the file cannot be read ({exc.strerror or exc})") from None
    raise IngestError(rel, f"unsupported file type '{suffix}'")


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {name: dtype for name, dtype, *_ in rows if name != "_source_row"}


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, rel: str, sha: str) -> StagedFile:
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(-4, io.SEEK_END)
        tail = f.read(4)
    if head != _PARQUET_MAGIC:
        raise IngestError(
            rel,
            "not a parquet file (it does not start with the parquet "
            "signature); was another format renamed to .parquet?",
        )
    if tail != _PARQUET_MAGIC:
        raise IngestError(
            rel, "the parquet file is truncated (its footer is missing); copy or export it again"
        )
    scan = f"read_parquet({_sql_string(str(path))}, file_row_number = true)"
    relation = (
        f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _source_row FROM {scan})"
    )
    try:
        columns = _describe(con, relation)
    except duckdb.Error as exc:
        raise IngestError(rel, f"the parquet file cannot be read: {_first_line(exc)}") from None
    aware = [c for c, t in columns.items() if _is_zoned(t)]
    if not aware:
        return StagedFile(rel, sha, relation, columns)
    zones = _parquet_zones(path)
    # The rule for dates delivered as timezone-aware timestamps: the calendar date in the
    # timestamp's own zone (2020-06-01 00:30 BST is 2020-06-01, though 2020-05-31 in UTC).
    replace = ", ".join(
        f"CAST({_local_time(ident(c), zones.get(c, 'UTC'))} AS DATE) AS {ident(c)}" for c in aware
    )
    relation = (
        f"(SELECT * EXCLUDE (file_row_number) REPLACE ({replace}), "
        f"file_row_number + 1 AS _source_row FROM {scan})"
    )
    notes = []
    for c in aware:
        zone = zones.get(c, "UTC")
        try:
            ((timed,),) = con.execute(
                f"SELECT count(*) FILTER (WHERE CAST({_local_time(ident(c), zone)} AS TIME) "
                f"<> TIME '00:00:00') FROM {scan}"
            ).fetchall()
        except duckdb.Error as exc:
            raise IngestError(
                rel,
                f"column {c}: its timezone-aware timestamps (zone {zone}) "
                f"cannot be read: {_first_line(exc)}",
            ) from None
        notes.append(
            f"{rel}: column {c} holds timezone-aware timestamps (zone {zone}); each was read "
            f"as its calendar date in that zone"
            + (f" ({timed:,} had a time of day other than midnight, dropped)" if timed else "")
        )
    return StagedFile(rel, sha, relation, _describe(con, relation), notes=tuple(notes))


#: Fixed UTC offsets as parquet (Arrow) writes them, e.g. ``+01:00``; DuckDB knows only names.
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _is_zoned(duckdb_type: str) -> bool:
    return "TIME ZONE" in duckdb_type or duckdb_type.startswith("TIMESTAMPTZ")


def _parquet_zones(path: Path) -> dict[str, str]:
    """The time zone each timezone-aware column records (the Arrow schema's ``tz``); a file
    that records only "adjusted to UTC" gives UTC."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # DuckDB read the file; without an Arrow schema, UTC
        return {}
    return {
        f.name: str(f.type.tz or "UTC")
        for f in schema
        if pa.types.is_timestamp(f.type) and f.type.tz
    }


def _local_time(x: str, zone: str) -> str:
    """SQL: the wall-clock time (TIMESTAMP) of timestamptz ``x`` in ``zone``."""
    offset = _OFFSET.match(zone)
    utc = f"timezone('UTC', CAST({x} AS TIMESTAMPTZ))"
    if offset:
        sign, hours, minutes = offset.groups()
        total = (int(hours) * 60 + int(minutes)) * (1 if sign == "+" else -1)
        return f"({utc} + INTERVAL ({total}) MINUTE)"
    if zone.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return utc
    return f"timezone({_sql_string(zone)}, CAST({x} AS TIMESTAMPTZ))"


def _csv_header(path: Path, rel: str) -> list[str]:
    with path.open("rb") as f:
        sample = f.read(1 << 16)
    if b"\0" in sample:
        raise IngestError(
            rel,
            "not a text CSV file (it contains binary data); was another format renamed to .csv?",
        )
    if not sample.strip():
        raise IngestError(rel, "the file is empty (no header row)")
    first = sample.splitlines()[0]
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(rel, _encoding_problem(path)) from None
    header = next(csv.reader([text]))
    names = [h.strip() for h in header]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise IngestError(rel, f"the header repeats column(s) {', '.join(duplicated)}")
    if any(not n for n in names):
        raise IngestError(rel, "the header has an unnamed column")
    return names


def _encoding_problem(path: Path) -> str:
    """Say where a CSV stops being UTF-8 (line and byte), so the user can find the culprit."""
    offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"the file is not UTF-8 encoded: byte 0x{line[exc.start]:02x} on line "
                    f"{number} (file offset {offset + exc.start}) is not valid UTF-8. Re-save "
                    f"the file as UTF-8 (in Excel: 'CSV UTF-8') and ingest it again"
                )
            offset += len(line)
    return "the file is not UTF-8 encoded; re-save it as UTF-8 and ingest it again"


def _stage_csv(
    con: duckdb.DuckDBPyConnection, path: Path, rel: str, sha: str, tag: str
) -> StagedFile:
    names = _csv_header(path, rel)
    table = f"_sicp_csv_{tag}"
    columns = "{" + ", ".join(f"{_sql_string(n)}: 'VARCHAR'" for n in names) + "}"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv("
            f"{_sql_string(str(path))}, columns = {columns}, auto_detect = false, header = true, "
            f"delim = ',', quote = '\"', escape = '\"')"
        )
    except duckdb.Error as exc:
        message = str(exc)
        if "unicode" in message.lower() or "utf-8" in message.lower():
            raise IngestError(rel, _encoding_problem(path)) from None
        raise IngestError(
            rel, f"the file cannot be parsed as CSV: {_csv_problem(message)}"
        ) from None
    # A plain table scan keeps insertion (= file) order, so rowid + 1 is the data row number.
    relation = f"(SELECT *, rowid + 1 AS _source_row FROM {table})"
    return StagedFile(rel, sha, relation, dict.fromkeys(names, "VARCHAR"), cleanup=(table,))


def _csv_problem(message: str) -> str:
    line = re.search(r"CSV Error on Line: (\d+)", message)
    detail = [m for m in message.splitlines()[1:4] if m.strip() and "Possible" not in m]
    where = f"line {line.group(1)}: " if line else ""
    return where + ("; ".join(detail) if detail else _first_line(message))


def _first_line(exc: object) -> str:
    return str(exc).strip().splitlines()[0]


def _stage_sav(
    con: duckdb.DuckDBPyConnection, path: Path, rel: str, sha: str, tag: str
) -> StagedFile:
    with path.open("rb") as f:
        signature = f.read(4)
    if signature not in _SAV_SIGNATURES:
        raise IngestError(
            rel,
            "not an SPSS .sav file (it does not start with the SPSS "
            "signature); was another format renamed to .sav?",
        )
    try:
        frame, meta = pyreadstat.read_sav(
            str(path), user_missing=True, dates_as_pandas_datetime=True
        )
    except pyreadstat.ReadstatError as exc:
        raise IngestError(
            rel, f"the SPSS file is truncated or damaged ({exc}); export it again"
        ) from None
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise IngestError(
            rel,
            f"the SPSS file cannot be read ({type(exc).__name__}: {_first_line(exc)}); "
            f"export it again",
        ) from None
    frame = frame.copy()
    frame["_source_row"] = pd.RangeIndex(1, len(frame) + 1)
    view = f"_sicp_sav_{tag}"
    con.register(view, frame)
    value_labels = {
        column: {_label_value(v): str(label) for v, label in labels.items()}
        for column, labels in meta.variable_value_labels.items()
    }
    variable_labels = {c: str(lab) for c, lab in meta.column_names_to_labels.items() if lab}
    return StagedFile(
        rel,
        sha,
        view,
        _describe(con, view),
        cleanup=(view,),
        value_labels=value_labels,
        variable_labels=variable_labels,
    )


def _label_value(value: object) -> str:
    """SPSS stores labelled numbers as doubles; 1.0 is written '1' so it joins to integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def release(con: duckdb.DuckDBPyConnection, staged: StagedFile) -> None:
    """Drop the temporary objects behind a staged file (they may hold raw NHS numbers)."""
    for name in staged.cleanup:
        if name.startswith("_sicp_sav_"):
            con.unregister(name)
        else:
            con.execute(f"DROP TABLE IF EXISTS {name}")
