"""Finding, fingerprinting and reading input files into DuckDB, with plain-words failures.

A file that cannot be read at all (empty, truncated, wrong type, wrong encoding, missing a
required column) raises :class:`IngestError` naming the file and the problem; everything that
can be read is staged as a DuckDB relation for row-level validation in SQL.
"""

from __future__ import annotations

import csv
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


def discover(input_dir: Path, source: Source) -> list[Path]:
    """The source's files in the input folder, sorted by relative path.

    A file named like the source but with a type the contract does not accept (say
    ``recruitment.csv`` where only ``.sav`` is expected) is an error rather than being
    silently ignored.
    """
    found: set[Path] = set()
    for pattern in source.file_patterns():
        found.update(p for p in input_dir.glob(pattern) if p.is_file())
    for p in input_dir.glob(f"{source.folder}/{source.stem}.*"):
        suffix = p.suffix.lstrip(".").lower()
        if p.is_file() and p not in found and suffix not in source.formats:
            raise IngestError(
                relative(p, input_dir),
                f"unsupported file type '.{suffix}' for {source.name}; the data contract "
                f"accepts {', '.join('.' + f for f in source.formats)}",
            )
    return sorted(found, key=lambda p: relative(p, input_dir))


def contract_files(input_dir: Path, sources: Iterable[Source]) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file of ``sources`` in the input folder."""
    return [(relative(p, input_dir), sha256_file(p))
            for source in sources for p in discover(input_dir, source)]


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
    """Make ``path`` readable in DuckDB; ``tag`` keeps temporary object names unique."""
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
        raise IngestError(rel, "not a parquet file (it does not start with the parquet "
                               "signature); was another format renamed to .parquet?")
    if tail != _PARQUET_MAGIC:
        raise IngestError(rel, "the parquet file is truncated (its footer is missing); "
                               "copy or export it again")
    relation = (
        f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _source_row "
        f"FROM read_parquet({_sql_string(str(path))}, file_row_number = true))"
    )
    try:
        columns = _describe(con, relation)
    except duckdb.Error as exc:
        raise IngestError(rel, f"the parquet file cannot be read: {_first_line(exc)}") from None
    return StagedFile(rel, sha, relation, columns)


def _csv_header(path: Path, rel: str) -> list[str]:
    with path.open("rb") as f:
        sample = f.read(1 << 16)
    if b"\0" in sample:
        raise IngestError(rel, "not a text CSV file (it contains binary data); was another "
                               "format renamed to .csv?")
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
        raise IngestError(rel, f"the file cannot be parsed as CSV: {_csv_problem(message)}") from None
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
        raise IngestError(rel, "not an SPSS .sav file (it does not start with the SPSS "
                               "signature); was another format renamed to .sav?")
    try:
        frame, meta = pyreadstat.read_sav(
            str(path), user_missing=True, dates_as_pandas_datetime=True
        )
    except pyreadstat.ReadstatError as exc:
        raise IngestError(
            rel, f"the SPSS file is truncated or damaged ({exc}); export it again"
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
        rel, sha, view, _describe(con, view), cleanup=(view,),
        value_labels=value_labels, variable_labels=variable_labels,
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
