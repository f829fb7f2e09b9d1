"""What an ingest did, per file and per source, for the CLI, Dagster metadata and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileReport:
    """Row accounting for one file: ``rows_read == rows_loaded + rows_quarantined``."""

    source_name: str
    source_file: str
    file_sha256: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int


@dataclass(frozen=True)
class SourceReport:
    """One contract source after ingest."""

    source_name: str
    files: tuple[FileReport, ...]
    #: Problems that did not stop the load (unknown columns dropped, label conflicts, ...).
    warnings: tuple[str, ...]
    #: (column, reason, rows) for every kind of quarantined value, most frequent first.
    quarantine_summary: tuple[tuple[str, str, int], ...]
    #: Survey user-missing codes (-9/-8/-7) turned into NULL, with the reason kept.
    missing_codes_recoded: int
    seconds: float

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)


@dataclass(frozen=True)
class ManifestRow:
    """One row of the delivery manifest (``raw.delivery_manifest``, :mod:`sicp.ingest.manifest`):
    a delivered file, or a file the warehouse still holds from an earlier ingest."""

    file: str
    source: str | None
    size_bytes: int | None
    sha256: str | None
    rows_read: int | None
    rows_loaded: int | None
    rows_quarantined: int | None
    #: ok, failed, skipped, refused, extra (this run's delivery) or previous (held from an
    #: earlier ingest); see sicp.ingest.manifest.STATUSES.
    status: str
    reason: str | None


@dataclass(frozen=True)
class IngestReport:
    """The whole input folder after ingest, with the fingerprint every result cites."""

    sources: tuple[SourceReport, ...]
    fingerprint: str
    n_files: int
    seconds: float
    #: Every delivered file and what ingest did with it (also in raw.delivery_manifest).
    manifest: tuple[ManifestRow, ...] = ()
    #: Where the warehouse and the run log (one JSON line per ingest) are.
    warehouse: Path | None = None
    run_log: Path | None = None
    #: An earlier ingest had stopped half-way; its partial load was rolled back first.
    recovered: bool = False

    def source(self, name: str) -> SourceReport:
        for s in self.sources:
            if s.source_name == name:
                return s
        raise KeyError(name)

    def __str__(self) -> str:
        width = max(len(s.source_name) for s in self.sources)
        lines = [
            f"{'source':<{width}}  {'files':>5}  {'read':>10}  {'loaded':>10}  {'quarantined':>11}"
        ]
        for s in self.sources:
            lines.append(
                f"{s.source_name:<{width}}  {len(s.files):>5}  {s.rows_read:>10,}  "
                f"{s.rows_loaded:>10,}  {s.rows_quarantined:>11,}"
            )
        for s in self.sources:
            lines.extend(f"warning: {w}" for w in s.warnings)
        if self.recovered:
            lines.append(
                "note: an earlier ingest stopped before it finished; what it had "
                "loaded was rolled back before this one began"
            )
        lines.append(
            f"input fingerprint {self.fingerprint} ({self.n_files} files), {self.seconds:.1f} s"
        )
        if self.warehouse is not None:
            lines.append(where_recorded(self.warehouse, self.run_log, self.manifest))
        return "\n".join(lines)


def where_recorded(
    warehouse: Path, run_log: Path | None, manifest: tuple[ManifestRow, ...] | list[ManifestRow]
) -> str:
    """The line `sicp ingest` prints saying where the delivery manifest and run log are."""
    counts: dict[str, int] = {}
    for row in manifest:
        counts[row.status] = counts.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in counts.items())
    return (
        f"delivery manifest: raw.delivery_manifest in {warehouse}"
        + (f" ({tally})" if tally else "")
        + (f"; run log: {run_log}" if run_log is not None else "")
    )
